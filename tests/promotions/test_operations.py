"""What holds when the machinery around the engine misbehaves: a broker that hangs, a
database failing over, a batch the sweep cannot process, a sender booked past the offers'
validity, location kept past its retention."""

import subprocess
import threading
import time
from datetime import timedelta

import kombu
import kombu.utils.functional
import psycopg
import pytest
from django.db import InternalError, connection
from django.test import Client
from django.utils import timezone

from customers.selectors import get_customer_export
from promotions import decisions, offers, sending, services, tasks
from promotions.models import (
    Delivery,
    DeviceTrack,
    LocationBatch,
    OfferCode,
    Ping,
    SmsSender,
)
from tests.clock import ago
from tests.factories import CampaignFactory, DeviceFactory, StoreFactory
from tests.processes import run_python
from tests.promotions.test_sending import book_until, queue_offer

pytestmark = pytest.mark.django_db


def test_healthz_answers_503_promptly_while_the_broker_hangs(settings, hung_broker):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = hung_broker
    answer = {}
    probe = threading.Thread(target=lambda: answer.update(r=Client().get("/healthz")), daemon=True)

    started = time.monotonic()
    probe.start()
    probe.join(timeout=10)

    assert not probe.is_alive(), "/healthz still waiting on the broker after 10 s"
    assert time.monotonic() - started < 10
    assert answer["r"].status_code == 503
    assert answer["r"].json()["broker"].startswith("unreachable")


@pytest.mark.parametrize("scheme", ["amqp", "redis"])
def test_healthz_answers_at_once_when_the_broker_refuses_the_connection(
    settings, monkeypatch, scheme
):
    # A broker that is down refuses at once: the probe says so at once, instead of sleeping
    # kombu's 2 s before a retry that meets the same refusal (a load balancer's probe
    # timeout is often 2 s, which would read "no answer" instead of the 503 and its reason).
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = f"{scheme}://127.0.0.1:1/"
    attempts, sleeps = [], []
    connect = kombu.Connection._connection_factory
    monkeypatch.setattr(
        kombu.Connection,
        "_connection_factory",
        lambda self: attempts.append(1) or connect(self),
    )
    monkeypatch.setattr(kombu.utils.functional, "sleep", sleeps.append)

    answer = Client().get("/healthz")

    assert answer.status_code == 503
    assert answer.json()["broker"].startswith("unreachable")
    assert len(attempts) == 1
    assert sleeps == []


def test_ingest_hands_a_batch_to_a_hung_broker_and_goes_on(hung_broker):
    # Its batch is stored before the hand-over; the sweep processes it later.
    code = "from promotions import tasks; tasks.enqueue_location_batch(1); print('returned')"
    try:
        done = run_python(
            "manage.py", "shell", "-c", code, env={"CELERY_BROKER_URL": hung_broker}, timeout=20
        )
    except subprocess.TimeoutExpired:
        pytest.fail("enqueue_location_batch still waiting on the broker after 20 s")

    assert "returned" in done.stdout, done.stderr[-2000:]
    assert "Could not enqueue location batch 1." in done.stderr


HEALTHZ = (
    "from django.test import Client; answer = Client().get('/healthz'); "
    "print(answer.status_code, answer.json()['database'])"
)


def test_healthz_answers_503_promptly_while_the_database_hangs(hung_broker):
    # A server that accepts the connection and never answers: a pgbouncer whose PostgreSQL
    # is gone (it holds its clients for query_wait_timeout, 120 s), a failover's dead address.
    port = hung_broker.rsplit(":", 1)[1].split("/")[0]
    database = f"postgres://postgres@127.0.0.1:{port}/passage"
    try:
        probe = run_python(
            "manage.py", "shell", "-c", HEALTHZ, env={"DATABASE_URL": database}, timeout=20
        )
    except subprocess.TimeoutExpired:
        pytest.fail("/healthz still waiting on the database after 20 s")

    assert probe.stdout.split()[-3:] == ["503", "unreachable:", "OperationalError"], probe.stderr


# --- A database failing over ----------------------------------------------------------------


def ping_for(device_id: str) -> dict:
    return {
        "device_id": device_id,
        "latitude": 48.8606,
        "longitude": 2.3417,
        "accuracy": 12.5,
        "recorded_at": ago(minutes=1),
    }


@pytest.mark.django_db(transaction=True)
def test_ingest_into_a_read_only_standby_is_a_503_with_retry_after(client_with_scopes):
    # During a failover the database's address can reach a standby not yet promoted: every
    # write fails with SQLSTATE 25006 for a few seconds, which the client should retry.
    if connection.vendor != "postgresql":
        pytest.skip("a read-only standby is PostgreSQL's")
    DeviceFactory(device_id="lea-phone")
    api = client_with_scopes("ingest")
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    try:
        response = api.post("/api/v1/pings", {"pings": [ping_for("lea-phone")]}, format="json")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")

    assert response.status_code == 503
    assert response.json() == {"detail": "The database is unavailable; retry later."}
    assert int(response["Retry-After"]) > 0
    assert not Ping.objects.exists()


def read_only_for(writes: int):
    """A database that refuses this many writes as a read-only standby would, psycopg's
    error wrapped as Django wraps it, then takes them."""
    refused = []

    def execute(run, sql, params, many, context):
        if (
            sql.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))
            and len(refused) < writes
        ):
            refused.append(sql)
            cause = psycopg.errors.ReadOnlySqlTransaction(
                "cannot execute UPDATE in a read-only transaction"
            )
            raise InternalError(*cause.args) from cause
        return run(sql, params, many, context)

    return execute


def test_a_batch_met_by_a_read_only_standby_is_retried_until_processed(client_with_scopes):
    DeviceFactory(device_id="lea-phone")
    ping = Ping.objects.create(
        device=DeviceFactory(),
        latitude=48.8606,
        longitude=2.3417,
        accuracy=10,
        recorded_at=timezone.now(),
    )
    batch = LocationBatch.objects.create(ping_ids=[ping.id])

    with connection.execute_wrapper(read_only_for(writes=2)):
        tasks.process_location_batch.apply(args=(batch.pk,))

    batch.refresh_from_db()
    assert batch.processed_at is not None


def test_a_database_error_no_retry_helps_is_not_retried(client_with_scopes):
    batch = LocationBatch.objects.create(ping_ids=[])
    attempts = []

    def broken(run, sql, params, many, context):
        if sql.lstrip().upper().startswith("UPDATE"):
            attempts.append(sql)
            raise InternalError("a bug, not an outage")
        return run(sql, params, many, context)

    with connection.execute_wrapper(broken):
        result = tasks.process_location_batch.apply(args=(batch.pk,))

    assert result.failed() and len(attempts) == 1


# --- The sweep ------------------------------------------------------------------------------


def lost_batches(count: int, *, settings) -> list[LocationBatch]:
    lost = timezone.now() - timedelta(seconds=settings.SWEEP_AFTER_SECONDS + 30)
    return [
        LocationBatch.objects.create(received_at=lost + timedelta(milliseconds=n), ping_ids=[])
        for n in range(count)
    ]


def test_a_batch_the_sweep_cannot_process_does_not_hold_up_the_others(settings, caplog):
    settings.SMS_BACKEND = "locmem"
    [bad, good] = lost_batches(2, settings=settings)
    # A row the code did not expect, first in line.
    LocationBatch.objects.filter(pk=bad.pk).update(ping_ids=[[1]])
    stranded = queue_offer(StoreFactory())
    Delivery.objects.filter(id=stranded.id).update(send_after=bad.received_at)

    for _ in range(3):  # three beat runs
        tasks.sweep_unprocessed.apply()

    good.refresh_from_db()
    stranded.refresh_from_db()
    assert good.processed_at is not None
    assert stranded.status == "sent"
    assert f"The sweep could not process location batch {bad.pk}." in caplog.text


def test_the_sweep_clears_a_backlog_of_more_than_a_few_batches_in_one_run(settings):
    # A broker outage of an hour leaves hundreds of thousands of batches for the sweep.
    backlog = lost_batches(decisions.SWEEP_PAGE + 20, settings=settings)

    swept = tasks.sweep_unprocessed.apply().get()

    assert swept == len(backlog)
    assert not LocationBatch.objects.filter(processed_at=None).exists()


def test_the_sweep_fails_a_lost_send_whose_offer_went_stale_instead_of_enqueuing_it(settings):
    # Workers down for an hour: the sends their queue lost are past their offers' validity,
    # and every sweep beat queued meanwhile would enqueue them all again.
    settings.CELERY_TASK_ALWAYS_EAGER = False  # a broker, and no worker taking its tasks
    long_ago = timezone.now() - timedelta(seconds=settings.SMS_VALIDITY_SECONDS + 60)
    stranded = queue_offer(StoreFactory(), now=long_ago)
    Delivery.objects.filter(id=stranded.id).update(send_after=long_ago)

    tasks.sweep_unprocessed.apply()

    stranded.refresh_from_db()
    assert (stranded.status, stranded.error_message) == ("failed", offers.STALE)


def test_the_sweep_enqueues_a_lost_send_once_not_again_while_it_waits_in_the_queue(settings):
    # The send's task was lost; the sweep enqueues it again, and the workers, behind, have
    # not reached it when the next beats' sweeps run: it is waiting, no longer lost.
    stranded = queue_offer(StoreFactory())
    Delivery.objects.filter(id=stranded.id).update(
        send_after=timezone.now() - timedelta(seconds=settings.SWEEP_AFTER_SECONDS + 5)
    )

    # What three beats' sweeps enqueue again (tasks.sweep_unprocessed sends them on).
    found = [sending.lost_sends(swept_at=timezone.now(), now=timezone.now()) for _ in range(3)]

    assert found == [[stranded.id], [], []]
    stranded.refresh_from_db()
    assert stranded.status == "queued"


def test_the_sweep_stops_at_its_time_budget(settings):
    settings.BEAT_EVERY_SECONDS = 0  # a budget spent before the first batch
    lost_batches(3, settings=settings)

    assert tasks.sweep_unprocessed.apply().get() == 0
    assert LocationBatch.objects.filter(processed_at=None).count() == 3


# --- Pacing ---------------------------------------------------------------------------------


def test_sends_that_would_expire_in_the_queue_leave_the_sender_free_for_later_shoppers(
    settings, twilio
):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # paced: the sends go through a broker
    # One SMS every 100 s, and offers valid 600 s after the walk-in: of a burst of 20, the
    # first six can go (slots 0 to 500 s, events 30 s before); the other fourteen never
    # could, and booking them would hold the sender 1,400 s longer.
    settings.SMS_SENDER_MPS = 0.01
    store = StoreFactory()
    burst_at = timezone.now() - timedelta(hours=1)
    burst = [queue_offer(store, now=burst_at) for _ in range(20)]
    for delivery in burst:  # each send task runs at its slot
        sending.send_delivery(delivery_id=delivery.id, now=delivery.send_after)
    outcomes = [(d.refresh_from_db() or d.status, d.error_message) for d in burst]
    assert outcomes.count(("sent", "")) == 6
    assert outcomes.count(("failed", offers.STALE)) == 14

    # 700 s after the burst the last of the six went 100 s ago: the sender is idle.
    walk_in = burst_at + timedelta(seconds=700)
    latecomer = queue_offer(store, now=walk_in)
    sending.send_delivery(delivery_id=latecomer.id, now=latecomer.send_after)

    latecomer.refresh_from_db()
    assert latecomer.send_after == walk_in
    assert latecomer.status == "sent"


def test_an_sms_booked_past_its_validity_fails_at_once_and_gives_its_pool_code_back(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # paced: the sends go through a broker
    store = StoreFactory()
    campaign = CampaignFactory(offer_template="Your code: {code}")
    campaign.stores.add(store)
    now = timezone.now()
    backlog = walk_in(store, now=now)  # before the pool: a code of Passage's own
    OfferCode.objects.create(campaign=campaign, code="POS-1")
    # The sender is booked past the offer's validity.
    booked = now + timedelta(seconds=settings.SMS_VALIDITY_SECONDS)
    book_until(backlog, booked)

    first = walk_in(store, now=now)

    assert (first.status, first.error_message) == ("failed", offers.STALE)
    assert (first.code, first.body) == (None, "")
    assert SmsSender.objects.get().next_slot_at == booked
    # The code no one saw goes to the next customer, once the sender is free.
    Delivery.objects.filter(id=backlog.id).update(status="failed")
    second = walk_in(store, now=now + timedelta(seconds=1))
    assert (second.status, second.code) == ("queued", "POS-1")


def walk_in(store, *, now):
    """A customer walks in 30 s before `now`, and the campaigns decide at `now`; returns the
    customer's decision."""
    device = DeviceFactory()
    ping = Ping.objects.create(
        device=device,
        latitude=store.latitude,
        longitude=store.longitude,
        accuracy=10,
        recorded_at=now - timedelta(seconds=30),
    )
    batch = LocationBatch.objects.create(ping_ids=[ping.id])
    decisions.process_location_batch(batch_id=batch.pk, now=now)
    return Delivery.objects.get(customer=device.customer)


# --- Retention ------------------------------------------------------------------------------


def test_the_retention_purge_leaves_no_device_track_older_than_the_retention(settings):
    device = DeviceFactory()
    now = timezone.now()
    ping = Ping.objects.create(
        device=device, latitude=48.85, longitude=2.29, accuracy=10, recorded_at=now
    )
    batch = LocationBatch.objects.create(received_at=now, ping_ids=[ping.id])
    decisions.process_location_batch(batch_id=batch.pk, now=now)
    assert get_customer_export(device.customer)["device_tracks"]

    later = now + timedelta(days=settings.LOCATION_RETENTION_DAYS, seconds=1)
    services.purge_location_history(now=later)

    assert not DeviceTrack.objects.exists()
    assert get_customer_export(device.customer)["device_tracks"] == []


def test_the_retention_purge_keeps_a_recent_track_and_clears_an_old_jump(settings):
    now = timezone.now()
    cutoff = now - timedelta(days=settings.LOCATION_RETENTION_DAYS)
    recent, old_jump = DeviceFactory(), DeviceFactory()
    DeviceTrack.objects.create(device=recent, latitude=1, longitude=1, accuracy=5, at=now)
    DeviceTrack.objects.create(
        device=old_jump,
        latitude=1,
        longitude=1,
        accuracy=5,
        at=now,
        jump_latitude=40,
        jump_longitude=40,
        jump_accuracy=5,
        jump_at=cutoff - timedelta(minutes=1),
    )

    services.purge_location_history(now=now)

    kept = DeviceTrack.objects.order_by("device_id").values_list("device_id", "jump_at")
    assert sorted(kept) == sorted([(recent.pk, None), (old_jump.pk, None)])
    assert not DeviceTrack.objects.filter(jump_latitude__isnull=False).exists()
