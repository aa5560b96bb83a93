"""What the logs say of a request: its method and route, never the ids its path carries.

Django logs every 4xx and 5xx with the request's path ("Not Found: /api/v1/customers/<id>"),
and runserver every request with its path and query: a customer's id (at some retailers
their e-mail address) in every line a lookup of someone not yet stored, a refused update
or a retried erasure writes. `RequestRoutes`, a filter on those loggers (settings.LOGGING),
puts the route the path matched in its place, each parameter by its name
("GET /api/v1/customers/<external_id>"); a path no route takes keeps only the words the
routes themselves are made of, each other segment redacted. Operators still see which
call failed, how and how often; the query's values are dropped, its names kept.
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
    url = urlsplit(target)
    described = path_route(unquote(url.path)) if url.path.startswith("/") else REDACTED
    if url.query:
        described += "?" + query_names(url.query)
    return f"{method} {described} {version}"


def query_names(query: str) -> str:
    """A query string with its values redacted, its names kept ("To=<redacted>")."""
    names = [
        name if _QUERY_NAME.fullmatch(name) else REDACTED
        for name, _ in parse_qsl(query, keep_blank_values=True)
    ]
    return "&".join(f"{name}={REDACTED}" for name in names)


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
