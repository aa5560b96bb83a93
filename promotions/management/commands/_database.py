"""What the commands share (the leading underscore keeps Django from listing it as one)."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.core.management.base import CommandError
from django.db import DatabaseError

from promotions.database import database_unavailable

# A table or column that migrate would create: PostgreSQL's SQLSTATEs, SQLite's words.
MISSING_SQLSTATES = frozenset({"42P01", "42703"})
MISSING_SQLITE = ("no such table", "no such column")


@contextmanager
def database_ready() -> Iterator[None]:
    """Turn a database that is not migrated, or not reachable, into one line saying so
    instead of a traceback through the ORM. Only a missing table calls for migrate: an
    operator whose database is down, or whose DATABASE_URL names the wrong host, would run
    it and meet the same error."""
    try:
        yield
    except DatabaseError as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if _not_migrated(error):
            raise CommandError(f"Database not ready: run manage.py migrate ({detail}).") from None
        if database_unavailable(error):
            raise CommandError(f"Database not reachable ({detail}): check DATABASE_URL.") from None
        raise CommandError(f"Database error ({detail}).") from None


def _not_migrated(error: DatabaseError) -> bool:
    code = getattr(error.__cause__, "sqlstate", None)
    return code in MISSING_SQLSTATES or str(error).startswith(MISSING_SQLITE)
