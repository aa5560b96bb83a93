"""Batch items take the keys apps and gateways add of their own (altitude, bearing, battery, a
raw RSSI...) and store the item without them; a key that looks like a mock flag is refused,
that item alone, as dropping it would take a mocked location for a genuine one. Resources
(configuration, customers, devices) still refuse any key they do not know."""

import json

import pytest

from customers.models import BrowsingEvent, Customer, Device
from promotions import beacons
from promotions.models import Campaign, Ping, Sighting, Store
from tests.clock import ago
from tests.factories import (
    BEACON_UUID,
    BeaconFactory,
    CustomerFactory,
    DeviceFactory,
    GatewayFactory,
    StoreFactory,
)

pytestmark = pytest.mark.django_db

UNKNOWN = ["Unknown field."]
MOCK_FLAG = ["Unknown field: mock locations are flagged with `mocked`."]
ONLY_PINGS_ARE_MOCKED = ["Unknown field: only pings are flagged as mocked, with `mocked`."]
MOCK_KEYS = ["is_mock", "isMock", "isFromMockProvider", "mock", "mock_location", "Mocked"]


def a_ping(seconds: int, **fields) -> dict:
    return {
        "device_id": "pixel",
        "latitude": 48.8606,
        "longitude": 2.3417,
        "accuracy": 10,
        "recorded_at": ago(seconds=seconds),
        **fields,
    }


# --- Pings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["fast", "general"])
def test_a_ping_batch_with_the_phone_s_own_keys_is_accepted_whole(api, path):
    DeviceFactory(device_id="pixel")
    # What a location SDK writes beside the fix; a number as a string is the general path's.
    accuracy = 10 if path == "fast" else "10"
    pings = [
        a_ping(5, accuracy=accuracy, altitude=35.2, bearing=90.0, speed=1.4),
        a_ping(6, accuracy=accuracy, altitude=35.1, provider="fused", floor=None),
        a_ping(7, accuracy=accuracy, battery={"level": 0.62, "is_charging": False}),
    ]

    response = api.post("/api/v1/pings", {"pings": pings}, format="json")

    assert response.status_code == 202
    assert response.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    stored = Ping.objects.order_by("-recorded_at")
    assert [(ping.latitude, ping.accuracy, ping.speed) for ping in stored] == [
        (48.8606, 10.0, 1.4),
        (48.8606, 10.0, None),
        (48.8606, 10.0, None),
    ]


@pytest.mark.parametrize("path", ["fast", "general"])
@pytest.mark.parametrize("flag", MOCK_KEYS)
def test_a_mock_flag_under_another_name_rejects_its_ping_alone(api, path, flag):
    DeviceFactory(device_id="pixel")
    accuracy = 10 if path == "fast" else "10"
    pings = [
        a_ping(5, accuracy=accuracy, altitude=35.2),
        a_ping(6, accuracy=accuracy, altitude=35.2, **{flag: False}),
        a_ping(7, accuracy=accuracy),
    ]

    response = api.post("/api/v1/pings", {"pings": pings}, format="json")

    assert response.status_code == 202
    assert response.json() == {
        "accepted": 2,
        "duplicates": 0,
        "rejected": [{"index": 1, "errors": {flag: MOCK_FLAG}}],
    }
    assert Ping.objects.count() == 2


def test_a_ping_flagged_with_the_spec_s_mocked_is_taken_and_kept_as_mocked(api):
    DeviceFactory(device_id="pixel")

    response = api.post(
        "/api/v1/pings", {"pings": [a_ping(5, mocked=True, altitude=3.0)]}, format="json"
    )

    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert Ping.objects.get().mocked is True


def test_a_long_value_of_the_phone_s_own_is_accepted_too(api):
    # Over the fast path's limit for a value it skips: the general path reads the body.
    DeviceFactory(device_id="pixel")
    satellites = [{"prn": n, "snr": 30.5, "used": True} for n in range(20)]

    response = api.post(
        "/api/v1/pings", {"pings": [a_ping(5, extras={"satellites": satellites})]}, format="json"
    )

    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert Ping.objects.count() == 1


def test_a_key_of_the_phone_s_own_the_json_parser_cannot_read_is_a_400_storing_nothing(api):
    # An integer of over 4,300 digits, which Python's json refuses to read: ignored or not,
    # the body is malformed for the API.
    DeviceFactory(device_id="pixel")
    ping = json.dumps(a_ping(5)).encode()
    body = b'{"pings": [' + ping[:-1] + b', "altitude": ' + b"9" * 4301 + b"}]}"

    response = api.post("/api/v1/pings", body, content_type="application/json")

    assert response.status_code == 400
    assert "number is too long" in response.json()["detail"]
    assert not Ping.objects.exists()


# --- Sightings --------------------------------------------------------------------------------


def test_a_gateway_sighting_batch_with_the_gateway_s_own_keys_is_accepted_whole(api):
    gateway = GatewayFactory()
    DeviceFactory(ble_identity=beacons.ibeacon_key(BEACON_UUID, 7, 7))
    sighting = {"ibeacon": {"uuid": BEACON_UUID, "major": 7, "minor": 7}, "rssi": -60}
    sightings = [
        {**sighting, "seen_at": ago(seconds=5), "rssi_raw": [-61, -59, -60], "tx_power": -59},
        {**sighting, "seen_at": ago(seconds=6), "battery": 87, "name": "Léa's phone"},
    ]

    response = api.post(
        f"/api/v1/gateways/{gateway.gateway_id}/sightings", {"sightings": sightings}, format="json"
    )

    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert sorted(Sighting.objects.values_list("rssi", flat=True)) == [-60, -60]


def test_a_gateway_sighting_with_a_mock_flag_is_rejected_alone(api):
    gateway = GatewayFactory()
    DeviceFactory(ble_identity=beacons.ibeacon_key(BEACON_UUID, 7, 7))
    sighting = {"ibeacon": {"uuid": BEACON_UUID, "major": 7, "minor": 7}, "rssi": -60}
    sightings = [
        {**sighting, "seen_at": ago(seconds=5)},
        {**sighting, "seen_at": ago(seconds=6), "is_mock": True},
    ]

    response = api.post(
        f"/api/v1/gateways/{gateway.gateway_id}/sightings", {"sightings": sightings}, format="json"
    )

    assert response.json() == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": [{"index": 1, "errors": {"is_mock": ONLY_PINGS_ARE_MOCKED}}],
    }
    assert Sighting.objects.count() == 1


def test_an_app_sighting_batch_with_the_app_s_own_keys_is_accepted_whole(api):
    beacon = BeaconFactory(store=StoreFactory(code="RIVOLI"))
    DeviceFactory(device_id="pixel")
    ibeacon = beacons.identity_from_key(beacon.identity)["ibeacon"]
    sighting = {"device_id": "pixel", "ibeacon": ibeacon, "rssi": -60}
    # iOS's CLBeacon: its proximity and estimated distance.
    sightings = [
        {**sighting, "seen_at": ago(seconds=5), "proximity": "near", "accuracy": 1.5},
        {**sighting, "seen_at": ago(seconds=6), "proximity": "far", "accuracy": 4.0},
    ]

    response = api.post("/api/v1/sightings", {"sightings": sightings}, format="json")

    assert response.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert Sighting.objects.count() == 2


# --- Browsing events --------------------------------------------------------------------------


def test_a_browsing_event_batch_with_the_tag_manager_s_own_keys_is_accepted_whole(api):
    CustomerFactory(external_id="C-1")
    event = {"customer_id": "C-1", "type": "add_to_cart", "sku": "X200"}
    events = [
        {**event, "event_id": "e1", "occurred_at": ago(minutes=1), "price": 199.0},
        {**event, "event_id": "e2", "occurred_at": ago(minutes=2), "currency": "EUR"},
    ]

    response = api.post("/api/v1/events", {"events": events}, format="json")

    assert response.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert sorted(BrowsingEvent.objects.values_list("event_id", "sku")) == [
        ("e1", "X200"),
        ("e2", "X200"),
    ]


def test_a_browsing_event_with_a_mock_flag_is_rejected_alone(api):
    CustomerFactory(external_id="C-1")
    event = {"customer_id": "C-1", "type": "product_view", "sku": "X200"}
    events = [
        {**event, "event_id": "e1", "occurred_at": ago(minutes=1)},
        {**event, "event_id": "e2", "occurred_at": ago(minutes=2), "mock": True},
    ]

    response = api.post("/api/v1/events", {"events": events}, format="json")

    assert response.json()["rejected"] == [{"index": 1, "errors": {"mock": ONLY_PINGS_ARE_MOCKED}}]
    assert list(BrowsingEvent.objects.values_list("event_id", flat=True)) == ["e1"]


# --- Resources keep refusing what they do not know ------------------------------------------


STORE = {"code": "X", "name": "X", "timezone": "UTC", "latitude": 1, "longitude": 1}
CAMPAIGN = {
    "name": "X200",
    "stores": ["RIVOLI"],
    "trigger": {"type": "enter"},
    "offer": {"template": "-20% at {store_name}: {code}"},
}


@pytest.mark.parametrize(
    ("method", "path", "body", "key", "stored"),
    [
        ("post", "/api/v1/stores", STORE, "altitude", lambda: Store.objects.filter(code="X")),
        ("post", "/api/v1/stores", STORE, "is_mock", lambda: Store.objects.filter(code="X")),
        ("post", "/api/v1/campaigns", CAMPAIGN, "budget", Campaign.objects.all),
        ("put", "/api/v1/customers/C-2", {"first_name": "Tom"}, "consent", Customer.objects.all),
        (
            "post",
            "/api/v1/devices",
            {"device_id": "d", "customer_id": "C-1"},
            "battery",
            lambda: Device.objects.filter(device_id="d"),
        ),
    ],
)
def test_a_resource_still_refuses_a_key_it_does_not_know(api, method, path, body, key, stored):
    StoreFactory(code="RIVOLI")
    CustomerFactory(external_id="C-1")
    before = stored().count()

    response = getattr(api, method)(path, {**body, key: 1}, format="json")

    assert response.status_code == 400, response.json()
    assert response.json() == {key: UNKNOWN}
    assert stored().count() == before
