"""Times relative to now, as the API takes them: tests must not age out of ingest windows."""

from datetime import UTC, datetime, timedelta


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def ahead(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()
