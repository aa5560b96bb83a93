"""Bodies Django cannot read: one sent with Transfer-Encoding: chunked and no Content-Length.
gunicorn hands it over without CONTENT_LENGTH and Django reads it as empty, so a view would
answer about a body it never saw (a missing list, required fields, or, for a PATCH, a
success that changed nothing). It is refused before any view, as HTTP says: 411."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

LENGTH_REQUIRED = (
    "Length Required: send Content-Length. A body sent with Transfer-Encoding: chunked and "
    "no Content-Length is not read."
)


class LengthRequiredMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        encoding = request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        takes_body = request.method in ("POST", "PUT", "PATCH")
        if takes_body and "chunked" in encoding and not request.META.get("CONTENT_LENGTH"):
            return JsonResponse({"detail": LENGTH_REQUIRED}, status=411)
        return self.get_response(request)
