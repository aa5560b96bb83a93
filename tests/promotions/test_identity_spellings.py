"""Beacon identities in the spellings the platforms' libraries write them, through the API.

The Android Beacon Library, how most Android apps range beacons, gives an identifier that is
neither a UUID nor two bytes as "0x" and its hex digits (Identifier.toString()): an
Eddystone-UID's namespace reads "0x2f234454f4911ba9ffa6" and its instance "0x0123456789ab".
"""

import pytest

from promotions import beacons
from promotions.models import Beacon, Sighting
from tests.clock import ago
from tests.factories import BEACON_UUID, BeaconFactory, DeviceFactory, ZoneFactory

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


# Every spelling of a UUID that promotions.beacons takes (tests/promotions/test_beacons.py):
# the API takes them too, rather than refusing one for its length.
UUID_SPELLINGS = {
    "hyphenated": BEACON_UUID,
    "upper-case": BEACON_UUID.upper(),
    "bare": BEACON_UUID.replace("-", ""),
    "braces": "{" + BEACON_UUID + "}",
    "urn": "urn:uuid:" + BEACON_UUID,
}


@pytest.mark.parametrize("spelling", UUID_SPELLINGS.values(), ids=UUID_SPELLINGS.keys())
def test_a_sighting_names_an_ibeacon_in_every_spelling_of_its_uuid(api, spelling):
    DeviceFactory(device_id="lea-phone")
    beacon = BeaconFactory(identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))
    sighting = {
        "device_id": "lea-phone",
        "ibeacon": {"uuid": spelling, "major": 1, "minor": 2},
        "rssi": -64,
        "seen_at": ago(seconds=5),
    }

    response = api.post("/api/v1/sightings", {"sightings": [sighting]})

    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert Sighting.objects.get().beacon == beacon


@pytest.mark.parametrize("spelling", UUID_SPELLINGS.values(), ids=UUID_SPELLINGS.keys())
def test_a_beacon_is_registered_in_every_spelling_of_its_uuid(api, spelling):
    zone = ZoneFactory()
    response = api.post(
        "/api/v1/beacons",
        {"store": zone.store.code, "ibeacon": {"uuid": spelling, "major": 1, "minor": 2}},
    )

    assert response.status_code == 201, response.json()
    assert response.json()["ibeacon"] == {"uuid": BEACON_UUID, "major": 1, "minor": 2}


@pytest.mark.parametrize(
    "typed, shown",
    [
        # Typed twice in the first release's admin: migration promotions.0026 leaves the
        # second as typed. It is the same identity as the first, and reads so.
        (
            f"IBEACON:{{{BEACON_UUID.upper()}}}:1:2",
            {"ibeacon": {"uuid": BEACON_UUID, "major": 1, "minor": 2}, "eddystone_uid": None},
        ),
        # Naming no identity at all: nothing to show, for the admin to settle.
        ("speaker shelf", {"ibeacon": None, "eddystone_uid": None}),
    ],
    ids=["typed twice", "no identity"],
)
def test_an_identity_left_as_typed_by_the_upgrade_is_listed_not_a_500(api, typed, shown):
    BeaconFactory(identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))
    BeaconFactory(identity="placeholder")
    Beacon.objects.filter(identity="placeholder").update(identity=typed)

    response = api.get("/api/v1/beacons")

    assert response.status_code == 200
    listed = response.json()
    listed = listed.get("results", listed)
    assert {k: listed[-1][k] for k in ("ibeacon", "eddystone_uid")} == shown
