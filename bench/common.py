"""What the benchmarks share: a database of their own, a free port, a robust timing."""

import socket
import statistics
from collections.abc import Callable

import psycopg


def ensure_database(url: str) -> None:
    """Create the database `url` names if it does not exist (its server must be up)."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{name}"')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def median_of(measure: Callable[[], float], repeat: int) -> float:
    """The median of `repeat` measurements: one slow run (a GC, another process) moves it
    less than it moves a mean."""
    return statistics.median(measure() for _ in range(repeat))
