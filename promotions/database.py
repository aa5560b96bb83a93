"""Which database errors mean the database is away for a while, rather than something
wrong with the work: the API answers them 503 with Retry-After, and tasks retry them."""

import sqlite3

from django.db import DatabaseError, InterfaceError, OperationalError

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
