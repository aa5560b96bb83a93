"""Location is kept LOCATION_RETENTION_DAYS from when it was taken, not from when the app
uploaded it: a phone offline for days uploads its queue late (up to
INGEST_MAX_PING_AGE_HOURS), and those fixes are as old as they say."""

from datetime import timedelta

import pytest
from django.utils import timezone

from customers.models import Customer
from customers.selectors import get_customer_export
from promotions import beacons, services
from tests.factories import BEACON_UUID, BeaconFactory

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
