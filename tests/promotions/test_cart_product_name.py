"""Which product a cart-abandonment offer names: the one left in the cart, not one the
customer only looked at."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from promotions import rules
from promotions.rules import BrowsingSignal, CustomerFacts, IntentCondition
from promotions.sms import locmem
from tests.clock import ago
from tests.factories import CampaignFactory, CustomerFactory, DeviceFactory, StoreFactory
from tests.promotions.test_engine_api import RIVOLI, walk_in

NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
DAY = 86_400


def views(*days_ago: float) -> tuple[int, ...]:
    return tuple(sorted(int(NOW.timestamp() - d * DAY) for d in days_ago))


def abandoned(hours_ago: float) -> dict:
    return {"cart_state": "abandoned", "cart_updated_at": NOW - timedelta(hours=hours_ago)}


# Léa looked at the X200 headphones three times, then left the Z100 earbuds in her cart.
# The category sums both, so its score beats either product's; its cart is the Z100's.
LEA = CustomerFacts(
    key="C-1001",
    opted_in=True,
    has_phone=True,
    timezone="Europe/Paris",
    products={
        "X200": BrowsingSignal(
            "X200", views(1, 2, 3), score=2.6, category="audio", product_name="X200 headphones"
        ),
        "Z100": BrowsingSignal(
            "Z100", score=7.4, category="audio", product_name="Z100 earbuds", **abandoned(2)
        ),
    },
    categories={"audio": BrowsingSignal("audio", views(1, 2, 3), score=10.0, **abandoned(2))},
)


def named(condition, customer=LEA):
    match = rules.intent_match(condition, customer, NOW)
    return match.sku, match.product_name


def test_a_cart_flag_alone_names_the_product_left_in_the_cart():
    assert named(IntentCondition(cart_abandoned=True)) == ("Z100", "Z100 earbuds")


def test_a_cart_condition_on_a_category_names_the_product_left_in_its_cart():
    condition = IntentCondition(categories=("audio",), cart_abandoned=True)

    match = rules.intent_match(condition, LEA, NOW)

    assert (match.sku, match.product_name) == ("Z100", "Z100 earbuds")
    assert "category audio: cart abandoned" in match.detail


@pytest.mark.parametrize(("w50_hours_ago", "sku"), [(5, "Z100"), (1, "W50")])
def test_of_two_carts_left_in_a_category_the_latest_names_the_offer(w50_hours_ago, sku):
    w50 = BrowsingSignal("W50", score=9.0, category="audio", **abandoned(w50_hours_ago))
    customer = replace(LEA, products={**LEA.products, "W50": w50})

    assert named(IntentCondition(categories=("audio",), cart_abandoned=True), customer)[0] == sku


def test_a_product_s_own_abandoned_cart_comes_before_one_reported_without_a_sku():
    # A cart in the tv category came without a SKU: the offer could only guess its product.
    tv = BrowsingSignal("tv", views(1, 2), score=20.0, **abandoned(1))
    oled = BrowsingSignal("OLED55", views(1, 2), score=2.0, category="tv", product_name="OLED 55")
    customer = replace(
        LEA,
        products={**LEA.products, "OLED55": oled},
        categories={**LEA.categories, "tv": tv},
    )

    assert named(IntentCondition(cart_abandoned=True), customer) == ("Z100", "Z100 earbuds")


def test_a_cart_left_before_the_window_does_not_name_the_offer():
    # Z100's cart is older than the window; a cart came since in the category without a SKU.
    stale = replace(LEA.products["Z100"], cart_updated_at=NOW - timedelta(days=10))
    sku_less = replace(LEA.categories["audio"], cart_updated_at=NOW - timedelta(hours=1))
    customer = replace(
        LEA, products={**LEA.products, "Z100": stale}, categories={"audio": sku_less}
    )

    condition = IntentCondition(cart_abandoned=True, within_days=7)

    assert named(condition, customer) == ("X200", "X200 headphones")


def test_a_view_condition_on_a_category_still_names_the_most_viewed_product():
    assert named(IntentCondition(categories=("audio",), min_views=3)) == (
        "X200",
        "X200 headphones",
    )


# --- Through the API ----------------------------------------------------------------------


def event(customer_id, n, type_, sku, name, **delta):
    return {
        "event_id": f"{customer_id}-{sku}-{type_}-{n}",
        "customer_id": customer_id,
        "type": type_,
        "sku": sku,
        "product_name": name,
        "category": "audio",
        "occurred_at": ago(**delta),
    }


@pytest.fixture
def outbox(settings):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    return locmem.outbox


@pytest.mark.django_db
def test_the_sms_of_a_cart_campaign_names_the_product_left_in_the_cart(api, outbox):
    store = StoreFactory(name="Passage Rivoli", latitude=RIVOLI[0], longitude=RIVOLI[1])
    lea = CustomerFactory(external_id="C-1001", first_name="Léa", phone="+33612345678")
    DeviceFactory(device_id="lea-phone", customer=lea)
    events = [
        event("C-1001", n, "product_view", "X200", "X200 headphones", days=n + 1) for n in range(3)
    ] + [
        event("C-1001", 0, "add_to_cart", "Z100", "Z100 earbuds", hours=3),
        event("C-1001", 0, "cart_abandoned", "Z100", "Z100 earbuds", hours=2),
    ]
    assert api.post("/api/v1/events", {"events": events}).status_code == 202
    campaign = CampaignFactory(
        intent_cart_abandoned=True,
        offer_template="{first_name}, your {product_name} is waiting at {store_name}: {code}",
    )
    campaign.stores.add(store)

    walk_in(api, "lea-phone")

    [sms] = outbox
    assert sms.body.startswith("Léa, your Z100 earbuds is waiting at Passage Rivoli: "), sms.body
