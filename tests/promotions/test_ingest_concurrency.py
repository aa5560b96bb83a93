"""Ping ingest beside other writers: two requests carrying the same pings store them once,
and erasing a customer while their pings are being ingested leaves none of them behind.

Pings name their device without a foreign key (checking one per ping was ingest's largest
cost), so ingest and a device's deletion take turns on an advisory lock instead. These
tests run two real transactions at once, so they need PostgreSQL.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from customers.services import erase_customer
from promotions import services
from promotions.ingest import IngestResult
from promotions.models import Ping
from tests.factories import CustomerFactory, DeviceFactory
from tests.processes import in_thread, started

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
    ),
]


def pings_of(device, count=3, at=None) -> list[tuple[int, dict]]:
    at = at or timezone.now() - timedelta(seconds=30)
    return [
        (
            n,
            {
                "device_id": device.device_id,
                "latitude": 48.86,
                "longitude": 2.34,
                "accuracy": 10.0,
                "recorded_at": at + timedelta(seconds=n),
                "mocked": False,
            },
        )
        for n in range(count)
    ]


def test_an_erasure_waits_for_ingest_in_flight_and_removes_what_it_stored():
    customer = CustomerFactory()
    device = DeviceFactory(customer=customer)
    ingest = started(
        lambda: services.record_pings(
            items=pings_of(device), result=IngestResult(), now=timezone.now()
        )
    )

    erasure = in_thread(lambda: erase_customer(customer=customer))
    erasure.join(0.5)
    assert erasure.is_alive(), "the erasure must wait for the ingest to commit"

    ingest.release.set()
    ingest.join(10)
    erasure.join(10)
    assert ingest.result is not None  # the ingest stored its pings as a batch
    assert not Ping.objects.filter(device_id=device.pk).exists()


def test_ingest_after_an_erasure_began_rejects_the_device():
    customer = CustomerFactory()
    device = DeviceFactory(customer=customer)
    erasure = started(lambda: erase_customer(customer=customer))

    result = IngestResult()
    ingest = in_thread(
        lambda: services.record_pings(items=pings_of(device), result=result, now=timezone.now())
    )
    ingest.join(0.5)
    assert ingest.is_alive(), "the ingest must wait for the erasure to commit"

    erasure.release.set()
    erasure.join(10)
    ingest.join(10)
    assert result.accepted == 0
    assert [r["errors"] for r in result.rejected] == [
        {"device_id": [f"Unknown device '{device.device_id}'."]}
    ] * 3
    assert not Ping.objects.exists()


def test_two_requests_carrying_the_same_pings_at_once_store_them_once():
    device = DeviceFactory()
    at = timezone.now() - timedelta(seconds=30)
    first_result, second_result = IngestResult(), IngestResult()
    first = started(
        lambda: services.record_pings(
            items=pings_of(device, 3, at), result=first_result, now=timezone.now()
        )
    )

    # Three of its four pings are the first request's, not yet committed.
    second = in_thread(
        lambda: services.record_pings(
            items=pings_of(device, 4, at), result=second_result, now=timezone.now()
        )
    )
    second.join(0.5)
    assert second.is_alive(), "the second request must wait to learn whether they are stored"

    first.release.set()
    first.join(10)
    second.join(10)
    assert (first_result.accepted, first_result.duplicates) == (3, 0)
    assert (second_result.accepted, second_result.duplicates) == (1, 3)
    assert Ping.objects.filter(device_id=device.pk).count() == 4
