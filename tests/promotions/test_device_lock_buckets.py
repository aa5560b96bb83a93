"""Ping ingest holds its devices' advisory locks until it commits, and every lock held takes
a slot of PostgreSQL's shared lock table (max_locks_per_transaction x max_connections, 6,400
by default). A lock a device let a few gateways' batches of a thousand devices each fill it:
"out of shared memory", and every request then failed. The locks are by bucket of devices."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from customers.models import Customer, Device
from promotions.models import Ping
from tests.factories import CustomerFactory, DeviceFactory
from tests.processes import in_thread, sessions_waiting_for_a_lock, started

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="advisory locks: PostgreSQL"),
    pytest.mark.django_db(transaction=True),
]

REQUESTS = 16
DEVICES_A_REQUEST = 1_000


def test_many_large_batches_at_once_do_not_exhaust_the_lock_table(api):
    recorded_at = datetime.now(UTC) - timedelta(minutes=1)
    shared = DeviceFactory(device_id="shared-phone")
    # A gateway's batch: a thousand shoppers' phones.
    shoppers = iter(
        Customer.objects.bulk_create(
            CustomerFactory.build_batch(REQUESTS * (DEVICES_A_REQUEST - 1)), batch_size=2_000
        )
    )
    Device.objects.bulk_create(
        (
            Device(device_id=f"phone-{batch}-{n}", customer=next(shoppers))
            for batch in range(REQUESTS)
            for n in range(DEVICES_A_REQUEST - 1)
        ),
        batch_size=2_000,
    )

    def ping(device_id: str) -> dict:
        return {
            "device_id": device_id,
            "latitude": 48.86,
            "longitude": 2.34,
            "accuracy": 10,
            "recorded_at": recorded_at.isoformat(),
        }

    answers: list[dict] = [{} for _ in range(REQUESTS)]

    def post(batch: int) -> None:
        # Each batch also carries a ping another request is storing, uncommitted: each waits
        # for it at its insert, holding its devices' locks, so all hold them at once.
        pings = [ping("shared-phone")]
        pings += [ping(f"phone-{batch}-{n}") for n in range(DEVICES_A_REQUEST - 1)]
        response = api.post("/api/v1/pings", {"pings": pings}, format="json")
        answers[batch].update(status=response.status_code, body=response.json())

    storing = started(
        lambda: Ping.objects.create(
            device=shared, latitude=48.86, longitude=2.34, accuracy=10, recorded_at=recorded_at
        )
    )
    try:
        requests = [in_thread(lambda batch=batch: post(batch)) for batch in range(REQUESTS)]
        deadline = time.monotonic() + 30
        while sessions_waiting_for_a_lock() < REQUESTS and time.monotonic() < deadline:
            if not any(request.is_alive() for request in requests):
                break
            time.sleep(0.05)
        held = sessions_waiting_for_a_lock()
    finally:
        storing.release.set()
        storing.join(10)
    for request in requests:
        request.join(30)

    assert storing.error is None
    assert held == REQUESTS, [answer.get("status") for answer in answers]
    for answer in answers:
        assert answer["status"] == 202, answer
        assert (answer["body"]["accepted"], answer["body"]["duplicates"]) == (
            DEVICES_A_REQUEST - 1,
            1,
        )
    assert Ping.objects.count() == REQUESTS * (DEVICES_A_REQUEST - 1) + 1
