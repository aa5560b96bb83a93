"""Passage as it is deployed: gunicorn, Celery workers and beat, a broker, PostgreSQL. Each
fault test injects one failure and prints what went in and came out: pings accepted and
processed, SMS decided and sent, duplicates and losses."""

import contextlib
import re
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
import requests
from celery import Celery
from django.db import connection, transaction
from django.utils import timezone
from twilio.request_validator import RequestValidator

from customers.models import Customer, SmsConsent
from promotions.models import Delivery, LocationBatch, Ping, SmsSender
from promotions.services import create_api_key
from tests import twilio_fake
from tests.factories import (
    CampaignFactory,
    CustomerFactory,
    DeliveryFactory,
    DeviceFactory,
    StoreFactory,
)
from tests.integration.conftest import FROM_NUMBER, PUBLIC_BASE_URL, ROOT, report, wait_until
from tests.processes import sessions_waiting_for_a_lock

pytestmark = pytest.mark.integration

RIVOLI = (48.8606, 2.3417)
HTTPS = {"X-Forwarded-Proto": "https"}  # as the load balancer that ends TLS sends it


@pytest.fixture
def world(postgres):
    store = StoreFactory(
        code="RIVOLI", name="Passage Rivoli", latitude=RIVOLI[0], longitude=RIVOLI[1]
    )
    campaign = CampaignFactory(name="Walk-in", offer_template="Hi {first_name}, code {code}")
    campaign.stores.add(store)
    _, key = create_api_key(name="integration", scopes=["ingest", "reports"])
    return {"store": store, "campaign": campaign, "key": key}


PHONES = count(10_000_000)


def shoppers(number: int, prefix: str = "C") -> list:
    return [
        DeviceFactory(
            customer=CustomerFactory(external_id=f"{prefix}-{n}", phone=f"+336{next(PHONES)}")
        )
        for n in range(number)
    ]


def walk_in_pings(devices, seconds_ago: float = 20) -> list[dict]:
    at = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return [
        {
            "ping_id": f"{device.device_id}-{int(at.timestamp())}",
            "device_id": device.device_id,
            "latitude": RIVOLI[0],
            "longitude": RIVOLI[1],
            "accuracy": 10,
            "recorded_at": at.isoformat(),
        }
        for device in devices
    ]


def post_pings(url: str, key: str, pings: list[dict]) -> requests.Response:
    return requests.post(
        url + "/api/v1/pings",
        json={"pings": pings},
        headers={"Authorization": f"Api-Key {key}", **HTTPS},
        timeout=30,
    )


def store_pings(devices) -> LocationBatch:
    """Pings and their batch stored as ingest stores them, with no task enqueued yet."""
    at = timezone.now() - timedelta(seconds=20)
    ping_ids = [
        Ping.objects.create(
            device=device, latitude=RIVOLI[0], longitude=RIVOLI[1], accuracy=10, recorded_at=at
        ).id
        for device in devices
    ]
    return LocationBatch.objects.create(ping_ids=ping_ids)


def enqueue_batch(broker_url: str, batch: LocationBatch, copies: int = 1) -> None:
    app = Celery(broker=broker_url)
    for _ in range(copies):
        app.send_task("promotions.tasks.process_location_batch", args=[batch.pk])
    app.close()


def processed_ping_ids() -> set[int]:
    done = LocationBatch.objects.exclude(processed_at=None).values_list("ping_ids", flat=True)
    return {pk for ping_ids in done for pk in ping_ids}


def figures(fake: twilio_fake.FakeTwilio, batch: LocationBatch | None = None) -> dict:
    sent_to = Counter(r.form["To"] for r in fake.accepted)
    ping_ids = set(batch.ping_ids if batch else Ping.objects.values_list("id", flat=True))
    return {
        "pings_accepted": len(ping_ids),
        "pings_processed": len(ping_ids & processed_ping_ids()),
        "decisions": Delivery.objects.count(),
        "sms_sent": Delivery.objects.filter(status="sent").count(),
        "sms_at_twilio": sum(sent_to.values()),
        "duplicate_sms": sum(n - 1 for n in sent_to.values()),
        "stuck_queued": Delivery.objects.filter(status="queued").count(),
    }


def all_sent(fake, expected: int) -> bool:
    return len(fake.accepted) >= expected and not Delivery.objects.filter(status="queued").exists()


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_pings_through_gunicorn_reach_one_sms_each(processes, world, broker, request):
    if broker == "rabbitmq":
        processes.broker_url = request.getfixturevalue("rabbitmq_broker")
        Celery(broker=processes.broker_url).control.purge()
    devices = shoppers(20)
    processes.worker()
    url = processes.gunicorn()

    response = post_pings(url, world["key"], walk_in_pings(devices))

    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 20
    wait_until(lambda: all_sent(processes.twilio, 20), what="20 SMS", timeout=60)
    with report(f"end to end over {broker}") as out:
        out.update(figures(processes.twilio))
    assert out["pings_processed"] == out["pings_accepted"] == 20
    assert out["sms_at_twilio"] == out["sms_sent"] == 20
    assert out["duplicate_sms"] == 0


@contextlib.contextmanager
def customer_locked(customer: Customer) -> Iterator[None]:
    """Holds the customer's row lock in a transaction of its own, as another batch of theirs
    in progress would: a worker processing a batch with them waits for it, mid-batch."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                list(Customer.objects.select_for_update().filter(pk=customer.pk))
                locked.set()
                release.wait(300)
        finally:
            connection.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert locked.wait(30), "could not lock the customer"
    try:
        yield
    finally:
        release.set()
        holder.join(30)


def test_a_worker_killed_mid_batch_leaves_the_batch_to_another(processes, world):
    devices = shoppers(300)
    batch = store_pings(devices)
    # A worker claims the batch, then locks its customers in id order: with the last one
    # held here, it stops mid-batch, its claim and its work not committed, and is killed so.
    last = max((device.customer for device in devices), key=lambda customer: customer.pk)
    with customer_locked(last):
        first = processes.worker("first")
        enqueue_batch(processes.broker_url, batch)
        wait_until(sessions_waiting_for_a_lock, what="the first worker to stop mid-batch")
        processes.kill(first, signal.SIGKILL)
        killed_with = figures(processes.twilio, batch)
    assert killed_with["pings_processed"] == killed_with["decisions"] == 0
    processes.worker("second")

    wait_until(
        lambda: set(batch.ping_ids) <= processed_ping_ids() and all_sent(processes.twilio, 300),
        what="the batch to be redelivered and processed",
        timeout=120,
    )
    with report("worker SIGKILLed mid-batch") as out:
        out["processed_when_killed"] = killed_with["pings_processed"]
        out.update(figures(processes.twilio, batch))
    assert out["pings_processed"] == out["pings_accepted"] == 300
    assert out["duplicate_sms"] == 0
    assert out["sms_at_twilio"] == out["sms_sent"] == 300


# Celery's log of a task's end; a batch's return value is the number of sends it enqueued.
BATCH_ENDED = re.compile(r"process_location_batch\[[^\]]+\] succeeded in [^:]+: (\d+)")
SEND_ENDED = re.compile(r"send_sms\[[^\]]+\] succeeded in ")


def ended(processes, workers, task: re.Pattern) -> list[str]:
    return [found for worker in workers for found in task.findall(processes.log(worker))]


def test_two_workers_given_the_same_batch_send_one_sms_each(processes, world):
    devices = shoppers(100)
    batch = store_pings(devices)
    workers = [processes.worker("one"), processes.worker("two")]

    enqueue_batch(processes.broker_url, batch, copies=2)

    # Both copies end, each having enqueued the sends it found to do; then every one of
    # those sends ends: a duplicate, if any, has reached Twilio by then.
    wait_until(
        lambda: len(ended(processes, workers, BATCH_ENDED)) == 2,
        what="both copies of the batch to end",
        timeout=90,
    )
    sends = sum(int(count) for count in ended(processes, workers, BATCH_ENDED))
    wait_until(
        lambda: len(ended(processes, workers, SEND_ENDED)) == sends,
        what=f"the {sends} send tasks the batch's copies enqueued to end",
        timeout=90,
    )
    assert all_sent(processes.twilio, 100)
    with report("one batch given to two workers") as out:
        out.update(figures(processes.twilio, batch))
    assert out["sms_at_twilio"] == 100
    assert out["duplicate_sms"] == 0


def test_twilio_throttling_and_errors_are_retried_then_bounded(processes, world):
    processes.extra["SMS_MAX_RETRIES"] = "3"
    patient, unlucky = shoppers(2)
    processes.twilio.then(twilio_fake.TOO_MANY, twilio_fake.SERVER_ERROR, twilio_fake.TOO_MANY)
    processes.worker()

    enqueue_batch(processes.broker_url, store_pings([patient]))
    wait_until(lambda: Delivery.objects.filter(status="sent").exists(), what="the retried SMS")
    processes.twilio.then(*[twilio_fake.SERVER_ERROR] * 4)
    enqueue_batch(processes.broker_url, store_pings([unlucky]))
    wait_until(
        lambda: Delivery.objects.filter(status="failed").exists(), what="the failure", timeout=90
    )

    failed = Delivery.objects.get(status="failed")
    with report("Twilio 429/500, then 500 past the retry bound") as out:
        out["twilio_requests"] = len(processes.twilio.messages)
        out.update(figures(processes.twilio))
    assert out["twilio_requests"] == 4 + 4  # 3 refusals and a success; 4 refusals
    assert out["sms_at_twilio"] == 1 and out["duplicate_sms"] == 0
    assert failed.error_code == 20500 and failed.attempts == 4


def test_a_worker_killed_after_twilio_took_the_sms_sends_it_once(processes, world):
    [shopper] = shoppers(1)
    first = processes.worker("first")
    # Twilio takes the message; its answer never reaches the worker, killed meanwhile.
    processes.twilio.on_accepted = lambda request, sid: processes.kill(first)
    enqueue_batch(processes.broker_url, store_pings([shopper]))
    wait_until(lambda: first.poll() is not None, what="the first worker to be killed")
    processes.twilio.on_accepted = None

    second = processes.worker("second")
    # Its send task comes back (acknowledged late), finds the delivery claimed and skips it.
    processes.wait_for_log(second, "'skipped'", timeout=60)
    delivery = Delivery.objects.get()
    claimed = (delivery.status, delivery.twilio_sid)
    # Once the offer has expired, the settling sweep asks Twilio what became of it.
    Delivery.objects.update(claimed_at=timezone.now() - timedelta(hours=1))
    app = Celery(broker=processes.broker_url)
    app.send_task("promotions.tasks.settle_claimed_sends")
    app.close()
    wait_until(
        lambda: Delivery.objects.filter(status="sent").exists(), what="the send to be settled"
    )

    with report("worker SIGKILLed after Twilio took the SMS") as out:
        out.update(figures(processes.twilio))
        out["twilio_sends"] = len(processes.twilio.messages)
    assert claimed == ("queued", "")
    assert out["twilio_sends"] == out["sms_at_twilio"] == out["sms_sent"] == 1
    assert out["duplicate_sms"] == 0 and out["stuck_queued"] == 0
    assert Delivery.objects.get().twilio_sid == processes.twilio.accepted[0].sid


def redis_command(*args: str) -> None:
    subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", "6379", *args],
        check=False,
        capture_output=True,
        timeout=10,
    )


def start_redis() -> None:
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    wait_until(lambda: _redis_up(), what="Redis to come back", timeout=30)


def _redis_up() -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", 6379)) == 0


def test_pings_accepted_while_the_broker_restarts_are_all_processed(processes, world):
    before, during, after = shoppers(10, "B"), shoppers(10, "D"), shoppers(10, "A")
    processes.worker()
    processes.beat()
    url = processes.gunicorn()
    assert post_pings(url, world["key"], walk_in_pings(before)).status_code == 202
    wait_until(lambda: all_sent(processes.twilio, 10), what="the first 10 SMS")

    redis_command("shutdown", "nosave")
    try:
        wait_until(lambda: not _redis_up(), what="Redis to stop", timeout=30)
        down = post_pings(url, world["key"], walk_in_pings(during))
    finally:
        start_redis()

    assert down.status_code == 202 and down.json()["accepted"] == 10
    assert post_pings(url, world["key"], walk_in_pings(after)).status_code == 202
    wait_until(
        lambda: all_sent(processes.twilio, 30), what="the sweep to process the rest", timeout=120
    )
    with report("broker restarted during a run") as out:
        out.update(figures(processes.twilio))
    assert out["pings_processed"] == out["pings_accepted"] == 30
    assert out["sms_at_twilio"] == 30 and out["duplicate_sms"] == 0


class CuttableProxy:
    """A TCP proxy to PostgreSQL that the test can cut and restore: the database 'briefly
    unreachable' from the web processes, while the test itself keeps its own connection."""

    def __init__(self, target_port: int = 5432) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0), reuse_port=False)
        self.port = self.listener.getsockname()[1]
        self.open = True
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.open = False
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self.sockets.clear()

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


def test_ingest_answers_503_while_the_database_is_unreachable(processes, world, postgres):
    devices = shoppers(5)
    proxy = CuttableProxy()
    processes.extra["DATABASE_URL"] = postgres.replace(":5432/", f":{proxy.port}/")
    url = processes.gunicorn()
    try:
        assert post_pings(url, world["key"], walk_in_pings(devices[:2], 40)).status_code == 202
        proxy.cut()
        refused = [post_pings(url, world["key"], walk_in_pings(devices[2:], 30)) for _ in range(3)]
        proxy.restore()
        recovered = post_pings(url, world["key"], walk_in_pings(devices[2:], 30))
    finally:
        proxy.close()

    with report("database unreachable during ingest") as out:
        out["answers_during_outage"] = [r.status_code for r in refused]
        out["pings_stored"] = Ping.objects.count()
    assert all(r.status_code == 503 and r.headers["Retry-After"] for r in refused)
    assert recovered.status_code == 202 and recovered.json()["accepted"] == 3
    assert out["pings_stored"] == 5  # nothing half-written during the outage


def test_a_worker_whose_database_connection_was_cut_carries_on(processes, world, postgres):
    devices = shoppers(4)
    proxy = CuttableProxy()
    worker = processes.worker(DATABASE_URL=postgres.replace(":5432/", f":{proxy.port}/"))
    try:
        first = store_pings(devices[:2])
        enqueue_batch(processes.broker_url, first)
        wait_until(lambda: all_sent(processes.twilio, 2), what="the first batch's SMS")
        # The worker keeps its connection between tasks: cut it, the database staying up.
        proxy.cut()
        proxy.restore()
        second = store_pings(devices[2:])
        enqueue_batch(processes.broker_url, second)
        wait_until(lambda: all_sent(processes.twilio, 4), what="the second batch's SMS")
    finally:
        proxy.close()

    with report("database connection cut under a worker") as out:
        out.update(figures(processes.twilio))
        # The connection is checked before the next task uses it, not found broken by it.
        out["tasks_retried"] = processes.log(worker).count(" retry: ")
    assert out["pings_processed"] == out["pings_accepted"] == 4
    assert out["sms_at_twilio"] == out["sms_sent"] == 4
    assert out["duplicate_sms"] == out["tasks_retried"] == 0


def test_a_stop_arriving_while_the_sms_is_queued_is_honoured(processes, world):
    [shopper] = shoppers(1)
    # The sender is booked for the next five minutes (within the offer's validity), by an SMS
    # no task will send: the one decided now waits for its slot until the test brings its
    # turn, after the STOP.
    backlog_ends = timezone.now() + timedelta(minutes=5)
    backlog = DeliveryFactory(
        campaign=world["campaign"],
        store=world["store"],
        status="queued",
        send_after=backlog_ends - timedelta(seconds=1),
        segments=1,
    )
    SmsSender.objects.create(sender=FROM_NUMBER, next_slot_at=backlog_ends)
    processes.worker()
    url = processes.gunicorn()

    assert post_pings(url, world["key"], walk_in_pings([shopper])).status_code == 202
    wait_until(
        lambda: Delivery.objects.filter(customer=shopper.customer, status="queued").exists(),
        what="the SMS to wait in the queue",
    )
    backlog.delete()  # its work done: the SMS is booked behind it; the figures are the shopper's
    form = {"From": shopper.customer.phone, "Body": "STOP", "MessageSid": "SMinbound"}
    path = "/webhooks/twilio/inbound"
    signature = RequestValidator(twilio_fake.AUTH_TOKEN).compute_signature(
        PUBLIC_BASE_URL + path, form
    )
    stop = requests.post(
        url + path, data=form, headers={"X-Twilio-Signature": signature, **HTTPS}, timeout=10
    )
    assert stop.status_code == 200

    # Its slot comes: its send task runs, as the one waiting for that slot would.
    app = Celery(broker=processes.broker_url)
    app.send_task(
        "promotions.tasks.send_sms", args=[Delivery.objects.get(customer=shopper.customer).pk]
    )
    app.close()
    wait_until(
        lambda: not Delivery.objects.filter(customer=shopper.customer, status="queued").exists(),
        what="the queued SMS to come due",
        timeout=40,
    )
    held = Delivery.objects.get(customer=shopper.customer)
    with report("STOP while the SMS was queued") as out:
        out.update(figures(processes.twilio))
        out["sent_to_opted_out"] = sum(
            1 for r in processes.twilio.accepted if r.form["To"] == shopper.customer.phone
        )
    assert (held.status, held.reason) == ("suppressed", "no_consent")
    assert out["sent_to_opted_out"] == 0
    shopper.customer.refresh_from_db()
    assert shopper.customer.sms_consent == SmsConsent.OPTED_OUT


def test_the_production_settings_pass_the_deploy_checks(postgres):
    env = {
        "SECRET_KEY": "x" * 10 + "-production-secret-key-that-is-long-and-random-enough-1234",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "passage.example.com",
        "PUBLIC_BASE_URL": "https://passage.example.com",
        "SECURE_PROXY_SSL_HEADER": "true",
        "DATABASE_URL": postgres,
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
