"""Location is kept LOCATION_RETENTION_DAYS from when it was taken, not from when the app
uploaded it: a phone offline for days uploads its queue late (up to
INGEST_MAX_PING_AGE_HOURS), and those fixes are as old as they say."""

from datetime import timedelta

import pytest
from django.utils import timezone

from customers.models import Customer
from customers.selectors import get_customer_export
from promotions import beacons, services
from promotions.models import Ping, Sighting, SightingSource
from tests.factories import BEACON_UUID, BeaconFactory, DeviceFactory

pytestmark = pytest.mark.django_db

LEAS_PHONE = {"device_id": "lea-phone", "latitude": 48.85, "longitude": 2.29, "accuracy": 10}
ENTRANCE = {"uuid": BEACON_UUID, "major": 1, "minor": 2}


@pytest.fixture
def lea(api, settings):
    settings.LOCATION_RETENTION_DAYS = 30
    BeaconFactory(identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))
    assert api.put("/api/v1/customers/C-1", {"first_name": "Lea"}).status_code == 201
    api.post("/api/v1/devices", {"device_id": "lea-phone", "customer_id": "C-1"})
    return Customer.objects.get()


def upload(api, *, taken_at) -> None:
    """The app's offline queue, uploaded now: a fix and a beacon it ranged at `taken_at`."""
    pings = [{**LEAS_PHONE, "ping_id": "p-1", "recorded_at": taken_at.isoformat()}]
    sightings = [{"device_id": "lea-phone", "ibeacon": ENTRANCE, "rssi": -60, "seen_at": taken_at}]
    assert api.post("/api/v1/pings", {"pings": pings}, format="json").json()["accepted"] == 1
    response = api.post("/api/v1/sightings", {"sightings": sightings}, format="json")
    assert response.json()["accepted"] == 1


def test_a_fix_uploaded_days_late_is_purged_once_it_was_taken_longer_ago_than_the_retention(
    api, lea
):
    taken_at = timezone.now() - timedelta(hours=70)
    upload(api, taken_at=taken_at)

    # 31 days after Lea was there, 28 after her phone uploaded it.
    services.purge_location_history(now=taken_at + timedelta(days=31))

    export = get_customer_export(lea)
    assert export["device_tracks"] == []
    assert export["pings"] == []
    assert export["sightings"] == []


def test_a_fix_uploaded_late_is_kept_until_it_was_taken_longer_ago_than_the_retention(api, lea):
    taken_at = timezone.now() - timedelta(hours=70)
    upload(api, taken_at=taken_at)

    services.purge_location_history(now=taken_at + timedelta(days=29))

    export = get_customer_export(lea)
    assert [row["ping_id"] for row in export["pings"]] == ["p-1"]
    assert len(export["sightings"]) == 1


def test_the_purge_takes_exactly_what_was_taken_or_uploaded_before_the_cutoff(settings):
    # Each hourly run reads only what has aged past the retention since the last, uploaded
    # or taken before the cutoff: a chunk at a time, and a run again finds nothing more.
    settings.LOCATION_RETENTION_DAYS = 30
    now = timezone.now()
    cutoff = now - timedelta(days=30)
    device = DeviceFactory()
    beacon = BeaconFactory(identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))
    stored = {
        # name: (taken, uploaded)
        "uploaded at once, long ago": (cutoff - timedelta(hours=2), cutoff - timedelta(hours=2)),
        "clock ahead, uploaded before the cutoff": (
            cutoff + timedelta(minutes=4),
            cutoff - timedelta(seconds=10),
        ),
        "uploaded late, taken before the cutoff": (
            cutoff - timedelta(hours=1),
            cutoff + timedelta(hours=60),
        ),
        "uploaded late, taken since the cutoff": (
            cutoff + timedelta(hours=1),
            cutoff + timedelta(hours=60),
        ),
        "recent": (now - timedelta(hours=1), now),
    }
    for name, (taken, uploaded) in stored.items():
        Ping.objects.create(
            device=device,
            ping_id=name,
            latitude=48.85,
            longitude=2.29,
            accuracy=10,
            recorded_at=taken,
            received_at=uploaded,
        )
        Sighting.objects.create(
            source=SightingSource.APP,
            device=device,
            beacon=beacon,
            store=beacon.zone.store,
            rssi=-60,
            seen_at=taken,
            received_at=uploaded,
        )

    removed = [services.purge_location_history(now=now, chunk=1) for _ in range(2)]

    assert removed == [6, 0]
    kept = ["uploaded late, taken since the cutoff", "recent"]
    assert sorted(Ping.objects.values_list("ping_id", flat=True)) == sorted(kept)
    assert sorted(Sighting.objects.values_list("seen_at", flat=True)) == [
        stored[name][0] for name in kept
    ]
