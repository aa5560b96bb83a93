"""What the benchmarks share: a database of their own, a free port, a robust timing."""

import socket
import statistics
import time
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


def per_item_us(run: Callable[[], object], items: int, repeat: int = 5) -> float:
    """Microseconds an item, `run` handling `items` of them: the median of `repeat` runs,
    which one slow run (a GC, another process) moves less than it moves a mean."""

    def once() -> float:
        began = time.perf_counter()
        run()
        return time.perf_counter() - began

    return statistics.median(once() for _ in range(repeat)) / items * 1e6
