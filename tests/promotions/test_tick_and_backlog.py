"""The presence tick while processing is behind (tasks lost with the broker, a batch that
always fails), and batches and ticks of a crowd on SQLite, the database of `make run`."""

import sqlite3
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.db.utils import ConnectionHandler
from django.utils import timezone

from promotions import decisions, tasks
from promotions.database import database_unavailable
from promotions.models import Delivery, LocationBatch, Ping, Presence, PresenceEvent
from tests.clock import ago
from tests.factories import CampaignFactory, DeviceFactory, StoreFactory, crowd

pytestmark = pytest.mark.django_db

RIVOLI = (48.8606, 2.3417)


def inside(device, minutes_ago):
    return {
        "device_id": device,
        "latitude": RIVOLI[0],
        "longitude": RIVOLI[1],
        "accuracy": 10.0,
        "recorded_at": ago(minutes=minutes_ago),
    }


@pytest.fixture
def rivoli():
    return StoreFactory(code="RIVOLI", latitude=RIVOLI[0], longitude=RIVOLI[1])


def post(api, *pings):
    response = api.post("/api/v1/pings", {"pings": list(pings)})
    assert response.status_code == 202 and response.json()["accepted"] == len(pings)


def lost(api, *pings):
    """Pings accepted while the broker is down: stored, their task lost."""
    with pytest.MonkeyPatch.context() as outage:
        outage.setattr(tasks, "enqueue_location_batch", lambda batch_id: None)
        post(api, *pings)


def kinds(device="lea-phone"):
    events = PresenceEvent.objects.filter(customer__devices__device_id=device)
    return list(events.order_by("occurred_at").values_list("kind", flat=True))


def inside_now(store, device="lea-phone"):
    return Presence.objects.get(store=store, customer__devices__device_id=device).inside


# --- The tick and a backlog -------------------------------------------------------------------


def test_the_tick_does_not_end_a_visit_whose_pings_wait_in_a_lost_batch(api, settings, rivoli):
    """A broker outage of a quarter of an hour: every ping Léa's app sent from inside the
    store, one a minute, was accepted, and their batches' tasks were lost. The first tick
    back must not time her out on pings it has not read yet: she has been in the store
    20 minutes, and the "stays 20 minutes" campaign is due."""
    settings.SMS_BACKEND = "locmem"
    campaign = CampaignFactory(trigger_type="dwell", trigger_minutes=20)
    DeviceFactory(device_id="lea-phone")
    post(api, inside("lea-phone", 20))
    assert inside_now(rivoli)
    for minutes_ago in range(19, 0, -1):
        lost(api, inside("lea-phone", minutes_ago))
    assert LocationBatch.objects.filter(processed_at=None).count() == 19

    settings.SWEEP_AFTER_SECONDS = 10
    tasks.tick_presence.delay()
    assert inside_now(rivoli)
    decisions.decide_lost_batches(
        now=timezone.now() + timedelta(minutes=1), budget_seconds=30, queue_sends=tasks.queue_sends
    )
    assert not LocationBatch.objects.filter(processed_at=None).exists()
    post(api, inside("lea-phone", 0.2))
    tasks.tick_presence.delay()

    assert Delivery.objects.filter(campaign=campaign, status="sent").count() == 1
    assert kinds() == ["entered", "dwelled"]


def test_a_silence_longer_than_the_timeout_ends_the_visit_though_later_pings_wait(
    api, settings, rivoli
):
    """Léa's phone said nothing for 50 minutes, then the pings of her next visit were lost
    with the broker: what waits comes after the gap, and the gap ended the first visit."""
    DeviceFactory(device_id="lea-phone")
    post(api, inside("lea-phone", 60))
    lost(api, inside("lea-phone", 10))
    lost(api, inside("lea-phone", 5))

    tasks.tick_presence.delay()

    assert not inside_now(rivoli)
    exited = PresenceEvent.objects.get(kind="exited")
    entered = PresenceEvent.objects.get(kind="entered")
    assert exited.occurred_at - entered.occurred_at == timedelta(
        minutes=settings.PRESENCE_TIMEOUT_MINUTES
    )
    # The sweep then starts the next visit from the pings that waited.
    settings.SWEEP_AFTER_SECONDS = 10
    decisions.decide_lost_batches(
        now=timezone.now() + timedelta(minutes=1), budget_seconds=30, queue_sends=tasks.queue_sends
    )
    assert kinds() == ["entered", "exited", "entered"]


def test_other_shoppers_pings_waiting_do_not_hold_back_a_timeout(api, rivoli):
    """Max's pings wait in a lost batch, which holds his timeout back; Léa left the store
    half an hour ago without a word from her phone since: she is timed out all the same."""
    DeviceFactory(device_id="lea-phone")
    DeviceFactory(device_id="max-phone")
    post(api, inside("lea-phone", 30))
    post(api, inside("max-phone", 20))
    lost(api, inside("max-phone", 10))

    decisions.process_presence_tick(now=timezone.now())

    assert not inside_now(rivoli, "lea-phone")
    assert kinds("lea-phone") == ["entered", "exited"]
    assert inside_now(rivoli, "max-phone")


def test_dwells_are_announced_while_pings_wait(api, rivoli):
    """A backlog holds back timeouts, not the dwells of the shoppers still pinging."""
    CampaignFactory(trigger_type="dwell", trigger_minutes=5)
    DeviceFactory(device_id="lea-phone")
    DeviceFactory(device_id="max-phone")
    post(api, inside("lea-phone", 6))
    post(api, inside("lea-phone", 1))
    lost(api, inside("max-phone", 1))

    decisions.process_presence_tick(now=timezone.now())

    assert kinds("lea-phone") == ["entered", "dwelled"]


def test_a_batch_that_fails_for_ever_does_not_hold_back_its_shoppers_timeouts(
    api, settings, caplog, rivoli
):
    """A batch of Léa's pings that the sweep cannot process (a row the code did not
    expect), received two hours ago: it would hold her in the store for ever."""
    DeviceFactory(device_id="lea-phone")
    post(api, inside("lea-phone", 130))
    lost(api, inside("lea-phone", 125))
    poisoned = LocationBatch.objects.get(processed_at=None)
    two_hours_ago = timezone.now() - timedelta(hours=2)
    LocationBatch.objects.filter(pk=poisoned.pk).update(
        ping_ids=[[poisoned.ping_ids[0]]], received_at=two_hours_ago
    )
    Ping.objects.filter(pk=poisoned.ping_ids[0]).update(received_at=two_hours_ago)
    settings.SWEEP_AFTER_SECONDS = 10
    decisions.decide_lost_batches(
        now=timezone.now(), budget_seconds=30, queue_sends=tasks.queue_sends
    )
    assert f"could not process location batch {poisoned.pk}" in caplog.text

    tasks.tick_presence.delay()

    assert LocationBatch.objects.filter(processed_at=None).exists()
    assert not inside_now(rivoli)
    assert kinds() == ["entered", "exited"]


# --- A crowd on SQLite ------------------------------------------------------------------------


def test_a_batch_of_a_thousand_shoppers_walking_in_is_processed(api, rivoli):
    """The contract's largest batch, one ping from each of 1,000 phones at the store (a
    gateway fleet, or the app's backend forwarding): each shopper enters."""
    crowd(1000)

    post(api, *(inside(f"crowd-{n}", 1) for n in range(1000)))

    assert not LocationBatch.objects.filter(processed_at=None).exists()
    assert Presence.objects.filter(store=rivoli, inside=True).count() == 1000
    assert PresenceEvent.objects.filter(kind="entered").count() == 1000


def test_a_late_tick_times_out_five_hundred_shoppers_who_reached_a_dwell(api, rivoli):
    """The worker was down for an hour: 500 shoppers who walked in and reached the 5-minute
    dwell in silence are timed out by the first tick back (a dwell and an exit each)."""
    CampaignFactory(trigger_type="dwell", trigger_minutes=5)
    crowd(500)
    post(api, *(inside(f"crowd-{n}", 60) for n in range(500)))

    decisions.process_presence_tick(now=timezone.now())

    assert not Presence.objects.filter(inside=True).exists()
    assert PresenceEvent.objects.filter(kind="dwelled").count() == 500
    assert PresenceEvent.objects.filter(kind="exited").count() == 500


# --- Which database errors pass ---------------------------------------------------------------


def sqlite_error(statement, path=":memory:"):
    """The error a Django connection to SQLite raises for `statement` (whatever database
    the suite runs on)."""
    database = ConnectionHandler(
        {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}}
    )["default"]
    database.settings_dict["OPTIONS"] = {"timeout": 0}
    try:
        with database.cursor() as cursor:
            cursor.execute(statement)
    except OperationalError as error:
        return error
    finally:
        database.close()
    raise AssertionError(f"{statement!r} ran")


def test_a_locked_sqlite_database_is_unavailable_for_a_while(tmp_path):
    path = tmp_path / "passage.sqlite3"
    writer = sqlite3.connect(path)
    writer.execute("CREATE TABLE t (n INTEGER)")
    writer.execute("BEGIN IMMEDIATE")
    try:
        locked = sqlite_error("BEGIN IMMEDIATE", path)
    finally:
        writer.close()

    assert "database is locked" in str(locked)
    assert database_unavailable(locked)


@pytest.mark.parametrize(
    "statement",
    ["SELECT " + " OR ".join(["1 = 1"] * 1200), "SELECT * FROM no_such_table"],
    ids=["expression tree too deep", "no such table"],
)
def test_a_statement_sqlite_refuses_is_not_the_database_being_away(statement):
    assert not database_unavailable(sqlite_error(statement))


def test_postgresql_errors_keep_their_reading():
    # Raised without a driver's error, as a connection refused or a lock timeout reach the
    # API's tests: taken as the database being away, as before.
    assert database_unavailable(OperationalError("connection refused"))


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's own errors")
def test_a_batch_sqlite_cannot_process_fails_its_task_without_retries():
    batch = LocationBatch.objects.create(ping_ids=[])
    attempts = []

    def too_deep(run, sql, params, many, context):
        if sql.lstrip().upper().startswith("UPDATE"):
            attempts.append(sql)
            return run("SELECT " + " OR ".join(["1 = 1"] * 1200), (), False, context)
        return run(sql, params, many, context)

    with connection.execute_wrapper(too_deep):
        result = tasks.process_location_batch.apply(args=(batch.pk,))

    assert result.failed() and len(attempts) == 1
