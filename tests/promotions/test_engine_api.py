"""From a ping to one right message, through the HTTP API with eager tasks.

The seed's example end to end, then every limit and reason as a customer walking in."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from customers.models import SmsConsent
from promotions import beacons, rules, tasks
from promotions.models import Delivery, Ping, PresenceEvent
from promotions.sms import locmem
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
from tests.promotions.test_config_api import SPEC_CAMPAIGN

pytestmark = pytest.mark.django_db

RIVOLI = (48.8606, 2.3417)
# About 330 m north of Rivoli: outside its 60 m fence.
STREET = (48.8636, 2.3417)


@pytest.fixture(autouse=True)
def outbox(settings):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    return locmem.outbox


def walk_in(api, device_id, *, minutes_ago=1.0, place=RIVOLI, accuracy=8.0, **extra):
    """Two pings: in the street, then inside the store a minute later."""
    pings = [
        {
            "device_id": device_id,
            "latitude": STREET[0],
            "longitude": STREET[1],
            "accuracy": accuracy,
            "recorded_at": ago(minutes=minutes_ago + 1),
        },
        {
            "device_id": device_id,
            "latitude": place[0],
            "longitude": place[1],
            "accuracy": accuracy,
            "recorded_at": ago(minutes=minutes_ago),
            **extra,
        },
    ]
    response = api.post("/api/v1/pings", {"pings": pings})
    assert response.status_code == 202, response.json()
    return response


def browse(api, customer_id, sku="X200", name="X200 headphones", times=3, category="audio"):
    events = [
        {
            "event_id": f"{customer_id}-{sku}-{n}",
            "customer_id": customer_id,
            "type": "product_view",
            "sku": sku,
            "product_name": name,
            "category": category,
            "occurred_at": ago(days=n, minutes=5),
        }
        for n in range(times)
    ]
    assert api.post("/api/v1/events", {"events": events}).status_code == 202


# The SPEC's example campaign, without its quiet hours: this suite runs at any hour.
X200_WALK_BY = {**SPEC_CAMPAIGN, "limits": {**SPEC_CAMPAIGN["limits"], "quiet_hours": None}}


def test_the_seed_example_a_browser_walks_in_and_gets_one_sms_then_redeems_it(api, outbox):
    store = {
        "code": "RIVOLI",
        "name": "Passage Rivoli",
        "address": "142 Rue de Rivoli, 75001 Paris",
        "latitude": RIVOLI[0],
        "longitude": RIVOLI[1],
        "radius_m": 60,
        "polygon": None,
        "timezone": "Europe/Paris",
    }
    assert api.post("/api/v1/stores", store).status_code == 201
    response = api.post("/api/v1/campaigns", X200_WALK_BY)
    assert response.status_code == 201, response.json()
    campaign_id = response.json()["id"]
    lea = {
        "phone": "+33612345678",
        "first_name": "Léa",
        "timezone": "Europe/Paris",
        "locale": "fr-FR",
        "sms_consent": "opted_in",
        "consent_source": "app onboarding",
    }
    assert api.put("/api/v1/customers/C-1001", lea).status_code == 201
    device = {"device_id": "lea-phone", "customer_id": "C-1001", "platform": "ios"}
    assert api.post("/api/v1/devices", device).status_code in (200, 201)
    browse(api, "C-1001")

    walk_in(api, "lea-phone")

    [sms] = outbox
    assert sms.to == "+33612345678"
    assert sms.body.startswith("Bonjour Léa, -20% on X200 headphones at Passage Rivoli: ")
    assert "STOP" in sms.body
    [delivery] = api.get("/api/v1/deliveries?customer_id=C-1001").json()["results"]
    assert delivery["status"] == "sent"
    assert delivery["campaign"] == campaign_id
    assert delivery["store"] == "RIVOLI"
    assert delivery["code"] in sms.body
    assert delivery["body"] == sms.body

    # More pings inside the store, and the same batch again: still one SMS.
    walk_in(api, "lea-phone", minutes_ago=0.5)
    walk_in(api, "lea-phone")
    assert len(outbox) == 1

    redemption = {
        "code": delivery["code"],
        "store_code": "RIVOLI",
        "amount": "159.20",
        "redeemed_at": datetime.now(UTC).isoformat(),
    }
    assert api.post("/api/v1/redemptions", redemption).status_code == 201
    assert api.post("/api/v1/redemptions", redemption).status_code == 409
    stats = api.get(f"/api/v1/campaigns/{campaign_id}/stats").json()
    assert (stats["sent"], stats["redeemed"]) == (1, 1)
    assert stats["treated"]["rate"] == 1.0


@pytest.fixture
def rivoli():
    return StoreFactory(
        code="RIVOLI", name="Passage Rivoli", latitude=RIVOLI[0], longitude=RIVOLI[1]
    )


@pytest.fixture
def lea(api):
    customer = CustomerFactory(external_id="C-1001", phone="+33612345678")
    DeviceFactory(device_id="lea-phone", customer=customer)
    browse(api, "C-1001")
    return customer


def x200_campaign(store, **fields):
    fields.setdefault("priority", 10)
    campaign = CampaignFactory(
        name="X200 walk-by",
        intent_skus=["X200"],
        intent_min_views=3,
        intent_within_days=14,
        offer_template="Bonjour {first_name}, -20% on {product_name} at {store_name}: {code}",
        **fields,
    )
    campaign.stores.add(store)
    return campaign


def only_delivery(api):
    [delivery] = api.get("/api/v1/deliveries").json()["results"]
    return delivery


def local_window_around_now(zone="Europe/Paris"):
    now = datetime.now(ZoneInfo(zone))
    return (now - timedelta(hours=1)).time(), (now + timedelta(hours=1)).time()


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda c, s: setattr(c, "sms_consent", SmsConsent.OPTED_OUT), "no_consent"),
        (lambda c, s: setattr(c, "sms_consent", SmsConsent.UNKNOWN), "no_consent"),
        (lambda c, s: setattr(c, "phone", ""), "no_phone"),
    ],
    ids=["opted_out", "unknown_consent", "no_phone"],
)
def test_a_customer_who_cannot_be_texted_is_recorded_with_the_reason(
    api, outbox, rivoli, lea, setup, reason
):
    x200_campaign(rivoli)
    setup(lea, rivoli)
    lea.save()

    walk_in(api, "lea-phone")

    assert outbox == []
    delivery = only_delivery(api)
    assert (delivery["status"], delivery["reason"]) == ("suppressed", reason)
    assert delivery["code"] is None


def test_quiet_hours_in_the_customers_timezone_hold_the_sms(api, outbox, rivoli, lea):
    start, end = local_window_around_now("Europe/Paris")
    x200_campaign(rivoli, quiet_hours_start=start, quiet_hours_end=end)

    walk_in(api, "lea-phone")

    assert outbox == []
    assert only_delivery(api)["reason"] == "quiet_hours"


def test_the_global_quiet_hours_apply_on_top_of_the_campaigns(api, outbox, rivoli, lea, settings):
    settings.SMS_GLOBAL_QUIET_HOURS = local_window_around_now("Europe/Paris")
    x200_campaign(rivoli)

    walk_in(api, "lea-phone")

    assert outbox == []
    assert only_delivery(api)["reason"] == "quiet_hours"


def test_a_day_not_allowed_holds_the_sms(api, outbox, rivoli, lea):
    # Decided today in Paris, or tomorrow if midnight passes meanwhile: neither is allowed.
    today = datetime.now(ZoneInfo("Europe/Paris")).weekday()
    not_allowed = {rules.WEEKDAYS[today], rules.WEEKDAYS[(today + 1) % 7]}
    x200_campaign(rivoli, allowed_days=[d for d in rules.WEEKDAYS if d not in not_allowed])

    walk_in(api, "lea-phone")

    assert only_delivery(api)["reason"] == "quiet_hours"


def leave_and_come_back(api, device_id="lea-phone"):
    """A second visit: a fix far away, then back in the store."""
    pings = [
        {
            "device_id": device_id,
            "latitude": 48.87,
            "longitude": 2.36,
            "accuracy": 10,
            "recorded_at": ago(seconds=40),
        },
        {
            "device_id": device_id,
            "latitude": RIVOLI[0],
            "longitude": RIVOLI[1],
            "accuracy": 10,
            "recorded_at": ago(seconds=10),
        },
    ]
    assert api.post("/api/v1/pings", {"pings": pings}).status_code == 202


def test_the_campaign_cap_holds_a_second_visit(api, outbox, rivoli, lea):
    x200_campaign(rivoli, limit_per_customer_days=7)

    walk_in(api, "lea-phone", minutes_ago=3)
    leave_and_come_back(api)

    assert len(outbox) == 1
    statuses = [(d["status"], d["reason"]) for d in api.get("/api/v1/deliveries").json()["results"]]
    assert statuses == [("suppressed", "campaign_cap"), ("sent", None)]
    assert PresenceEvent.objects.filter(kind="entered").count() == 2


def test_the_global_cap_holds_any_campaign(api, outbox, rivoli, lea, settings):
    settings.SMS_GLOBAL_CAP_COUNT = 1
    x200_campaign(rivoli)

    walk_in(api, "lea-phone", minutes_ago=3)
    leave_and_come_back(api)

    assert len(outbox) == 1
    assert api.get("/api/v1/deliveries").json()["results"][0]["reason"] == "global_cap"


@pytest.mark.parametrize("budget", ["daily_budget", "total_budget"])
def test_a_spent_budget_holds_the_next_customer(api, outbox, rivoli, lea, budget):
    x200_campaign(rivoli, **{budget: 1})
    other = CustomerFactory(external_id="C-1002")
    DeviceFactory(device_id="tom-phone", customer=other)
    browse(api, "C-1002")

    walk_in(api, "lea-phone")
    walk_in(api, "tom-phone")

    assert len(outbox) == 1
    deliveries = api.get("/api/v1/deliveries").json()["results"]
    reasons = {d["customer_id"]: d["reason"] for d in deliveries}
    assert reasons == {"C-1001": None, "C-1002": "budget"}


def test_a_holdout_customer_gets_no_sms_but_a_recorded_decision(api, outbox, rivoli, lea):
    x200_campaign(rivoli, holdout_percent=100)

    walk_in(api, "lea-phone")

    assert outbox == []
    delivery = only_delivery(api)
    assert (delivery["status"], delivery["reason"]) == ("holdout", "holdout")


def test_no_intent_no_message(api, outbox, rivoli):
    x200_campaign(rivoli)
    DeviceFactory(device_id="stranger-phone", customer=CustomerFactory(external_id="C-2000"))

    walk_in(api, "stranger-phone")

    assert outbox == []
    assert api.get("/api/v1/deliveries").json()["results"] == []
    assert PresenceEvent.objects.filter(kind="entered").count() == 1


def test_of_two_matching_campaigns_only_the_higher_priority_texts(api, outbox, rivoli, lea):
    x200 = x200_campaign(rivoli)
    generic = CampaignFactory(priority=1, offer_template="Welcome to {store_name}: {code}")
    generic.stores.add(rivoli)

    walk_in(api, "lea-phone")

    [sms] = outbox
    assert "X200 headphones" in sms.body
    assert [d["campaign"] for d in api.get("/api/v1/deliveries").json()["results"]] == [x200.id]


def shopper(api, external_id, device_id):
    """Another customer who browsed the X200, with a phone."""
    customer = CustomerFactory(external_id=external_id)
    DeviceFactory(device_id=device_id, customer=customer)
    browse(api, external_id)
    return customer


def first_lines(outbox):
    return [sms.body.split("\n")[0] for sms in outbox]


def test_a_used_up_code_pool_makes_way_for_the_next_campaign(api, outbox, rivoli, lea):
    x200 = x200_campaign(rivoli)
    assert api.post(f"/api/v1/campaigns/{x200.id}/codes", {"codes": ["POS-1"]}).status_code == 201
    generic = CampaignFactory(priority=1, offer_template="Welcome to {store_name}: {code}")
    generic.stores.add(rivoli)
    shopper(api, "C-1002", "tom-phone")

    walk_in(api, "tom-phone")  # takes the pool's only code
    walk_in(api, "lea-phone")

    tom_sms, lea_sms = first_lines(outbox)
    assert tom_sms.endswith("-20% on X200 headphones at Passage Rivoli: POS-1")
    assert lea_sms.startswith("Welcome to Passage Rivoli: ")
    assert outbox[1].to == lea.phone
    deliveries = api.get("/api/v1/deliveries?customer_id=C-1001").json()["results"]
    assert [(d["campaign"], d["status"], d["reason"]) for d in deliveries] == [
        (generic.id, "sent", None),
        (x200.id, "suppressed", "budget"),
    ]


def test_a_holdout_customer_takes_no_code_from_the_pool(api, outbox, rivoli):
    campaign = x200_campaign(rivoli, holdout_percent=50)
    api.post(f"/api/v1/campaigns/{campaign.id}/codes", {"codes": ["POS-1"]})
    keys = [f"C-{n}" for n in range(2000, 2100)]
    held = next(k for k in keys if rules.in_holdout(campaign.id, k, 50))
    treated = next(k for k in keys if not rules.in_holdout(campaign.id, k, 50))
    shopper(api, held, "held-phone")
    shopper(api, treated, "treated-phone")

    walk_in(api, "held-phone")
    walk_in(api, "treated-phone")

    [sms] = outbox
    assert sms.body.split("\n")[0].endswith(": POS-1")
    [holdout] = api.get(f"/api/v1/deliveries?customer_id={held}").json()["results"]
    assert (holdout["status"], holdout["reason"]) == ("holdout", "holdout")
    assert holdout["code"] != "POS-1"
    # The holdout's purchase is still found by the loyalty card, for the lift.
    redemption = {"customer_id": held, "store_code": "RIVOLI", "redeemed_at": ago(seconds=0)}
    response = api.post("/api/v1/redemptions", redemption)
    assert (response.status_code, response.json()["delivery"]) == (201, holdout["id"])


def test_a_holdout_visit_counts_toward_the_campaigns_own_cap(api, outbox, rivoli):
    # The holdout is measured at the treated group's frequency: one decision per cap window.
    campaign = x200_campaign(rivoli, holdout_percent=50, limit_per_customer_days=7)
    held = next(f"C-{n}" for n in range(2000, 2100) if rules.in_holdout(campaign.id, f"C-{n}", 50))
    shopper(api, held, "held-phone")

    walk_in(api, "held-phone", minutes_ago=3)
    leave_and_come_back(api, "held-phone")

    assert outbox == []
    statuses = [(d["status"], d["reason"]) for d in api.get("/api/v1/deliveries").json()["results"]]
    assert statuses == [("suppressed", "campaign_cap"), ("holdout", "holdout")]


def test_a_holdout_share_raised_after_a_customer_was_texted_leaves_them_treated(
    api, outbox, rivoli, lea, settings
):
    """A customer's group in a campaign is the one their first decision put them in: raising
    the share moves only customers not in the campaign yet, so no one is counted in both."""
    settings.SMS_GLOBAL_MIN_GAP_MINUTES = 0
    body = {**X200_WALK_BY, "limits": {**X200_WALK_BY["limits"], "per_customer_days": None}}
    created = api.post("/api/v1/campaigns", body)
    assert created.status_code == 201, created.json()
    campaign_id = created.json()["id"]
    walk_in(api, "lea-phone", minutes_ago=3)
    assert len(outbox) == 1

    raised = api.patch(f"/api/v1/campaigns/{campaign_id}", {"limits": {"holdout_percent": 100}})
    assert raised.status_code == 200, raised.json()
    leave_and_come_back(api)

    statuses = [d["status"] for d in api.get("/api/v1/deliveries").json()["results"]]
    assert statuses == ["sent", "sent"]
    assert len(outbox) == 2
    stats = api.get(f"/api/v1/campaigns/{campaign_id}/stats").json()
    assert (stats["treated"]["customers"], stats["holdout"]["customers"]) == (1, 0)


def test_a_dry_run_counts_only_the_sms_sent_before_each_event(api, rivoli, lea, settings):
    settings.SMS_GLOBAL_CAP_COUNT = 1
    campaign = x200_campaign(rivoli, status="draft")
    tom = shopper(api, "C-1002", "tom-phone")
    walk_in(api, "lea-phone", minutes_ago=3)
    walk_in(api, "tom-phone", minutes_ago=3)
    other = CampaignFactory()
    # Léa was texted by another campaign after her visit was decided; Tom before he walked in.
    now = datetime.now(UTC)
    DeliveryFactory(customer=lea, campaign=other, created_at=now + timedelta(seconds=30))
    DeliveryFactory(customer=tom, campaign=other, created_at=now - timedelta(minutes=30))

    response = api.post(
        f"/api/v1/campaigns/{campaign.id}/dry-run",
        {"since": ago(days=1), "until": ago(seconds=0)},
    )

    result = response.json()
    assert (result["would_send"], result["by_reason"]["global_cap"]) == (1, 1)


def test_a_customer_without_a_time_zone_gets_the_sms_by_the_stores(api, outbox, rivoli, lea):
    x200_campaign(rivoli)
    assert api.put("/api/v1/customers/C-1001", {"timezone": ""}).status_code == 200

    walk_in(api, "lea-phone")

    assert len(outbox) == 1
    [delivery] = api.get("/api/v1/deliveries?customer_id=C-1001").json()["results"]
    assert delivery["status"] == "sent"


def dry_run(api, campaign, **since):
    response = api.post(
        f"/api/v1/campaigns/{campaign.id}/dry-run", {"since": ago(**since), "until": ago(seconds=0)}
    )
    assert response.status_code == 200, response.json()
    return response.json()


def test_a_dry_run_hands_out_the_code_pool_as_the_live_run_did(api, outbox, rivoli, lea):
    campaign = x200_campaign(rivoli)
    api.post(f"/api/v1/campaigns/{campaign.id}/codes", {"codes": ["ONLY-ONE"]})
    shopper(api, "C-2", "phone-2")
    shopper(api, "C-3", "phone-3")
    for phone in ("lea-phone", "phone-2", "phone-3"):
        walk_in(api, phone)
    live = [(d["status"], d["reason"]) for d in api.get("/api/v1/deliveries").json()["results"]]
    assert sorted(live) == [("sent", None), ("suppressed", "budget"), ("suppressed", "budget")]

    result = dry_run(api, campaign, days=1)

    assert (result["would_send"], result["by_reason"]["budget"]) == (1, 2)


@pytest.mark.parametrize(
    ("limits", "reason"),
    [({"limit_per_customer_days": 7}, "campaign_cap"), ({"total_budget": 1}, "budget")],
)
def test_a_dry_run_counts_the_campaigns_real_sms_from_before_its_window(
    api, rivoli, lea, limits, reason
):
    campaign = x200_campaign(rivoli, status="draft", **limits)
    DeliveryFactory(
        customer=lea, campaign=campaign, created_at=datetime.now(UTC) - timedelta(days=2)
    )
    walk_in(api, "lea-phone", minutes_ago=3)

    result = dry_run(api, campaign, days=1)

    assert (result["would_send"], result["by_reason"][reason]) == (0, 1)


@pytest.mark.parametrize(
    ("first", "holdout_percent", "judged"), [("sent", 100, "queued"), ("holdout", 0, "holdout")]
)
def test_a_dry_run_keeps_a_customer_in_the_group_of_their_first_decision(
    api, rivoli, lea, first, holdout_percent, judged
):
    campaign = x200_campaign(rivoli, status="draft", holdout_percent=holdout_percent)
    DeliveryFactory(
        customer=lea,
        campaign=campaign,
        status=first,
        created_at=datetime.now(UTC) - timedelta(days=2),
    )
    walk_in(api, "lea-phone", minutes_ago=3)

    result = dry_run(api, campaign, days=1)

    assert result["by_status"][judged] == 1


@pytest.mark.parametrize(("priority", "would_send", "outranked"), [(0, 0, 1), (20, 1, 0)])
def test_a_dry_run_gives_a_visit_another_campaign_texted_only_to_a_campaign_ranked_first(
    api, outbox, rivoli, lea, priority, would_send, outranked
):
    x200_campaign(rivoli)
    walk_in(api, "lea-phone")
    assert len(outbox) == 1
    draft = x200_campaign(rivoli, status="draft", priority=priority)

    result = dry_run(api, draft, days=1)

    # One SMS per visit: ranked after the campaign that texted it, the draft gets no decision.
    assert (result["would_send"], result["outranked"]) == (would_send, outranked)


def test_a_mocked_location_triggers_nothing(api, outbox, rivoli, lea):
    x200_campaign(rivoli)

    walk_in(api, "lea-phone", mocked=True)

    assert outbox == []
    assert Ping.objects.filter(suspicious=True).count() == 1


def test_a_vague_fix_cannot_cause_an_entry(api, outbox, rivoli, lea):
    x200_campaign(rivoli)

    walk_in(api, "lea-phone", accuracy=500)

    assert outbox == []
    assert not PresenceEvent.objects.exists()


def test_a_ping_older_than_the_offers_validity_is_history_not_a_trigger(api, outbox, rivoli, lea):
    x200_campaign(rivoli)

    walk_in(api, "lea-phone", minutes_ago=30)

    assert outbox == []
    assert PresenceEvent.objects.filter(kind="entered").count() == 1
    assert not Delivery.objects.exists()


def test_a_paused_campaign_sends_nothing(api, outbox, rivoli, lea):
    x200_campaign(rivoli, status="paused")

    walk_in(api, "lea-phone")

    assert outbox == []


# --- Other triggers, through beacons and approach rings ---------------------------------

LEA_TAG = "0201061aff4c000215" + "f7826da64fa24e988024bc5b71e0893e" + "0007002ac5"


@pytest.fixture
def entrance(rivoli):
    return ZoneFactory(store=rivoli, code="entrance", rssi_threshold=-75)


def zone_campaign(store, **fields):
    campaign = CampaignFactory(
        trigger_type="beacon_zone",
        trigger_zone="entrance",
        offer_template="Welcome to {store_name}, {first_name}! Coffee on us: {code}",
        **fields,
    )
    campaign.stores.add(store)
    return campaign


def test_an_app_ranging_the_entrance_beacon_triggers_the_zone_campaign(
    api, outbox, rivoli, lea, entrance
):
    beacon = BeaconFactory(zone=entrance, identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))
    zone_campaign(rivoli)
    ibeacon = {"uuid": BEACON_UUID, "major": 1, "minor": 2}

    def sight(rssi, seconds):
        item = {"device_id": "lea-phone", "ibeacon": ibeacon, "rssi": rssi}
        return {**item, "seen_at": ago(seconds=seconds)}

    # One strong reading is not enough; a weak second one keeps the median below -75.
    api.post("/api/v1/sightings", {"sightings": [sight(-60, 20), sight(-95, 15)]})
    assert outbox == []
    api.post("/api/v1/sightings", {"sightings": [sight(-70, 10)]})

    [sms] = outbox
    assert sms.body.startswith("Welcome to Passage Rivoli, Léa! Coffee on us: ")
    event = Delivery.objects.get().presence_event
    assert (event.kind, event.zone.code, event.sighting.beacon) == ("entered", "entrance", beacon)
    # The zone entry was also a store entry.
    assert PresenceEvent.objects.filter(kind="entered", zone=None).count() == 1


def test_a_gateway_seeing_a_customers_tag_triggers_the_zone_campaign(
    api, outbox, rivoli, lea, entrance
):
    GatewayFactory(gateway_id="gw-rivoli-entrance", store=rivoli, zone=entrance)
    device = lea.devices.get()
    device.ble_identity = beacons.ibeacon_key(BEACON_UUID, 7, 42)
    device.save()
    zone_campaign(rivoli)
    sightings = [
        {"raw": LEA_TAG, "rssi": -70, "seen_at": ago(seconds=8)},
        {"mac": "C0:FF:EE:00:00:01", "raw": LEA_TAG, "rssi": -72, "seen_at": ago(seconds=4)},
    ]

    response = api.post("/api/v1/gateways/gw-rivoli-entrance/sightings", {"sightings": sightings})

    assert response.json()["accepted"] == 2
    [sms] = outbox
    assert sms.to == lea.phone


@pytest.mark.parametrize("gap_minutes", [60, 0])
def test_walking_in_by_the_entrance_beacon_is_texted_once_by_the_higher_priority(
    api, outbox, rivoli, lea, entrance, settings, gap_minutes
):
    """The entrance beacon's readings enter its zone and, in the same instant, the store:
    one arrival. The store's entry campaign (priority 10) outranks the entrance's welcome
    (priority 1), and only one of them texts, whatever the minimum gap."""
    settings.SMS_GLOBAL_MIN_GAP_MINUTES = gap_minutes
    BeaconFactory(zone=entrance, identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))
    welcome = zone_campaign(rivoli, priority=1)
    entry = x200_campaign(rivoli, priority=10)
    ibeacon = {"uuid": BEACON_UUID, "major": 1, "minor": 2}
    sightings = [
        {"device_id": "lea-phone", "ibeacon": ibeacon, "rssi": -60, "seen_at": ago(seconds=s)}
        for s in (20, 10)
    ]

    api.post("/api/v1/sightings", {"sightings": sightings})

    assert PresenceEvent.objects.filter(kind="entered").count() == 2  # the zone, the store
    [sms] = outbox
    delivery = Delivery.objects.get(status="sent")
    assert (delivery.campaign, delivery.body) == (entry, sms.body)
    assert not Delivery.objects.filter(campaign=welcome).exists()


def test_walking_past_within_the_distance_triggers_the_near_campaign(api, outbox, rivoli, lea):
    campaign = x200_campaign(rivoli, trigger_type="near", trigger_distance_m=500)
    pings = [
        {
            "device_id": "lea-phone",
            "latitude": lat,
            "longitude": 2.3417,
            "accuracy": 10,
            "recorded_at": ago(seconds=seconds),
        }
        for lat, seconds in [(48.8706, 90), (48.8656, 60), (48.8646, 30)]  # 1.1 km, 500 m, 390 m
    ]

    api.post("/api/v1/pings", {"pings": pings})

    assert len(outbox) == 1
    delivery = Delivery.objects.get()
    assert (delivery.campaign, delivery.presence_event.kind) == (campaign, "near")
    assert delivery.presence_event.distance_m == 500


def test_staying_in_the_store_triggers_the_dwell_campaign_on_the_beat(api, outbox, rivoli, lea):
    x200_campaign(rivoli, trigger_type="dwell", trigger_minutes=5)
    walk_in(api, "lea-phone", minutes_ago=7)
    assert outbox == []

    tasks.tick_presence.delay()

    assert len(outbox) == 1
    assert Delivery.objects.get().presence_event.minutes == 5


def test_walking_past_then_in_is_texted_once(api, outbox, rivoli, lea):
    x200_campaign(rivoli, trigger_type="near", trigger_distance_m=500, priority=1)
    x200_campaign(rivoli)

    walk_in(api, "lea-phone")  # the street fix is 270 m from the fence: near, then entered

    assert len(outbox) == 1
    deliveries = api.get("/api/v1/deliveries").json()["results"]
    assert [(d["status"], d["reason"]) for d in deliveries] == [
        ("suppressed", "global_cap"),
        ("sent", None),
    ]
