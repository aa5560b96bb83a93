"""Erasing a customer while a sighting of their device is being stored: the erasure waits
for it and takes it along. Two real transactions at once, so PostgreSQL only."""

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from customers.models import Customer, Device
from promotions import services as promotions_services
from promotions.ingest import IngestResult
from promotions.models import Sighting
from tests.factories import BeaconFactory, CustomerFactory, DeviceFactory
from tests.processes import Paused, in_thread, sessions_waiting_for_a_lock, started

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
    ),
]


def storing_a_sighting_of_leas_phone() -> Paused:
    """Lea, her phone, and the app's upload of a beacon it ranged, stored but not committed."""
    lea = CustomerFactory(external_id="C-1", phone="+33612345678")
    DeviceFactory(customer=lea, device_id="lea-phone")
    seen = {"device_id": "lea-phone", "identity": BeaconFactory().identity, "rssi": -60}
    items = [(0, {**seen, "seen_at": timezone.now() - timedelta(seconds=5)})]
    return started(
        lambda: promotions_services.record_app_sightings(
            items=items, result=IngestResult(), now=timezone.now()
        )
    )


def erasure_waits() -> bool:
    """Whether, within seconds, a session of this test database waits for a lock another
    holds: the erasure, for the ingest."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sessions_waiting_for_a_lock():
            return True
        time.sleep(0.02)
    return False


def erase_beside(ingest: Paused, erase: Callable[[], object]) -> list:
    """Erase Lea while the sighting is stored, then let it commit; the erasure's answers."""
    responses = []
    erasure = in_thread(lambda: responses.append(erase()))
    assert erasure_waits(), "the erasure must wait for the sighting in flight"
    ingest.release.set()
    ingest.join(10)
    erasure.join(10)
    assert ingest.error is None
    return responses


def test_erasing_through_the_api_while_a_sighting_is_stored_erases_it_too(api):
    api.raise_request_exception = False
    ingest = storing_a_sighting_of_leas_phone()

    responses = erase_beside(ingest, lambda: api.delete("/api/v1/customers/C-1"))

    assert [response.status_code for response in responses] == [204]
    assert not Customer.objects.exists()
    assert not Device.objects.exists()
    assert not Sighting.objects.exists()


def test_erasing_in_the_admin_while_a_sighting_is_stored_erases_it_too(admin_client):
    admin_client.raise_request_exception = False
    ingest = storing_a_sighting_of_leas_phone()
    lea = Customer.objects.get()
    form = {"action": "erase", "_selected_action": [lea.pk], "confirmed": "yes"}

    responses = erase_beside(ingest, lambda: admin_client.post("/admin/customers/customer/", form))

    assert [response.status_code for response in responses] == [302]
    assert not Customer.objects.exists()
    assert not Device.objects.exists()
    assert not Sighting.objects.exists()
