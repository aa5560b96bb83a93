"""What the logs say of a request: its method and route, never the ids its path carries.

Django logs every 4xx and 5xx with the request's path ("Not Found: /api/v1/customers/<id>"),
and runserver every request with its path and query: a customer's id (at some retailers
their e-mail address) in every line a lookup of someone not yet stored, a refused update
or a retried erasure writes. `RequestRoutes`, a filter on those loggers (settings.LOGGING),
puts the route the path matched in its place, each parameter by its name
("GET /api/v1/customers/<external_id>"); a path no route takes keeps only the words the
routes themselves are made of, each other segment redacted. Operators still see which
call failed, how and how often; the query's values are dropped, its names kept. The same
holds for gunicorn's own lines (`ServerLines`) and, at DEBUG, for urllib3's line of each
request made to Twilio (`OutgoingQueries`), whose query can name a phone number.
"""

import functools
import logging
import re
from collections.abc import Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from django.http import HttpRequest
from django.urls import Resolver404, URLResolver, get_resolver

REDACTED = "<redacted>"

# A route's parameters, as path() writes them (<str:gateway_id>, <pk>) and as a regex
# route does ((?P<code>[^/]+), DRF's routers); what they matched is what is left out.
_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>[^()]*\)")
# A segment a route spells out: "api", "v1", "customers", "export", "change".
_WORD = re.compile(r"[\w.-]+")
# A query parameter's name as the API's filters spell them ("status", "created_after"); a
# name that is data ("?+33612345678", "?jane@example.com") is redacted as the values are.
_QUERY_NAME = re.compile(r"[A-Za-z_][\w.-]{0,39}")


class RequestRoutes(logging.Filter):
    """Rewrites a record that names a request's path to name its route instead (see the
    module's docstring). Records are changed before any handler sees them, so the console,
    pytest's capture and any handler a deployment adds all get the same line."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        if isinstance(request, HttpRequest) and isinstance(record.args, tuple):
            # Django's log_response escapes the path as it logs it (unicode_escape).
            logged = request.path.encode("unicode_escape").decode("ascii")
            described = _safely(lambda: f"{request.method} {request_route(request)}")
            record.args = tuple(described if arg == logged else arg for arg in record.args)
        elif record.name == "django.server" and isinstance(record.args, tuple) and record.args:
            # runserver's access line: '"GET /path?query HTTP/1.1" 404 58'.
            line = str(record.args[0])
            record.args = (_safely(lambda: request_line_route(line)), *record.args[1:])
        return True


class OutgoingQueries(logging.Filter):
    """urllib3 logs each request it makes at DEBUG, its URL whole
    ('https://api.twilio.com:443 "GET /2010-04-01/.../Messages.json?To=%2B336... HTTP/1.1"
    200 320'): a lookup of the messages sent to a number names it in its query (the
    settling of unrecorded sends makes one). The query's values are redacted, its names
    kept, so LOG_LEVEL=DEBUG still shows which calls were made and how they ended."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _safely(lambda url=arg: _url_without_query_values(url))
                if isinstance(arg, str) and "?" in arg
                else arg
                for arg in record.args
            )
        return True


def _url_without_query_values(url: str) -> str:
    base, _, query = url.partition("?")
    return f"{base}?{query_names(query)}"


class ServerLines(logging.Filter):
    """gunicorn's own lines (config/wsgi.py adds this filter to its loggers). Its error log's
    line of a request it cannot parse quotes what it choked on ("Invalid HTTP Version: 'Doe
    HTTP/1.1'": the rest of a path whose id's space was not percent-encoded), and of one
    the application failed, its URI; the access log, where a deployment turns it on, gives
    the request line, path, query and referer whole. They keep the error's kind, the route
    and the query's names."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            # gunicorn's atoms for its access_log_format, read by key once this returns.
            atoms = record.args
            for key, describe in _ACCESS_ATOMS.items():
                value = atoms.get(key)
                if isinstance(value, str) and value not in ("", "-"):
                    atoms[key] = _safely(lambda describe=describe, value=value: describe(value))
        elif isinstance(record.msg, str) and record.msg.startswith("Invalid request from ip="):
            # Formatted by gunicorn already: "Invalid request from ip=1.2.3.4: <kind>: <what>".
            ip, _, error = record.msg.partition(": ")
            record.msg = f"{ip}: {error.partition(': ')[0]}"
        elif (
            isinstance(record.msg, str)
            and record.msg.startswith("Error handling request ")
            and isinstance(record.args, tuple)
            and record.args
        ):
            *method, uri = record.args
            record.args = (*method, _safely(lambda: target_route(str(uri))))
        return True


def target_route(target: str) -> str:
    """A request's target ("/path?query") as its route and its query's names."""
    url = urlsplit(target)
    described = path_route(unquote(url.path)) if url.path.startswith("/") else REDACTED
    return f"{described}?{query_names(url.query)}" if url.query else described


def url_route(url: str) -> str:
    """A whole URL (a referer) as its origin, its path's route and its query's names."""
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""
    return origin + target_route(parts.path + (f"?{parts.query}" if parts.query else ""))


def request_route(request: HttpRequest) -> str:
    """The request's route ("/api/v1/customers/<external_id>"), under its script prefix."""
    prefix = request.path[: len(request.path) - len(request.path_info)]
    match = request.resolver_match
    if match is None:
        return prefix + path_route(request.path_info, urlconf=getattr(request, "urlconf", None))
    return prefix + _route_text(match.route)


def path_route(path: str, *, urlconf: str | None = None) -> str:
    """The route a path (without script prefix) matches, or for one no route takes, the
    path with every segment that is no word of the routes' redacted."""
    resolver = get_resolver(urlconf)
    try:
        return _route_text(resolver.resolve(path).route)
    except Resolver404:
        words = _route_words(resolver)
        return "/".join(
            segment if not segment or segment in words else REDACTED for segment in path.split("/")
        )


def request_line_route(line: str) -> str:
    """An HTTP request line ("GET /path?query HTTP/1.1") naming the route and the query's
    names only; a line that is not one is redacted whole."""
    parts = line.split(" ")
    if len(parts) != 3:
        return REDACTED
    method, target, version = parts
    return f"{method} {target_route(target)} {version}"


def query_names(query: str) -> str:
    """A query string with its values redacted, its names kept ("To=<redacted>")."""
    names = [
        name if _QUERY_NAME.fullmatch(name) else REDACTED
        for name, _ in parse_qsl(query, keep_blank_values=True)
    ]
    return "&".join(f"{name}={REDACTED}" for name in names)


# gunicorn's access atoms that carry a path, query or URL (the default format's r, U, q and
# f; the same as request headers and environ), each with how it is described.
_ACCESS_ATOMS: dict[str, Callable[[str], str]] = {
    "r": request_line_route,
    "U": path_route,
    "q": query_names,
    "f": url_route,
    "{referer}i": url_route,
    "{http_referer}e": url_route,
    "{raw_uri}e": target_route,
    "{request_uri}e": target_route,
    "{path_info}e": path_route,
    "{query_string}e": query_names,
    "{location}o": url_route,
}


def _safely(describe: Callable[[], str]) -> str:
    # A filter that raises is raised into the code that logged: Django's answer to the
    # request would become a 500. Whatever cannot be described is redacted whole.
    try:
        return describe()
    except Exception:
        return REDACTED


def _route_text(route: str) -> str:
    text = _PARAMETER.sub(lambda found: f"<{found[1] or found[2]}>", route)
    return "/" + text.replace("^", "").replace("$", "")


@functools.cache
def _route_words(resolver: URLResolver) -> frozenset[str]:
    """Every segment a route of the URLconf spells out, its parameters left aside."""
    words: set[str] = set()
    pending = list(resolver.url_patterns)
    while pending:
        pattern = pending.pop()
        route = _PARAMETER.sub("", str(pattern.pattern)).replace("^", "").replace("$", "")
        words.update(segment for segment in route.split("/") if _WORD.fullmatch(segment))
        if isinstance(pattern, URLResolver):
            pending.extend(pattern.url_patterns)
    return frozenset(words)
