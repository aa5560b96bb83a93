import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from customers.models import (
    BrowsingEvent,
    CartIntent,
    CategoryIntent,
    Product,
    ProductIntent,
    Visitor,
)
from promotions import decisions, rules
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


@pytest.mark.parametrize("type", ["page_view", "product_view", "add_to_cart", "cart_abandoned"])
def test_the_sku_is_optional_for_every_type_of_event(api, lea, type):
    # SPEC: {event_id, customer_id or visitor_id, type, sku?, product_name?, category?, ...}
    without_sku = {k: v for k, v in event("e1", type=type, category="audio").items() if k != "sku"}

    response = post(api, without_sku)

    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert BrowsingEvent.objects.get().sku == ""


def test_a_product_view_without_a_sku_counts_towards_its_category_alone(api, lea):
    post(
        api,
        event("listing", sku=None, category="audio", occurred_at=ago(hours=2)),
        event("x200", category="audio", occurred_at=ago(hours=1)),
    )

    audio = CategoryIntent.objects.get(customer=lea, category="audio")
    assert len(audio.view_times) == 2
    assert audio.score == pytest.approx(2.0, rel=0.01)
    assert list(ProductIntent.objects.values_list("sku", flat=True)) == ["X200"]
    assert list(Product.objects.values_list("sku", flat=True)) == ["X200"]


def test_a_cart_event_without_a_sku_sets_its_categorys_cart_state(api, lea):
    post(
        api, event("cart", type="add_to_cart", sku=None, category="audio", occurred_at=ago(hours=2))
    )
    assert CategoryIntent.objects.get(category="audio").cart_state == "in_cart"

    gone_at = ago(hours=1)
    post(api, event("gone", type="cart_abandoned", sku=None, category="audio", occurred_at=gone_at))

    audio = CategoryIntent.objects.get(category="audio")
    assert (audio.cart_state, audio.cart_updated_at) == (
        "abandoned",
        datetime.fromisoformat(gone_at),
    )
    assert not ProductIntent.objects.exists()


def test_a_campaigns_category_cart_condition_reads_a_cart_abandoned_without_a_sku(api, lea):
    post(api, event("gone", type="cart_abandoned", sku=None, category="audio"))
    now = timezone.now()
    signals = decisions.load_signals([lea.pk], now=now)[lea.pk]
    customer = rules.CustomerFacts(
        key="C-1",
        opted_in=True,
        has_phone=True,
        timezone="Europe/Paris",
        products=signals.products,
        categories=signals.categories,
    )

    abandoned_audio = rules.IntentCondition(categories=("audio",), cart_abandoned=True)
    match = rules.intent_match(abandoned_audio, customer, now)

    assert match is not None and "category audio: cart abandoned" in match.detail


@pytest.mark.parametrize("type", ["page_view", "product_view", "add_to_cart", "cart_abandoned"])
def test_an_event_with_neither_sku_nor_category_changes_no_product_or_category_intent(
    api, lea, type
):
    post(api, event("before", type="add_to_cart", category="audio", occurred_at=ago(hours=2)))
    intent_before = list(ProductIntent.objects.values()), list(CategoryIntent.objects.values())

    response = post(api, event("bare", type=type, sku=None))

    assert response.json()["accepted"] == 1
    assert BrowsingEvent.objects.filter(event_id="bare").exists()
    assert (list(ProductIntent.objects.values()), list(CategoryIntent.objects.values())) == (
        intent_before
    )


@pytest.mark.parametrize("type", ["page_view", "product_view"])
def test_a_view_naming_nothing_changes_no_intent_at_all(api, lea, type):
    post(api, event("bare", type=type, sku=None))

    assert not CartIntent.objects.exists()


def test_a_cart_event_naming_nothing_sets_the_whole_carts_state_whatever_the_order(api, lea):
    gone_at, back_at = ago(hours=2), ago(hours=1)
    post(api, event("back", type="add_to_cart", sku=None, occurred_at=back_at))
    post(api, event("gone", type="cart_abandoned", sku=None, occurred_at=gone_at))

    cart = CartIntent.objects.get(customer=lea)
    assert (cart.cart_state, cart.cart_updated_at) == ("in_cart", datetime.fromisoformat(back_at))
    assert cart.last_seen_at == datetime.fromisoformat(back_at)
    assert cart.score > 5.0  # both events count

    again = ago(minutes=30)
    post(api, event("again", type="cart_abandoned", sku=None, occurred_at=again))

    cart.refresh_from_db()
    assert (cart.cart_state, cart.cart_updated_at) == ("abandoned", datetime.fromisoformat(again))
    signals = decisions.load_signals([lea.pk], now=timezone.now())[lea.pk]
    assert signals.cart.cart_state == "abandoned"


def test_a_view_without_its_category_counts_towards_the_skus_last_known_one(api, lea):
    post(api, event("e0", category="audio", occurred_at=ago(hours=4)))

    post(api, *[event(f"e{n}", occurred_at=ago(hours=n)) for n in (1, 2, 3)])

    assert len(CategoryIntent.objects.get(customer=lea, category="audio").view_times) == 4


def test_a_batch_counts_a_view_without_its_category_towards_one_sent_later_in_it(api, lea):
    post(
        api,
        event("first", occurred_at=ago(hours=2)),
        event("second", category="audio", occurred_at=ago(hours=1)),
    )

    assert len(CategoryIntent.objects.get(customer=lea, category="audio").view_times) == 2


def category_intent(customer, category):
    fields = ["view_times", "last_seen_at", "cart_state", "cart_updated_at", "score_at"]
    row = CategoryIntent.objects.filter(customer=customer, category=category)
    return row.values(*fields).get(), row.get().score


def test_category_intent_does_not_depend_on_which_batch_first_named_the_category(api, lea):
    # The site sends the category with the add-to-cart, not with each product view.
    views = [event(f"v{n}", occurred_at=ago(hours=5 - n)) for n in range(3)]
    cart = event("cart", type="add_to_cart", category="audio", occurred_at=ago(hours=1))
    post(api, *views)
    post(api, cart)

    tom = CustomerFactory(external_id="C-2")
    post(api, *[{**e, "event_id": f"tom-{e['event_id']}", "customer_id": "C-2"} for e in views])
    post(api, {**cart, "event_id": "tom-cart", "customer_id": "C-2"})
    # The same events, in one batch.
    zoe = CustomerFactory(external_id="C-3")
    post(
        api,
        *[{**e, "event_id": f"zoe-{e['event_id']}", "customer_id": "C-3"} for e in [*views, cart]],
    )

    lea_audio, lea_score = category_intent(lea, "audio")
    assert len(lea_audio["view_times"]) == 3
    assert lea_audio["cart_state"] == "in_cart"
    for other in (tom, zoe):
        audio, score = category_intent(other, "audio")
        assert audio == lea_audio
        assert score == pytest.approx(lea_score)


def test_views_counted_towards_a_category_named_later_are_counted_once(api, lea):
    post(api, event("v1", occurred_at=ago(hours=5)))
    post(api, event("named", category="audio", occurred_at=ago(hours=4)))

    post(
        api,
        event("v2", occurred_at=ago(hours=3)),
        event("named-again", category="audio", occurred_at=ago(hours=2)),
    )
    post(api, event("v3", occurred_at=ago(hours=1)))

    assert len(CategoryIntent.objects.get(customer=lea, category="audio").view_times) == 5
    assert len(ProductIntent.objects.get(customer=lea).view_times) == 5


def test_a_late_event_does_not_move_a_sku_back_to_its_old_category(api, lea):
    post(api, event("new", category="headphones", occurred_at=ago(hours=2)))
    # A late event from before the catalogue was reorganised.
    post(api, event("old", category="audio", occurred_at=ago(days=3)))
    # Then views without a category: they count towards the SKU's current category.
    post(api, event("now", occurred_at=ago(hours=1)))
    tom = CustomerFactory(external_id="C-2")
    post(api, {**event("tom"), "customer_id": "C-2"})

    assert Product.objects.get(sku="X200").category == "headphones"
    assert ProductIntent.objects.get(customer=lea).category == "headphones"
    assert len(CategoryIntent.objects.get(customer=lea, category="headphones").view_times) == 2
    # The late event still counts towards the category it named.
    assert len(CategoryIntent.objects.get(customer=lea, category="audio").view_times) == 1
    assert ProductIntent.objects.get(customer=tom).category == "headphones"


def test_a_late_event_in_the_same_batch_does_not_move_a_sku_back_to_its_old_category(api, lea):
    post(api, event("new", category="headphones", occurred_at=ago(hours=2)))

    post(
        api,
        event("old", category="audio", occurred_at=ago(days=3)),
        event("now", occurred_at=ago(hours=1)),
    )

    assert Product.objects.get(sku="X200").category == "headphones"
    assert ProductIntent.objects.get(customer=lea).category == "headphones"
    assert len(CategoryIntent.objects.get(customer=lea, category="headphones").view_times) == 2


def test_a_batch_inserts_new_visitors_and_intent_rows_in_key_order(api, lea):
    """Every batch inserts the rows it creates in the same order, so two concurrent batches
    creating the same rows queue on the first instead of each waiting for the other."""
    keys = [f"{n:02}" for n in range(30)]
    post(api, *[event(f"e{key}", sku=f"SKU-{key}", visitor_id=f"v-{key}") for key in keys])

    assert list(Visitor.objects.order_by("pk").values_list("visitor_id", flat=True)) == [
        f"v-{key}" for key in keys
    ]
    assert list(ProductIntent.objects.order_by("pk").values_list("sku", flat=True)) == [
        f"SKU-{key}" for key in keys
    ]


def test_a_view_without_its_category_counts_towards_the_catalogues(api, lea):
    CustomerFactory(external_id="C-2")
    post(api, {**event("tom"), "customer_id": "C-2", "category": "audio"})

    post(api, event("lea"))

    assert CategoryIntent.objects.filter(customer=lea, category="audio").exists()
    assert ProductIntent.objects.get(customer=lea).category == "audio"


def test_an_event_batch_takes_as_many_queries_however_many_events_it_holds(api, lea):
    """Ingest is a hot path: no query an event (STYLE.md)."""
    CustomerFactory(external_id="C-2")
    post(api, event("seed", category="audio"))

    def batch(tag, size):
        return [
            {
                **event(f"{tag}-{n}", sku=f"SKU-{tag}-{n % 5}", occurred_at=ago(minutes=n + 1)),
                "customer_id": f"C-{n % 2 + 1}",
                "visitor_id": f"v-{tag}-{n}",
                **({"category": f"cat-{n % 3}"} if n % 2 else {}),
            }
            for n in range(size)
        ] + [event(f"{tag}-x200")]

    counts = []
    for tag, size in (("small", 4), ("large", 40)):
        with CaptureQueriesContext(connection) as queries:
            assert post(api, *batch(tag, size)).json()["accepted"] == size + 1
        counts.append(len(queries))

    assert counts[0] == counts[1]


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


FLOAT_FOR_TEXT = "Must be a string, not a floating-point number (nor NaN or Infinity)."


@pytest.mark.parametrize(
    "field", ["event_id", "customer_id", "visitor_id", "sku", "product_name", "category", "url"]
)
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "2.5"])
def test_a_float_in_a_text_field_rejects_the_event_instead_of_storing_its_spelling(
    api, lea, field, literal
):
    # A bare NaN or Infinity is not JSON, but the parser reads it (see parsers.py).
    body = json.dumps({"events": [event("good"), {**event("bad"), field: "LITERAL"}]})
    body = body.replace('"LITERAL"', literal)

    response = api.post("/api/v1/events", body, content_type="application/json")

    assert response.status_code == 202
    assert response.json()["accepted"] == 1
    assert response.json()["rejected"] == [{"index": 1, "errors": {field: [FLOAT_FOR_TEXT]}}]
    assert list(BrowsingEvent.objects.values_list("event_id", flat=True)) == ["good"]
    assert list(Product.objects.values_list("sku", flat=True)) == ["X200"]


def test_integer_ids_are_kept_as_their_digits(api):
    CustomerFactory(external_id="42")

    response = post(api, event(7, customer_id=42, sku=200))

    assert response.json()["accepted"] == 1
    assert list(BrowsingEvent.objects.values_list("event_id", "sku")) == [("7", "200")]


def test_events_are_accepted_while_the_rate_limit_cache_is_down(api, lea, settings):
    settings.INGEST_RATE_LIMIT_PER_MINUTE = 1
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }

    statuses = [post(api, event(f"e{n}")).status_code for n in range(2)]

    assert statuses == [202, 202]
    assert BrowsingEvent.objects.count() == 2


def facts_of(customer):
    signals = decisions.load_signals([customer.pk], now=timezone.now())[customer.pk]
    return rules.CustomerFacts(
        key=customer.external_id,
        opted_in=True,
        has_phone=True,
        timezone="Europe/Paris",
        products=signals.products,
        categories=signals.categories,
    )


def test_a_category_spelt_with_another_case_or_spacing_counts_as_the_same_category(api, lea):
    # One site, three spellings: the breadcrumb's, the data layer's, a template's.
    post(
        api,
        event("e1", sku="X200", category="Home Audio", occurred_at=ago(hours=3)),
        event("e2", sku="Z1", category="home audio", occurred_at=ago(hours=2)),
        event("e3", sku="Z1", category="HOME  AUDIO", occurred_at=ago(hours=1)),
    )

    three_views = rules.IntentCondition(categories=("Home audio",), min_views=3, within_days=7)
    match = rules.intent_match(three_views, facts_of(lea), timezone.now())

    assert match is not None and "3 views" in match.detail
    assert match.sku == "Z1"  # the customer's most viewed product in it
    assert match.strength == pytest.approx(3.0, rel=0.01)


def test_a_cart_abandoned_in_a_category_spelt_otherwise_meets_the_campaigns_cart_condition(
    api, lea
):
    post(api, event("gone", type="cart_abandoned", category="Audio "))

    abandoned_audio = rules.IntentCondition(categories=("audio",), cart_abandoned=True)
    match = rules.intent_match(abandoned_audio, facts_of(lea), timezone.now())

    assert match is not None and match.sku == "X200"


def test_an_abandoned_cart_known_by_its_category_alone_is_named_as_the_site_spells_it(api, lea):
    post(api, event("gone", type="cart_abandoned", sku=None, category="Home Audio"))

    any_abandoned_cart = rules.IntentCondition(cart_abandoned=True)
    match = rules.intent_match(any_abandoned_cart, facts_of(lea), timezone.now())

    assert match is not None and match.product_name == "Home Audio"
