"""An optional field sent as null is taken as left out. Some JSON encoders write every field
of a client's model, null for those it has no value for; a null must not lose the item
(a location fix, a browsing event, a sighting) that carries it."""

import json
from datetime import UTC, datetime

import pytest

from customers.models import BrowsingEvent, Device
from promotions import beacons
from promotions.api.ping_batch import decode_ping_batch, validate_ping_batch
from promotions.api.serializers import PingSerializer
from promotions.models import Ping, Sighting
from tests.clock import ago
from tests.factories import (
    BEACON_UUID,
    BeaconFactory,
    CustomerFactory,
    DeviceFactory,
    GatewayFactory,
)

pytestmark = pytest.mark.django_db

IBEACON = {"uuid": BEACON_UUID, "major": 1, "minor": 2}

# --- Pings ---------------------------------------------------------------------------------


def ping(**fields):
    return {
        "device_id": "lea-phone",
        "latitude": 48.8606,
        "longitude": 2.3417,
        "accuracy": 10,
        "recorded_at": ago(seconds=5),
        **fields,
    }


# A number written as a string, which the fast path does not type, sends the whole body
# down the serializer's path.
PATHS = {"fast": {}, "general": {"accuracy": "10"}}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_a_ping_with_its_optional_fields_null_is_stored_like_one_without_them(api, path):
    DeviceFactory(device_id="lea-phone")
    left_out = ping(recorded_at=ago(seconds=30), **PATHS[path])
    nulls = ping(ping_id=None, speed=None, mocked=None, **PATHS[path])

    response = api.post("/api/v1/pings", {"pings": [left_out, nulls]})

    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    stored = Ping.objects.values_list("ping_id", "speed", "mocked")
    assert list(stored) == [(None, None, False), (None, None, False)]


@pytest.mark.parametrize("path", sorted(PATHS))
def test_a_ping_sent_as_mocked_is_still_stored_as_mocked(api, path):
    DeviceFactory(device_id="lea-phone")

    response = api.post("/api/v1/pings", {"pings": [ping(mocked=True, **PATHS[path])]})

    assert response.json()["accepted"] == 1
    assert Ping.objects.get().mocked is True


@pytest.mark.parametrize("text", ["null", ""])
def test_only_a_json_null_reads_as_not_mocked(api, text):
    DeviceFactory(device_id="lea-phone")

    response = api.post("/api/v1/pings", {"pings": [ping(mocked=text)]})

    assert response.json()["accepted"] == 0
    [rejected] = response.json()["rejected"]
    assert list(rejected["errors"]) == ["mocked"]


NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
FAST_PING = {
    "device_id": "lea-phone",
    "latitude": 48.86,
    "longitude": 2.34,
    "accuracy": 12.5,
    "recorded_at": "2026-11-29T11:59:00Z",
}


@pytest.mark.parametrize(
    "changed",
    [{}, {"accuracy": 0}, {"accuracy": 50_001}, {"recorded_at": "2026-11-29T11:59:00"}],
    ids=["valid", "unknown-accuracy", "too-inaccurate", "naive-time"],
)
def test_the_fast_path_takes_a_null_mocked_and_judges_it_as_the_serializer_does(changed):
    item = {**FAST_PING, **changed, "mocked": None}
    batch = decode_ping_batch(json.dumps({"pings": [item]}).encode())

    valid, result = validate_ping_batch(batch.pings, NOW)

    serializer = PingSerializer(data=item, context={"now": NOW})
    if serializer.is_valid():
        expected = {"ping_id": None, "speed": None, **serializer.validated_data}
        assert valid == [(0, expected)]
        assert expected["mocked"] is False
        assert not result.rejected
    else:
        assert not valid
        assert result.rejected == [{"index": 0, "errors": serializer.errors}]


# --- Browsing events -----------------------------------------------------------------------

EVENT_OPTIONALS = ("sku", "product_name", "category", "url")


def test_an_event_with_its_optional_fields_null_is_stored_like_one_without_them(api):
    CustomerFactory(external_id="C-1")
    base = {"customer_id": "C-1", "type": "page_view", "occurred_at": ago(hours=1)}
    nulls = {**base, "event_id": "e-null", "visitor_id": None}
    nulls.update(dict.fromkeys(EVENT_OPTIONALS))

    response = api.post("/api/v1/events", {"events": [{**base, "event_id": "e-out"}, nulls]})

    assert response.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    rows = {
        event.event_id: (event.sku, event.product_name, event.category, event.url, event.visitor)
        for event in BrowsingEvent.objects.all()
    }
    assert rows["e-null"] == rows["e-out"] == ("", "", "", "", None)


def test_an_anonymous_event_may_send_its_customer_id_as_null(api):
    event = {
        "event_id": "e1",
        "customer_id": None,
        "visitor_id": "v-1",
        "type": "product_view",
        "sku": "X200",
        "occurred_at": ago(hours=1),
    }

    response = api.post("/api/v1/events", {"events": [event]})

    assert response.json()["accepted"] == 1
    assert BrowsingEvent.objects.get().customer is None


# --- Sightings -----------------------------------------------------------------------------


def test_an_app_sighting_may_send_the_identity_forms_it_does_not_use_as_null(api):
    phone = DeviceFactory(device_id="lea-phone")
    beacon = BeaconFactory(identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))
    item = {
        "device_id": "lea-phone",
        "ibeacon": IBEACON,
        "eddystone_uid": None,
        "raw": None,
        "rssi": -67,
        "seen_at": ago(seconds=5),
    }

    response = api.post("/api/v1/sightings", {"sightings": [item]})

    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert (Sighting.objects.get().device, Sighting.objects.get().beacon) == (phone, beacon)


def test_a_gateway_sighting_with_its_optional_fields_null_is_stored_like_one_without(api):
    GatewayFactory(gateway_id="gw-1")
    DeviceFactory(device_id="lea-tag", ble_identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))
    base = {"ibeacon": IBEACON, "rssi": -71}
    nulls = {**base, "mac": None, "eddystone_uid": None, "raw": None, "seen_at": ago(seconds=3)}

    response = api.post(
        "/api/v1/gateways/gw-1/sightings",
        {"sightings": [{**base, "seen_at": ago(seconds=9)}, nulls]},
    )

    assert response.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert list(Sighting.objects.values_list("mac", flat=True)) == ["", ""]


# --- Devices -------------------------------------------------------------------------------


def test_a_device_registered_again_with_a_null_platform_keeps_its_platform(api):
    CustomerFactory(external_id="C-1")
    DeviceFactory(device_id="lea-phone", platform="android")

    response = api.post(
        "/api/v1/devices", {"device_id": "lea-phone", "customer_id": "C-1", "platform": None}
    )

    assert response.status_code == 200
    assert response.json()["platform"] == "android"
    assert Device.objects.get().platform == "android"


def test_a_new_device_with_a_null_platform_is_registered_as_other(api):
    CustomerFactory(external_id="C-1")

    response = api.post(
        "/api/v1/devices", {"device_id": "lea-phone", "customer_id": "C-1", "platform": None}
    )

    assert response.status_code == 201
    assert Device.objects.get().platform == "other"


# --- The schema says so --------------------------------------------------------------------


@pytest.mark.parametrize(
    "component",
    [
        "PingRequest",
        "BrowsingEventRequest",
        "SightingRequest",
        "GatewaySightingRequest",
        "DeviceInputRequest",
    ],
)
def test_the_schema_documents_every_optional_item_field_as_nullable(client, component):
    schema = json.loads(client.get("/api/schema/?format=json").content)["components"]["schemas"]
    fields = schema[component]

    optional = set(fields["properties"]) - set(fields.get("required", []))

    assert optional
    assert {name for name in optional if not fields["properties"][name].get("nullable")} == set()
