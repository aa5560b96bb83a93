import json

import pytest

from promotions import beacons
from promotions.models import Sighting
from tests.clock import ago
from tests.factories import BEACON_UUID, BeaconFactory, DeviceFactory, GatewayFactory

pytestmark = pytest.mark.django_db

# iBeacon advertising data: flags, then Apple manufacturer data with BEACON_UUID, major 1, minor 2.
RAW_IBEACON = "0201061aff4c000215" + BEACON_UUID.replace("-", "") + "00010002c5"
RAW_EDDYSTONE_URL = "0303aafe1316aafe10f8036769746875620063697472757a"


@pytest.fixture
def phone():
    return DeviceFactory(device_id="lea-phone")


@pytest.fixture
def entrance_beacon():
    return BeaconFactory(identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))


def sighting(**fields):
    return {
        "device_id": "lea-phone",
        "ibeacon": {"uuid": BEACON_UUID, "major": 1, "minor": 2},
        "rssi": -67,
        "seen_at": ago(seconds=5),
        **fields,
    }


def post(api, *sightings):
    return api.post("/api/v1/sightings", {"sightings": list(sightings)})


def test_an_app_sighting_places_the_device_in_the_beacons_store_and_zone(
    api, phone, entrance_beacon
):
    response = post(api, sighting())

    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    stored = Sighting.objects.get()
    assert (stored.device, stored.beacon, stored.store, stored.zone, stored.rssi) == (
        phone,
        entrance_beacon,
        entrance_beacon.store,
        entrance_beacon.zone,
        -67,
    )
    assert stored.source == "app"


def test_a_raw_advertisement_resolves_to_the_same_beacon(api, phone, entrance_beacon):
    item = sighting(raw=RAW_IBEACON)
    del item["ibeacon"]

    response = post(api, item)

    assert response.json()["accepted"] == 1
    assert Sighting.objects.get().beacon == entrance_beacon


def test_an_eddystone_uid_beacon_is_recognised(api, phone):
    eddystone = BeaconFactory(identity=beacons.eddystone_uid_key("00" * 10, "0000000000ab"))
    item = sighting(eddystone_uid={"namespace": "00" * 10, "instance": "0000000000AB"})
    del item["ibeacon"]

    post(api, item)

    assert Sighting.objects.get().beacon == eddystone


def test_the_same_sighting_twice_is_stored_once(api, phone, entrance_beacon):
    item = sighting()
    post(api, item)

    response = post(api, item, item)

    assert response.json()["duplicates"] == 2
    assert Sighting.objects.count() == 1


@pytest.mark.parametrize(("sent", "stored"), [(-67.6, -68), (-67.4, -67), (-80.0, -80)])
def test_a_running_average_rssi_is_taken_to_the_nearest_dbm(
    api, phone, entrance_beacon, sent, stored
):
    # The Android Beacon Library's runningAverageRssi, what many apps send, is a double.
    response = post(api, sighting(rssi=sent))

    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert Sighting.objects.get().rssi == stored


def test_an_average_that_rounds_to_0_dbm_is_refused_as_0_is(api, phone, entrance_beacon):
    response = post(api, sighting(rssi=-0.4))

    assert response.json()["rejected"][0]["errors"]["rssi"] == [
        "rssi must be below 0 dBm: 0 means the phone could not measure the signal."
    ]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"device_id": "stranger"}, "device_id"),
        ({"ibeacon": {"uuid": BEACON_UUID, "major": 9, "minor": 9}}, "non_field_errors"),
        ({"ibeacon": {"uuid": "nope", "major": 1, "minor": 2}}, "ibeacon"),
        ({"ibeacon": None}, "non_field_errors"),
        ({"raw": RAW_IBEACON}, "non_field_errors"),
        ({"ibeacon": None, "raw": "zz"}, "raw"),
        ({"ibeacon": None, "raw": "0201061aff4c00"}, "raw"),
        ({"ibeacon": None, "raw": RAW_EDDYSTONE_URL}, "raw"),
        ({"rssi": -200}, "rssi"),
        ({"rssi": 7.5}, "rssi"),
        ({"seen_at": "now"}, "seen_at"),
    ],
)
def test_each_bad_sighting_is_rejected_with_its_reason(api, phone, entrance_beacon, changes, field):
    response = post(api, sighting(), sighting(**changes))

    body = response.json()
    assert body["accepted"] == 1
    assert body["rejected"][0]["index"] == 1
    assert field in body["rejected"][0]["errors"]
    assert Sighting.objects.count() == 1


# Infinity once became the device id "inf", rejected as an unknown device: no real cause.
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "3.0"])
def test_a_float_device_id_is_rejected_as_not_text(api, phone, entrance_beacon, literal):
    # A bare NaN or Infinity is not JSON, but the parser reads it (see parsers.py).
    body = json.dumps({"sightings": [sighting(device_id="LITERAL")]})
    body = body.replace('"LITERAL"', literal)

    response = api.post("/api/v1/sightings", body, content_type="application/json")

    assert response.json()["rejected"] == [
        {
            "index": 0,
            "errors": {
                "device_id": [
                    "Must be a string, not a floating-point number (nor NaN or Infinity)."
                ]
            },
        }
    ]
    assert not Sighting.objects.exists()


def test_a_malformed_uuid_is_rejected_not_read_as_another_beacon(api, phone, entrance_beacon):
    malformed = "+" + BEACON_UUID.replace("-", "")[:31]

    response = post(api, sighting(ibeacon={"uuid": malformed, "major": 1, "minor": 2}))

    errors = response.json()["rejected"][0]["errors"]
    assert "is not a UUID" in errors["ibeacon"]["uuid"][0]
    assert not Sighting.objects.exists()


def test_an_eddystone_url_frame_is_explained_as_carrying_no_identity(api, phone):
    item = sighting(raw=RAW_EDDYSTONE_URL)
    del item["ibeacon"]

    response = post(api, item)

    assert "no beacon identity" in response.json()["rejected"][0]["errors"]["raw"][0]


# --- Gateways ---------------------------------------------------------------------------


@pytest.fixture
def gateway():
    return GatewayFactory(gateway_id="gw-rivoli-1")


@pytest.fixture
def tagged_phone():
    return DeviceFactory(
        device_id="lea-phone", ble_identity=beacons.ibeacon_key(BEACON_UUID, 1000, 1)
    )


def gateway_sighting(**fields):
    return {
        "mac": "c4:7c:8d:6a:1b:02",
        "ibeacon": {"uuid": BEACON_UUID, "major": 1000, "minor": 1},
        "rssi": -71,
        "seen_at": ago(seconds=3),
        **fields,
    }


def post_gateway(api, gateway_id, *sightings):
    return api.post(f"/api/v1/gateways/{gateway_id}/sightings", {"sightings": list(sightings)})


def test_a_gateway_sighting_places_the_device_at_the_gateway(api, gateway, tagged_phone):
    response = post_gateway(api, "gw-rivoli-1", gateway_sighting())

    assert response.status_code == 202
    assert response.json()["accepted"] == 1
    stored = Sighting.objects.get()
    assert (stored.source, stored.device, stored.gateway, stored.store, stored.zone) == (
        "gateway",
        tagged_phone,
        gateway,
        gateway.store,
        gateway.zone,
    )
    assert stored.mac == "C4:7C:8D:6A:1B:02"


def test_a_gateway_recognises_a_device_by_its_raw_advertisement(api, gateway, tagged_phone):
    raw = "0201061aff4c000215" + BEACON_UUID.replace("-", "") + "03e80001c5"
    item = gateway_sighting(raw=raw, ibeacon=None)

    response = post_gateway(api, "gw-rivoli-1", item)

    assert response.json()["accepted"] == 1
    assert Sighting.objects.get().device == tagged_phone


def test_a_gateway_recognises_a_tag_whose_identity_is_in_the_scan_response(
    api, gateway, tagged_phone
):
    # The tag pads its advertising data (flags and name) with zeros to 31 bytes; the gateway
    # appends the scan response, which carries the iBeacon.
    advertising = ("0201060909436172642074616700").ljust(62, "0")
    scan_response = "1aff4c000215" + BEACON_UUID.replace("-", "") + "03e80001c5"
    item = gateway_sighting(raw=advertising + scan_response, ibeacon=None)

    response = post_gateway(api, "gw-rivoli-1", item)

    assert response.json()["accepted"] == 1
    assert Sighting.objects.get().device == tagged_phone


def test_an_unknown_gateway_rejects_each_item(api, tagged_phone):
    response = post_gateway(api, "gw-nowhere", gateway_sighting(), gateway_sighting())

    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 0
    assert [r["errors"] for r in body["rejected"]] == [
        {"gateway_id": ["Unknown gateway 'gw-nowhere'."]}
    ] * 2


def test_an_unregistered_device_seen_by_a_gateway_is_rejected(api, gateway):
    response = post_gateway(api, "gw-rivoli-1", gateway_sighting())

    assert "No device" in response.json()["rejected"][0]["errors"]["non_field_errors"][0]


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"mac": "nope"}, "mac"), ({"rssi": "loud"}, "rssi"), ({"ibeacon": None}, "non_field_errors")],
)
def test_bad_gateway_sightings_are_rejected(api, gateway, tagged_phone, changes, field):
    response = post_gateway(api, "gw-rivoli-1", gateway_sighting(**changes))

    assert field in response.json()["rejected"][0]["errors"]


@pytest.mark.parametrize(
    "mac",
    ["ac:23:3f:a2:4d:5e", "AC-23-3F-A2-4D-5E", "AC233FA24D5E", "ac23.3fa2.4d5e"],
    ids=["colons", "dashes", "bare", "dotted"],
)
def test_a_gateways_mac_in_any_usual_spelling_is_stored_one_way(api, mac):
    gateway = GatewayFactory(gateway_id="gw-mac")
    DeviceFactory(ble_identity=beacons.ibeacon_key(BEACON_UUID, 7, 42))
    sighting = {"mac": mac, "ibeacon": {"uuid": BEACON_UUID, "major": 7, "minor": 42}}

    response = api.post(
        f"/api/v1/gateways/{gateway.gateway_id}/sightings",
        {"sightings": [{**sighting, "rssi": -60, "seen_at": ago(seconds=5)}]},
    )

    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert Sighting.objects.get().mac == "AC:23:3F:A2:4D:5E"


@pytest.mark.parametrize(
    "mac", ["AC:23-3F:A2:4D:5E", "AC233FA24D5", "AC23.3FA24D5E", "GG:23:3F:A2:4D:5E"]
)
def test_a_gateways_mac_that_is_no_address_is_refused_with_its_reason(api, mac):
    gateway = GatewayFactory(gateway_id="gw-mac")
    sighting = {"mac": mac, "ibeacon": {"uuid": BEACON_UUID, "major": 7, "minor": 42}}

    response = api.post(
        f"/api/v1/gateways/{gateway.gateway_id}/sightings",
        {"sightings": [{**sighting, "rssi": -60, "seen_at": ago(seconds=5)}]},
    )

    [rejected] = response.json()["rejected"]
    assert rejected["errors"]["mac"][0].startswith("A MAC address: 12 hex digits")
