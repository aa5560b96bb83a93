"""Beacon identities in the spellings the platforms' libraries write them.

The Android Beacon Library, how most Android apps range beacons, gives an identifier that is
neither a UUID nor two bytes as "0x" and its hex digits (Identifier.toString()): an
Eddystone-UID's namespace reads "0x2f234454f4911ba9ffa6" and its instance "0x0123456789ab".
"""

import pytest

from promotions import beacons
from promotions.models import Beacon, Sighting
from tests.clock import ago
from tests.factories import BeaconFactory, DeviceFactory, ZoneFactory

pytestmark = pytest.mark.django_db

NAMESPACE = "2f234454f4911ba9ffa6"
INSTANCE = "0123456789ab"


@pytest.mark.parametrize("prefix", ["0x", "0X"])
def test_an_app_ranging_eddystone_with_the_android_beacon_library_is_heard(api, prefix):
    DeviceFactory(device_id="lea-android")
    beacon = BeaconFactory(identity=beacons.eddystone_uid_key(NAMESPACE, INSTANCE))
    sighting = {
        "device_id": "lea-android",
        "eddystone_uid": {"namespace": prefix + NAMESPACE, "instance": prefix + INSTANCE},
        "rssi": -64,
        "seen_at": ago(seconds=5),
    }

    response = api.post("/api/v1/sightings", {"sightings": [sighting]})

    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert Sighting.objects.get().beacon == beacon


def test_an_eddystone_beacon_registered_in_the_android_spelling_is_stored_as_one_key(api):
    zone = ZoneFactory()
    response = api.post(
        "/api/v1/beacons",
        {
            "store": zone.store.code,
            "zone": zone.code,
            "eddystone_uid": {"namespace": "0x" + NAMESPACE.upper(), "instance": "0x" + INSTANCE},
        },
    )

    assert response.status_code == 201, response.json()
    assert response.json()["eddystone_uid"] == {"namespace": NAMESPACE, "instance": INSTANCE}
    assert Beacon.objects.get().identity == beacons.eddystone_uid_key(NAMESPACE, INSTANCE)


@pytest.mark.parametrize(
    "value", ["0x", "0x" + NAMESPACE[:-2], "00x" + NAMESPACE[1:], "x" + NAMESPACE]
)
def test_a_prefix_alone_or_a_short_id_is_still_refused(value):
    with pytest.raises(beacons.BeaconParseError):
        beacons.eddystone_uid_key(value, INSTANCE)
