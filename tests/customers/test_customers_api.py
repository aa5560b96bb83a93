from datetime import datetime

import pytest
from django.db import connection

from customers.models import (
    BrowsingEvent,
    ConsentChange,
    Customer,
    Device,
    ProductIntent,
    SmsConsent,
    Visitor,
)
from promotions import beacons
from promotions.models import Delivery, DeviceTrack, Presence, Redemption
from tests.clock import ago
from tests.factories import (
    BEACON_UUID,
    BeaconFactory,
    CustomerFactory,
    DeliveryFactory,
    DeviceFactory,
    GatewayFactory,
)

pytestmark = pytest.mark.django_db

LEA = {
    "phone": "+33612345678",
    "first_name": "Léa",
    "timezone": "Europe/Paris",
    "locale": "fr-FR",
    "sms_consent": "opted_in",
    "consent_source": "web_form",
}


def test_put_creates_a_customer_with_201(api):
    response = api.put("/api/v1/customers/C-1", LEA)

    assert response.status_code == 201
    body = response.json()
    assert body["external_id"] == "C-1"
    assert body["phone"] == "+33612345678"
    assert body["sms_consent"] == "opted_in"
    assert body["consent_source"] == "web_form"
    assert body["consent_updated_at"].endswith("Z")


def test_put_again_updates_with_200_and_keeps_fields_left_out(api):
    api.put("/api/v1/customers/C-1", LEA)

    response = api.put("/api/v1/customers/C-1", {"first_name": "Lea"})

    assert response.status_code == 200
    assert response.json()["first_name"] == "Lea"
    assert response.json()["phone"] == "+33612345678"
    assert Customer.objects.count() == 1


def test_get_reads_the_customer(api):
    api.put("/api/v1/customers/C-1", LEA)

    response = api.get("/api/v1/customers/C-1")

    assert response.status_code == 200
    assert response.json()["first_name"] == "Léa"


def test_get_of_an_unknown_customer_is_404(api):
    assert api.get("/api/v1/customers/nobody").status_code == 404


def test_a_national_number_is_read_in_the_country_of_the_locale(api):
    response = api.put("/api/v1/customers/C-1", {"phone": "06 12 34 56 78", "locale": "fr-FR"})

    assert response.status_code == 201
    assert response.json()["phone"] == "+33612345678"


def test_a_national_number_with_a_locale_naming_no_numbering_plan_asks_for_its_country_code(
    api,
):
    # "UK" is the United Kingdom in common use, but its country code for numbers is GB.
    response = api.put("/api/v1/customers/C-1", {"phone": "07911 123456", "locale": "en-UK"})

    assert response.status_code == 400
    assert response.json()["phone"] == [
        "Not a phone number; give it with its country code in E.164, e.g. +33612345678."
    ]


def test_a_national_number_is_read_in_the_country_of_the_stored_locale(api):
    api.put("/api/v1/customers/C-1", {"locale": "fr-FR"})

    response = api.put("/api/v1/customers/C-1", {"phone": "06 12 34 56 78"})

    assert response.status_code == 200
    assert response.json()["phone"] == "+33612345678"


@pytest.mark.parametrize(
    ("phone", "message"),
    [
        ("not a number", "Not a phone number"),
        ("+3361234", "Not a valid phone number"),
        ("+33199001234", "fixed-line"),
        ("0612345678", "country code"),
    ],
)
def test_it_rejects_phones_that_cannot_take_an_sms(api, phone, message):
    response = api.put("/api/v1/customers/C-1", {"phone": phone})

    assert response.status_code == 400
    assert message in response.json()["phone"][0]
    assert not Customer.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timezone", "Mars/Olympus"),
        ("timezone", "localtime"),  # the server's own zone: hours would move with the machine
        ("locale", "french please"),
        ("sms_consent", "maybe"),
        ("first_name", "x" * 101),
        ("first_name", "nul\x00byte"),
    ],
)
def test_it_rejects_bad_fields_and_stores_nothing(api, field, value):
    response = api.put("/api/v1/customers/C-1", {field: value})

    assert response.status_code == 400
    assert field in response.json()
    assert not Customer.objects.exists()


def test_a_body_that_is_not_an_object_is_400(api):
    response = api.put("/api/v1/customers/C-1", [1, 2], format="json")

    assert response.status_code == 400


def test_an_external_id_over_100_characters_is_400(api):
    response = api.put(f"/api/v1/customers/{'x' * 101}", LEA)

    assert response.status_code == 400
    assert "external_id" in response.json()


def test_every_consent_change_is_logged_with_its_source(api):
    api.put("/api/v1/customers/C-1", {**LEA, "sms_consent": "opted_in"})
    api.put("/api/v1/customers/C-1", {"sms_consent": "opted_out", "consent_source": "call_centre"})
    api.put("/api/v1/customers/C-1", {"sms_consent": "opted_out"})

    log = list(ConsentChange.objects.values_list("previous", "consent", "source"))
    assert log == [
        ("unknown", "opted_in", "web_form"),
        ("opted_in", "opted_out", "call_centre"),
    ]


def test_a_new_customer_keeps_the_consent_source_given_with_an_unknown_consent(api):
    response = api.put(
        "/api/v1/customers/C-1", {"sms_consent": "unknown", "consent_source": "store_till"}
    )

    assert response.status_code == 201
    assert response.json()["consent_source"] == "store_till"
    assert Customer.objects.get().consent_source == "store_till"


def test_the_consent_log_cannot_be_edited():
    customer = CustomerFactory()
    change = ConsentChange.objects.create(
        customer=customer, previous="unknown", consent="opted_in", source="test"
    )
    change.source = "rewritten"

    with pytest.raises(ValueError, match="append-only"):
        change.save()


def test_a_new_phone_number_needs_consent_again(api):
    api.put("/api/v1/customers/C-1", LEA)

    response = api.put("/api/v1/customers/C-1", {"phone": "+33698765432"})

    assert response.json()["sms_consent"] == "unknown"
    last = ConsentChange.objects.last()
    assert (last.previous, last.consent) == ("opted_in", "unknown")
    assert "Phone number changed" in last.note


def test_a_new_phone_number_given_with_consent_keeps_it(api):
    api.put("/api/v1/customers/C-1", LEA)

    response = api.put(
        "/api/v1/customers/C-1", {"phone": "+33698765432", "sms_consent": "opted_in"}
    )

    assert response.json()["sms_consent"] == "opted_in"


def test_null_clears_the_phone(api):
    api.put("/api/v1/customers/C-1", LEA)

    response = api.put("/api/v1/customers/C-1", {"phone": None})

    assert response.status_code == 200
    assert response.json()["phone"] == ""


def test_delete_erases_the_customer_and_everything_about_them(api):
    customer = CustomerFactory(external_id="C-1")
    DeviceFactory(customer=customer, device_id="lea-phone")
    api.post(
        "/api/v1/events",
        {
            "events": [
                {
                    "event_id": "e1",
                    "customer_id": "C-1",
                    "type": "product_view",
                    "sku": "X200",
                    "occurred_at": ago(days=2),
                }
            ]
        },
    )

    response = api.delete("/api/v1/customers/C-1")

    assert response.status_code == 204
    assert api.get("/api/v1/customers/C-1").status_code == 404
    assert not Device.objects.exists()
    assert not BrowsingEvent.objects.exists()
    assert not ProductIntent.objects.exists()
    assert not ConsentChange.objects.exists()


def test_erasing_a_customer_keeps_another_customers_events_sent_from_the_same_browser(api):
    CustomerFactory(external_id="C-1")
    tom = CustomerFactory(external_id="C-2")
    view = {"type": "product_view", "sku": "X200", "occurred_at": ago(hours=1)}
    api.post("/api/v1/events", {"events": [{**view, "event_id": "lea-1", "visitor_id": "pc"}]})
    api.post("/api/v1/identify", {"visitor_id": "pc", "customer_id": "C-1"})
    # Tom logs in on the family computer: the site names him, and sends its cookie along.
    tom_view = {**view, "event_id": "tom-1", "customer_id": "C-2", "visitor_id": "pc"}
    api.post("/api/v1/events", {"events": [tom_view]})

    assert api.delete("/api/v1/customers/C-1").status_code == 204

    assert list(BrowsingEvent.objects.values_list("event_id", flat=True)) == ["tom-1"]
    export = api.get("/api/v1/customers/C-2/export").json()
    assert [event["event_id"] for event in export["browsing_events"]] == ["tom-1"]
    assert len(ProductIntent.objects.get(customer=tom).view_times) == 1


def test_erasing_a_customer_takes_the_events_their_browser_sent_before_they_logged_in(api):
    CustomerFactory(external_id="C-1")
    view = {"type": "product_view", "sku": "X200", "occurred_at": ago(hours=1)}
    api.post("/api/v1/events", {"events": [{**view, "event_id": "before", "visitor_id": "pc"}]})
    api.post("/api/v1/identify", {"visitor_id": "pc", "customer_id": "C-1"})
    api.post("/api/v1/events", {"events": [{**view, "event_id": "after", "visitor_id": "pc"}]})

    assert api.delete("/api/v1/customers/C-1").status_code == 204

    assert not BrowsingEvent.objects.exists()
    assert not Visitor.objects.exists()


def test_erasing_a_customer_blanks_the_providers_error_text_and_keeps_its_code(api):
    customer = CustomerFactory(external_id="C-1", phone="+33612345678")
    # What a send refused by Twilio (21211, invalid number) records: the text quotes it.
    DeliveryFactory(
        customer=customer,
        status="failed",
        error_code=21211,
        error_message="Twilio 400: The 'To' number +33612345678 is not a valid phone number.",
    )

    assert api.delete("/api/v1/customers/C-1").status_code == 204

    delivery = Delivery.objects.get()
    assert (delivery.error_code, delivery.error_message, delivery.to) == (21211, "", "")
    assert delivery.erased_as is not None


def test_delete_of_an_unknown_customer_is_404(api):
    assert api.delete("/api/v1/customers/nobody").status_code == 404


def test_export_holds_everything_about_the_customer(api):
    api.put("/api/v1/customers/C-1", LEA)
    api.post("/api/v1/devices", {"device_id": "lea-phone", "customer_id": "C-1", "platform": "ios"})

    response = api.get("/api/v1/customers/C-1/export")

    assert response.status_code == 200
    export = response.json()
    assert export["customer"]["phone"] == "+33612345678"
    assert export["consent_log"][0]["consent"] == SmsConsent.OPTED_IN
    assert export["devices"][0]["device_id"] == "lea-phone"
    assert set(export) >= {"browsing_events", "product_intent", "pings", "sightings", "visitors"}


def test_export_holds_what_location_and_offers_left_about_the_customer(api):
    customer = CustomerFactory(external_id="C-2")
    device = DeviceFactory(customer=customer, device_id="tom-phone")
    delivery = DeliveryFactory(customer=customer, code="K7Q2-M9XB", twilio_sid="SM1")
    Redemption.objects.create(
        delivery=delivery, store=delivery.store, amount="9.99", redeemed_at=ago(minutes=5)
    )
    DeviceTrack.objects.create(
        device=device, latitude=48.86, longitude=2.34, accuracy=8, at=ago(minutes=6)
    )
    Presence.objects.create(
        customer=customer, place_key=f"store:{delivery.store.pk}", store=delivery.store, inside=True
    )

    export = api.get("/api/v1/customers/C-2/export").json()

    [redemption] = export["redemptions"]
    assert (redemption["code"], redemption["amount"]) == ("K7Q2-M9XB", "9.99")
    assert export["deliveries"][0]["twilio_sid"] == "SM1"
    assert export["device_tracks"][0]["latitude"] == 48.86
    assert export["presence"][0]["inside"] is True


def test_export_holds_why_each_delivery_was_decided_and_how_its_send_failed(api):
    DeliveryFactory(
        customer=CustomerFactory(external_id="C-1"),
        status="failed",
        product_sku="X200",
        intent_score=2.5,
        trace={"rule": "viewed X200 twice"},
        error_code=30003,
        error_message="Unreachable destination handset.",
    )

    [delivery] = api.get("/api/v1/customers/C-1/export").json()["deliveries"]

    assert delivery["product_sku"] == "X200"
    assert delivery["intent_score"] == 2.5
    assert delivery["trace"] == {"rule": "viewed X200 twice"}
    assert (delivery["error_code"], delivery["error_message"]) == (
        30003,
        "Unreachable destination handset.",
    )


def test_export_holds_the_mac_address_a_gateway_saw_the_device_with(api):
    key = beacons.ibeacon_key(BEACON_UUID, 7, 9)
    DeviceFactory(customer=CustomerFactory(external_id="C-1"), ble_identity=key)
    gateway = GatewayFactory()
    seen = {"mac": "c4:7c:8d:6a:1b:02", "rssi": -60, "seen_at": ago(seconds=5)}
    seen["ibeacon"] = {"uuid": BEACON_UUID, "major": 7, "minor": 9}
    api.post(
        f"/api/v1/gateways/{gateway.gateway_id}/sightings", {"sightings": [seen]}, format="json"
    )

    [sighting] = api.get("/api/v1/customers/C-1/export").json()["sightings"]

    assert sighting["mac"] == "C4:7C:8D:6A:1B:02"


def test_export_says_where_in_the_store_and_by_which_beacon_each_sighting_placed_them(api):
    lea = DeviceFactory(customer=CustomerFactory(external_id="C-1"), device_id="lea-phone")
    beacon = BeaconFactory(identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))
    seen = {"device_id": lea.device_id, "rssi": -60, "seen_at": ago(seconds=10)}
    seen["ibeacon"] = {"uuid": BEACON_UUID, "major": 1, "minor": 2}
    api.post("/api/v1/sightings", {"sightings": [seen]}, format="json")

    [sighting] = api.get("/api/v1/customers/C-1/export").json()["sightings"]

    assert sighting["zone"] == beacon.zone.code
    assert sighting["beacon"] == {"ibeacon": {"uuid": BEACON_UUID, "major": 1, "minor": 2}}
    assert sighting["gateway"] is None
    assert sighting["received_at"].endswith("Z")


def test_export_names_the_gateway_that_saw_the_device(api):
    key = beacons.ibeacon_key(BEACON_UUID, 7, 9)
    DeviceFactory(customer=CustomerFactory(external_id="C-1"), ble_identity=key)
    gateway = GatewayFactory()
    seen = {"rssi": -60, "seen_at": ago(seconds=5)}
    seen["ibeacon"] = {"uuid": BEACON_UUID, "major": 7, "minor": 9}
    api.post(
        f"/api/v1/gateways/{gateway.gateway_id}/sightings", {"sightings": [seen]}, format="json"
    )

    [sighting] = api.get("/api/v1/customers/C-1/export").json()["sightings"]

    assert sighting["gateway"] == gateway.gateway_id
    assert sighting["beacon"] is None


def test_export_gives_each_pings_id_and_when_it_was_received(api):
    DeviceFactory(customer=CustomerFactory(external_id="C-1"), device_id="lea-phone")
    ping = {"device_id": "lea-phone", "latitude": 48.86, "longitude": 2.34, "accuracy": 9}
    api.post(
        "/api/v1/pings",
        {"pings": [{**ping, "ping_id": "p-1", "recorded_at": ago(minutes=1)}]},
        format="json",
    )

    [exported] = api.get("/api/v1/customers/C-1/export").json()["pings"]

    assert exported["ping_id"] == "p-1"
    assert exported["received_at"].endswith("Z")


def test_export_of_an_unknown_customer_is_404(api):
    assert api.get("/api/v1/customers/nobody/export").status_code == 404


def test_export_says_which_browser_sent_each_event_and_when_it_came(api):
    CustomerFactory(external_id="C-1")
    api.post("/api/v1/identify", {"visitor_id": "lea-laptop", "customer_id": "C-1"})
    view = {"type": "product_view", "sku": "X200", "customer_id": "C-1"}
    api.post(
        "/api/v1/events",
        {
            "events": [
                {
                    **view,
                    "event_id": "web",
                    "visitor_id": "lea-laptop",
                    "occurred_at": ago(hours=2),
                },
                {**view, "event_id": "app", "occurred_at": ago(hours=1)},
            ]
        },
    )

    export = api.get("/api/v1/customers/C-1/export").json()

    web, app = export["browsing_events"]
    assert (web["visitor_id"], app["visitor_id"]) == ("lea-laptop", None)
    assert datetime.fromisoformat(web["received_at"]) > datetime.fromisoformat(web["occurred_at"])


def test_export_says_when_the_cart_state_was_set(api):
    CustomerFactory(external_id="C-1")
    carted_at = ago(hours=1)
    api.post(
        "/api/v1/events",
        {
            "events": [
                {
                    "event_id": "cart",
                    "customer_id": "C-1",
                    "type": "add_to_cart",
                    "sku": "X200",
                    "category": "audio",
                    "occurred_at": carted_at,
                }
            ]
        },
    )

    export = api.get("/api/v1/customers/C-1/export").json()

    [x200], [audio] = export["product_intent"], export["category_intent"]
    for row in (x200, audio):
        assert row["cart_state"] == "in_cart"
        assert datetime.fromisoformat(row["cart_updated_at"]) == datetime.fromisoformat(carted_at)


def test_export_writes_view_times_as_iso_8601_instants(api):
    lea = CustomerFactory(external_id="C-1")
    viewed_at = datetime.fromisoformat("2026-11-20T09:15:30+01:00")
    ProductIntent.objects.create(customer=lea, sku="X200", view_times=[int(viewed_at.timestamp())])
    api.post(
        "/api/v1/events",
        {
            "events": [
                {
                    "event_id": "e1",
                    "customer_id": "C-1",
                    "type": "product_view",
                    "category": "audio",
                    "occurred_at": ago(minutes=5),
                }
            ]
        },
    )

    export = api.get("/api/v1/customers/C-1/export").json()

    [x200] = export["product_intent"]
    assert x200["view_times"] == ["2026-11-20T08:15:30Z"]
    [audio] = export["category_intent"]
    [seen] = audio["view_times"]
    assert datetime.fromisoformat(seen).tzinfo is not None


def refuse_control_characters(execute, sql, params, many, context):
    # PostgreSQL refuses a NUL in a query; an id with a control character must not reach it.
    assert not any(isinstance(p, str) and not p.isprintable() for p in params or ()), sql
    return execute(sql, params, many, context)


ODD_IDS = ["C-1%00", "%00", "C%0A1", "C%091", "C%7F1", "C%C2%851"]


@pytest.mark.parametrize("segment", ODD_IDS)
def test_put_refuses_an_id_with_a_control_character(api, segment):
    with connection.execute_wrapper(refuse_control_characters):
        response = api.put(f"/api/v1/customers/{segment}", {"first_name": "Lea"})

    assert response.status_code == 400
    assert "control character" in response.json()["external_id"][0]
    assert not Customer.objects.exists()


@pytest.mark.parametrize("segment", ODD_IDS)
@pytest.mark.parametrize("method, suffix", [("get", ""), ("delete", ""), ("get", "/export")])
def test_an_id_with_a_control_character_names_no_customer(api, segment, method, suffix):
    CustomerFactory(external_id="C-1")

    with connection.execute_wrapper(refuse_control_characters):
        response = getattr(api, method)(f"/api/v1/customers/{segment}{suffix}")

    assert response.status_code == 404
    assert response.json() == {"detail": "No such customer."}
    assert Customer.objects.exists()


@pytest.mark.parametrize(
    ("segment", "message"),
    [
        ("C-1%20", "whitespace"),
        ("%20C-1", "whitespace"),
        ("C-1%C2%A0", "whitespace"),
        ("%20", "blank"),
        ("%20%20", "blank"),
    ],
)
def test_put_refuses_a_blank_id_or_one_with_whitespace_around_it(api, segment, message):
    # Every body field naming a customer (a device's customer_id, an event's) is trimmed:
    # a customer created as "C-1 " could never be given a device, a visitor or an event.
    response = api.put(f"/api/v1/customers/{segment}", {"first_name": "Lea"})

    assert response.status_code == 400
    assert message in response.json()["external_id"][0]
    assert not Customer.objects.exists()


def test_a_customer_stored_with_whitespace_around_its_id_can_still_be_exported_and_erased(api):
    # Stored before such ids were refused: what is held about them stays within reach.
    Customer.objects.create(external_id="C-1 ", phone="+33612345678")

    exported = api.get("/api/v1/customers/C-1%20/export")
    erased = api.delete("/api/v1/customers/C-1%20")

    assert exported.json()["customer"]["phone"] == "+33612345678"
    assert erased.status_code == 204
    assert not Customer.objects.exists()


def test_consent_stated_with_a_new_number_is_logged_as_given_for_it_there(api):
    first = api.put("/api/v1/customers/C-1", LEA).json()

    # Léa changes number at the checkout and ticks the SMS box for the new one.
    response = api.put(
        "/api/v1/customers/C-1",
        {"phone": "+33698765432", "sms_consent": "opted_in", "consent_source": "checkout"},
    )

    body = response.json()
    assert (body["phone"], body["sms_consent"], body["consent_source"]) == (
        "+33698765432",
        "opted_in",
        "checkout",
    )
    assert body["consent_updated_at"] > first["consent_updated_at"]
    log = list(ConsentChange.objects.order_by("id").values_list("previous", "consent", "source"))
    assert log == [
        ("unknown", "opted_in", "web_form"),
        ("opted_in", "unknown", "checkout"),
        ("unknown", "opted_in", "checkout"),
    ]


def test_a_consent_source_alone_on_an_update_is_refused_with_its_reason(api):
    api.put("/api/v1/customers/C-1", LEA)

    response = api.put("/api/v1/customers/C-1", {"consent_source": "store_till"})

    assert response.status_code == 400
    assert response.json() == {
        "consent_source": ["Send it with the consent it is the source of (sms_consent)."]
    }
    assert Customer.objects.get().consent_source == "web_form"
