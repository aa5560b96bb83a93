"""Erasing a customer (DELETE /api/v1/customers/{id}) leaves nothing that names or locates
them anywhere Passage keeps data: the database, the SMS file, the logs. A customer who has
been through every part of the product, through its own requests, is erased, and everything
is read back whole."""

import json
import logging
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from twilio.request_validator import RequestValidator

from customers.models import Customer, Device
from promotions import beacons, sms
from promotions.models import Delivery, DeliveryStatus, Ping, Presence, PresenceEvent
from promotions.sms import OutgoingSms
from tests.clock import ago
from tests.customers.test_erasure_admin_log import edit_in_the_admin
from tests.factories import (
    BEACON_UUID,
    BeaconFactory,
    CampaignFactory,
    GatewayFactory,
    StoreFactory,
    ZoneFactory,
)

pytestmark = pytest.mark.django_db

TOKEN = "webhook-token"
BASE = "https://passage.example.com"

PHONE = "+33687650913"
ZOE = {
    "phone": PHONE,
    "first_name": "Zephyrine",
    "timezone": "Europe/Paris",
    "locale": "fr-FR",
    "sms_consent": "opted_in",
    "consent_source": "web_form",
}
# Her phone's BLE identity, which gateways hear.
TAG = {"uuid": "0b5e11ad-7c3e-4f1a-9d2b-55aa66bb77cc", "major": 4242, "minor": 1717}
MAC = "D4:E5:F6:07:18:29"
# Her fixes: a few metres inside the store, then in the street outside (both in no store's
# or beacon's own figures).
INSIDE = (48.86063, 2.34178)
OUTSIDE = (48.86117, 2.34391)

# Whatever names her, as any table, file or log line could hold it.
NAMES = [
    "CUST-ZEPH-7",
    "33687650913",
    "687650913",
    "Zephyrine",
    "zeph-pixel",
    "zeph-watch",
    "cookie-zeph-7",
    "zeph-ev-",
    "zeph-query",
    "0b5e11ad",
    MAC,
]
# Whatever locates her: her fixes' coordinates, as text.
PLACES = [f"{value}" for point in (INSIDE, OUTSIDE) for value in point]


def signed_post(client, path, form):
    signature = RequestValidator(TOKEN).compute_signature(BASE + path, form)
    return client.post(path, form, HTTP_X_TWILIO_SIGNATURE=signature)


def dump() -> str:
    out = StringIO()
    call_command("dumpdata", stdout=out)
    return out.getvalue()


def named(text: str) -> list[str]:
    return [trace for trace in NAMES + PLACES if trace.lower() in text.lower()]


@pytest.fixture
def zoe(api, admin_client, settings, tmp_path, caplog):
    """Zoe, as every part of the product has come to know her, through its own requests."""
    caplog.set_level(logging.DEBUG)
    settings.SMS_BACKEND = "file"
    settings.SMS_FILE_PATH = str(tmp_path / "sms.jsonl")
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.PUBLIC_BASE_URL = BASE
    store = StoreFactory(code="RIVOLI", latitude=48.8606, longitude=2.3417, radius_m=100)
    entrance = ZoneFactory(store=store)
    BeaconFactory(zone=entrance, identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))
    GatewayFactory(gateway_id="gw-rivoli-1", zone=entrance)
    CampaignFactory(offer_template="Bonjour {first_name}: {code}").stores.add(store)

    assert api.put("/api/v1/customers/CUST-ZEPH-7", ZOE).status_code == 201
    phone = {"device_id": "zeph-pixel", "customer_id": "CUST-ZEPH-7", "platform": "android"}
    assert api.post("/api/v1/devices", {**phone, "ibeacon": TAG}, format="json").status_code == 201
    watch = {"device_id": "zeph-watch", "customer_id": "CUST-ZEPH-7"}
    assert api.post("/api/v1/devices", watch).status_code == 201
    view = {
        "type": "product_view",
        "sku": "X200",
        "category": "audio",
        "url": "https://shop.example.com/x200?q=zeph-query",
    }
    events = [
        {
            **view,
            "event_id": "zeph-ev-1",
            "visitor_id": "cookie-zeph-7",
            "occurred_at": ago(hours=2),
        },
        {
            **view,
            "event_id": "zeph-ev-2",
            "customer_id": "CUST-ZEPH-7",
            "occurred_at": ago(hours=1),
        },
        {"event_id": "zeph-ev-3", "customer_id": "CUST-ZEPH-7", "type": "cart_abandoned"}
        | {"occurred_at": ago(minutes=50)},
    ]
    assert api.post("/api/v1/events", {"events": events}, format="json").json()["accepted"] == 3
    identify = {"visitor_id": "cookie-zeph-7", "customer_id": "CUST-ZEPH-7"}
    assert api.post("/api/v1/identify", identify).status_code == 200

    pings = [
        {"device_id": "zeph-pixel", "ping_id": "p-1", "accuracy": 8, "recorded_at": ago(minutes=4)}
        | dict(zip(("latitude", "longitude"), INSIDE, strict=True)),
        {"device_id": "zeph-watch", "ping_id": "p-2", "accuracy": 9, "recorded_at": ago(minutes=3)}
        | dict(zip(("latitude", "longitude"), OUTSIDE, strict=True)),
    ]
    assert api.post("/api/v1/pings", {"pings": pings}, format="json").json()["accepted"] == 2
    seen = {"device_id": "zeph-pixel", "rssi": -60}
    seen["ibeacon"] = {"uuid": BEACON_UUID, "major": 1, "minor": 2}
    ranged = [{**seen, "seen_at": ago(seconds=150)}, {**seen, "seen_at": ago(seconds=140)}]
    assert api.post("/api/v1/sightings", {"sightings": ranged}, format="json").status_code == 202
    heard = [{"mac": MAC, "ibeacon": TAG, "rssi": -70, "seen_at": ago(seconds=120)}]
    response = api.post(
        "/api/v1/gateways/gw-rivoli-1/sightings", {"sightings": heard}, format="json"
    )
    assert response.json()["accepted"] == 1

    # The engine texted her, and Twilio said it was delivered.
    [delivery] = Delivery.objects.filter(status=DeliveryStatus.SENT)
    assert Path(settings.SMS_FILE_PATH).read_text().count(PHONE) == 1
    delivery.twilio_sid = "SM" + "7" * 32
    delivery.save(update_fields=["twilio_sid"])
    form = {"MessageSid": delivery.twilio_sid, "MessageStatus": "delivered", "AccountSid": "AC1"}
    assert signed_post(Client(), "/webhooks/twilio/status", form).status_code == 204
    # She asked for help by reply.
    help_form = {"From": PHONE, "Body": "HELP", "MessageSid": "SM" + "8" * 32}
    assert signed_post(Client(), "/webhooks/twilio/inbound", help_form).status_code == 200
    redeemed = {"code": delivery.code, "store_code": "RIVOLI", "amount": "42.00"}
    redeemed["redeemed_at"] = timezone.now().isoformat()
    assert api.post("/api/v1/redemptions", redeemed, format="json").status_code == 201

    # A marketer corrected her name and her watch's platform in the admin, then deleted a
    # ping of hers there.
    edit_in_the_admin(admin_client, Customer.objects.get(), first_name="Zephyrine")
    edit_in_the_admin(admin_client, Device.objects.get(device_id="zeph-watch"), platform="ios")
    ping = Ping.objects.get(ping_id="p-2")
    response = admin_client.post(
        "/admin/promotions/ping/",
        {"action": "delete_selected", "_selected_action": [ping.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not Ping.objects.filter(pk=ping.pk).exists()

    assert Presence.objects.exists() and PresenceEvent.objects.exists()
    held = dump()
    assert [trace for trace in NAMES + PLACES if trace.lower() not in held.lower()] == []
    return delivery


def test_erasing_leaves_nothing_in_the_database_that_names_or_locates_them(api, zoe):
    assert api.delete("/api/v1/customers/CUST-ZEPH-7").status_code == 204

    assert named(dump()) == []


def test_erasing_keeps_the_decision_anonymised_with_its_redemption(api, zoe):
    assert api.delete("/api/v1/customers/CUST-ZEPH-7").status_code == 204

    delivery = Delivery.objects.get(pk=zoe.pk)
    assert (delivery.customer, delivery.status) == (None, DeliveryStatus.DELIVERED)
    assert delivery.redemption.amount == 42


def test_erasing_leaves_nothing_in_the_sms_file_that_names_them(
    api, zoe, settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete("/api/v1/customers/CUST-ZEPH-7").status_code == 204

    assert named(Path(settings.SMS_FILE_PATH).read_text()) == []


def test_nothing_logged_about_them_names_or_locates_them(api, zoe, caplog):
    assert api.delete("/api/v1/customers/CUST-ZEPH-7").status_code == 204

    logged = [r.getMessage() for phase in ("setup", "call") for r in caplog.get_records(phase)]
    assert len(logged) > 3  # the engine's tasks, at least
    assert [line for line in logged if named(line)] == []


def test_erasing_keeps_the_other_customers_sms_in_the_file(
    api, zoe, settings, django_capture_on_commit_callbacks
):
    tom = OutgoingSms(to="+33611112222", body="Bonjour Tom: K7Q2-M9XB", reference="9999")
    sms.get_backend().send(tom)

    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete("/api/v1/customers/CUST-ZEPH-7").status_code == 204

    lines = Path(settings.SMS_FILE_PATH).read_text().splitlines()
    assert [json.loads(line)["to"] for line in lines] == [tom.to]
