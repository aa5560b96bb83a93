"""How failures look to API clients: always JSON with a `detail`, never a bare 500 for input."""

from typing import Any

from django.db import DataError, IntegrityError, InterfaceError, OperationalError
from rest_framework import status
from rest_framework.exceptions import UnsupportedMediaType
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from customers.services import ConflictError

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
    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database is down or locked: nothing was committed, and the client may retry.
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
    if isinstance(exc, IntegrityError):
        return Response(
            {"detail": "A concurrent change conflicted with this request; retry it."},
            status=status.HTTP_409_CONFLICT,
        )
    return drf_exception_handler(exc, context)
