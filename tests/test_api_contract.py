"""What a client sends is read as it wrote it, or refused saying why: a field the API does not
know is refused (never dropped with a 2xx), but for a batch item's, ignored unless it looks
like a mock flag; an optional field sent as null is left out, and the schema documents what
the API answers and checks. Review 2's findings, and the fixes'."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from customers.models import BrowsingEvent, Customer, SmsConsent
from promotions import beacons
from promotions.models import Campaign, Delivery, Ping, Redemption, Sighting
from tests.clock import ago
from tests.factories import (
    BEACON_UUID,
    BeaconFactory,
    CampaignFactory,
    CustomerFactory,
    DeliveryFactory,
    DeviceFactory,
    GatewayFactory,
    StoreFactory,
    ZoneFactory,
)
from tests.test_schema import openapi

pytestmark = pytest.mark.django_db

UNKNOWN = ["Unknown field."]


def campaign_body(**fields):
    return {
        "name": "X200",
        "stores": ["RIVOLI"],
        "trigger": {"type": "enter"},
        "offer": {"template": "-20% at {store_name}: {code}"},
        **fields,
    }


# --- An optional field sent as null (or "") counts as left out --------------------------------


@pytest.mark.parametrize("blank", [None, ""])
def test_a_loyalty_card_purchase_whose_till_writes_code_null_is_credited(api, blank):
    # README: "An optional field sent as `null` counts as left out". Tills' JSON encoders
    # write the field they have no value for as null: here the code, for a loyalty card.
    store = StoreFactory(code="RIVOLI")
    lea = CustomerFactory(external_id="C-1")
    offer = DeliveryFactory(customer=lea, store=store, code="K7Q2-M9XB")

    response = api.post(
        "/api/v1/redemptions",
        {
            "code": blank,
            "customer_id": "C-1",
            "store_code": "RIVOLI",
            "amount": "19.90",
            "redeemed_at": ago(seconds=5),
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert Redemption.objects.get().delivery == offer


@pytest.mark.parametrize("blank", [None, ""])
def test_a_redemption_by_code_whose_till_writes_customer_id_null_is_credited(api, blank):
    store = StoreFactory(code="RIVOLI")
    offer = DeliveryFactory(store=store, code="K7Q2-M9XB")

    response = api.post(
        "/api/v1/redemptions",
        {
            "code": "K7Q2-M9XB",
            "customer_id": blank,
            "store_code": "RIVOLI",
            "redeemed_at": ago(seconds=5),
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert Redemption.objects.get().delivery == offer


def test_a_redemption_with_neither_code_nor_customer_is_still_refused(api):
    StoreFactory(code="RIVOLI")

    response = api.post(
        "/api/v1/redemptions",
        {"code": None, "customer_id": "", "store_code": "RIVOLI", "redeemed_at": ago(seconds=5)},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"code": ["Give the code, or else the customer_id."]}


def test_a_crm_update_with_sms_consent_null_keeps_the_consent(api):
    CustomerFactory(external_id="C-1", sms_consent=SmsConsent.OPTED_IN)

    response = api.put(
        "/api/v1/customers/C-1",
        {"first_name": "Tom", "sms_consent": None, "consent_source": None},
        format="json",
    )

    assert response.status_code == 200, response.json()
    customer = Customer.objects.get()
    assert (customer.first_name, customer.sms_consent) == ("Tom", SmsConsent.OPTED_IN)


# --- A field a resource does not know is refused -------------------------------------------


def test_a_misspelt_opt_out_is_refused_not_answered_200(api):
    CustomerFactory(external_id="C-1", sms_consent=SmsConsent.OPTED_IN)

    # "consent" for "sms_consent": the CRM believes the customer is opted out.
    response = api.put("/api/v1/customers/C-1", {"consent": "opted_out"}, format="json")

    assert response.status_code == 400, (response.status_code, response.json())
    assert response.json() == {"consent": UNKNOWN}
    assert Customer.objects.get().sms_consent == SmsConsent.OPTED_IN


def test_an_unknown_field_is_named_beside_the_other_errors(api):
    response = api.put(
        "/api/v1/customers/C-1", {"consent": "opted_out", "timezone": "Mars/Olympus"}
    )

    assert response.status_code == 400
    assert set(response.json()) == {"consent", "timezone"}
    assert response.json()["consent"] == UNKNOWN
    assert not Customer.objects.exists()


def test_a_misspelt_quiet_hours_limit_is_refused_not_dropped(api):
    StoreFactory(code="RIVOLI")
    # "quiet_hour" for "quiet_hours": the marketer's tool believes nights are quiet.
    campaign = campaign_body(limits={"quiet_hour": {"start": "21:00", "end": "08:00"}})

    response = api.post("/api/v1/campaigns", campaign, format="json")

    assert response.status_code == 400, response.json()
    assert response.json() == {"limits": {"quiet_hour": UNKNOWN}}
    assert not Campaign.objects.exists()


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"trigger": {"type": "dwell", "minute": 10}}, {"trigger": {"minute": UNKNOWN}}),
        (
            {"intent": {"skus": ["X200"], "min_view": 3}},
            {"intent": {"min_view": UNKNOWN}},
        ),
        (
            {"offer": {"template": "{code}", "valid_day": 3}},
            {"offer": {"valid_day": UNKNOWN}},
        ),
        (
            {"limits": {"quiet_hours": {"start": "21:00", "end": "08:00", "tz": "UTC"}}},
            {"limits": {"quiet_hours": {"tz": UNKNOWN}}},
        ),
        ({"store": "RIVOLI"}, {"store": UNKNOWN}),
    ],
)
def test_an_unknown_field_of_a_campaign_is_refused_where_it_was_written(api, fields, errors):
    StoreFactory(code="RIVOLI")

    response = api.post("/api/v1/campaigns", campaign_body(**fields), format="json")

    assert response.status_code == 400
    assert response.json() == errors
    assert not Campaign.objects.exists()


def test_a_trigger_detail_of_another_type_is_refused_not_answered_200(api):
    campaign = CampaignFactory()  # an "enter" campaign

    response = api.patch(
        f"/api/v1/campaigns/{campaign.pk}", {"trigger": {"minutes": 10}}, format="json"
    )

    assert response.status_code == 400, response.json()["trigger"]
    assert response.json() == {
        "trigger": {"minutes": ["Only a dwell trigger has minutes; this trigger is enter."]}
    }


def test_a_patch_of_the_detail_of_the_campaigns_own_trigger_type_goes_in(api):
    campaign = CampaignFactory(trigger_type="dwell", trigger_minutes=5)

    response = api.patch(
        f"/api/v1/campaigns/{campaign.pk}", {"trigger": {"minutes": 10}}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["trigger"] == {"type": "dwell", "minutes": 10}


IBEACON = {"uuid": BEACON_UUID, "major": 1, "minor": 9}
# Each resource's body, with a field misspelt.
MISSPELT = [
    (
        "/api/v1/stores",
        {"code": "X", "name": "X", "timezone": "UTC", "latitude": 1, "longitude": 1, "radius_m": 9},
        "radius",
    ),
    ("/api/v1/zones", {"store": "RIVOLI", "code": "till", "name": "Till"}, "rssi"),
    ("/api/v1/gateways", {"gateway_id": "gw-9", "store": "RIVOLI"}, "zone_code"),
    ("/api/v1/beacons", {"store": "RIVOLI", "ibeacon": IBEACON}, "power"),
    ("/api/v1/devices", {"device_id": "d", "customer_id": "C-1"}, "os"),
    ("/api/v1/identify", {"visitor_id": "v", "customer_id": "C-1"}, "email"),
]


@pytest.mark.parametrize(("path", "body", "misspelt"), MISSPELT)
def test_an_unknown_field_of_a_resource_is_a_400_that_stores_nothing(api, path, body, misspelt):
    StoreFactory(code="RIVOLI")
    CustomerFactory(external_id="C-1")

    refused = api.post(path, {**body, misspelt: 1}, format="json")
    taken = api.post(path, body, format="json")

    assert refused.status_code == 400, refused.json()
    assert refused.json() == {misspelt: UNKNOWN}
    assert taken.status_code in (200, 201), taken.json()  # the same body, spelt right


def test_an_unknown_field_of_a_dry_run_or_a_code_upload_is_a_400(api):
    campaign = CampaignFactory()

    dry_run = api.post(
        f"/api/v1/campaigns/{campaign.pk}/dry-run",
        {"since": ago(days=2), "until": ago(days=1), "send": True},
        format="json",
    )
    upload = api.post(
        f"/api/v1/campaigns/{campaign.pk}/codes", {"codes": ["A1"], "replace": True}, format="json"
    )

    assert (dry_run.status_code, dry_run.json()) == (400, {"send": UNKNOWN})
    assert (upload.status_code, upload.json()) == (400, {"replace": UNKNOWN})


def test_an_unknown_field_of_a_beacon_identity_is_refused(api):
    StoreFactory(code="RIVOLI")

    response = api.post(
        "/api/v1/beacons",
        {"store": "RIVOLI", "ibeacon": {"uuid": BEACON_UUID, "major": 1, "minor": 9, "tx": 1}},
        format="json",
    )

    assert response.status_code == 400
    assert response.json() == {"ibeacon": {"tx": UNKNOWN}}


# --- Batches: an unknown key is ignored, but for a mock flag under another name --------------
# Apps and gateways send what their platform gives them beside the SPEC's fields; refusing
# it would lose every ping of an app. A mock flag dropped would take a mocked fix as genuine.

MOCK_FLAG = ["Unknown field: mock locations are flagged with `mocked`."]
ONLY_PINGS_ARE_MOCKED = ["Unknown field: only pings are flagged as mocked, with `mocked`."]


@pytest.mark.parametrize("path", ["fast", "general"])
@pytest.mark.parametrize("flag", ["is_mock", "isFromMockProvider"])
def test_a_ping_flagged_mocked_under_another_name_is_not_taken_as_genuine(api, path, flag):
    DeviceFactory(device_id="pixel")
    # Android's Location.isMock() or isFromMockProvider(), named as the app's developer did.
    good = {
        "device_id": "pixel",
        "latitude": 48.8606,
        "longitude": 2.3417,
        "accuracy": 10,
        "recorded_at": ago(seconds=5),
    }
    # The fast path types every value; a number written as a string is the general path's.
    if path == "general":
        good["accuracy"] = "10"
    with_altitude = {**good, "recorded_at": ago(seconds=6), "altitude": 35.2}
    mocked = {**good, "recorded_at": ago(seconds=7), flag: True}

    response = api.post("/api/v1/pings", {"pings": [good, with_altitude, mocked]}, format="json")

    assert response.status_code == 202
    assert response.json() == {
        "accepted": 2,
        "duplicates": 0,
        "rejected": [{"index": 2, "errors": {flag: MOCK_FLAG}}],
    }
    # The ping with an altitude is stored as the ping without it.
    stored = Ping.objects.order_by("-recorded_at")
    assert [(ping.latitude, ping.accuracy, ping.mocked) for ping in stored] == [
        (48.8606, 10.0, False),
        (48.8606, 10.0, False),
    ]


def test_an_event_with_an_unknown_field_is_stored_without_it(api):
    CustomerFactory(external_id="C-1")
    event = {"customer_id": "C-1", "type": "product_view", "sku": "X200"}
    events = [
        {**event, "event_id": "e1", "occurred_at": ago(minutes=1)},
        {**event, "event_id": "e2", "occurred_at": ago(minutes=2), "quantity": 2},
    ]

    response = api.post("/api/v1/events", {"events": events}, format="json")

    assert response.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert sorted(BrowsingEvent.objects.values_list("event_id", flat=True)) == ["e1", "e2"]


def test_a_sighting_with_an_unknown_field_is_stored_without_it(api):
    beacon = BeaconFactory(store=StoreFactory(code="RIVOLI"))
    DeviceFactory(device_id="pixel")
    ibeacon = beacons.identity_from_key(beacon.identity)["ibeacon"]
    sighting = {"device_id": "pixel", "ibeacon": ibeacon, "rssi": -60}
    sightings = [
        {**sighting, "seen_at": ago(seconds=5)},
        {**sighting, "seen_at": ago(seconds=6), "distance": 1.5},
        {**sighting, "seen_at": ago(seconds=7), "isMock": False},
    ]

    response = api.post("/api/v1/sightings", {"sightings": sightings}, format="json")

    assert response.json()["accepted"] == 2
    assert response.json()["rejected"] == [
        {"index": 2, "errors": {"isMock": ONLY_PINGS_ARE_MOCKED}}
    ]
    assert Sighting.objects.count() == 2


def test_a_gateway_sighting_with_an_unknown_field_is_stored_without_it(api):
    gateway = GatewayFactory()
    DeviceFactory(ble_identity=beacons.ibeacon_key(BEACON_UUID, 7, 7))
    sighting = {"ibeacon": {"uuid": BEACON_UUID, "major": 7, "minor": 7}, "rssi": -60}
    sighting["seen_at"] = ago(seconds=5)

    response = api.post(
        f"/api/v1/gateways/{gateway.gateway_id}/sightings",
        {"sightings": [sighting, {**sighting, "seen_at": ago(seconds=6), "name": "Léa's phone"}]},
        format="json",
    )

    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert Sighting.objects.count() == 2


def test_an_unknown_field_of_a_sighting_s_beacon_identity_is_still_refused(api):
    # The identity is a nested object of its own, as a beacon's: a misspelt part of it is
    # a beacon the gateway did not see.
    gateway = GatewayFactory()
    DeviceFactory(ble_identity=beacons.ibeacon_key(BEACON_UUID, 7, 7))
    ibeacon = {"uuid": BEACON_UUID, "major": 7, "minor": 7, "minr": 8}

    response = api.post(
        f"/api/v1/gateways/{gateway.gateway_id}/sightings",
        {"sightings": [{"ibeacon": ibeacon, "rssi": -60, "seen_at": ago(seconds=5)}]},
        format="json",
    )

    assert response.json()["rejected"] == [{"index": 0, "errors": {"ibeacon": {"minr": UNKNOWN}}}]
    assert not Sighting.objects.exists()


# --- A resource read and sent back whole goes in -----------------------------------------------


def _put_back(api, path):
    read = api.get(path).json()
    response = api.put(path, read, format="json")
    assert response.status_code == 200, response.json()
    return read, response.json()


def test_a_store_read_and_sent_back_unchanged_goes_in(api):
    StoreFactory(code="RIVOLI")

    read, written = _put_back(api, "/api/v1/stores/RIVOLI")

    assert written == read


def test_a_zone_read_and_sent_back_unchanged_goes_in(api):
    zone = ZoneFactory()

    read, written = _put_back(api, f"/api/v1/zones/{zone.pk}")

    assert written == read


def test_a_beacon_read_and_sent_back_unchanged_goes_in(api):
    beacon = BeaconFactory()

    read, written = _put_back(api, f"/api/v1/beacons/{beacon.pk}")

    assert written == read


def test_a_gateway_read_and_sent_back_unchanged_goes_in(api):
    gateway = GatewayFactory()

    read, written = _put_back(api, f"/api/v1/gateways/{gateway.gateway_id}")

    assert written == read


@pytest.mark.parametrize(
    "campaign",
    [
        {},
        {"trigger_type": "dwell", "trigger_minutes": 10, "intent_skus": ["X200"]},
        {"trigger_type": "near", "trigger_distance_m": 300.0, "quiet_hours_start": "21:00"},
    ],
)
def test_a_campaign_read_and_sent_back_unchanged_goes_in(api, campaign):
    from datetime import time

    if "quiet_hours_start" in campaign:
        campaign = {**campaign, "quiet_hours_start": time(21), "quiet_hours_end": time(8)}
    made = CampaignFactory(**campaign)
    made.stores.add(StoreFactory())

    read, written = _put_back(api, f"/api/v1/campaigns/{made.pk}")

    assert {**written, "updated_at": None} == {**read, "updated_at": None}


def test_a_customer_read_and_sent_back_unchanged_goes_in(api):
    CustomerFactory(external_id="C-1", consent_source="web_form")

    read, written = _put_back(api, "/api/v1/customers/C-1")

    assert {**written, "updated_at": None} == {**read, "updated_at": None}


# --- Paging through deliveries while the engine decides ---------------------------------------


def test_paging_through_deliveries_pinned_before_an_instant_repeats_none(api):
    campaign = CampaignFactory()
    store = StoreFactory()
    customer = CustomerFactory()
    for _ in range(150):
        DeliveryFactory(campaign=campaign, store=store, customer=customer, code=None)
    pinned = timezone.now()

    first = api.get(
        "/api/v1/deliveries", {"campaign": campaign.pk, "created_before": pinned.isoformat()}
    ).json()
    DeliveryFactory(campaign=campaign, store=store, customer=customer, code=None)  # a new visit
    second = api.get(first["next"]).json()

    seen = {row["id"] for row in first["results"]}
    repeated = [row["id"] for row in second["results"] if row["id"] in seen]
    assert repeated == []
    assert len(seen | {row["id"] for row in second["results"]}) == 150 == first["count"]


def test_an_export_carries_on_from_its_pin_with_created_after(api):
    older = DeliveryFactory()
    pinned = timezone.now()
    newer = DeliveryFactory()

    before = api.get("/api/v1/deliveries", {"created_before": pinned.isoformat()}).json()
    after = api.get("/api/v1/deliveries", {"created_after": pinned.isoformat()}).json()

    assert [row["id"] for row in before["results"]] == [older.pk]
    assert [row["id"] for row in after["results"]] == [newer.pk]


@pytest.mark.parametrize("value", ["2026-11-30T10:00:00", "yesterday", "1764417540"])
def test_a_delivery_pin_without_a_utc_offset_is_refused(api, value):
    response = api.get("/api/v1/deliveries", {"created_before": value})

    assert response.status_code == 400
    assert list(response.json()) == ["created_before"]


def test_a_pin_whose_offset_the_query_string_read_as_a_space_is_taken(api):
    """A '+' typed in a URL's query (curl, a browser, a hand-built link) reaches us as a space:
    "+01:00" is no offset missing, and a 400 saying to add one would send the client looking
    for what it already wrote."""
    earlier = DeliveryFactory()
    Delivery.objects.filter(pk=earlier.pk).update(
        created_at=datetime(2026, 11, 30, 8, 59, tzinfo=UTC)
    )
    later = DeliveryFactory()
    Delivery.objects.filter(pk=later.pk).update(created_at=datetime(2026, 11, 30, 9, 0, tzinfo=UTC))

    before = api.get("/api/v1/deliveries?created_before=2026-11-30T10:00:00+01:00")
    after = api.get("/api/v1/deliveries?created_after=2026-11-30T10:00+01:00")

    assert before.status_code == after.status_code == 200, before.json()
    assert [row["id"] for row in before.json()["results"]] == [earlier.pk]
    assert [row["id"] for row in after.json()["results"]] == [later.pk]


@pytest.mark.parametrize(
    ("after", "before"),
    [
        ("2026-11-30T10:00:00Z", "2026-11-29T10:00:00Z"),
        ("2026-11-30T10:00:00Z", "2026-11-30T11:00:00+01:00"),  # the same instant
    ],
)
def test_pins_that_no_delivery_could_fall_between_are_400_not_an_empty_list(api, after, before):
    """Swapped, the two pins answered an empty list: an export that took it found no
    deliveries where there were some."""
    delivery = DeliveryFactory()
    Delivery.objects.filter(pk=delivery.pk).update(
        created_at=datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    )

    response = api.get("/api/v1/deliveries", {"created_after": after, "created_before": before})

    assert response.status_code == 400
    assert list(response.json()) == ["created_before"]
    assert "after created_after" in response.json()["created_before"][0]


def test_the_schema_documents_the_delivery_pins():
    parameters = {
        parameter["name"]: parameter
        for parameter in openapi()["paths"]["/api/v1/deliveries"]["get"]["parameters"]
    }

    for name in ("created_after", "created_before"):
        assert parameters[name]["schema"] == {"type": "string", "format": "date-time"}
        assert "pin" in parameters[name]["description"]


# --- The schema documents what the API answers and checks --------------------------------------


def test_a_redemption_amount_is_answered_as_the_schema_documents_it(api):
    store = StoreFactory(code="RIVOLI")
    DeliveryFactory(store=store, code="K7Q2-M9XB")
    schemas = openapi()["components"]["schemas"]
    pattern = schemas["RedemptionResult"]["properties"]["amount"]["pattern"]

    response = api.post(
        "/api/v1/redemptions",
        {
            "code": "K7Q2-M9XB",
            "store_code": "RIVOLI",
            "amount": "-0",
            "redeemed_at": ago(minutes=1),
        },
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["amount"] == "0.00"
    assert re.match(pattern, response.json()["amount"])
    assert str(Redemption.objects.get().amount) == "0.00"


def test_an_intent_window_the_schema_documents_as_valid_is_accepted(api, settings):
    StoreFactory(code="RIVOLI")
    documented = openapi()["components"]["schemas"]["IntentRequest"]["properties"]["within_days"]
    intent = {"skus": ["X200"], "min_views": 2}

    at_most = api.post(
        "/api/v1/campaigns",
        campaign_body(intent={**intent, "within_days": documented["maximum"]}),
        format="json",
    )
    beyond = api.post(
        "/api/v1/campaigns",
        campaign_body(name="Y", intent={**intent, "within_days": documented["maximum"] + 1}),
        format="json",
    )

    assert documented["maximum"] == settings.INTENT_WINDOW_DAYS
    assert at_most.status_code == 201, (settings.INTENT_WINDOW_DAYS, at_most.json())
    assert beyond.status_code == 400
    assert list(beyond.json()["intent"]) == ["within_days"]


def test_the_schema_says_request_bodies_take_no_other_fields():
    schemas = openapi()["components"]["schemas"]

    for name in (
        "CustomerInputRequest",
        "DeviceInputRequest",
        "IdentifyRequest",
        "RedemptionRequest",
        "CodePoolRequest",
        "DryRunRequest",
        "StoreRequest",
        "PatchedStoreRequest",
        "ZoneRequest",
        "BeaconRequest",
        "GatewayRequest",
        "CampaignRequest",
        "PatchedCampaignRequest",
        "TriggerRequest",
        "IntentRequest",
        "OfferRequest",
        "LimitsRequest",
        "QuietHoursRequest",
        "IBeaconRequest",
        "EddystoneUidRequest",
    ):
        assert schemas[name]["additionalProperties"] is False, name
    # Responses may grow fields; a client must not refuse one it does not know.
    assert "additionalProperties" not in schemas["Campaign"]
    assert "description" not in schemas["CampaignRequest"]  # not the mixin's docstring


@pytest.mark.parametrize(
    ("name", "refusal"),
    [
        ("PingRequest", MOCK_FLAG),
        ("SightingRequest", ONLY_PINGS_ARE_MOCKED),
        ("GatewaySightingRequest", ONLY_PINGS_ARE_MOCKED),
        ("BrowsingEventRequest", ONLY_PINGS_ARE_MOCKED),
    ],
)
def test_the_schema_says_batch_items_take_other_keys_but_a_mock_flag(name, refusal):
    schema = openapi()["components"]["schemas"][name]

    assert schema.get("additionalProperties", True) is not False
    assert 'name contains "mock"' in schema["description"]
    assert refusal[0] in schema["description"]


def test_a_delivery_created_long_ago_is_found_by_its_pin(api):
    delivery = DeliveryFactory()
    Delivery.objects.filter(pk=delivery.pk).update(created_at=timezone.now() - timedelta(days=400))

    response = api.get(
        "/api/v1/deliveries", {"created_before": (timezone.now() - timedelta(days=399)).isoformat()}
    )

    assert [row["id"] for row in response.json()["results"]] == [delivery.pk]
