"""Which database errors mean the database is away for a while, rather than something
wrong with the work: the API answers them 503 with Retry-After, and tasks retry them. And
work run again at once when a place it read is deleted under it. And rows held against a
deletion, as a foreign key holds them, and names held by advisory locks."""

import sqlite3
from collections.abc import Callable, Collection
from typing import TypeVar

from django.core.exceptions import EmptyResultSet
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection
from django.db.models import QuerySet

from promotions.batch_sql import array_literal

T = TypeVar("T")

# PostgreSQL's answers of a server that is going away or not yet able to write: shutting
# down (57P01, 57P02), starting up (57P03), and a standby still read-only (25006), which a
# failover's address reaches for a few seconds before its promotion. Class 08: connection
# failures. psycopg raises the read-only one as an InternalError, not an OperationalError.
UNAVAILABLE_SQLSTATES = frozenset({"25006", "57P01", "57P02", "57P03"})

# SQLite's primary result codes for another connection holding the database (SQLITE_BUSY)
# or a table of it (SQLITE_LOCKED): the only OperationalErrors of SQLite's that pass. Its
# others are the statement's own (an expression tree too deep, a missing table), which a
# retry would only repeat.
SQLITE_BUSY, SQLITE_LOCKED = 5, 6


def database_unavailable(error: BaseException) -> bool:
    """Whether a database error is the database being away for a while (down, restarting,
    unreachable, failing over, locked by another writer), which the client or task outlives
    by retrying, rather than something wrong with the work, which a retry would only
    repeat."""
    # Django's error wraps the driver's, which tells which it is.
    cause = error.__cause__
    if isinstance(cause, sqlite3.Error):
        code = getattr(cause, "sqlite_errorcode", None)
        return isinstance(code, int) and code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)
    if isinstance(error, (OperationalError, InterfaceError)):
        return True
    if not isinstance(error, DatabaseError):
        return False
    code = getattr(cause, "sqlstate", None) or ""
    return code in UNAVAILABLE_SQLSTATES or code.startswith("08")


# Ingest, a batch's processing and the presence tick name places (store, zone, beacon,
# gateway) by foreign keys that PostgreSQL checks when their transaction commits: a place a
# marketer deletes meanwhile (a store, a beacon or a zone in opening hours) fails the commit,
# and all the work with it, the other shoppers' included. Run again, the work reads the
# places as they now are, and leaves the deleted one out.
PLACE_ATTEMPTS = 3


def against_current_places(run: Callable[[], T]) -> T:
    """`run()`, which does its work in a transaction of its own, run again while its commit
    fails on a place deleted under it (an IntegrityError), at most PLACE_ATTEMPTS times in
    all; the last attempt's error is raised."""
    for _ in range(PLACE_ATTEMPTS - 1):
        try:
            return run()
        except IntegrityError:
            continue
    return run()


def held_rows(rows: QuerySet, *, strength: str) -> list[tuple]:
    """`rows` (a values_list queryset) read and locked until the transaction ends, FOR
    `strength`: "KEY SHARE" (what a foreign key to the row takes when its transaction
    commits, taken now) or "SHARE" (which an edit of the row waits for too). Django's ORM
    locks rows only for update, which would queue writers that may share them. Elsewhere
    than PostgreSQL the rows are read unlocked: SQLite writes one transaction at a time."""
    if connection.vendor != "postgresql":
        return list(rows)
    try:
        sql, params = rows.query.sql_with_params()
    except EmptyResultSet:  # a lookup in an empty list, which matches no row
        return []
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} FOR {strength}", params)
        return cursor.fetchall()


def hold_names(
    space: int, names: Collection[str], *, shared: bool = False, buckets: int | None = None
) -> None:
    """Hold PostgreSQL's advisory locks on `names` until the transaction ends, exclusively
    or `shared`: the first key `space` (whose locks they are), the second the name's hash,
    or with `buckets` (a power of two) its bucket. One statement, in key order: two
    transactions locking names they share cannot each wait for a lock the other holds.
    PostgreSQL only; SQLite, for development, runs one writer at a time."""
    if connection.vendor != "postgresql" or not names:
        return
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    mask = -1 if buckets is None else buckets - 1  # -1: every bit of the hash
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {function}(%s, key) FROM (SELECT DISTINCT hashtext(name) & %s AS key"
            " FROM unnest(%s::text[]) AS name ORDER BY key) AS keys",
            [space, mask, array_literal(sorted(set(names)), "text")],
        )
