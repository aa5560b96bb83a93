"""The intent arithmetic, on plain values."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from customers import intent

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
WEEK = 7 * 86400.0


def test_a_score_halves_over_one_half_life():
    score, at = intent.add_to_score(0.0, None, 1.0, T0, WEEK)

    assert intent.score_as_of(score, at, T0 + timedelta(days=7), WEEK) == pytest.approx(0.5)
    assert intent.score_as_of(score, at, T0 + timedelta(days=14), WEEK) == pytest.approx(0.25)


def test_a_later_event_decays_the_stored_score_before_adding():
    score, at = intent.add_to_score(0.0, None, 1.0, T0, WEEK)

    score, at = intent.add_to_score(score, at, 1.0, T0 + timedelta(days=7), WEEK)

    assert (score, at) == (pytest.approx(1.5), T0 + timedelta(days=7))


def test_a_late_event_adds_its_weight_decayed_to_the_stored_time():
    score, at = intent.add_to_score(0.0, None, 1.0, T0 + timedelta(days=7), WEEK)

    score, at = intent.add_to_score(score, at, 1.0, T0, WEEK)

    assert (score, at) == (pytest.approx(1.5), T0 + timedelta(days=7))


events_strategy = st.lists(
    st.tuples(
        st.sampled_from(sorted(intent.EVENT_WEIGHTS)),
        st.integers(min_value=0, max_value=60 * 86400),
    ),
    min_size=1,
    max_size=8,
)


def _fold(events):
    score, score_at, views, cart, cart_at = 0.0, None, [], "", None
    for event_type, offset in events:
        at = T0 + timedelta(seconds=offset)
        score, score_at = intent.add_to_score(
            score, score_at, intent.EVENT_WEIGHTS[event_type], at, WEEK
        )
        if event_type == intent.VIEW_EVENT:
            views = intent.add_view_time(views, int(at.timestamp()), 0)
        cart, cart_at = intent.cart_after(cart, cart_at, event_type, at)
    return score, score_at, views, cart, cart_at


@given(events_strategy)
def test_intent_does_not_depend_on_the_order_events_arrive_in(events):
    expected = _fold(events)
    for order in itertools.islice(itertools.permutations(events), 24):
        score, score_at, views, cart, cart_at = _fold(order)
        assert score == pytest.approx(expected[0])
        assert (score_at, views, cart, cart_at) == expected[1:]


@given(events_strategy, events_strategy)
def test_merging_two_folds_gives_what_folding_all_their_events_gives(events, others):
    score, score_at, views, cart, cart_at = _fold(events)
    other_score, other_at, other_views, other_cart, other_cart_at = _fold(others)

    score, score_at = intent.merge_scores(score, score_at, other_score, other_at, WEEK)
    views = intent.merge_view_times(views, other_views, 0)
    cart, cart_at = intent.merge_carts(cart, cart_at, other_cart, other_cart_at)

    expected = _fold(events + others)
    assert score == pytest.approx(expected[0])
    assert (score_at, views, cart, cart_at) == expected[1:]


def test_merging_nothing_changes_nothing():
    score, at = intent.add_to_score(0.0, None, 1.0, T0, WEEK)

    assert intent.merge_scores(score, at, 0.0, None, WEEK) == (score, at)
    assert intent.merge_carts("in_cart", T0, "", None) == ("in_cart", T0)


def test_views_are_counted_within_a_window():
    day = 86400
    times = []
    for offset in (1, 3, 10, 20):
        times = intent.add_view_time(times, offset * day, 0)

    assert intent.views_since(times, 3 * day) == 3
    assert intent.views_since(times, 11 * day) == 1


def test_views_older_than_the_window_are_dropped_and_the_list_is_capped():
    times = []
    for offset in range(intent.MAX_VIEW_TIMES + 10):
        times = intent.add_view_time(times, offset, window_start=5)

    assert times[0] >= 10
    assert len(times) == intent.MAX_VIEW_TIMES


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([("add_to_cart", 0)], "in_cart"),
        ([("add_to_cart", 0), ("cart_abandoned", 1)], "abandoned"),
        ([("cart_abandoned", 1), ("add_to_cart", 0)], "abandoned"),
        ([("cart_abandoned", 0), ("add_to_cart", 1)], "in_cart"),
        ([("add_to_cart", 0), ("cart_abandoned", 0)], "abandoned"),
        ([("cart_abandoned", 0), ("add_to_cart", 0)], "abandoned"),
        ([("product_view", 5)], ""),
    ],
)
def test_the_cart_state_follows_the_latest_cart_event(events, expected):
    assert _fold(events)[3] == expected


@pytest.mark.parametrize(
    ("categories", "current", "name", "expected"),
    [
        ([], "", "Audio", ["audio"]),
        (["audio"], "Audio", "Home  AUDIO", ["audio", "home audio"]),
        (["audio", "sale"], "sale", "AUDIO", ["audio", "sale"]),
        # A row kept before the lists were: its events counted towards its category.
        ([], "Audio", "Sale", ["audio", "sale"]),
    ],
)
def test_a_products_categories_gather_every_one_its_events_counted_towards(
    categories, current, name, expected
):
    assert intent.with_category(categories, current, name) == expected
