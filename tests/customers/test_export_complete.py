"""The export is everything held about the customer (SPEC: data-subject access): every
stored field of every row about them, named as the API names things."""

from datetime import datetime, timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.utils import timezone

from customers.models import (
    BrowsingEvent,
    CartIntent,
    CategoryIntent,
    ConsentChange,
    Customer,
    Device,
    ProductIntent,
    Visitor,
)
from promotions import beacons
from promotions.feedback import handle_inbound_sms
from promotions.models import (
    Delivery,
    DeviceTrack,
    Ping,
    Presence,
    PresenceEvent,
    Redemption,
    Sighting,
)
from promotions.sms import locmem
from tests.clock import ago
from tests.customers.test_erasure_admin_log import edit_in_the_admin
from tests.factories import (
    BEACON_UUID,
    BeaconFactory,
    CampaignFactory,
    StoreFactory,
    ZoneFactory,
)

pytestmark = pytest.mark.django_db

LEA = {
    "phone": "+33612345678",
    "first_name": "Lea",
    "timezone": "Europe/Paris",
    "locale": "fr-FR",
    "sms_consent": "opted_in",
    "consent_source": "web_form",
}
PARIS = {"device_id": "lea-phone", "latitude": 48.8606, "longitude": 2.3417, "accuracy": 10}
LYON = {"device_id": "lea-phone", "latitude": 45.76, "longitude": 4.84, "accuracy": 10}

# Each section of the export and the model its rows come from.
SECTIONS = {
    "customer": Customer,
    "consent_log": ConsentChange,
    "devices": Device,
    "visitors": Visitor,
    "browsing_events": BrowsingEvent,
    "product_intent": ProductIntent,
    "category_intent": CategoryIntent,
    "cart_intent": CartIntent,
    "pings": Ping,
    "device_tracks": DeviceTrack,
    "presence": Presence,
    "presence_events": PresenceEvent,
    "deliveries": Delivery,
    "redemptions": Redemption,
    "sightings": Sighting,
    "admin_history": LogEntry,
}
# A related row is named as the rest of the API names it; an admin history entry says what
# it did (`action`) to what kind of row (`object_type`).
API_NAMES = {
    "device": "device_id",
    "visitor": "visitor_id",
    "delivery": "code",
    "action_flag": "action",
    "content_type": "object_type",
}
# What the export leaves out, each for its reason: the customer themselves (every row is
# theirs); our row numbers, which name nothing the API takes (but those that a delivery's
# trace names: pings', sightings', presence events' and deliveries'); a delivery's
# `erased_as`, set only when the customer is erased and no export is left to give; its
# `code_key`, the code as the till looks it up, which `code` gives; the sender's queue
# (`send_after`, `claimed_at`), when a worker was to and did pick the SMS up; and a consent
# change's `reply_number_key`, a keyed hash of the number a reply came from, which names no
# number to anyone without the server's key.
NOT_EXPORTED = {
    (Customer, "id"),
    *((model, "customer") for model in SECTIONS.values()),
    *(
        (model, "id")
        for model in SECTIONS.values()
        if model not in (Ping, Sighting, PresenceEvent, Delivery)
    ),
    (Delivery, "erased_as"),
    (Delivery, "code_key"),
    (Delivery, "send_after"),
    (Delivery, "claimed_at"),
    (ConsentChange, "reply_number_key"),
}


@pytest.fixture
def world(api, admin_client, settings):
    """Lea, as every part of the product has come to know her: the API's own requests."""
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    store = StoreFactory(code="RIVOLI", latitude=48.8606, longitude=2.3417, radius_m=100)
    BeaconFactory(zone=ZoneFactory(store=store), identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))
    CampaignFactory(offer_template="Bonjour {first_name}: {code}").stores.add(store)
    assert api.put("/api/v1/customers/C-1", LEA).status_code == 201
    api.post("/api/v1/devices", {"device_id": "lea-phone", "customer_id": "C-1"})
    view = {"type": "product_view", "sku": "X200", "category": "audio"}
    events = [{**view, "event_id": "e-1", "visitor_id": "lea-laptop", "occurred_at": ago(hours=1)}]
    # The site reports the cart left whole, naming no product.
    cart = {"event_id": "e-2", "visitor_id": "lea-laptop", "type": "add_to_cart"}
    events.append({**cart, "occurred_at": ago(minutes=50)})
    api.post("/api/v1/events", {"events": events}, format="json")
    api.post("/api/v1/identify", {"visitor_id": "lea-laptop", "customer_id": "C-1"})
    # Inside the store, then 390 km away a minute later: the second is stored, judged a
    # teleport, and moves nothing.
    pings = [
        {**PARIS, "ping_id": "p-1", "recorded_at": ago(minutes=3)},
        {**LYON, "ping_id": "p-2", "recorded_at": ago(minutes=2)},
    ]
    api.post("/api/v1/pings", {"pings": pings}, format="json")
    # Two readings of the entrance's beacon 10 s apart: in the entrance zone.
    seen = {"device_id": "lea-phone", "rssi": -60}
    seen["ibeacon"] = {"uuid": BEACON_UUID, "major": 1, "minor": 2}
    sightings = [{**seen, "seen_at": ago(seconds=70)}, {**seen, "seen_at": ago(seconds=60)}]
    api.post("/api/v1/sightings", {"sightings": sightings}, format="json")
    assert len(locmem.outbox) == 1
    redeemed = {
        "code": Delivery.objects.get().code,
        "store_code": "RIVOLI",
        "redeemed_at": timezone.now().isoformat(),
    }
    assert api.post("/api/v1/redemptions", redeemed, format="json").status_code == 201
    # A marketer corrects her phone's platform, then her name, in the admin.
    edit_in_the_admin(admin_client, Device.objects.get(), platform="android")
    edit_in_the_admin(admin_client, Customer.objects.get(), first_name="Léa")
    return store


def test_every_stored_field_about_the_customer_is_in_the_export(api, world):
    export = api.get("/api/v1/customers/C-1/export").json()

    missing = {}
    for section, model in SECTIONS.items():
        rows = export[section] if isinstance(export[section], list) else [export[section]]
        assert rows, f"the world holds no {section}"
        held = {
            API_NAMES.get(field.name, field.name)
            for field in model._meta.concrete_fields
            if (model, field.name) not in NOT_EXPORTED
        }
        left_out = {name for row in rows for name in held - row.keys()}
        if left_out:
            missing[section] = sorted(left_out)

    assert missing == {}


def test_export_says_which_pings_were_judged_suspicious(api, world):
    exported = api.get("/api/v1/customers/C-1/export").json()["pings"]

    assert [(row["ping_id"], row["suspicious"]) for row in exported] == [
        ("p-1", False),
        ("p-2", True),
    ]


def test_export_links_each_visit_to_the_fix_that_caused_it_and_the_sms_it_caused(api, world):
    export = api.get("/api/v1/customers/C-1/export").json()
    pings = {row["ping_id"]: row["id"] for row in export["pings"]}
    [entered] = [
        row for row in export["presence_events"] if (row["kind"], row["zone"]) == ("entered", None)
    ]

    assert entered["place_key"] == f"store:{world.pk}"
    assert entered["ping"] == pings["p-1"]
    assert entered["sighting"] is None
    assert entered["evidence"]["reason"]
    assert datetime.fromisoformat(entered["created_at"]).tzinfo is not None
    [delivery] = export["deliveries"]
    assert delivery["presence_event"] == entered["id"]
    # The trace the decision kept names the same rows.
    assert delivery["trace"]["event"]["id"] == entered["id"]
    assert delivery["trace"]["event"]["ping"] == pings["p-1"]


def test_export_links_a_visit_a_beacon_caused_to_its_sighting(api, world):
    export = api.get("/api/v1/customers/C-1/export").json()
    sightings = {row["id"]: row for row in export["sightings"]}

    [entrance] = [row for row in export["presence_events"] if row["zone"] == "entrance"]

    assert entrance["kind"] == "entered"
    assert entrance["ping"] is None
    assert sightings[entrance["sighting"]]["zone"] == "entrance"
    assert entrance["evidence"]["reason"].startswith("median rssi")


def test_export_says_how_the_sms_went_out(api, world):
    [delivery] = api.get("/api/v1/customers/C-1/export").json()["deliveries"]

    assert delivery["status"] == "sent"
    assert (delivery["encoding"], delivery["segments"], delivery["attempts"]) == ("GSM-7", 1, 1)
    assert delivery["status_updated_at"] is not None


def test_export_says_when_each_row_was_recorded(api, world):
    export = api.get("/api/v1/customers/C-1/export").json()
    [device] = export["devices"]
    [visitor] = export["visitors"]
    [redemption] = export["redemptions"]
    [x200] = export["product_intent"]
    [event, cart_event] = export["browsing_events"]

    assert device["updated_at"] >= device["created_at"]
    assert visitor["visitor_id"] == "lea-laptop"
    assert visitor["created_at"] <= visitor["identified_at"]
    assert redemption["created_at"] is not None
    assert (x200["category"], x200["categorised_at"]) == ("audio", event["occurred_at"])
    assert export["cart_intent"]["cart_updated_at"] == cart_event["occurred_at"]


def test_export_holds_the_admins_history_of_changes_to_the_customer_and_their_phone(api, world):
    [phone, name] = api.get("/api/v1/customers/C-1/export").json()["admin_history"]

    assert (phone["object_type"], phone["object_id"], phone["action"]) == (
        "device",
        "lea-phone",
        "changed",
    )
    assert phone["change_message"] == "Changed Platform."
    assert (name["object_type"], name["object_id"], name["action"]) == (
        "customer",
        "C-1",
        "changed",
    )
    assert name["change_message"] == "Changed First name."
    assert name["user"] == "admin"
    assert phone["action_time"] <= name["action_time"]


def test_export_leaves_out_the_admins_history_of_another_customer(api, admin_client, world):
    assert api.put("/api/v1/customers/C-TOM", {"first_name": "Tom"}).status_code == 201
    edit_in_the_admin(admin_client, Customer.objects.get(external_id="C-TOM"), first_name="Tomas")

    history = api.get("/api/v1/customers/C-1/export").json()["admin_history"]

    assert [entry["object_id"] for entry in history] == ["lea-phone", "C-1"]


def test_export_says_the_number_is_on_the_opted_out_list(api):
    # Review 3: that record refuses their opt-in, and the export did not show it.
    lea = {**LEA, "first_name": "Léa"}
    api.put("/api/v1/customers/C-1", lea)
    three_days_ago = timezone.now() - timedelta(days=3)
    handle_inbound_sms(from_number=LEA["phone"], body="ARRET", now=three_days_ago)
    assert api.delete("/api/v1/customers/C-1").status_code == 204
    # The same person, stored again: refused opted_in because of what is kept of her number.
    assert api.put("/api/v1/customers/C-1", lea).status_code == 409
    assert api.put("/api/v1/customers/C-1", {**lea, "sms_consent": "unknown"}).status_code == 201

    export = api.get("/api/v1/customers/C-1/export").json()

    assert export["opted_out_number"] == {
        "opted_out_at": three_days_ago.isoformat().replace("+00:00", "Z"),
        "source": "sms",
    }


def test_export_of_a_number_not_on_the_list_says_so(api):
    api.put("/api/v1/customers/C-1", LEA)
    assert api.get("/api/v1/customers/C-1/export").json()["opted_out_number"] is None


def test_export_says_when_the_number_last_replied_start(api):
    api.put("/api/v1/customers/C-1", LEA)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    # Already opted in: the START changes no consent, and is kept all the same.
    handle_inbound_sms(from_number=LEA["phone"], body="START", now=an_hour_ago)

    export = api.get("/api/v1/customers/C-1/export").json()

    assert export["number_replied_start_at"] == an_hour_ago.isoformat().replace("+00:00", "Z")
    assert export["consent_log"][-1]["note"] != "Replied START"


def test_export_of_a_number_that_never_replied_start_says_so(api):
    api.put("/api/v1/customers/C-1", LEA)
    assert api.get("/api/v1/customers/C-1/export").json()["number_replied_start_at"] is None


@pytest.mark.parametrize(
    "stored, exported",
    [
        (
            f"IBEACON:{{{BEACON_UUID.upper()}}}:1:2",
            {"ibeacon": {"uuid": BEACON_UUID, "major": 1, "minor": 2}},
        ),
        ("lea's keyring tag", {"stored_as": "lea's keyring tag"}),
    ],
    ids=["typed twice", "no identity"],
)
def test_a_tag_left_as_typed_by_the_upgrade_is_exported_as_held(api, stored, exported):
    # Migration promotions.0026 leaves such a device's identity as the first release's admin
    # stored it, for the admin to settle: the export still answers, with what is held.
    api.put("/api/v1/customers/C-1", LEA)
    api.post("/api/v1/devices", {"device_id": "lea-tag", "customer_id": "C-1"})
    Device.objects.filter(device_id="lea-tag").update(ble_identity=stored)

    response = api.get("/api/v1/customers/C-1/export")

    assert response.status_code == 200
    assert response.json()["devices"][0]["ble_identity"] == exported
