"""Running Passage's own code in another process or thread, as a test needs it."""

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection


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


def in_thread(work: Callable[[], Any]) -> threading.Thread:
    """Run `work` in a thread with a database connection of its own, closed after."""

    def run() -> None:
        try:
            work()
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
