"""Bodies sent with Transfer-Encoding: chunked and no Content-Length: OkHttp's gzip
interceptor, as Android apps compress their uploads, sends them so.

Django reads a body only as long as CONTENT_LENGTH says. A server that decodes the chunks
itself says so with `wsgi.input_terminated` (gunicorn does): `ReadChunkedBodies` reads such
a body, to one byte over the limit, and hands Django a body of known length, refused as any
other when it is over. A server that does not (Django's runserver) hands the body over
without a length and Django reads it as empty, so a view would answer about a body it never
saw (a missing list, required fields, or, for a PATCH, a success that changed nothing):
`LengthRequiredMiddleware` refuses it before any view, as HTTP says: 411. Under an ASGI
server Django has the body but DRF reads no more than CONTENT_LENGTH: 411 too."""

import io
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

LENGTH_REQUIRED = (
    "Length Required: send Content-Length. A body sent with Transfer-Encoding: chunked and "
    "no Content-Length is not read."
)
MALFORMED_CHUNKS = b'{"detail": "Malformed body: its chunked transfer coding does not parse."}'

WsgiApplication = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _chunked_without_length(meta: dict[str, Any]) -> bool:
    encoding = meta.get("HTTP_TRANSFER_ENCODING", "").lower()
    return "chunked" in encoding and not meta.get("CONTENT_LENGTH")


class ReadChunkedBodies:
    """WSGI middleware around Django's application (config/wsgi.py)."""

    def __init__(self, application: WsgiApplication) -> None:
        self.application = application

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if environ.get("wsgi.input_terminated") and _chunked_without_length(environ):
            try:
                body = environ["wsgi.input"].read(settings.API_MAX_BODY_BYTES + 1)
            except Exception:  # the server's own error for framing it cannot parse
                start_response(
                    "400 Bad Request",
                    [
                        ("Content-Type", "application/json"),
                        ("Content-Length", str(len(MALFORMED_CHUNKS))),
                        ("Connection", "close"),
                    ],
                )
                return [MALFORMED_CHUNKS]
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.application(environ, start_response)


class LengthRequiredMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        takes_body = request.method in ("POST", "PUT", "PATCH")
        if takes_body and _chunked_without_length(request.META):
            return JsonResponse({"detail": LENGTH_REQUIRED}, status=411)
        return self.get_response(request)
