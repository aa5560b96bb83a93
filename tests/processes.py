"""Running Passage's own code in another process or thread, as a test needs it."""

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connection, transaction


def run_python(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess:
    """`python *args` in the project's folder, with this environment and `env` on top, less
    SECRET_KEY and DEBUG: what a freshly deployed process reads, settings and all."""
    inherited = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    return subprocess.run(
        [sys.executable, *args],
        env={**inherited, **env},
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
        timeout=timeout,
    )


class Running(threading.Thread):
    """Runs `work` with a database connection of its own, closed after, and keeps what it
    returned (`result`) or raised (`error`) for the test to assert on."""

    def __init__(self, work: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.work, self.result, self.error = work, None, None

    def run(self) -> None:
        try:
            self.result = self.work()
        except Exception as error:  # surfaced by the test
            self.error = error
        finally:
            connection.close()


def in_thread(work: Callable[[], Any]) -> Running:
    """`work` running in a thread of its own."""
    running = Running(work)
    running.start()
    return running


class Paused(threading.Thread):
    """Runs `work` in its own transaction and holds it open until released: the writer a
    concurrent request or worker must wait for."""

    def __init__(self, work: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.work, self.result, self.error = work, None, None
        self.inside, self.release = threading.Event(), threading.Event()

    def run(self) -> None:
        try:
            with transaction.atomic():
                self.result = self.work()
                self.inside.set()
                self.release.wait(10)
        except Exception as error:  # surfaced by the test
            self.error = error
            self.inside.set()
        finally:
            connection.close()


def started(work: Callable[[], Any]) -> Paused:
    """`work` running in a held-open transaction, once it has done its writes."""
    paused = Paused(work)
    paused.start()
    assert paused.inside.wait(10) and paused.error is None
    return paused


def sessions_waiting_for_a_lock() -> int:
    """How many other sessions of this database wait for a lock another holds (sessions of
    other databases on the same server are someone else's)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND pid <> pg_backend_pid() AND datname = current_database()"
        )
        return cursor.fetchone()[0]


@contextmanager
def slow_inserts(table: str, when: str) -> Iterator[None]:
    """PostgreSQL pauses each insert into `table` of a row meeting `when` (SQL on NEW) for
    0.6 s, after the rows its statement inserted before it: long enough for a concurrent
    batch to insert its own first rows, so that two batches' insert orders meet."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION passage_test_slow_insert() RETURNS trigger AS $$ BEGIN "
            f"IF {when} THEN PERFORM pg_sleep(0.6); END IF; RETURN NEW; "
            "END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            f"CREATE TRIGGER passage_test_slow_insert BEFORE INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION passage_test_slow_insert()"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER passage_test_slow_insert ON {table}")
            cursor.execute("DROP FUNCTION passage_test_slow_insert()")
