"""Two sighting batches holding some of the same sightings, sent at once (an app's retry of
a batch whose answer it never got, flushed with what it ranged since, in another order): both
are answered, and each sighting is stored once. PostgreSQL only."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from promotions import beacons, services
from promotions.ingest import IngestResult
from promotions.models import Sighting
from tests import processes
from tests.factories import BEACON_UUID, BeaconFactory, DeviceFactory
from tests.processes import in_thread

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
    ),
]

SLOW = -99  # the RSSI of the sightings whose insert pauses


@pytest.fixture
def slow_inserts():
    # Each batch's insert stops at its own slow item, after those it lists before it.
    with processes.slow_inserts("promotions_sighting", f"NEW.rssi = {SLOW}"):
        yield


def storing(now, *sightings: tuple[int, int]):
    """(seconds before `now`, rssi) sightings of the store's beacon by Léa's phone."""
    items = [
        (
            index,
            {
                "device_id": "lea-phone",
                "identity": beacons.ibeacon_key(BEACON_UUID, 1, 2),
                "rssi": rssi,
                "seen_at": now - timedelta(seconds=seconds),
            },
        )
        for index, (seconds, rssi) in enumerate(sightings)
    ]

    def store() -> IngestResult:
        result = IngestResult()
        services.record_app_sightings(items=items, result=result, now=now)
        return result

    return store


def test_two_batches_holding_the_same_sightings_in_another_order_are_both_stored(slow_inserts):
    DeviceFactory(device_id="lea-phone")
    BeaconFactory(identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))

    now = timezone.now()
    first = in_thread(storing(now, (30, -60), (5, SLOW), (20, -61)))
    second = in_thread(storing(now, (20, -61), (4, SLOW), (30, -60)))
    first.join(20)
    second.join(20)

    assert (first.error, second.error) == (None, None)
    assert Sighting.objects.count() == 4
    assert (first.result.duplicates, second.result.duplicates) in [(0, 2), (2, 0)]
