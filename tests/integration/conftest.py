"""The integration suite: real PostgreSQL, a real broker (Redis, and RabbitMQ once), real
Celery worker and beat processes, and the app under gunicorn with production settings.

It runs in the PostgreSQL pass of `make test` (workers share the test database, so it must
be a server). A service that is not reachable skips its tests with a message naming it;
on CI (CI=true) that is a failure instead.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import requests
from django.db import connection

from tests import fault_reports, twilio_fake

ROOT = Path(__file__).resolve().parents[2]
# A Redis database of their own (flushed by each test); another run on the same machine
# can be given another with INTEGRATION_REDIS_URL.
REDIS_URL = os.environ.get("INTEGRATION_REDIS_URL", "redis://127.0.0.1:6379/13")
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
PUBLIC_BASE_URL = "https://passage.example.com"
SECRET_KEY = "integration-tests-secret-key-integration-tests-secret-key"
FROM_NUMBER = "+15005550006"  # the processes' Twilio sender, which paces their SMS

pytestmark = pytest.mark.integration


def missing(service: str) -> None:
    message = f"{service} is not reachable: the integration tests that need it cannot run."
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def reachable(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def postgres(transactional_db) -> str:
    """The test database's URL, for other processes: the tests' writes are committed."""
    if connection.vendor != "postgresql":
        pytest.skip("Integration tests run in the PostgreSQL pass (DATABASE_URL=postgres://...).")
    name = connection.settings_dict["NAME"]
    return f"postgres://postgres@127.0.0.1:5432/{name}"


@pytest.fixture
def redis_broker() -> str:
    if not reachable(6379):
        missing("Redis (127.0.0.1:6379)")
    redis.Redis.from_url(REDIS_URL).flushdb()
    return REDIS_URL


@pytest.fixture
def rabbitmq_broker() -> str:
    if not reachable(5672):
        missing("RabbitMQ (127.0.0.1:5672)")
    return RABBITMQ_URL


@pytest.fixture
def twilio_api() -> Iterator[twilio_fake.FakeTwilio]:
    fake, server = twilio_fake.serve()
    yield fake
    server.shutdown()
    server.server_close()


@dataclass
class Processes:
    """Worker, beat and web processes started by a test, stopped after it."""

    database_url: str
    broker_url: str
    twilio: twilio_fake.FakeTwilio
    tmp: Path
    extra: dict[str, str] = field(default_factory=dict)
    running: list[subprocess.Popen] = field(default_factory=list)
    logs: dict[int, Path] = field(default_factory=dict)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "PYTEST_", "DATABASE_", "CELERY_"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            SECRET_KEY=SECRET_KEY,
            DEBUG="false",
            # PUBLIC_BASE_URL's host too: the settings refuse a Twilio address not served here.
            ALLOWED_HOSTS="127.0.0.1,localhost,passage.example.com",
            DATABASE_URL=self.database_url,
            CELERY_BROKER_URL=self.broker_url,
            PUBLIC_BASE_URL=PUBLIC_BASE_URL,
            SMS_BACKEND="twilio",
            TWILIO_ACCOUNT_SID=twilio_fake.ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=twilio_fake.AUTH_TOKEN,
            TWILIO_FROM_NUMBER=FROM_NUMBER,
            TWILIO_API_BASE=self.twilio.url,
            SMS_SENDER_MPS="1000",
            CELERY_VISIBILITY_TIMEOUT_SECONDS="5",
            BEAT_EVERY_SECONDS="2",
            SWEEP_AFTER_SECONDS="10",
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra)
        env.update(overrides)
        return env

    def start(self, name: str, args: list[str], **overrides: str) -> subprocess.Popen:
        path = self.tmp / f"{name}-{len(self.running)}.log"
        log = path.open("w")
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env(**overrides),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a kill takes its children
        )
        log.close()  # the child holds its own descriptor
        self.running.append(process)
        self.logs[process.pid] = path
        return process

    def log(self, process: subprocess.Popen) -> str:
        return self.logs[process.pid].read_text(errors="replace")

    def worker(self, name: str = "worker", **overrides: str) -> subprocess.Popen:
        process = self.start(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                "1",
                "--hostname",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
            **overrides,
        )
        self.wait_for_log(process, "ready.")
        return process

    def beat(self) -> subprocess.Popen:
        return self.start(
            "beat",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(self.tmp / "beat-schedule"),
            ],
        )

    def gunicorn(self) -> str:
        port = free_port()
        self.start(
            "gunicorn",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--timeout",
                "30",
            ],
        )
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url + "/healthz"), what="gunicorn to answer", timeout=30)
        return url

    def wait_for_log(self, process: subprocess.Popen, text: str, timeout: float = 60) -> None:
        wait_until(
            lambda: text in self.log(process) or process.poll() is not None,
            what=f"'{text}' in {self.logs[process.pid].name}",
            timeout=timeout,
        )
        if process.poll() is not None:
            pytest.fail(f"{self.logs[process.pid].name} exited:\n{self.log(process)[-3000:]}")

    def kill(self, process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for process in reversed(self.running):
            if process.poll() is None:
                self.kill(process, signal.SIGTERM)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code in (200, 503)
    except (requests.ConnectionError, requests.Timeout):  # still starting, or busy starting
        return False


def wait_until(condition: Callable[[], bool], *, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"Gave up after {timeout:.0f} s waiting for {what}.")


@pytest.fixture
def processes(postgres, redis_broker, twilio_api, tmp_path) -> Iterator[Processes]:
    started = Processes(postgres, redis_broker, twilio_api, tmp_path)
    yield started
    started.stop_all()
    # The test database is flushed after the test; no process may still hold it.
    connection.close()


@contextmanager
def report(name: str) -> Iterator[dict]:
    """Collects a fault test's figures for the summary at the end of the run, so `make test`
    shows what went in and what came out."""
    figures: dict = {}
    yield figures
    line = ", ".join(f"{key}={value}" for key, value in figures.items())
    fault_reports.LINES.append(f"{name}: {line}")
