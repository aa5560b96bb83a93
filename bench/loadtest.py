"""The whole system under load on loopback: gunicorn, one Celery worker, PostgreSQL and Redis,
with pings posted through the real API, in bounded time.

    make loadtest
    .venv/bin/python bench/loadtest.py [--seconds 60] [--rate 1000] [--customers 2000]

Phase A, latency at offered load: `--rate` pings a second for `--seconds`, as requests of
`--batch` pings sent on a fixed schedule. Most pings are shoppers walking about town away
from the stores (no presence changes); about `--entries` a second are a shopper's fix inside
a store, which makes an `entered` presence event and then one SMS. It reports the time from
a ping's acceptance (its request's 202) to its SMS being handed to the SMS backend, where
that time goes, and checks that every accepted ping was processed.

Phase B, sustained throughput: batches of `--burst-batch` pings posted as fast as
`--burst-threads` client threads can for `--burst-seconds`, then the time the one worker
takes to process them all.

It uses its own database (passage_loadtest, flushed), Redis DB 12 (flushed) as broker and
cache, and a temporary folder for logs and the SMS file; it stops every process it started,
on Ctrl-C too. It needs PostgreSQL and Redis on 127.0.0.1 (`make services`) and takes about
a minute and a half on two cores, where the load generator shares the cores with the system.
"""

import argparse
import http.client
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import ensure_database, free_port  # noqa: E402

DATABASE_URL = "postgres://postgres@127.0.0.1:5432/passage_loadtest"
REDIS_URL = "redis://127.0.0.1:6379/12"
SECRET_KEY = "loadtest-secret-key-loadtest-secret-key-loadtest-secret-key"
# Paris, inside the périphérique: about 10 km by 9 km.
CITY = (48.820, 48.900, 2.270, 2.410)
METRES_PER_DEGREE = 111_320.0
STORE_RADIUS_M = 100.0
# Walkers keep this far from every store centre: beyond the fence, the exit margin and the
# entry-accuracy bound, so the index finds no store near them, the common case in a city.
WALKER_CLEARANCE_M = 450.0
WALK_CIRCLE_M = 40.0
WALK_SPEED_MS = 1.4
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ROLES = (("gunicorn", "web"), ("worker", "worker"))
MACHINE = "machine"
# Settings a developer's shell may hold that would change what is measured: the run's own
# environment alone decides.
FOREIGN_SETTINGS = (
    "DJANGO_",
    "DATABASE_",
    "CELERY_",
    "CACHE_",
    "SMS_",
    "TWILIO_",
    "INGEST_",
    "PRESENCE_",
    "BEACON_",
    "SECURE_",
    "LOCATION_",
    "SWEEP_",
    "BEAT_",
)
TASK_LINE = re.compile(r"Task ([\w.]+)\[[^\]]+\] succeeded in ([0-9.]+)s")


class LoadTestError(Exception):
    pass


# --- the system under test ----------------------------------------------------------------


def environment(*, port: int, folder: Path) -> dict[str, str]:
    """The environment of every process, this one included, so all agree on the settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(FOREIGN_SETTINGS)}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY=SECRET_KEY,
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        DATABASE_URL=DATABASE_URL,
        CELERY_BROKER_URL=REDIS_URL,
        CACHE_URL=REDIS_URL,
        SMS_BACKEND="file",
        SMS_FILE_PATH=str(folder / "sms.jsonl"),
        # A long code's 1 SMS a second would make pacing the whole story; the limit is the
        # sender's, not the system's.
        SMS_SENDER_MPS="10000",
        # Stays on (one Redis increment a request, part of the real cost) but never refuses.
        INGEST_RATE_LIMIT_PER_MINUTE="10000000",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class Processes:
    """gunicorn and the Celery worker, each in its own process group, logs in `folder`."""

    env: dict[str, str]
    folder: Path
    running: dict[str, subprocess.Popen] = field(default_factory=dict)
    # Set first when stopping, so the client threads stop before the servers go.
    stop: threading.Event = field(default_factory=threading.Event)

    def log_path(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def log(self, name: str) -> str:
        return self.log_path(name).read_text(errors="replace")

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        with self.log_path(name).open("w") as log:
            process = subprocess.Popen(
                args,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own group: stopping it takes its children (gunicorn's and Celery's
                # pool processes), and a Ctrl-C here reaches only this script, which stops
                # them in order.
                start_new_session=True,
            )
        self.running[name] = process
        return process

    def gunicorn(self, port: int, workers: int) -> None:
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
                str(workers),
                "--worker-class",
                "sync",
                "--timeout",
                "30",
            ],
        )
        self.wait(lambda: answers(port), "gunicorn", "/healthz to answer", timeout=30)

    def worker(self) -> None:
        self.start(
            "worker",
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
                "loadtest@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
        )
        self.wait(lambda: "ready." in self.log("worker"), "worker", "'ready.'", timeout=60)

    def wait(self, condition: Callable[[], bool], name: str, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.running[name].poll() is not None:
                raise LoadTestError(f"{name} exited:\n{self.log(name)[-3000:]}")
            if condition():
                return
            time.sleep(0.2)
        raise LoadTestError(f"{name}: gave up after {timeout:.0f} s waiting for {what}.")

    def check_alive(self) -> None:
        for name, process in self.running.items():
            if process.poll() is not None:
                raise LoadTestError(f"{name} exited:\n{self.log(name)[-3000:]}")

    def stop_all(self) -> None:
        self.stop.set()
        # Every group is asked at once, so their graceful shutdowns overlap.
        for process in self.running.values():
            if process.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.running.values():
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            # Also after the leader exited: a pool child may outlive it.
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)


def answers(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status in (200, 503)
    except OSError:
        return False
    finally:
        connection.close()


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass(frozen=True)
class Process:
    name: str
    parent: int
    cpu: float  # seconds, user and system, its own and its reaped children's


def process_table() -> dict[int, Process]:
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            # The name may hold spaces and parentheses: the other fields follow the last ')'.
            name = text[text.index("(") + 1 : text.rindex(")")]
            fields = text[text.rindex(")") + 2 :].split()
            # With its reaped children's: PostgreSQL's backends come and go with connections.
            ticks = sum(int(value) for value in fields[11:15])
            table[int(stat.parent.name)] = Process(name, int(fields[1]), ticks / CLOCK_TICKS)
    return table


def children(pid: int) -> list[int]:
    return sorted(child for child, process in process_table().items() if process.parent == pid)


def cpu_snapshot(processes: Processes) -> dict[tuple[str, int], float]:
    """CPU seconds so far of every process taking part, by role. PostgreSQL and Redis are
    counted whole: another client of theirs on this machine would count too."""
    roots = {processes.running[name].pid: role for name, role in ROLES}
    found: dict[tuple[str, int], float] = {}
    for pid, process in process_table().items():
        role = roots.get(pid) or roots.get(process.parent)
        if role is None and process.name == "postgres":
            role = "PostgreSQL (all databases)"
        elif role is None and process.name == "redis-server":
            role = "Redis"
        elif role is None and pid == os.getpid():
            role = "load generator"
        if role:
            found[(role, pid)] = process.cpu
    # The whole machine's busy time, to show what else ran meanwhile.
    ticks = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, ticks[:8])
    found[(MACHINE, 0)] = (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
    return found


def cpu_used(
    before: dict[tuple[str, int], float], after: dict[tuple[str, int], float]
) -> dict[str, float]:
    used: dict[str, float] = {}
    for (role, pid), seconds in after.items():
        # A process started since counts whole; one that ended since is not counted.
        used[role] = used.get(role, 0.0) + seconds - before.get((role, pid), 0.0)
    machine = used.pop(MACHINE)
    used["anything else"] = max(0.0, machine - sum(used.values()))
    return used


# --- the city and its shoppers --------------------------------------------------------------


def offset(latitude: float, longitude: float, north_m: float, east_m: float) -> tuple[float, float]:
    return (
        latitude + north_m / METRES_PER_DEGREE,
        longitude + east_m / (METRES_PER_DEGREE * math.cos(math.radians(latitude))),
    )


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    # Equirectangular: exact enough at city scale, for placing things apart.
    north = (a[0] - b[0]) * METRES_PER_DEGREE
    east = (a[1] - b[1]) * METRES_PER_DEGREE * math.cos(math.radians(a[0]))
    return math.hypot(north, east)


def random_point(rng: random.Random) -> tuple[float, float]:
    return rng.uniform(CITY[0], CITY[1]), rng.uniform(CITY[2], CITY[3])


@dataclass(frozen=True)
class Walker:
    device_id: str
    centre: tuple[float, float]
    phase: float

    def at(self, seconds: float) -> tuple[float, float]:
        """Walking a circle at a shopper's pace: consecutive fixes never look like a teleport."""
        angle = self.phase + seconds * WALK_SPEED_MS / WALK_CIRCLE_M
        return offset(
            *self.centre, WALK_CIRCLE_M * math.sin(angle), WALK_CIRCLE_M * math.cos(angle)
        )


@dataclass(frozen=True)
class Entrant:
    """A shopper whose only fix is inside a store: no earlier fix to make it a teleport."""

    device_id: str
    point: tuple[float, float]


@dataclass
class City:
    stores: list[tuple[float, float]]
    walkers: list[Walker]
    entrants: list[Entrant]


def plan_city(rng: random.Random, *, stores: int, customers: int, entrants: int) -> City:
    places: list[tuple[float, float]] = []
    while len(places) < stores:
        point = random_point(rng)
        if all(distance_m(point, other) > 600 for other in places):
            places.append(point)
    walkers = []
    for n in range(customers - entrants):
        centre = random_point(rng)
        while any(distance_m(centre, store) < WALKER_CLEARANCE_M for store in places):
            centre = random_point(rng)
        walkers.append(Walker(f"walker-{n}", centre, rng.uniform(0, 2 * math.pi)))
    inside = []
    for n in range(entrants):
        store = places[n % len(places)]
        # Well inside the fence with a 10 m fix: distance plus half the accuracy fits.
        angle, reach = rng.uniform(0, 2 * math.pi), rng.uniform(0, 40)
        point = offset(*store, reach * math.sin(angle), reach * math.cos(angle))
        inside.append(Entrant(f"entrant-{n}", point))
    return City(places, walkers, inside)


def seed(city: City) -> str:
    """Stores, customers, devices and one campaign through the ORM; returns an ingest key."""
    from customers.models import Customer, Device, Platform, SmsConsent
    from customers.phones import normalise_phone
    from promotions.models import Campaign, CampaignStatus, Store, TriggerType
    from promotions.services import create_api_key

    stores = Store.objects.bulk_create(
        Store(
            code=f"PARIS{n:02d}",
            name=f"Passage Paris {n:02d}",
            latitude=latitude,
            longitude=longitude,
            radius_m=STORE_RADIUS_M,
            timezone="Europe/Paris",
        )
        for n, (latitude, longitude) in enumerate(city.stores)
    )
    device_ids = [w.device_id for w in city.walkers] + [e.device_id for e in city.entrants]
    names = ["Léa", "Tom", "Nadia", "Karim", "Inès", "Hugo", "Chloé", "Yanis"]
    customers = Customer.objects.bulk_create(
        Customer(
            external_id=f"LT-{n}",
            phone=normalise_phone(f"+336{12_000_000 + n}"),
            first_name=names[n % len(names)],
            timezone="Europe/Paris",
            locale="fr-FR",
            sms_consent=SmsConsent.OPTED_IN,
            consent_source="loadtest",
            consent_updated_at=datetime.now(UTC),
        )
        for n in range(len(device_ids))
    )
    Device.objects.bulk_create(
        Device(device_id=device_id, customer=customer, platform=Platform.IOS)
        for device_id, customer in zip(device_ids, customers, strict=True)
    )
    campaign = Campaign(
        name="Walk-in welcome",
        status=CampaignStatus.ACTIVE,
        trigger_type=TriggerType.ENTER,
        offer_template="Bonjour {first_name}, -10% today at {store_name} with {code}",
        # One SMS per shopper in the run, whatever else the limits allow.
        limit_per_customer_days=1,
    )
    campaign.full_clean()
    campaign.save()
    campaign.stores.set(stores)
    _, key = create_api_key(name="loadtest", scopes=["ingest"])
    return key


def instant(microseconds: int) -> str:
    # Whole microseconds, not a float: two consecutive ones must stay distinct.
    seconds, fraction = divmod(microseconds, 1_000_000)
    moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=fraction)
    return moment.isoformat(timespec="microseconds")


class PingMaker:
    """Builds every client thread's batches. One lock keeps each device's timeline strictly
    increasing, so no ping is ever a duplicate (same device and time) of another."""

    def __init__(self, city: City, rng: random.Random) -> None:
        self.city = city
        self.walkers = list(city.walkers)
        rng.shuffle(self.walkers)
        self.lock = threading.Lock()
        self.next_walker = 0
        self.next_entrant = 0
        self.serial = 0
        self.last_us = 0
        self.origin = time.time()
        self.accuracy = [rng.uniform(8, 40) for _ in range(997)]

    def batch(self, prefix: str, size: int, entries: int) -> tuple[list[dict], list[str]]:
        """`size` pings, `entries` of them a new shopper inside a store; returns the pings
        and the ids of the entering ones."""
        pings, entering = [], []
        with self.lock:
            now_us = max(time.time_ns() // 1000, self.last_us + 1)
            for n in range(size):
                at_us = now_us + n
                self.serial += 1
                ping_id = f"{prefix}-{self.serial}"
                if n < entries and self.next_entrant < len(self.city.entrants):
                    entrant = self.city.entrants[self.next_entrant]
                    self.next_entrant += 1
                    device, (latitude, longitude), accuracy = entrant.device_id, entrant.point, 10
                    entering.append(ping_id)
                else:
                    walker = self.walkers[self.next_walker % len(self.walkers)]
                    self.next_walker += 1
                    device = walker.device_id
                    latitude, longitude = walker.at(at_us / 1e6 - self.origin)
                    accuracy = self.accuracy[self.serial % len(self.accuracy)]
                pings.append(
                    {
                        "ping_id": ping_id,
                        "device_id": device,
                        "latitude": round(latitude, 7),
                        "longitude": round(longitude, 7),
                        "accuracy": round(accuracy, 1),
                        "recorded_at": instant(at_us),
                    }
                )
            self.last_us = now_us + size
        # Shuffled so an entering ping is not always first in its batch.
        order = list(range(len(pings)))
        random.Random(self.serial).shuffle(order)
        return [pings[i] for i in order], entering


# --- the clients ----------------------------------------------------------------------------


@dataclass
class Answered:
    scheduled: float  # wall clock; 0 when sent as fast as possible
    sent: float
    answered: float
    ping_ids: list[str]
    entering: list[str]


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    answered: list[Answered] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    sent: int = 0
    accepted: int = 0

    def add(self, record: Answered, accepted: int) -> None:
        with self.lock:
            self.answered.append(record)
            self.accepted += accepted

    def fail(self, message: str) -> None:
        with self.lock:
            self.failures.append(message)
            if len(self.failures) == 1:
                # Loudly and at once: a refused request makes every figure after it suspect.
                print(f"REQUEST FAILED: {message}", file=sys.stderr, flush=True)


class Client:
    def __init__(self, port: int, key: str, stop: threading.Event) -> None:
        self.stop = stop
        # gunicorn's sync workers close each connection after its answer; http.client then
        # opens the next one by itself, so this is keep-alive only where the server allows.
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {
            "Authorization": f"Api-Key {key}",
            "Content-Type": "application/json",
            "Connection": "keep-alive",
        }

    def post(self, pings: list[dict], tally: Tally, entering: list[str], scheduled: float) -> None:
        body = json.dumps({"pings": pings})
        with tally.lock:
            tally.sent += len(pings)
        sent = time.time()
        try:
            self.connection.request("POST", "/api/v1/pings", body, self.headers)
            response = self.connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.connection.close()
            if not self.stop.is_set():  # a request cut short by stopping is no failure
                tally.fail(f"{type(error).__name__}: {error}")
            return
        answered = time.time()
        if response.status != 202:
            tally.fail(f"HTTP {response.status}: {raw[:300]!r}")
            return
        result = json.loads(raw)
        if result["accepted"] != len(pings) or result["rejected"] or result["duplicates"]:
            tally.fail(f"{len(pings)} pings sent, answer {json.dumps(result)[:300]}")
        ping_ids = [ping["ping_id"] for ping in pings]
        tally.add(Answered(scheduled, sent, answered, ping_ids, entering), result["accepted"])


def offered_load(
    maker: PingMaker,
    clients: list[Client],
    tally: Tally,
    *,
    seconds: float,
    rate: int,
    batch: int,
    entries: float,
    stop: threading.Event,
) -> list[threading.Thread]:
    """Requests on a fixed schedule, taken in turn by the client threads; a thread that
    falls behind sends late rather than skipping, and the lag is recorded."""
    per_second = rate / batch
    total = round(seconds * per_second)
    start = time.time() + 0.2
    slots = iter(range(total))
    slots_lock = threading.Lock()

    def run(client: Client) -> None:
        while not stop.is_set():
            with slots_lock:
                slot = next(slots, None)
            if slot is None:
                return
            scheduled = start + slot / per_second
            # Entries spread evenly over the requests, whatever the two rates.
            due = math.floor((slot + 1) * entries / per_second) - math.floor(
                slot * entries / per_second
            )
            pings, entering = maker.batch("a", batch, due)
            stop.wait(max(0.0, scheduled - time.time()))
            client.post(pings, tally, entering, scheduled)

    return start_threads(run, clients)


def flat_out(
    maker: PingMaker,
    clients: list[Client],
    tally: Tally,
    *,
    seconds: float,
    batch: int,
    stop: threading.Event,
) -> list[threading.Thread]:
    until = time.monotonic() + seconds

    def run(client: Client) -> None:
        while not stop.is_set() and time.monotonic() < until:
            pings, _ = maker.batch("b", batch, 0)
            client.post(pings, tally, [], 0.0)

    return start_threads(run, clients)


def start_threads(run: Callable[[Client], None], clients: list[Client]) -> list[threading.Thread]:
    # Daemons: a Ctrl-C in the main thread must not wait for a request in flight.
    threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    return threads


def watch_queue(threads: list[threading.Thread], processes: Processes) -> int:
    """While the clients run: the broker queue's longest length, and the system's health."""
    import redis

    broker = redis.Redis.from_url(REDIS_URL)
    longest = 0
    while any(thread.is_alive() for thread in threads):
        longest = max(longest, broker.llen("celery"))
        processes.check_alive()
        time.sleep(0.25)
    return longest


# --- measuring ------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p) * 1000:.0f}"


@dataclass(frozen=True)
class Progress:
    stored: int
    processed: int
    first_received: datetime | None
    last_processed: datetime | None


def progress(since: datetime) -> Progress:
    """A phase's pings in the database: those of the location batches stored since it began."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(jsonb_array_length(ping_ids)), 0), "
            "coalesce(sum(jsonb_array_length(ping_ids)) FILTER (WHERE processed_at IS NOT NULL),"
            " 0), min(received_at), max(processed_at) "
            "FROM promotions_locationbatch WHERE received_at >= %s",
            [since],
        )
        stored, processed, first, last = cursor.fetchone()
    return Progress(stored, processed, first, last)


def processed_times(since: datetime) -> dict[int, datetime]:
    """When each ping stored since `since` was processed, by the ping's row id."""
    from promotions.models import LocationBatch

    batches = LocationBatch.objects.filter(received_at__gte=since).exclude(processed_at=None)
    return {
        ping: processed_at
        for ping_ids, processed_at in batches.values_list("ping_ids", "processed_at")
        for ping in ping_ids
    }


def processed_of(tally: Tally, since: datetime) -> int:
    """How many of the pings the server accepted are processed, checked id by id."""
    from promotions.models import Ping

    rows = Ping.objects.filter(id__in_batch=set(processed_times(since)))
    done = set(rows.values_list("ping_id", flat=True).iterator(chunk_size=10_000))
    return sum(ping_id in done for record in tally.answered for ping_id in record.ping_ids)


def wait_processed(since: datetime, accepted: int, timeout: float, processes: Processes) -> float:
    """Seconds until every accepted ping of the phase is processed, or NaN past the bound
    (the report then shows how many were not)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        now = progress(since)
        if now.stored == accepted and now.processed == accepted:
            return time.monotonic() - started
        processes.check_alive()
        time.sleep(0.2)
    return math.nan


def read_sms(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def task_times(log: str) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    for name, seconds in TASK_LINE.findall(log):
        times.setdefault(name.rsplit(".", 1)[1], []).append(float(seconds))
    return times


def describe_tasks(times: dict[str, list[float]]) -> list[str]:
    return [
        f"  {name:<24} {len(values):>6,} tasks, ms p50 {percentile(values, 50) * 1000:6.1f}"
        f"  p99 {percentile(values, 99) * 1000:6.1f}  max {max(values) * 1000:6.1f}"
        f"  busy {sum(values):5.1f} s"
        for name, values in sorted(times.items())
    ]


def busy(tasks: dict[str, list[float]]) -> float:
    return sum(sum(times) for times in tasks.values())


def describe_cpu(wall: float, used: dict[str, float]) -> str:
    cores = os.cpu_count() or 1
    order = [
        "worker",
        "web",
        "PostgreSQL (all databases)",
        "Redis",
        "load generator",
        "anything else",
    ]
    parts = ", ".join(
        f"{role} {used[role]:.1f}" for role in sorted(used, key=lambda r: order.index(r))
    )
    return f"  CPU s over the phase's {wall:.0f} s ({cores} cores: {wall * cores:.0f}): {parts}"


@dataclass
class Latency:
    """Ping accepted -> SMS handed to the backend, per SMS, and its stages."""

    total: list[float] = field(default_factory=list)
    to_batch: list[float] = field(default_factory=list)  # accepted -> its batch task starts
    to_send: list[float] = field(default_factory=list)  # batch task starts -> send task starts
    to_backend: list[float] = field(default_factory=list)  # send task starts -> handed over


def latencies(tally: Tally, sms: list[dict], since: datetime) -> Latency:
    """Each SMS is traced to the ping that caused it through its delivery's presence event;
    the ping's acceptance is its request's answer, on this machine's clock like the SMS's."""
    from promotions.models import Delivery

    accepted_at = {ping_id: r.answered for r in tally.answered for ping_id in r.entering}
    handed = {int(line["reference"]): datetime.fromisoformat(line["sent_at"]) for line in sms}
    processed_at_of = processed_times(since)
    rows = Delivery.objects.filter(id__in=handed).values_list(
        "id", "presence_event__ping__ping_id", "presence_event__ping_id", "sent_at"
    )
    found = Latency()
    for delivery_id, ping_id, ping_pk, send_started in rows:
        if ping_id not in accepted_at:
            continue
        processed_at = processed_at_of[ping_pk]
        accepted, backend = accepted_at[ping_id], handed[delivery_id].timestamp()
        found.total.append(backend - accepted)
        found.to_batch.append(processed_at.timestamp() - accepted)
        found.to_send.append(send_started.timestamp() - processed_at.timestamp())
        found.to_backend.append(backend - send_started.timestamp())
    return found


# --- the phases -----------------------------------------------------------------------------


@dataclass
class PhaseA:
    tally: Tally
    longest_queue: int
    drained_after: float
    stored: int
    processed: int
    expected_sms: int
    latency: Latency
    tasks: dict[str, list[float]]
    wall: float
    cpu: dict[str, float]


@dataclass
class PhaseB:
    tally: Tally
    longest_queue: int
    drained_after: float
    stored: int
    processed: int
    accepted_per_second: float
    processed_per_second: float
    tasks: dict[str, list[float]]
    wall: float
    cpu: dict[str, float]


def bounded(seconds: float, give_up_at: float) -> float:
    """A wait's bound, cut short so that the whole run keeps to its time."""
    return max(0.0, min(seconds, give_up_at - time.monotonic()))


@dataclass
class PhaseClock:
    """What a phase counts from its start: the worker's log, CPU, time, answers."""

    processes: Processes
    log_start: int
    began: float
    cpu_before: dict[str, float]
    since: datetime
    tally: Tally

    @classmethod
    def start(cls, processes: Processes) -> "PhaseClock":
        return cls(
            processes=processes,
            log_start=len(processes.log("worker")),
            began=time.monotonic(),
            cpu_before=cpu_snapshot(processes),
            since=datetime.now(UTC),
            tally=Tally(),
        )

    def clients(self, port: int, key: str, count: int) -> list["Client"]:
        return [Client(port, key, self.processes.stop) for _ in range(count)]

    def elapsed(self) -> tuple[float, dict[str, float]]:
        """Wall seconds and CPU seconds by process since the start."""
        cpu = cpu_used(self.cpu_before, cpu_snapshot(self.processes))
        return time.monotonic() - self.began, cpu

    def tasks(self) -> dict[str, list[float]]:
        return task_times(self.processes.log("worker")[self.log_start :])


def phase_a(
    args: argparse.Namespace,
    maker: PingMaker,
    port: int,
    key: str,
    processes: Processes,
    give_up_at: float,
) -> PhaseA:
    print(
        f"Phase A: {args.rate:,} pings/s for {args.seconds:.0f} s, {args.batch} a request, "
        f"{args.entries:g} store entries/s, {args.threads} client threads...",
        flush=True,
    )
    clock = PhaseClock.start(processes)
    since, tally = clock.since, clock.tally
    threads = offered_load(
        maker,
        clock.clients(port, key, args.threads),
        tally,
        seconds=args.seconds,
        rate=args.rate,
        batch=args.batch,
        entries=args.entries,
        stop=processes.stop,
    )
    longest_queue = watch_queue(threads, processes)
    drained_after = wait_processed(
        since, tally.accepted, bounded(args.drain_seconds, give_up_at), processes
    )
    expected_sms = sum(len(record.entering) for record in tally.answered)
    sms_path = Path(processes.env["SMS_FILE_PATH"])
    deadline = time.monotonic() + bounded(args.drain_seconds, give_up_at)
    while len(read_sms(sms_path)) < expected_sms and time.monotonic() < deadline:
        processes.check_alive()
        time.sleep(0.2)
    wall, cpu = clock.elapsed()
    print(f"Phase A done; backlog drained {drained_after:.1f} s after the last request.")
    return PhaseA(
        tally=tally,
        longest_queue=longest_queue,
        drained_after=drained_after,
        stored=progress(since).stored,
        processed=processed_of(tally, since),
        expected_sms=expected_sms,
        latency=latencies(tally, read_sms(sms_path), since),
        tasks=clock.tasks(),
        wall=wall,
        cpu=cpu,
    )


def phase_b(
    args: argparse.Namespace,
    maker: PingMaker,
    port: int,
    key: str,
    processes: Processes,
    give_up_at: float,
) -> PhaseB:
    print(
        f"Phase B: batches of {args.burst_batch} pings from {args.burst_threads} threads as "
        f"fast as they go, for {args.burst_seconds:.0f} s...",
        flush=True,
    )
    clock = PhaseClock.start(processes)
    since, tally = clock.since, clock.tally
    threads = flat_out(
        maker,
        clock.clients(port, key, args.burst_threads),
        tally,
        seconds=args.burst_seconds,
        batch=args.burst_batch,
        stop=processes.stop,
    )
    longest_queue = watch_queue(threads, processes)
    # HTTP accepts faster than one worker processes: the backlog outlasts the burst.
    drained_after = wait_processed(
        since, tally.accepted, bounded(args.drain_seconds * 2, give_up_at), processes
    )
    wall, cpu = clock.elapsed()
    done = progress(since)
    if not tally.answered or done.last_processed is None:
        raise LoadTestError(f"Phase B: nothing was accepted and processed; {tally.failures[:3]}")
    http_seconds = max(r.answered for r in tally.answered) - min(r.sent for r in tally.answered)
    # processed_at is stamped when a batch's task starts, so the last batch's own run (one
    # task's time, shown with the worker's tasks) is not counted.
    process_seconds = (done.last_processed - done.first_received).total_seconds()
    processed = processed_of(tally, since)
    return PhaseB(
        tally=tally,
        longest_queue=longest_queue,
        drained_after=drained_after,
        stored=done.stored,
        processed=processed,
        accepted_per_second=tally.accepted / http_seconds,
        processed_per_second=processed / process_seconds,
        tasks=clock.tasks(),
        wall=wall,
        cpu=cpu,
    )


def memory(processes: Processes) -> list[tuple[str, float]]:
    """Resident memory of the web and worker processes, children included, in MiB."""
    found = []
    for name, title, child in (
        ("gunicorn", "gunicorn master", "gunicorn worker"),
        ("worker", "celery worker (main)", "celery pool process"),
    ):
        pid = processes.running[name].pid
        found.append((title, rss_mib(pid)))
        found += [(f"{child} {c}", rss_mib(c)) for c in children(pid)]
    return found


def report(
    args: argparse.Namespace,
    a: PhaseA,
    b: PhaseB,
    resident: list[tuple[str, float]],
    deliveries: Counter,
    began: float,
) -> list[str]:
    """Prints the figures; returns what went wrong."""
    rule = "-" * 78
    requests = [r.answered - r.sent for r in a.tally.answered]
    lags = [r.sent - r.scheduled for r in a.tally.answered]
    stages = a.latency
    print(f"\n{rule}\nPhase A: latency at offered load (one worker, PostgreSQL, Redis)")
    print(
        f"  requests   {len(a.tally.answered):>7,} answered 202, {len(a.tally.failures)} failed;"
        f" round trip ms p50 {ms(requests, 50)}, p99 {ms(requests, 99)}, max {ms(requests, 100)}"
    )
    print(
        f"  schedule   sent late by ms p50 {ms(lags, 50)}, p99 {ms(lags, 99)}, max "
        f"{ms(lags, 100)}; longest broker queue {a.longest_queue} tasks"
    )
    print(
        f"  pings      {a.tally.sent:>7,} sent, {a.tally.accepted:,} accepted, {a.stored:,} "
        f"stored, {a.processed:,} of the accepted processed"
    )
    print(f"  SMS        {len(stages.total):>7,} of {a.expected_sms} expected")
    print("  ping accepted -> SMS handed to backend, ms:")
    for label, values in (
        ("in all", stages.total),
        ("accepted -> its batch task starts", stages.to_batch),
        ("batch task starts -> send task starts", stages.to_send),
        ("send task starts -> handed to backend", stages.to_backend),
    ):
        print(
            f"    {label:<38} p50 {ms(values, 50):>6}  p99 {ms(values, 99):>6}  max "
            f"{ms(values, 100):>6}"
        )
    print("  worker tasks:")
    print("\n".join(describe_tasks(a.tasks)))
    print(describe_cpu(a.wall, a.cpu))

    requests = [r.answered - r.sent for r in b.tally.answered]
    print(f"\nPhase B: sustained throughput, {args.burst_threads} client threads, one worker")
    print(
        f"  requests   {len(b.tally.answered):>7,} answered 202, {len(b.tally.failures)} failed;"
        f" round trip ms p50 {ms(requests, 50)}, p99 {ms(requests, 99)}; longest broker queue"
        f" {b.longest_queue} tasks"
    )
    print(
        f"  pings      {b.tally.sent:>7,} sent, {b.tally.accepted:,} accepted, {b.stored:,} "
        f"stored, {b.processed:,} of the accepted processed"
    )
    print(f"             backlog drained {b.drained_after:.1f} s after the last request")
    print("  worker tasks:")
    print("\n".join(describe_tasks(b.tasks)))
    print(describe_cpu(b.wall, b.cpu))

    print("\nMemory at the end (VmRSS):")
    for name, mib in resident:
        print(f"  {name:<28} {mib:7.1f} MiB")
    print("\nDeliveries: " + ", ".join(f"{k} {v}" for k, v in sorted(deliveries.items())))

    table = [
        ("A: pings offered /s", f"{args.rate:,}"),
        ("A: pings accepted / processed", f"{a.tally.accepted:,} / {a.processed:,}"),
        ("A: SMS sent / expected", f"{len(stages.total)} / {a.expected_sms}"),
        ("A: ping -> SMS p50 ms", ms(stages.total, 50)),
        ("A: ping -> SMS p99 ms", ms(stages.total, 99)),
        ("A: ping -> SMS max ms", ms(stages.total, 100)),
        ("A: worker busy (task time / phase time)", f"{busy(a.tasks) / a.wall:.0%}"),
        ("B: pings/s accepted (HTTP)", f"{b.accepted_per_second:,.0f}"),
        ("B: pings/s processed (first accepted -> last done)", f"{b.processed_per_second:,.0f}"),
        ("web RSS MiB (master + workers)", f"{sum(m for n, m in resident if 'gunic' in n):.0f}"),
        ("celery RSS MiB (main + pool)", f"{sum(m for n, m in resident if 'celery' in n):.0f}"),
        ("run time s", f"{time.monotonic() - began:.0f}"),
    ]
    print(f"\n{rule}\n{'measure':<52} {'value':>16}")
    for name, value in table:
        print(f"{name:<52} {value:>16}")
    print(rule)

    problems = []
    for phase, tally in (("A", a.tally), ("B", b.tally)):
        if tally.failures:
            first = tally.failures[0]
            problems.append(f"phase {phase}: {len(tally.failures)} requests failed; {first}")
        if tally.accepted != tally.sent:
            problems.append(
                f"phase {phase}: {tally.sent:,} pings sent, {tally.accepted:,} accepted"
            )
    if a.processed != a.tally.accepted or b.processed != b.tally.accepted:
        problems.append("some accepted pings were not processed")
    if len(stages.total) != a.expected_sms:
        problems.append(f"{a.expected_sms} SMS expected, {len(stages.total)} traced to their pings")
    return problems


# --- the run --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="phase A's length")
    parser.add_argument("--rate", type=int, default=1000, help="phase A's pings a second")
    parser.add_argument("--batch", type=int, default=100, help="phase A's pings a request")
    parser.add_argument("--entries", type=float, default=5, help="store entries a second")
    parser.add_argument("--threads", type=int, default=2, help="phase A's client threads")
    parser.add_argument("--burst-seconds", type=float, default=20)
    parser.add_argument("--burst-batch", type=int, default=500)
    parser.add_argument("--burst-threads", type=int, default=4)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--stores", type=int, default=50)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--drain-seconds", type=float, default=60, help="bound on each wait")
    parser.add_argument(
        "--max-seconds", type=float, default=230, help="stop waiting for the backlog by then"
    )
    args = parser.parse_args()
    entrants = math.ceil(args.entries * args.seconds)
    if args.customers - entrants < max(args.batch, args.burst_batch):
        parser.error(f"--customers must exceed the {entrants} entering shoppers by a batch.")

    # A `kill` of this script stops the system too, as a Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    began = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="passage-loadtest-"))
    port = free_port()
    env = environment(port=port, folder=folder)
    os.environ.update(env)
    processes = Processes(env, folder)
    try:
        problems = run(args, processes, port, entrants, began)
    except LoadTestError as error:
        print(f"\nFAILED: {error}\nLogs in {folder}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nInterrupted. Logs in {folder}", file=sys.stderr)
        return 130
    finally:
        processes.stop_all()
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


def run(
    args: argparse.Namespace, processes: Processes, port: int, entrants: int, began: float
) -> list[str]:
    import django
    import redis

    ensure_database(DATABASE_URL)
    redis.Redis.from_url(REDIS_URL).flushdb()
    django.setup()
    from django.core.management import call_command

    from promotions.models import Delivery

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    rng = random.Random(7)
    city = plan_city(rng, stores=args.stores, customers=args.customers, entrants=entrants)
    key = seed(city)
    print(
        f"Seeded {args.stores} stores (circles of {STORE_RADIUS_M:.0f} m) across Paris, "
        f"{args.customers:,} opted-in customers ({entrants} will walk into a store), "
        f"one active enter campaign. ({time.monotonic() - began:.0f} s)",
        flush=True,
    )
    processes.gunicorn(port, args.web_workers)
    processes.worker()
    print(
        f"Started gunicorn ({args.web_workers} sync workers) and one Celery worker (prefork, one "
        f"process); logs in {processes.folder}. ({time.monotonic() - began:.0f} s)",
        flush=True,
    )
    maker = PingMaker(city, rng)

    # Warm-up: each web worker's first requests and the worker's first batch (which builds
    # its fence index) pay one-off costs that are not the steady state being measured.
    warm, client, since = Tally(), Client(port, key, processes.stop), datetime.now(UTC)
    for _ in range(4 * args.web_workers):
        client.post(maker.batch("w", 50, 0)[0], warm, [], 0.0)
    if warm.failures or math.isnan(wait_processed(since, warm.accepted, 30, processes)):
        raise LoadTestError(f"The warm-up failed: {warm.failures[:3]}\n{processes.log('worker')}")

    give_up_at = began + args.max_seconds
    a = phase_a(args, maker, port, key, processes, give_up_at)
    b = phase_b(args, maker, port, key, processes, give_up_at)
    resident = memory(processes)
    deliveries = Counter(
        f"{status} ({reason})" if reason else status
        for status, reason in Delivery.objects.values_list("status", "reason")
    )
    return report(args, a, b, resident, deliveries, began)


if __name__ == "__main__":
    sys.exit(main())
