import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from customers.models import BrowsingEvent, Device, ProductIntent
from promotions import beacons, decisions
from promotions.models import DeviceTrack, Ping, Presence, PresenceEvent, Sighting
from tests.clock import ago
from tests.factories import (
    BEACON_UUID,
    BeaconFactory,
    CampaignFactory,
    CustomerFactory,
    DeviceFactory,
    StoreFactory,
)
from tests.processes import in_thread, sessions_waiting_for_a_lock, started

pytestmark = pytest.mark.django_db


@pytest.fixture
def lea():
    return CustomerFactory(external_id="C-1")


def test_post_links_a_new_device_with_201(api, lea):
    response = api.post(
        "/api/v1/devices", {"device_id": "lea-phone", "customer_id": "C-1", "platform": "ios"}
    )

    assert response.status_code == 201
    assert response.json()["customer_id"] == "C-1"
    assert Device.objects.get(device_id="lea-phone").customer == lea


def test_post_again_relinks_the_device_with_200(api, lea):
    CustomerFactory(external_id="C-2")
    api.post("/api/v1/devices", {"device_id": "shared", "customer_id": "C-1"})

    response = api.post("/api/v1/devices", {"device_id": "shared", "customer_id": "C-2"})

    assert response.status_code == 200
    assert Device.objects.get(device_id="shared").customer.external_id == "C-2"


@pytest.fixture
def lea_phone_with_history(api, lea):
    """Léa's phone, with the pings, the sighting and the track it left."""
    api.post("/api/v1/devices", {"device_id": "shared", "customer_id": "C-1"})
    BeaconFactory(identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))
    fix = {"device_id": "shared", "latitude": 48.86, "longitude": 2.34, "accuracy": 10}
    pings = [{**fix, "recorded_at": ago(minutes=m)} for m in (6, 5)]
    assert api.post("/api/v1/pings", {"pings": pings}, format="json").json()["accepted"] == 2
    sighting = {"device_id": "shared", "ibeacon": {"uuid": BEACON_UUID, "major": 1, "minor": 2}}
    sighting |= {"rssi": -67, "seen_at": ago(minutes=4)}
    response = api.post("/api/v1/sightings", {"sightings": [sighting]}, format="json")
    assert response.json()["accepted"] == 1
    device = Device.objects.get(device_id="shared")
    track = {"latitude": 48.86, "longitude": 2.34, "accuracy": 10, "at": ago(minutes=5)}
    DeviceTrack.objects.update_or_create(device=device, defaults=track)
    export = api.get("/api/v1/customers/C-1/export").json()
    assert [len(export[k]) for k in ("pings", "sightings", "device_tracks")] == [2, 1, 1]
    return device


def test_a_device_moved_to_another_customer_brings_none_of_its_history(api, lea_phone_with_history):
    CustomerFactory(external_id="C-2")

    response = api.post("/api/v1/devices", {"device_id": "shared", "customer_id": "C-2"})

    assert response.status_code == 200
    export = api.get("/api/v1/customers/C-2/export").json()
    assert [device["device_id"] for device in export["devices"]] == ["shared"]
    assert (export["pings"], export["sightings"], export["device_tracks"]) == ([], [], [])


def test_a_moved_device_records_its_new_owners_pings(api, lea_phone_with_history):
    CustomerFactory(external_id="C-2")
    api.post("/api/v1/devices", {"device_id": "shared", "customer_id": "C-2"})
    fix = {"device_id": "shared", "latitude": 48.87, "longitude": 2.35, "accuracy": 10}

    api.post("/api/v1/pings", {"pings": [{**fix, "recorded_at": ago(seconds=0)}]}, format="json")

    export = api.get("/api/v1/customers/C-2/export").json()
    assert [ping["latitude"] for ping in export["pings"]] == [48.87]


def test_erasing_a_devices_previous_owner_leaves_none_of_their_location_history(
    api, lea_phone_with_history
):
    CustomerFactory(external_id="C-2")
    api.post("/api/v1/devices", {"device_id": "shared", "customer_id": "C-2"})

    assert api.delete("/api/v1/customers/C-1").status_code == 204

    assert not Ping.objects.exists()
    assert not Sighting.objects.exists()
    assert not DeviceTrack.objects.exists()


def test_a_device_moved_to_another_customer_no_longer_holds_its_previous_owner_in_a_store(api, lea):
    store = StoreFactory()
    CampaignFactory(trigger_type="dwell", trigger_minutes=10)
    api.post("/api/v1/devices", {"device_id": "shared", "customer_id": "C-1"})
    inside = {"device_id": "shared", "latitude": store.latitude, "longitude": store.longitude}
    inside |= {"accuracy": 8, "recorded_at": ago(minutes=1)}
    assert api.post("/api/v1/pings", {"pings": [inside]}, format="json").status_code == 202
    assert Presence.objects.get(customer=lea, place_key=f"store:{store.pk}").inside
    CustomerFactory(external_id="C-2")

    response = api.post("/api/v1/devices", {"device_id": "shared", "customer_id": "C-2"})
    decisions.process_presence_tick(now=timezone.now() + timedelta(minutes=10))

    # Léa left the store when her phone stopped being hers, and stayed no 10 minutes in it.
    assert response.status_code == 200
    events = PresenceEvent.objects.filter(customer=lea).order_by("occurred_at")
    assert [(e.kind, e.evidence["reason"]) for e in events][1:] == [("exited", "device reassigned")]
    assert not Presence.objects.filter(customer=lea, inside=True).exists()


def test_registering_a_device_again_for_its_owner_keeps_its_history(api, lea_phone_with_history):
    response = api.post(
        "/api/v1/devices", {"device_id": "shared", "customer_id": "C-1", "platform": "ios"}
    )

    assert response.status_code == 200
    export = api.get("/api/v1/customers/C-1/export").json()
    assert [len(export[k]) for k in ("pings", "sightings", "device_tracks")] == [2, 1, 1]


def test_a_device_can_carry_the_ibeacon_identity_it_advertises(api, lea):
    response = api.post(
        "/api/v1/devices",
        {
            "device_id": "lea-tag",
            "customer_id": "C-1",
            "platform": "other",
            "ibeacon": {"uuid": BEACON_UUID.upper(), "major": 7, "minor": 9},
        },
    )

    assert response.status_code == 201
    assert response.json()["ibeacon"] == {"uuid": BEACON_UUID, "major": 7, "minor": 9}
    assert Device.objects.get().ble_identity == beacons.ibeacon_key(BEACON_UUID, 7, 9)


def test_a_device_can_carry_an_eddystone_uid(api, lea):
    response = api.post(
        "/api/v1/devices",
        {
            "device_id": "lea-tag",
            "customer_id": "C-1",
            "eddystone_uid": {"namespace": "00010203040506070809", "instance": "0A0B0C0D0E0F"},
        },
    )

    assert response.status_code == 201
    assert response.json()["eddystone_uid"] == {
        "namespace": "00010203040506070809",
        "instance": "0a0b0c0d0e0f",
    }


def test_an_identity_already_advertised_by_another_device_is_409(api, lea):
    DeviceFactory(ble_identity=beacons.ibeacon_key(BEACON_UUID, 7, 9))

    response = api.post(
        "/api/v1/devices",
        {
            "device_id": "lea-tag",
            "customer_id": "C-1",
            "ibeacon": {"uuid": BEACON_UUID, "major": 7, "minor": 9},
        },
    )

    assert response.status_code == 409
    assert not Device.objects.filter(device_id="lea-tag").exists()


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
)
def test_an_identity_another_request_gives_its_device_meanwhile_is_409(client_with_scopes, lea):
    tom_app, lea_app = client_with_scopes(), client_with_scopes()
    lea_app.raise_request_exception = False
    tag = {"customer_id": "C-1", "ibeacon": {"uuid": BEACON_UUID, "major": 7, "minor": 9}}
    answers = {}

    # Tom's request has given the identity to its device and not committed yet...
    tom = started(
        lambda: answers.setdefault(
            "tom", tom_app.post("/api/v1/devices", {"device_id": "tom-tag", **tag})
        )
    )
    # ...when Léa's checks that no device holds it (none that committed does), and inserts.
    lea_request = in_thread(
        lambda: answers.setdefault(
            "lea", lea_app.post("/api/v1/devices", {"device_id": "lea-tag", **tag})
        )
    )
    assert wait_for(sessions_waiting_for_a_lock), "Léa's insert must wait for Tom's transaction"
    tom.release.set()
    tom.join(10)
    lea_request.join(10)

    assert (answers["tom"].status_code, answers["lea"].status_code) == (201, 409)
    assert answers["lea"].json()["detail"] == "Another device already advertises this BLE identity."
    assert list(Device.objects.values_list("device_id", flat=True)) == ["tom-tag"]


LEA_TAG = {"uuid": BEACON_UUID, "major": 7, "minor": 9}


def test_registering_again_without_an_identity_keeps_the_stored_one(api, lea):
    api.post("/api/v1/devices", {"device_id": "lea-tag", "customer_id": "C-1", "ibeacon": LEA_TAG})

    response = api.post("/api/v1/devices", {"device_id": "lea-tag", "customer_id": "C-1"})

    assert response.status_code == 200
    assert response.json()["ibeacon"] == LEA_TAG
    assert Device.objects.get().ble_identity == beacons.ibeacon_key(BEACON_UUID, 7, 9)


@pytest.mark.parametrize(
    "cleared",
    [{"ibeacon": None}, {"eddystone_uid": None}, {"ibeacon": None, "eddystone_uid": None}],
)
def test_an_identity_sent_as_null_is_removed(api, lea, cleared):
    api.post("/api/v1/devices", {"device_id": "lea-tag", "customer_id": "C-1", "ibeacon": LEA_TAG})

    response = api.post(
        "/api/v1/devices", {"device_id": "lea-tag", "customer_id": "C-1", **cleared}
    )

    assert response.status_code == 200
    assert response.json()["ibeacon"] is None
    assert Device.objects.get().ble_identity is None


def test_an_identity_replaces_the_other_form_sent_as_null(api, lea):
    api.post("/api/v1/devices", {"device_id": "lea-tag", "customer_id": "C-1", "ibeacon": LEA_TAG})
    eddystone = {"namespace": "00010203040506070809", "instance": "0a0b0c0d0e0f"}

    response = api.post(
        "/api/v1/devices",
        {"device_id": "lea-tag", "customer_id": "C-1", "ibeacon": None, "eddystone_uid": eddystone},
    )

    assert response.status_code == 200
    assert (response.json()["ibeacon"], response.json()["eddystone_uid"]) == (None, eddystone)


def test_registering_again_without_a_platform_keeps_the_stored_one(api, lea):
    api.post("/api/v1/devices", {"device_id": "lea-phone", "customer_id": "C-1", "platform": "ios"})

    response = api.post("/api/v1/devices", {"device_id": "lea-phone", "customer_id": "C-1"})

    assert response.json()["platform"] == "ios"
    assert Device.objects.get().platform == "ios"


def test_a_new_device_without_a_platform_is_other(api, lea):
    response = api.post("/api/v1/devices", {"device_id": "lea-phone", "customer_id": "C-1"})

    assert response.status_code == 201
    assert response.json()["platform"] == "other"


def test_the_identity_of_a_store_beacon_is_409(api, lea):
    BeaconFactory(identity=beacons.ibeacon_key(BEACON_UUID, 7, 9))

    response = api.post(
        "/api/v1/devices", {"device_id": "lea-tag", "customer_id": "C-1", "ibeacon": LEA_TAG}
    )

    assert response.status_code == 409
    assert "store beacon" in response.json()["detail"]
    assert not Device.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"device_id": "d", "customer_id": "nobody"}, "customer_id"),
        ({"customer_id": "C-1"}, "device_id"),
        ({"device_id": "d", "customer_id": "C-1", "platform": "symbian"}, "platform"),
        (
            {
                "device_id": "d",
                "customer_id": "C-1",
                "ibeacon": {"uuid": "x", "major": 1, "minor": 2},
            },
            "ibeacon",
        ),
        (
            {
                "device_id": "d",
                "customer_id": "C-1",
                "ibeacon": {"uuid": BEACON_UUID, "major": 70000, "minor": 2},
            },
            "ibeacon",
        ),
        (
            {
                "device_id": "d",
                "customer_id": "C-1",
                "ibeacon": {"uuid": BEACON_UUID, "major": 1, "minor": 2},
                "eddystone_uid": {"namespace": "00" * 10, "instance": "00" * 6},
            },
            "non_field_errors",
        ),
    ],
)
def test_bad_device_bodies_are_400_and_store_nothing(api, lea, body, field):
    response = api.post("/api/v1/devices", body)

    assert response.status_code == 400
    assert field in response.json()
    assert not Device.objects.exists()


def _view(event_id, sku="X200", **fields):
    return {
        "event_id": event_id,
        "type": "product_view",
        "sku": sku,
        "occurred_at": ago(hours=1),
        **fields,
    }


def test_identify_attributes_the_visitors_past_events_to_the_customer(api, lea):
    api.post("/api/v1/events", {"events": [_view(f"e{n}", visitor_id="v-1") for n in range(3)]})
    assert not ProductIntent.objects.exists()

    response = api.post("/api/v1/identify", {"visitor_id": "v-1", "customer_id": "C-1"})

    assert response.status_code == 200
    assert response.json() == {"visitor_id": "v-1", "customer_id": "C-1", "events_attributed": 3}
    assert BrowsingEvent.objects.filter(customer=lea).count() == 3
    assert len(ProductIntent.objects.get(customer=lea, sku="X200").view_times) == 3


def test_an_identified_visitors_future_events_count_as_the_customers(api, lea):
    api.post("/api/v1/identify", {"visitor_id": "v-1", "customer_id": "C-1"})

    api.post("/api/v1/events", {"events": [_view("e1", visitor_id="v-1")]})

    assert BrowsingEvent.objects.get(event_id="e1").customer == lea
    assert ProductIntent.objects.filter(customer=lea, sku="X200").exists()


def test_identify_twice_counts_the_events_once(api, lea):
    api.post("/api/v1/events", {"events": [_view("e1", visitor_id="v-1")]})
    api.post("/api/v1/identify", {"visitor_id": "v-1", "customer_id": "C-1"})

    response = api.post("/api/v1/identify", {"visitor_id": "v-1", "customer_id": "C-1"})

    assert response.json()["events_attributed"] == 0
    assert len(ProductIntent.objects.get(customer=lea).view_times) == 1


def test_a_visitor_identified_as_someone_else_is_409(api, lea):
    CustomerFactory(external_id="C-2")
    api.post("/api/v1/identify", {"visitor_id": "v-1", "customer_id": "C-1"})

    response = api.post("/api/v1/identify", {"visitor_id": "v-1", "customer_id": "C-2"})

    assert response.status_code == 409


def test_identify_with_an_unknown_customer_is_400(api):
    response = api.post("/api/v1/identify", {"visitor_id": "v-1", "customer_id": "nobody"})

    assert response.status_code == 400
    assert "customer_id" in response.json()
