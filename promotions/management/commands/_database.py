"""What the commands share (the leading underscore keeps Django from listing it as one)."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.management.base import CommandError
from django.db import DatabaseError


@contextmanager
def database_ready() -> Iterator[None]:
    """Turn a database that is not migrated, or not reachable, into one line saying so
    instead of a traceback through the ORM."""
    try:
        yield
    except DatabaseError as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CommandError(f"Database not ready: run manage.py migrate ({detail}).") from None
