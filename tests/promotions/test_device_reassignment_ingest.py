"""A device that changes hands (a family iPad, a phone handed down) while it holds what it
recorded for its previous owner: uploaded late, that is still the previous owner's
location, never the new owner's visit. Through the HTTP API with eager tasks."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from customers.models import Device
from customers.services import save_device
from promotions import beacons
from promotions import services as promotions_services
from promotions.ingest import IngestResult
from promotions.models import Ping, PresenceEvent, Sighting
from promotions.sms import locmem
from tests.clock import ago
from tests.factories import (
    BEACON_UUID,
    BeaconFactory,
    CampaignFactory,
    CustomerFactory,
    DeviceFactory,
    GatewayFactory,
    StoreFactory,
    ZoneFactory,
)
from tests.processes import in_thread

pytestmark = pytest.mark.django_db

RIVOLI = (48.8606, 2.3417)
# About 330 m north of Rivoli: outside its 60 m fence.
STREET = (48.8636, 2.3417)
BEFORE_OWNER = "Recorded before this device was linked to its current customer"
TAG = {"uuid": BEACON_UUID, "major": 7, "minor": 42}
ENTRANCE_BEACON = {"uuid": BEACON_UUID, "major": 1, "minor": 2}


@pytest.fixture(autouse=True)
def outbox(settings):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    return locmem.outbox


@pytest.fixture
def rivoli():
    store = StoreFactory(code="RIVOLI", latitude=RIVOLI[0], longitude=RIVOLI[1])
    CampaignFactory(trigger_type="enter").stores.add(store)
    return store


@pytest.fixture
def lea():
    return CustomerFactory(external_id="C-1", phone="+33612340001")


@pytest.fixture
def marc():
    return CustomerFactory(external_id="C-2", phone="+33612340002")


@pytest.fixture
def ipad(lea):
    return DeviceFactory(
        device_id="family-ipad", customer=lea, ble_identity=beacons.ibeacon_key(BEACON_UUID, 7, 42)
    )


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def ping(place, recorded_at, device_id="family-ipad", **extra):
    return {
        "device_id": device_id,
        "latitude": place[0],
        "longitude": place[1],
        "accuracy": 8.0,
        "recorded_at": recorded_at,
        **extra,
    }


def send_pings(api, *pings):
    response = api.post("/api/v1/pings", {"pings": list(pings)})
    assert response.status_code == 202, response.json()
    return response.json()


def register(api, device_id, customer_id):
    response = api.post("/api/v1/devices", {"device_id": device_id, "customer_id": customer_id})
    assert response.status_code in (200, 201), response.json()


def refused_as_before_owner(body, field):
    return [
        (item["index"], list(item["errors"]), BEFORE_OWNER in item["errors"][field][0])
        for item in body["rejected"]
    ]


def events_of(customer):
    return list(PresenceEvent.objects.filter(customer=customer).values_list("kind", flat=True))


# --- Pings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [{}, {"accuracy": "8"}],
    # A number written as a string, which the fast path does not type, sends the whole body
    # down the general path.
    ids=["fast path", "serializer path"],
)
def test_pings_queued_before_a_device_changed_hands_are_refused_not_the_new_owners_visit(
    api, outbox, rivoli, lea, marc, ipad, extra
):
    # Léa walks into Rivoli with the family iPad, offline: its pings are queued.
    queued = [ping(STREET, ago(minutes=4), **extra), ping(RIVOLI, ago(minutes=3), **extra)]
    # At home, the iPad is handed to Marc and registered to him; then it comes back online.
    register(api, "family-ipad", "C-2")

    body = send_pings(api, *queued)

    assert (body["accepted"], body["duplicates"]) == (0, 0)
    assert refused_as_before_owner(body, "recorded_at") == [
        (0, ["recorded_at"], True),
        (1, ["recorded_at"], True),
    ]
    assert (events_of(marc), marc.deliveries.count(), len(outbox)) == ([], 0, 0)
    export = api.get("/api/v1/customers/C-2/export").json()
    assert (export["pings"], export["device_tracks"]) == ([], [])
    assert not Ping.objects.exists()


def test_pings_recorded_after_the_change_are_the_new_owners(api, outbox, rivoli, marc, ipad):
    queued = ping(STREET, ago(minutes=3))
    register(api, "family-ipad", "C-2")

    # In one upload: the queued ping of Léa's, then Marc walking into Rivoli.
    body = send_pings(api, queued, ping(RIVOLI, now_iso()))

    assert body["accepted"] == 1
    assert [item["index"] for item in body["rejected"]] == [0]
    assert events_of(marc) == ["entered"]
    [sms] = outbox
    assert sms.to == marc.phone
    export = api.get("/api/v1/customers/C-2/export").json()
    assert [(p["latitude"], p["longitude"]) for p in export["pings"]] == [RIVOLI]


def test_a_first_link_does_not_refuse_what_the_app_queued_before_it(api, outbox, rivoli, lea):
    # A new install records before the customer signs in; its first upload follows the
    # registration.
    queued = [ping(STREET, ago(minutes=4), "new-phone"), ping(RIVOLI, ago(minutes=3), "new-phone")]
    register(api, "new-phone", "C-1")
    # Registering it again to the same customer (the app does at each launch) is no change.
    register(api, "new-phone", "C-1")

    body = send_pings(api, *queued)

    assert (body["accepted"], body["rejected"]) == (2, [])
    assert Device.objects.get(device_id="new-phone").owner_since is None
    assert events_of(lea) == ["entered"]
    assert len(outbox) == 1


def test_a_device_given_back_refuses_what_it_recorded_for_the_other_owner(
    api, rivoli, lea, marc, ipad
):
    register(api, "family-ipad", "C-2")
    marcs = ping(RIVOLI, now_iso())
    register(api, "family-ipad", "C-1")

    body = send_pings(api, marcs)

    assert refused_as_before_owner(body, "recorded_at") == [(0, ["recorded_at"], True)]
    assert events_of(lea) == events_of(marc) == []


def test_a_device_reassigned_in_the_admin_refuses_its_previous_owners_pings(
    admin_client, api, rivoli, lea, marc, ipad
):
    queued = ping(RIVOLI, ago(minutes=3))
    form = {"device_id": "family-ipad", "customer": marc.pk, "platform": "ios", "ble_identity": ""}

    response = admin_client.post(f"/admin/customers/device/{ipad.pk}/change/", form)
    assert response.status_code == 302

    body = send_pings(api, queued)
    assert [item["index"] for item in body["rejected"]] == [0]
    assert events_of(marc) == []
    # The admin shows when the device came to Marc, and the form cannot change it.
    page = admin_client.get(f"/admin/customers/device/{ipad.pk}/change/")
    assert "owner_since" not in page.context["adminform"].form.fields
    assert "Owner since" in page.content.decode()


def test_the_export_says_since_when_the_customer_has_had_each_device(api, lea, marc, ipad):
    DeviceFactory(device_id="lea-phone", customer=lea)
    register(api, "family-ipad", "C-2")

    marcs = api.get("/api/v1/customers/C-2/export").json()["devices"]
    leas = api.get("/api/v1/customers/C-1/export").json()["devices"]

    [device] = marcs
    since = datetime.fromisoformat(device["owner_since"].replace("Z", "+00:00"))
    assert timedelta(0) <= datetime.now(UTC) - since < timedelta(minutes=1)
    assert [(d["device_id"], d["owner_since"]) for d in leas] == [("lea-phone", None)]


# --- Sightings --------------------------------------------------------------------------


@pytest.fixture
def entrance(rivoli):
    zone = ZoneFactory(store=rivoli, code="entrance", rssi_threshold=-75)
    campaign = CampaignFactory(
        trigger_type="beacon_zone", trigger_zone="entrance", offer_template="Coffee: {code}"
    )
    campaign.stores.add(rivoli)
    return zone


def app_sighting(seen_at, rssi=-65):
    return {
        "device_id": "family-ipad",
        "ibeacon": ENTRANCE_BEACON,
        "rssi": rssi,
        "seen_at": seen_at,
    }


def gateway_sighting(seen_at, rssi=-65):
    return {"ibeacon": TAG, "rssi": rssi, "seen_at": seen_at}


def test_beacons_the_app_ranged_before_the_change_are_refused(
    api, outbox, entrance, lea, marc, ipad
):
    BeaconFactory(zone=entrance, identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))
    queued = [app_sighting(ago(seconds=40)), app_sighting(ago(seconds=30))]
    register(api, "family-ipad", "C-2")

    body = api.post("/api/v1/sightings", {"sightings": queued}).json()

    assert body["accepted"] == 0
    assert refused_as_before_owner(body, "seen_at") == [
        (0, ["seen_at"], True),
        (1, ["seen_at"], True),
    ]
    assert (events_of(marc), len(outbox), Sighting.objects.count()) == ([], 0, 0)

    # What the iPad ranges once it is Marc's is his.
    later = [app_sighting(now_iso()), app_sighting(now_iso())]
    body = api.post("/api/v1/sightings", {"sightings": later}).json()
    assert (body["accepted"], body["rejected"]) == (2, [])
    assert "entered" in events_of(marc)
    assert [sms.to for sms in outbox] == [marc.phone]


def test_an_unknown_beacon_and_an_earlier_sighting_are_both_named(api, rivoli, marc, ipad):
    register(api, "family-ipad", "C-2")
    item = {**app_sighting(ago(seconds=30)), "ibeacon": {**ENTRANCE_BEACON, "minor": 9}}

    body = api.post("/api/v1/sightings", {"sightings": [item]}).json()

    [rejected] = body["rejected"]
    assert sorted(rejected["errors"]) == ["non_field_errors", "seen_at"]


def test_a_gateways_sightings_from_before_the_change_are_refused(
    api, outbox, entrance, lea, marc, ipad
):
    GatewayFactory(gateway_id="gw-entrance", store=entrance.store, zone=entrance)
    # The gateway lost its network for a while and uploads what it buffered.
    buffered = [gateway_sighting(ago(seconds=40)), gateway_sighting(ago(seconds=30))]
    register(api, "family-ipad", "C-2")
    url = "/api/v1/gateways/gw-entrance/sightings"

    body = api.post(url, {"sightings": buffered}).json()

    assert body["accepted"] == 0
    assert refused_as_before_owner(body, "seen_at") == [
        (0, ["seen_at"], True),
        (1, ["seen_at"], True),
    ]
    assert (events_of(marc), len(outbox), Sighting.objects.count()) == ([], 0, 0)

    body = api.post(url, {"sightings": [gateway_sighting(now_iso()), gateway_sighting(now_iso())]})
    assert (body.json()["accepted"], body.json()["rejected"]) == (2, [])
    assert [sms.to for sms in outbox] == [marc.phone]


# --- A change racing sighting ingest ----------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
)
def test_a_change_while_sightings_are_being_stored_waits_and_takes_them_with_the_history(
    monkeypatch,
):
    lea, marc = CustomerFactory(), CustomerFactory()
    zone = ZoneFactory()
    BeaconFactory(zone=zone, identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))
    device = DeviceFactory(device_id="family-ipad", customer=lea)
    seen_at = datetime.now(UTC) - timedelta(seconds=30)
    items = [
        (
            0,
            {
                "device_id": "family-ipad",
                "identity": beacons.ibeacon_key(BEACON_UUID, 1, 2),
                "rssi": -65,
                "seen_at": seen_at,
            },
        )
    ]
    # Ingest has read the device, not stored its sightings yet, when the iPad changes hands.
    looked_up, release = threading.Event(), threading.Event()
    store = promotions_services._store_sightings

    def store_later(*args, **kwargs):
        looked_up.set()
        release.wait(10)
        return store(*args, **kwargs)

    monkeypatch.setattr(promotions_services, "_store_sightings", store_later)
    ingest = in_thread(
        lambda: promotions_services.record_app_sightings(
            items=items, result=IngestResult(), now=datetime.now(UTC)
        )
    )
    assert looked_up.wait(10)
    handover = in_thread(lambda: save_device(device=_given_to(device.pk, marc)))
    handover.join(0.5)
    assert handover.is_alive(), "the handover must wait for the sightings in flight"
    release.set()
    ingest.join(10)
    handover.join(10)

    assert Device.objects.get(pk=device.pk).customer == marc
    assert not Sighting.objects.filter(device_id=device.pk).exists()


def _given_to(device_pk, customer):
    device = Device.objects.get(pk=device_pk)
    device.customer = customer
    return device
