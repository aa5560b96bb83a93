from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from customers.models import BrowsingEvent, CategoryIntent, Product, ProductIntent, Visitor
from tests.clock import ago, ahead
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def lea():
    return CustomerFactory(external_id="C-1")


def event(event_id, type="product_view", sku="X200", **fields):
    return {
        "event_id": event_id,
        "customer_id": "C-1",
        "type": type,
        "sku": sku,
        "occurred_at": ago(hours=1),
        **fields,
    }


def post(api, *events):
    return api.post("/api/v1/events", {"events": list(events)})


def test_valid_events_are_stored_and_answered_202(api, lea):
    response = post(api, event("e1"), event("e2", type="add_to_cart"))

    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert BrowsingEvent.objects.filter(customer=lea).count() == 2


def test_a_repeated_event_id_is_counted_as_a_duplicate_and_stored_once(api, lea):
    post(api, event("e1"))

    response = post(api, event("e1"), event("e2"), event("e2"))

    assert response.json() == {"accepted": 1, "duplicates": 2, "rejected": []}
    assert BrowsingEvent.objects.count() == 2
    assert len(ProductIntent.objects.get().view_times) == 2


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"type": "product_view", "sku": "X", "occurred_at": ago(hours=1)}, "event_id"),
        (
            {"event_id": "e", "type": "product_view", "sku": "X", "occurred_at": ago(hours=1)},
            "non_field_errors",
        ),
        (
            {
                "event_id": "e",
                "customer_id": "C-1",
                "type": "purchase",
                "occurred_at": ago(hours=1),
            },
            "type",
        ),
        (
            {
                "event_id": "e",
                "customer_id": "C-1",
                "type": "product_view",
                "occurred_at": ago(hours=1),
            },
            "sku",
        ),
        (
            {
                "event_id": "e",
                "customer_id": "C-1",
                "type": "page_view",
                "occurred_at": "yesterday",
            },
            "occurred_at",
        ),
        (
            {
                "event_id": "e",
                "customer_id": "C-1",
                "type": "page_view",
                "occurred_at": "2026-11-20T10:00:00",
            },
            "occurred_at",
        ),
        (
            {
                "event_id": "e",
                "customer_id": "C-1",
                "type": "page_view",
                "occurred_at": ahead(days=1),
            },
            "occurred_at",
        ),
        (
            {
                "event_id": "e",
                "customer_id": "C-1",
                "type": "page_view",
                "occurred_at": ago(days=400),
            },
            "occurred_at",
        ),
        (
            {
                "event_id": "e",
                "customer_id": "nobody",
                "type": "page_view",
                "occurred_at": ago(hours=1),
            },
            "customer_id",
        ),
        (
            {
                "event_id": "e" * 101,
                "customer_id": "C-1",
                "type": "page_view",
                "occurred_at": ago(hours=1),
            },
            "event_id",
        ),
        ("not an object", "non_field_errors"),
    ],
)
def test_each_bad_event_is_rejected_with_its_reason(api, lea, item, field):
    response = post(api, event("good"), item)

    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 1
    assert [rejection["index"] for rejection in body["rejected"]] == [1]
    assert field in body["rejected"][0]["errors"]
    assert BrowsingEvent.objects.count() == 1


def test_a_time_without_offset_is_explained(api, lea):
    response = post(api, event("e1", occurred_at="2026-11-20T10:00:00"))

    assert "UTC offset" in response.json()["rejected"][0]["errors"]["occurred_at"][0]


def test_an_anonymous_visitors_events_are_stored_without_intent(api):
    response = post(api, {**event("e1"), "customer_id": None, "visitor_id": "v-1"})

    assert response.json()["accepted"] == 1
    assert Visitor.objects.get().visitor_id == "v-1"
    assert not ProductIntent.objects.exists()


def test_intent_counts_product_views_per_sku_and_category(api, lea):
    post(
        api,
        event("e1", category="headphones", product_name="X200 headphones"),
        event("e2", category="headphones"),
        event("e3", sku="Z1", category="headphones"),
        event("e4", type="page_view", sku=None, category="headphones"),
    )

    x200 = ProductIntent.objects.get(customer=lea, sku="X200")
    assert len(x200.view_times) == 2
    assert x200.category == "headphones"
    headphones = CategoryIntent.objects.get(customer=lea, category="headphones")
    assert len(headphones.view_times) == 3
    assert headphones.score == pytest.approx(3.5, rel=0.01)


def test_recent_views_count_within_the_campaigns_window(api, lea):
    post(
        api,
        event("old", occurred_at=ago(days=20)),
        event("recent-1", occurred_at=ago(days=2)),
        event("recent-2", occurred_at=ago(hours=3)),
    )

    x200 = ProductIntent.objects.get(customer=lea, sku="X200")
    fourteen_days_ago = int((datetime.now(UTC) - timedelta(days=14)).timestamp())
    assert x200.views_since(fourteen_days_ago) == 2


@override_settings(INTENT_HALF_LIFE_DAYS=7)
def test_the_score_decays_with_the_age_of_each_view(api, lea):
    post(api, event("e1", occurred_at=ago(days=7)), event("e2", occurred_at=ago(seconds=1)))

    assert ProductIntent.objects.get().score == pytest.approx(1.5, rel=0.01)


def test_the_cart_state_is_kept_per_sku(api, lea):
    post(
        api,
        event("cart", type="add_to_cart", occurred_at=ago(hours=3)),
        event("gone", type="cart_abandoned", occurred_at=ago(hours=2)),
        event("other", type="add_to_cart", sku="Z1", occurred_at=ago(hours=2)),
    )

    states = dict(ProductIntent.objects.values_list("sku", "cart_state"))
    assert states == {"X200": "abandoned", "Z1": "in_cart"}


def test_a_late_cart_event_does_not_undo_a_newer_one(api, lea):
    post(api, event("gone", type="cart_abandoned", occurred_at=ago(hours=1)))

    post(api, event("cart", type="add_to_cart", occurred_at=ago(hours=3)))

    assert ProductIntent.objects.get().cart_state == "abandoned"


def test_the_product_name_is_the_one_last_sent_with_the_sku(api, lea):
    post(api, event("new", product_name="X200 Pro headphones", occurred_at=ago(hours=1)))
    post(api, event("old", product_name="X200 headphones", occurred_at=ago(days=3)))
    post(api, event("unnamed", occurred_at=ago(minutes=5)))

    assert Product.objects.get(sku="X200").name == "X200 Pro headphones"


def test_a_batch_over_the_limit_is_413_and_stores_nothing(api, lea):
    with override_settings(INGEST_MAX_BATCH=3):
        response = post(api, *[event(f"e{n}") for n in range(4)])

    assert response.status_code == 413
    assert "limit is 3" in response.json()["detail"]
    assert not BrowsingEvent.objects.exists()
