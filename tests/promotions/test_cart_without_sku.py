"""A cart the web site reports whole, naming neither a SKU nor a category (the usual
cart-level `cart_abandoned`), meets a campaign whose intent condition is the abandoned cart
alone (SPEC: an event's `sku` and `category` are optional)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from customers.models import CartIntent
from promotions.dry_run import dry_run_campaign
from promotions.models import Campaign, Delivery, Store
from promotions.sms import locmem
from tests.clock import ago
from tests.factories import CampaignFactory, CustomerFactory, DeviceFactory, StoreFactory
from tests.promotions.test_dry_run import decide_live, dry_run, live_decisions, presence_event
from tests.promotions.test_engine_api import RIVOLI, walk_in

pytestmark = pytest.mark.django_db

CART_CAMPAIGN = {
    "name": "Come back for your cart",
    "status": "active",
    "stores": ["RIVOLI"],
    "trigger": {"type": "enter"},
    "intent": {"skus": [], "categories": [], "cart_abandoned": True, "within_days": 7},
    "offer": {"template": "Bonjour {first_name}, your cart awaits: {code}", "valid_days": 7},
    "limits": {"quiet_hours": None},
}


@pytest.fixture
def outbox(settings):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    return locmem.outbox


@pytest.fixture
def lea(api, outbox):
    StoreFactory(code="RIVOLI", latitude=RIVOLI[0], longitude=RIVOLI[1])
    lea = CustomerFactory(external_id="C-1001", first_name="Léa", phone="+33612345678")
    DeviceFactory(device_id="lea-phone", customer=lea)
    return lea


def cart_event(event_id, type="cart_abandoned", *, hours_ago=2, **fields):
    fields.setdefault("customer_id", "C-1001")
    return {"event_id": event_id, "type": type, "occurred_at": ago(hours=hours_ago), **fields}


def post(api, *events):
    response = api.post("/api/v1/events", {"events": list(events)})
    assert response.json()["accepted"] == len(events), response.json()


def statuses(api):
    return [d["status"] for d in api.get("/api/v1/deliveries").json()["results"]]


def test_a_cart_abandoned_event_without_sku_or_category_meets_a_cart_abandoned_condition(
    api, lea, outbox
):
    assert api.post("/api/v1/campaigns", CART_CAMPAIGN).status_code == 201
    post(api, cart_event("cart-1"))

    walk_in(api, "lea-phone")

    assert statuses(api) == ["sent"]
    [sms] = outbox
    assert sms.body.startswith("Bonjour Léa, your cart awaits: ")
    assert "the cart, reported without a SKU: cart abandoned" in str(Delivery.objects.get().trace)


def test_the_cart_restored_since_no_longer_meets_it(api, lea):
    assert api.post("/api/v1/campaigns", CART_CAMPAIGN).status_code == 201
    # Sent in the other order: the later event is the one that counts.
    post(api, cart_event("back", "add_to_cart", hours_ago=1), cart_event("gone", hours_ago=2))

    walk_in(api, "lea-phone")

    assert statuses(api) == []
    assert CartIntent.objects.get().cart_state == "in_cart"


def test_a_product_put_in_the_cart_since_restores_it(api, lea):
    assert api.post("/api/v1/campaigns", CART_CAMPAIGN).status_code == 201
    post(api, cart_event("gone", hours_ago=2))
    post(api, cart_event("back", "add_to_cart", hours_ago=1, sku="X200"))

    walk_in(api, "lea-phone")

    assert statuses(api) == []


def test_the_offer_names_the_product_last_put_in_the_cart_it_abandoned(api, lea, outbox):
    campaign = {**CART_CAMPAIGN, "offer": {"template": "Your {product_name} awaits: {code}"}}
    assert api.post("/api/v1/campaigns", campaign).status_code == 201
    post(
        api,
        cart_event("x200", "add_to_cart", hours_ago=5, sku="X200", product_name="X200 headphones"),
        cart_event("z100", "add_to_cart", hours_ago=4, sku="Z100", product_name="Z100 earbuds"),
        cart_event("gone", hours_ago=2),
    )

    walk_in(api, "lea-phone")

    [sms] = outbox
    assert sms.body.startswith("Your Z100 earbuds awaits: "), sms.body
    assert Delivery.objects.get().product_sku == "Z100"


def test_with_no_product_known_the_offer_s_product_name_is_left_out(api, lea, outbox):
    campaign = {**CART_CAMPAIGN, "offer": {"template": "{product_name} waits for you: {code}"}}
    assert api.post("/api/v1/campaigns", campaign).status_code == 201
    post(api, cart_event("gone"))

    walk_in(api, "lea-phone")

    [sms] = outbox
    assert sms.body.startswith("Waits for you: "), sms.body


def test_a_visitor_s_cart_counts_once_the_visitor_is_identified(api, lea):
    assert api.post("/api/v1/campaigns", CART_CAMPAIGN).status_code == 201
    post(api, cart_event("gone", customer_id=None, visitor_id="lea-laptop"))
    assert not CartIntent.objects.exists()

    identified = api.post("/api/v1/identify", {"visitor_id": "lea-laptop", "customer_id": "C-1001"})
    assert identified.json()["events_attributed"] == 1

    walk_in(api, "lea-phone")
    assert statuses(api) == ["sent"]


def test_a_view_naming_nothing_still_changes_no_intent(api, lea):
    post(api, cart_event("view", "product_view"), cart_event("page", "page_view"))

    assert not CartIntent.objects.exists()


def test_export_holds_the_cart_and_erasure_removes_it(api, lea):
    post(api, cart_event("gone"))

    exported = api.get("/api/v1/customers/C-1001/export").json()["cart_intent"]
    assert exported["cart_state"] == "abandoned"
    assert exported["score"] == pytest.approx(5.0, rel=0.01)

    assert api.delete("/api/v1/customers/C-1001").status_code == 204
    assert not CartIntent.objects.exists()


def test_a_dry_run_reads_the_cart_as_it_stood_at_each_visit(api, lea):
    rivoli = Store.objects.get()
    campaign = CampaignFactory(intent_cart_abandoned=True, intent_within_days=7)
    campaign.stores.add(rivoli)
    now = timezone.now()
    # A visit before the cart was abandoned, then one after it.
    decide_live(presence_event(lea, rivoli, at=now - timedelta(hours=3)))
    post(api, cart_event("gone", hours_ago=2))
    decide_live(presence_event(lea, rivoli, at=now - timedelta(hours=1)))
    assert live_decisions(campaign)["by_status"] == {"queued": 1}

    result = dry_run(api, campaign, since=now - timedelta(hours=4))

    # As live: the visit before the abandonment did not meet it.
    assert (result["matched"], result["would_send"]) == (1, 1)


CARTS = {"whole": {}, "product": {"sku": "SKU-1"}, "category": {"category": "shoes"}}


@pytest.mark.parametrize("cart", CARTS.values(), ids=CARTS.keys())
def test_a_dry_run_reads_a_cart_abandoned_before_a_visit_and_changed_since(api, lea, cart):
    """The cart's later changes do not hide what it was at the visit: the cart events kept
    tell each state it went through."""
    rivoli = Store.objects.get()
    campaign = CampaignFactory(intent_cart_abandoned=True, intent_within_days=7)
    campaign.stores.add(rivoli)
    now = timezone.now()
    post(api, cart_event("in", "add_to_cart", hours_ago=5, **cart))
    post(api, cart_event("gone", hours_ago=4, **cart))
    decide_live(presence_event(lea, rivoli, at=now - timedelta(hours=3)))
    post(api, cart_event("back", "add_to_cart", hours_ago=2, **cart))
    decide_live(presence_event(lea, rivoli, at=now - timedelta(hours=1)))
    assert live_decisions(campaign)["by_status"] == {"queued": 1}

    result = dry_run(api, campaign, since=now - timedelta(hours=6))

    # As live: the visit while the cart stood abandoned met the condition, the one after
    # the customer went back to it did not.
    assert (result["matched"], result["would_send"]) == (1, 1)


def test_a_dry_run_reads_the_carts_of_all_its_customers_in_one_query(api, lea):
    rivoli = Store.objects.get()
    campaign = CampaignFactory(intent_cart_abandoned=True, intent_within_days=7)
    campaign.stores.add(rivoli)
    now = timezone.now()

    def queries_for(count: int) -> tuple[int, dict]:
        for _ in range(count):
            customer = CustomerFactory()
            named = {"customer_id": customer.external_id}
            for kind, cart in CARTS.items():
                name = f"{customer.external_id}-{kind}"
                post(api, cart_event(f"{name}-gone", hours_ago=4, **named, **cart))
                post(api, cart_event(f"{name}-back", "add_to_cart", hours_ago=2, **named, **cart))
            presence_event(customer, rivoli, at=now - timedelta(hours=3))
        with CaptureQueriesContext(connection) as captured:
            result = dry_run_campaign(campaign=campaign, since=now - timedelta(hours=6), until=now)
        return len(captured), result

    few, one_customer = queries_for(1)
    many, six_customers = queries_for(5)

    assert many == few
    assert (one_customer["would_send"], six_customers["would_send"]) == (1, 6)


def test_a_dry_run_reads_a_categorys_cart_spelt_otherwise_by_its_events_as_live(api, lea):
    rivoli = Store.objects.get()
    campaign = CampaignFactory(
        intent_categories=["Shoes"], intent_cart_abandoned=True, intent_within_days=7
    )
    campaign.stores.add(rivoli)
    now = timezone.now()
    post(api, cart_event("in", "add_to_cart", hours_ago=5, category="shoes"))
    post(api, cart_event("gone", hours_ago=4, category="SHOES"))
    decide_live(presence_event(lea, rivoli, at=now - timedelta(hours=3)))
    post(api, cart_event("back", "add_to_cart", hours_ago=2, category=" Shoes"))
    decide_live(presence_event(lea, rivoli, at=now - timedelta(hours=1)))
    assert live_decisions(campaign)["by_status"] == {"queued": 1}

    result = dry_run(api, campaign, since=now - timedelta(hours=6))

    assert (result["matched"], result["would_send"]) == (1, 1)


# The usual site: items put in the cart one by one, naming their SKU and category, then the
# cart reported abandoned whole (its platform's abandonment names the cart, not its lines).
def x200_then_cart_left(*, added_hours_ago=5):
    return (
        cart_event(
            "x200",
            "add_to_cart",
            hours_ago=added_hours_ago,
            sku="X200",
            product_name="X200 headphones",
            category="Audio",
        ),
        cart_event("gone", hours_ago=2),
    )


@pytest.mark.parametrize(
    "intent",
    [{"skus": ["X200"]}, {"categories": ["audio"]}],
    ids=["naming_the_sku", "naming_its_category"],
)
def test_a_product_in_a_cart_reported_abandoned_whole_meets_a_cart_condition_naming_it(
    api, lea, outbox, intent
):
    campaign = {
        **CART_CAMPAIGN,
        "intent": {**CART_CAMPAIGN["intent"], **intent},
        "offer": {"template": "Léa, your {product_name} awaits: {code}"},
    }
    assert api.post("/api/v1/campaigns", campaign).status_code == 201
    post(api, *x200_then_cart_left())

    walk_in(api, "lea-phone")

    assert statuses(api) == ["sent"]
    [sms] = outbox
    assert sms.body.startswith("Léa, your X200 headphones awaits: "), sms.body
    # A dry run reads the carts as they stood at the visit, as live did.
    result = dry_run(api, Campaign.objects.get(), since=timezone.now() - timedelta(hours=1))
    assert (result["matched"], result["would_send"]) == (1, 1)


@pytest.mark.parametrize(
    "events",
    [
        # Put in the cart after it was left: the cart is in use again.
        x200_then_cart_left(added_hours_ago=1),
        # Only looked at: it was never in the cart.
        (
            cart_event("x200", "product_view", hours_ago=5, sku="X200", category="Audio"),
            cart_event("gone", hours_ago=2),
        ),
        # In the cart, and the cart taken up again since.
        (*x200_then_cart_left(), cart_event("back", "add_to_cart", hours_ago=1)),
    ],
    ids=["added_since", "only_viewed", "cart_restored"],
)
def test_a_cart_condition_naming_a_product_not_left_in_the_cart_is_not_met(api, lea, events):
    campaign = {**CART_CAMPAIGN, "intent": {**CART_CAMPAIGN["intent"], "skus": ["X200"]}}
    assert api.post("/api/v1/campaigns", campaign).status_code == 201
    post(api, *events)

    walk_in(api, "lea-phone")

    assert statuses(api) == []
