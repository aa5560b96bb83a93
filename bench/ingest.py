"""Ping ingest beside the obvious design, measured in the same run on PostgreSQL.

    .venv/bin/python bench/ingest.py [--requests 200] [--rounds 3] [--batch 500]

1. Decoding and validating a batch, per ping, in this process: a DRF ModelSerializer
   (the baseline of bench/baseline.py), Passage's PingSerializer (which explains rejected
   items) and Passage's fast path (what a well-formed batch takes).
2. HTTP ingest under gunicorn with 2 sync workers, batches of `--batch` pings, to
   PostgreSQL: the baseline view beside `POST /api/v1/pings`, rounds alternating so that
   both see the same table sizes and machine load. Passage's figure includes what the
   baseline skips: per-item reasons, duplicate counting, the rate limit and a task
   enqueued per batch (to Redis, which nothing consumes here).
3. Passage's INSERT statement alone (the pings and their batch row) from two connections,
   no HTTP: the database's ceiling for this table on this machine, which the HTTP figure is
   read against.
Every round checks that the rows it sent are stored.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATABASE_URL = "postgres://postgres@127.0.0.1:5432/passage_bench_ingest"
REDIS_URL = "redis://127.0.0.1:6379/11"
os.environ.update(
    DJANGO_SETTINGS_MODULE="bench.settings",
    DATABASE_URL=DATABASE_URL,
    LOG_LEVEL="WARNING",
)

import django  # noqa: E402

from bench.common import ensure_database, free_port, per_item_us  # noqa: E402

DEVICES = 2000
CLIENT_THREADS = 4
BASELINE_PATH = "/bench/drf/pings"
PASSAGE_PATH = "/api/v1/pings"
CEILING = "insert alone"


def ping_bodies(first: int, requests: int, batch: int, start: datetime) -> list[bytes]:
    """Request bodies of distinct pings (each ping number `n` once in the whole run)."""
    bodies = []
    for request in range(requests):
        pings = []
        for n in range(first + request * batch, first + (request + 1) * batch):
            recorded_at = start + timedelta(microseconds=n)
            pings.append(
                {
                    "ping_id": f"p{n}",
                    "device_id": f"bench-{n % DEVICES}",
                    "latitude": 48.8 + (n % 997) * 1e-4,
                    "longitude": 2.3 + (n % 991) * 1e-4,
                    "accuracy": 8.0 + n % 40,
                    "recorded_at": recorded_at.isoformat().replace("+00:00", "Z"),
                    "speed": 1.4,
                    "mocked": False,
                }
            )
        bodies.append(json.dumps({"pings": pings}).encode())
    return bodies


def post_all(port: int, path: str, key: str, bodies: list[bytes]) -> float:
    """Send every body from CLIENT_THREADS threads; return the seconds it took."""
    queue: Iterator[bytes] = iter(bodies)
    lock = threading.Lock()
    failures: list[str] = []
    headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}

    def client() -> None:
        while True:
            with lock:
                body = next(queue, None)
            if body is None:
                return
            # gunicorn's sync workers close the connection after each answer.
            connection = HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            connection.close()
            if response.status != 202:
                failures.append(f"{response.status} {answer[:300]!r}")

    threads = [threading.Thread(target=client) for _ in range(CLIENT_THREADS)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise SystemExit(f"{len(failures)} requests to {path} failed, e.g. {failures[0]}")
    return elapsed


def validation_table(batch: int) -> list[tuple[str, float]]:
    from django.utils import timezone
    from rest_framework.exceptions import ParseError

    from bench.baseline import BaselinePingSerializer
    from promotions.api.batch import validate_items
    from promotions.api.ping_batch import decode_ping_batch, validate_ping_batch
    from promotions.api.serializers import PingSerializer

    body = ping_bodies(10**9, 1, batch, timezone.now() - timedelta(minutes=30))[0]
    now = timezone.now()

    def baseline() -> None:
        serializer = BaselinePingSerializer(data=json.loads(body)["pings"], many=True)
        assert serializer.is_valid(), serializer.errors

    def serializer() -> None:
        valid, result = validate_items(json.loads(body)["pings"], PingSerializer, {"now": now})
        assert len(valid) == batch, result.rejected

    def fast() -> None:
        decoded = decode_ping_batch(body)
        if decoded is None:
            raise ParseError("the bench's batch should take the fast path")
        valid, result = validate_ping_batch(decoded.pings, now)
        assert len(valid) == batch, result.rejected

    return [
        ("DRF ModelSerializer (baseline)", per_item_us(baseline, batch, repeat=7)),
        ("Passage general path (PingSerializer)", per_item_us(serializer, batch, repeat=7)),
        ("Passage fast path", per_item_us(fast, batch, repeat=7)),
    ]


def database_ceiling(batches: int, batch: int, first: int, start: datetime) -> float:
    """Pings/s of Passage's insert statement alone, from two connections (one per gunicorn
    worker), with no HTTP, decoding or validation: what PostgreSQL allows on this machine."""
    from django.db import connection, transaction

    from customers.models import Device
    from promotions.ingest import insert_ping_batch

    devices = dict(Device.objects.values_list("device_id", "pk"))
    work: list[list[tuple]] = []
    for body in ping_bodies(first, batches, batch, start):
        rows = []
        for ping in json.loads(body)["pings"]:
            at = datetime.fromisoformat(ping["recorded_at"])
            device = devices[ping["device_id"]]
            position = (ping["latitude"], ping["longitude"], ping["accuracy"])
            rows.append((device, ping["ping_id"], *position, at, ping["speed"], False))
        work.append(rows)
    lock = threading.Lock()

    def insert() -> None:
        while True:
            with lock:
                if not work:
                    break
                rows = work.pop()
            with transaction.atomic():
                insert_ping_batch(rows, datetime.now(UTC), skip_stored=False)
        connection.close()

    threads = [threading.Thread(target=insert) for _ in range(2)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return batches * batch / (time.perf_counter() - began)


def start_gunicorn(port: int, log: Path) -> subprocess.Popen:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CELERY_")}
    env.update(
        SECRET_KEY="bench-" + "x" * 50,
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1",
        CELERY_BROKER_URL=REDIS_URL,
        CACHE_URL=REDIS_URL,
        INGEST_RATE_LIMIT_PER_MINUTE="1000000",
    )
    command = [sys.executable, "-m", "gunicorn", "config.wsgi", "--workers", "2"]
    process = subprocess.Popen(
        [*command, "--bind", f"127.0.0.1:{port}", "--timeout", "60"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"gunicorn did not answer:\n{log.read_text()[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200, help="per round and endpoint")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()

    ensure_database(DATABASE_URL)
    django.setup()
    import redis
    from django.core.management import call_command
    from django.db import connection

    from customers.models import Customer, Device
    from promotions.models import Ping
    from promotions.services import create_api_key

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    customers = Customer.objects.bulk_create(
        Customer(external_id=f"bench-{n}", phone=f"+336{n:08d}") for n in range(DEVICES)
    )
    Device.objects.bulk_create(
        Device(device_id=f"bench-{n}", customer=customer) for n, customer in enumerate(customers)
    )
    _, key = create_api_key(name="bench", scopes=["ingest"])

    print(f"Decoding and validating a batch of {args.batch} pings, per ping (median of 7)")
    print(f"{'':38} {'µs/ping':>9} {'ratio':>9}")
    table = validation_table(args.batch)
    for name, micros in table:
        print(f"{name:38} {micros:9.2f} {table[0][1] / micros:9.1f}")

    start = datetime.now(UTC) - timedelta(hours=1)
    rates: dict[str, list[float]] = {BASELINE_PATH: [], PASSAGE_PATH: [], CEILING: []}
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_gunicorn(port, Path(tmp) / "gunicorn.log")
        try:
            sent = 0
            for round_number in range(args.rounds + 1):  # the first round warms up
                for path in (BASELINE_PATH, PASSAGE_PATH):
                    bodies = ping_bodies(sent, args.requests, args.batch, start)
                    sent += args.requests * args.batch
                    with connection.cursor() as cursor:
                        cursor.execute(f"TRUNCATE {Ping._meta.db_table} CASCADE")
                    seconds = post_all(port, path, key, bodies)
                    stored = Ping.objects.count()
                    if stored != args.requests * args.batch:
                        raise SystemExit(f"{path} stored {stored} of {args.requests * args.batch}")
                    if round_number:
                        rates[path].append(stored / seconds)
                with connection.cursor() as cursor:
                    cursor.execute(f"TRUNCATE {Ping._meta.db_table} CASCADE")
                ceiling = database_ceiling(args.requests, args.batch, sent, start)
                sent += args.requests * args.batch
                if round_number:
                    rates[CEILING].append(ceiling)
        finally:
            server.terminate()
            server.wait(timeout=30)
            redis.Redis.from_url(REDIS_URL).flushdb()

    base, passage = (statistics.median(rates[path]) for path in (BASELINE_PATH, PASSAGE_PATH))
    print()
    print(
        f"HTTP ingest, gunicorn 2 sync workers, {CLIENT_THREADS} client threads, batches of "
        f"{args.batch}, PostgreSQL (median of {args.rounds} rounds of {args.requests} requests)"
    )
    print(f"{'':38} {'pings/s':>9} {'ratio':>9}")
    print(f"{'DRF ModelSerializer + bulk_create':38} {base:9,.0f} {1.0:9.1f}")
    print(f"{'Passage POST /api/v1/pings':38} {passage:9,.0f} {passage / base:9.1f}")
    ceiling = statistics.median(rates[CEILING])
    print(f"{'its INSERT alone, 2 connections':38} {ceiling:9,.0f} {ceiling / base:9.1f}")
    print(f"Passage's HTTP ingest runs at {passage / ceiling:.0%} of its INSERT alone.")


if __name__ == "__main__":
    main()
