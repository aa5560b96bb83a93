"""How failures look to API clients: always JSON with a `detail`, never a bare 500 for input.

`exception_handler` answers for the API's views; the `handler400/404/500` views (named in
config/urls.py) for what Django answers itself under the API's paths: a path no view
matches, a Host it does not serve, a crash."""

from collections import Counter
from typing import Any

from django.core.exceptions import DisallowedHost
from django.db import DatabaseError, DataError, IntegrityError
from django.db.models import ProtectedError, RestrictedError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.views import defaults
from rest_framework import status
from rest_framework.exceptions import UnsupportedMediaType
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from customers.services import ConflictError
from promotions.database import database_unavailable

DATABASE_RETRY_AFTER_SECONDS = 5


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, UnsupportedMediaType):
        # The contract answers a wrong content type with 400, like any other malformed body.
        content_type = context["request"].content_type or "none"
        return Response(
            {"detail": f"Content-Type must be application/json, not {content_type!r}."},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, ConflictError):
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, DatabaseError) and database_unavailable(exc):
        # The database is down, locked, or failing over (a standby still read-only). Each
        # of the API's writes is one transaction (a service's own, or ConfigViewSet's around
        # validation and save), which the error rolled back: nothing was committed, and the
        # client may retry.
        return Response(
            {"detail": "The database is unavailable; retry later."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, DataError):
        # What validation let through but PostgreSQL refuses: a NUL character in a path
        # segment, a number out of a column's range. The statement failed; nothing is stored.
        return Response(
            {"detail": "The request holds a value the database cannot store or look up."},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, (ProtectedError, RestrictedError)):
        # A row that PROTECT or RESTRICT foreign keys hold: retrying cannot help. These are
        # IntegrityErrors too, so they are answered before the concurrent-change one.
        return Response({"detail": _held_detail(exc, context)}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, IntegrityError):
        return Response(
            {"detail": "A concurrent change conflicted with this request; retry it."},
            status=status.HTTP_409_CONFLICT,
        )
    return drf_exception_handler(exc, context)


def _held_detail(exc: ProtectedError | RestrictedError, context: dict[str, Any]) -> str:
    """What holds the row, e.g. "This campaign cannot be deleted: 2 deliveries refer to it"."""
    holders = exc.protected_objects if isinstance(exc, ProtectedError) else exc.restricted_objects
    counts = Counter(holder._meta for holder in holders)
    named = ", ".join(
        f"{count} {meta.verbose_name if count == 1 else meta.verbose_name_plural}"
        for meta, count in counts.items()
    )
    queryset = getattr(context.get("view"), "queryset", None)
    thing = f"This {queryset.model._meta.verbose_name}" if queryset is not None else "This"
    verb = "refers" if len(holders) == 1 else "refer"
    return f"{thing} cannot be deleted: {named or 'other rows'} {verb} to it."


# Paths whose clients parse JSON; elsewhere (the admin) Django's HTML pages stay.
JSON_PATH_PREFIXES = ("/api/", "/webhooks/")


def _wants_json(request: HttpRequest) -> bool:
    return request.path_info.startswith(JSON_PATH_PREFIXES)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not _wants_json(request):
        return defaults.bad_request(request, exception)
    detail = "Bad request."
    if isinstance(exception, DisallowedHost):
        # A client given the instance's address instead of the public name (a gateway, an
        # app build, the simulator): its engineer needs the reason, not a bare 400.
        host = request.META.get("HTTP_HOST") or request.META.get("SERVER_NAME", "")
        detail = (
            f"This server does not answer for the host {host[:255]!r}: send requests to the "
            "address it serves (its ALLOWED_HOSTS)."
        )
    return JsonResponse({"detail": detail}, status=status.HTTP_400_BAD_REQUEST)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not _wants_json(request):
        return defaults.page_not_found(request, exception)
    detail = "Not found."
    path = request.path_info
    if path.endswith("/") and _resolves(path.rstrip("/")):
        detail = f"Not found: this path has no trailing slash ({request.path.rstrip('/')})."
    return JsonResponse({"detail": detail}, status=status.HTTP_404_NOT_FOUND)


def server_error(request: HttpRequest) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(
            {"detail": "Server error."}, status=status.HTTP_500_INTERNAL_SERVER_ERROR
        )
    return defaults.server_error(request)


def _resolves(path: str) -> bool:
    try:
        resolve(path)
    except Resolver404:
        return False
    return True
