"""Campaign matching and limits, on plain values."""

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promotions import rules
from promotions.rules import (
    BrowsingSignal,
    BudgetUse,
    CampaignRule,
    CustomerFacts,
    GlobalLimits,
    IntentCondition,
    PresenceFact,
)

# A Tuesday, 15:00 in Paris.
NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
DAY = 86_400
RIVOLI, OPERA = 1, 2


def views(*days_ago: float) -> tuple[int, ...]:
    return tuple(sorted(int(NOW.timestamp() - d * DAY) for d in days_ago))


LEA = CustomerFacts(
    key="C-1001",
    opted_in=True,
    has_phone=True,
    timezone="Europe/Paris",
    products={
        "X200": BrowsingSignal(
            "X200", views(0.1, 1, 2), score=2.5, category="audio", product_name="X200 headphones"
        ),
        "X100": BrowsingSignal("X100", views(3), score=0.7, category="audio"),
    },
    categories={"audio": BrowsingSignal("audio", views(0.1, 1, 2, 3), score=3.2)},
)
ENTERED = PresenceFact("entered", RIVOLI, NOW)
X200_ENTER = CampaignRule(
    id=1, priority=10, intent=IntentCondition(skus=("X200",), min_views=3, within_days=14)
)
NO_LIMITS = GlobalLimits(cap_count=3, cap_days=7, quiet_hours=None)


def decide(campaigns, event=ENTERED, customer=LEA, budgets=None, limits=NO_LIMITS, now=NOW):
    return rules.decide(campaigns, event, customer, budgets or {}, limits, now)


# --- Triggers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("campaign", "event", "expected"),
    [
        (CampaignRule(1), ENTERED, True),
        (CampaignRule(1), PresenceFact("exited", RIVOLI, NOW), False),
        (CampaignRule(1, stores=frozenset({OPERA})), ENTERED, False),
        (CampaignRule(1, stores=frozenset({RIVOLI})), ENTERED, True),
        (CampaignRule(1), PresenceFact("entered", RIVOLI, NOW, zone_code="entrance"), False),
        (
            CampaignRule(1, trigger_type="beacon_zone", trigger_zone="entrance"),
            PresenceFact("entered", RIVOLI, NOW, zone_code="entrance"),
            True,
        ),
        (
            CampaignRule(1, trigger_type="beacon_zone", trigger_zone="entrance"),
            PresenceFact("entered", RIVOLI, NOW, zone_code="electronics"),
            False,
        ),
        (
            CampaignRule(1, trigger_type="dwell", trigger_minutes=5),
            PresenceFact("dwelled", RIVOLI, NOW, minutes=5),
            True,
        ),
        (
            CampaignRule(1, trigger_type="dwell", trigger_minutes=5),
            PresenceFact("dwelled", RIVOLI, NOW, minutes=20),
            False,
        ),
        (
            CampaignRule(1, trigger_type="near", trigger_distance_m=500),
            PresenceFact("near", RIVOLI, NOW, distance_m=500.0),
            True,
        ),
        (
            CampaignRule(1, trigger_type="near", trigger_distance_m=500),
            PresenceFact("near", RIVOLI, NOW, distance_m=200.0),
            False,
        ),
        (CampaignRule(1, starts_at=NOW + timedelta(hours=1)), ENTERED, False),
        (CampaignRule(1, ends_at=NOW), ENTERED, False),
        (CampaignRule(1, ends_at=NOW + timedelta(seconds=1)), ENTERED, True),
    ],
)
def test_a_campaign_triggers_on_its_own_event_and_stores(campaign, event, expected):
    assert rules.triggered(campaign, event) is expected


# --- Intent -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "sku", "product_name"),
    [
        (None, "", ""),
        (IntentCondition(skus=("X200",), min_views=3, within_days=14), "X200", "X200 headphones"),
        (IntentCondition(skus=("X200",), min_views=4, within_days=14), None, None),
        (IntentCondition(skus=("X200",), min_views=2, within_days=1.5), "X200", "X200 headphones"),
        (IntentCondition(skus=("X200",), min_views=3, within_days=1), None, None),
        (IntentCondition(skus=("NOPE",), min_views=1), None, None),
        # A category: the most viewed product in it names the offer.
        (IntentCondition(categories=("audio",), min_views=4), "X200", "X200 headphones"),
        # The catalogue has no name for X100: the SKU stands in.
        (IntentCondition(skus=("X100",), min_views=1), "X100", "X100"),
    ],
)
def test_intent_matches_views_within_the_window(condition, sku, product_name):
    match = rules.intent_match(condition, LEA, NOW)
    if sku is None:
        assert match is None
    else:
        assert (match.sku, match.product_name) == (sku, product_name)


def test_a_cart_condition_needs_an_abandoned_cart_within_the_window():
    condition = IntentCondition(skus=("X200",), cart_abandoned=True, within_days=7)
    assert rules.intent_match(condition, LEA, NOW) is None
    abandoned = replace(
        LEA.products["X200"], cart_state="abandoned", cart_updated_at=NOW - timedelta(days=2)
    )
    customer = replace(LEA, products={**LEA.products, "X200": abandoned})
    assert rules.intent_match(condition, customer, NOW).sku == "X200"
    stale = replace(abandoned, cart_updated_at=NOW - timedelta(days=8))
    customer = replace(LEA, products={**LEA.products, "X200": stale})
    assert rules.intent_match(condition, customer, NOW) is None


def test_a_cart_flag_alone_matches_any_abandoned_cart():
    abandoned = replace(
        LEA.products["X100"], cart_state="abandoned", cart_updated_at=NOW - timedelta(hours=1)
    )
    customer = replace(LEA, products={**LEA.products, "X100": abandoned})
    match = rules.intent_match(IntentCondition(cart_abandoned=True), customer, NOW)
    assert match.sku == "X100"


def test_a_cart_flag_alone_matches_a_cart_abandoned_in_a_category_without_a_sku():
    # The site reported the cart with its category alone: the favourite product names it.
    abandoned = replace(
        LEA.categories["audio"], cart_state="abandoned", cart_updated_at=NOW - timedelta(hours=1)
    )
    customer = replace(LEA, categories={"audio": abandoned})

    match = rules.intent_match(IntentCondition(cart_abandoned=True), customer, NOW)

    assert (match.sku, match.product_name) == ("X200", "X200 headphones")
    assert "category audio: cart abandoned" in match.detail


# The whole cart, abandoned an hour ago and reported with neither a SKU nor a category.
WHOLE_CART = BrowsingSignal(
    "", score=4.9, cart_state="abandoned", cart_updated_at=NOW - timedelta(hours=1)
)


def test_a_cart_flag_alone_matches_the_whole_cart_when_no_product_or_category_cart_does():
    customer = replace(LEA, cart=WHOLE_CART)

    match = rules.intent_match(IntentCondition(cart_abandoned=True), customer, NOW)

    assert (match.sku, match.product_name, match.strength) == ("", "", 4.9)
    assert match.detail == "the cart, reported without a SKU: cart abandoned, score 4.90"


@pytest.mark.parametrize(
    ("cart", "condition"),
    [
        (replace(WHOLE_CART, cart_state="in_cart"), IntentCondition(cart_abandoned=True)),
        (
            replace(WHOLE_CART, cart_updated_at=NOW - timedelta(days=8)),
            IntentCondition(cart_abandoned=True, within_days=7),
        ),
        # A condition naming a SKU or a category is about those alone: none was in the cart.
        (WHOLE_CART, IntentCondition(skus=("X200",), cart_abandoned=True)),
        (WHOLE_CART, IntentCondition(categories=("audio",), cart_abandoned=True)),
    ],
    ids=["restored", "before_the_window", "naming_a_sku", "naming_a_category"],
)
def test_the_whole_cart_does_not_match(cart, condition):
    assert rules.intent_match(condition, replace(LEA, cart=cart), NOW) is None


def test_a_product_s_own_abandoned_cart_comes_before_the_whole_cart():
    abandoned = replace(
        LEA.products["X100"], cart_state="abandoned", cart_updated_at=NOW - timedelta(hours=3)
    )
    customer = replace(LEA, products={**LEA.products, "X100": abandoned}, cart=WHOLE_CART)

    match = rules.intent_match(IntentCondition(cart_abandoned=True), customer, NOW)

    assert match.sku == "X100"
    assert match.detail.startswith("SKU X100")


def in_cart(signal, hours_ago):
    return replace(signal, cart_state="in_cart", cart_updated_at=NOW - timedelta(hours=hours_ago))


def test_the_whole_cart_names_the_product_last_put_in_it_before_it_was_abandoned():
    products = {"X200": in_cart(LEA.products["X200"], 3), "X100": in_cart(LEA.products["X100"], 2)}
    customer = replace(LEA, products=products, cart=WHOLE_CART)

    match = rules.intent_match(IntentCondition(cart_abandoned=True), customer, NOW)

    assert (match.sku, match.product_name) == ("X100", "X100")
    assert match.detail.startswith("the cart, reported without a SKU")


@pytest.mark.parametrize("restored_in", ["products", "categories"])
def test_a_product_or_category_put_in_the_cart_since_restores_the_whole_cart(restored_in):
    signals = getattr(LEA, restored_in)
    key = next(iter(signals))
    customer = replace(
        LEA, cart=WHOLE_CART, **{restored_in: {**signals, key: in_cart(signals[key], 0.5)}}
    )

    assert rules.intent_match(IntentCondition(cart_abandoned=True), customer, NOW) is None


def test_a_view_condition_naming_nothing_still_counts_views_of_one_product():
    # Four views across a category are not three views of any one product.
    customer = replace(
        LEA, products={"X100": replace(LEA.products["X100"], view_times=views(1, 2))}
    )
    assert rules.intent_match(IntentCondition(min_views=3), customer, NOW) is None


# --- Limits and reasons -----------------------------------------------------------------


def test_the_seed_example_queues_one_sms():
    [decision] = decide([X200_ENTER])
    assert (decision.status, decision.reason, decision.match.sku) == ("queued", "", "X200")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"customer": replace(LEA, opted_in=False)}, "no_consent"),
        ({"customer": replace(LEA, has_phone=False)}, "no_phone"),
        # Consent is checked first: it holds whatever else.
        ({"customer": replace(LEA, opted_in=False, has_phone=False)}, "no_consent"),
        ({"campaign": {"quiet_hours": (time(14, 30), time(16, 0))}}, "quiet_hours"),
        ({"campaign": {"quiet_hours": (time(21, 0), time(8, 0))}}, ""),
        # A window holds its start minute and frees its end minute: [start, end).
        ({"campaign": {"quiet_hours": (time(15, 0), time(16, 0))}}, "quiet_hours"),
        ({"campaign": {"quiet_hours": (time(14, 0), time(15, 0))}}, ""),
        ({"campaign": {"quiet_hours": (time(21, 0), time(15, 0))}}, ""),  # across midnight
        ({"now": NOW.replace(hour=21)}, ""),  # 22:00 in Paris: no quiet hours configured
        (
            {"campaign": {"quiet_hours": (time(21, 0), time(8, 0))}, "now": NOW.replace(hour=21)},
            "quiet_hours",
        ),
        ({"limits": replace(NO_LIMITS, quiet_hours=(time(15, 0), time(15, 30)))}, "quiet_hours"),
        ({"campaign": {"allowed_days": frozenset({"sat", "sun"})}}, "quiet_hours"),
        (
            {
                "campaign": {"per_customer_days": 7},
                "customer": replace(LEA, sent_by_campaign={1: [NOW - timedelta(days=6)]}),
            },
            "campaign_cap",
        ),
        (
            {
                "campaign": {"per_customer_days": 7},
                "customer": replace(LEA, sent_by_campaign={1: [NOW - timedelta(days=8)]}),
            },
            "",
        ),
        # The cap window is (now - 7 days, now]: an SMS this very instant counts, one sent
        # exactly 7 days ago no longer does.
        (
            {
                "campaign": {"per_customer_days": 7},
                "customer": replace(LEA, sent_by_campaign={1: [NOW]}),
            },
            "campaign_cap",
        ),
        (
            {
                "campaign": {"per_customer_days": 7},
                "customer": replace(LEA, sent_by_campaign={1: [NOW - timedelta(days=7)]}),
            },
            "",
        ),
        (
            {"customer": replace(LEA, sent=[NOW - timedelta(days=d) for d in (1, 2, 3)])},
            "global_cap",
        ),
        ({"customer": replace(LEA, sent=[NOW - timedelta(days=d) for d in (1, 2, 8)])}, ""),
        (
            {
                "customer": replace(LEA, sent=[NOW - timedelta(minutes=30)]),
                "limits": replace(NO_LIMITS, min_gap=timedelta(hours=1)),
            },
            "global_cap",
        ),
        (
            {
                "customer": replace(LEA, sent=[NOW - timedelta(minutes=61)]),
                "limits": replace(NO_LIMITS, min_gap=timedelta(hours=1)),
            },
            "",
        ),
        ({"campaign": {"daily_budget": 10}, "budgets": {1: BudgetUse(10, 10)}}, "budget"),
        ({"campaign": {"daily_budget": 10}, "budgets": {1: BudgetUse(9, 500)}}, ""),
        ({"campaign": {"total_budget": 100}, "budgets": {1: BudgetUse(0, 100)}}, "budget"),
    ],
)
def test_each_limit_suppresses_with_its_reason(change, reason):
    campaign = replace(X200_ENTER, **change.get("campaign", {}))
    [decision] = decide(
        [campaign],
        customer=change.get("customer", LEA),
        budgets=change.get("budgets"),
        limits=change.get("limits", NO_LIMITS),
        now=change.get("now", NOW),
    )
    assert decision.reason == reason
    assert decision.status == ("suppressed" if reason else "queued")


@pytest.mark.parametrize(
    ("customer", "limits", "detail"),
    [
        (
            replace(LEA, sent=[NOW - timedelta(days=d) for d in (1, 2, 3)]),
            NO_LIMITS,
            "3 SMS in 7 days already",
        ),
        (
            replace(LEA, sent=[NOW - timedelta(minutes=30)]),
            replace(NO_LIMITS, min_gap=timedelta(hours=1)),
            "another SMS within the last 60 minutes",
        ),
    ],
    ids=["weekly cap", "minimum gap"],
)
def test_the_trace_says_which_global_limit_held_the_sms(customer, limits, detail):
    # Both are global_cap to the API; a marketer reading the trace must tell them apart.
    [decision] = decide([X200_ENTER], customer=customer, limits=limits)
    assert (decision.reason, decision.detail) == ("global_cap", detail)


@pytest.mark.parametrize(
    ("codes_left", "reason"), [(None, ""), (1, ""), (0, "budget")], ids=["no_pool", "one", "none"]
)
def test_a_used_up_code_pool_is_a_spent_budget(codes_left, reason):
    [decision] = decide([X200_ENTER], budgets={1: BudgetUse(codes_left=codes_left)})
    assert (decision.status, decision.reason) == ("suppressed" if reason else "queued", reason)


LATER_SMS = pytest.mark.parametrize(
    ("campaign", "customer", "limits", "reason"),
    [
        (
            {"per_customer_days": 7},
            replace(LEA, sent_by_campaign={1: [NOW + timedelta(seconds=2)]}),
            NO_LIMITS,
            "campaign_cap",
        ),
        (
            {},
            replace(LEA, sent=[NOW + timedelta(seconds=d) for d in (1, 2, 3)]),
            NO_LIMITS,
            "global_cap",
        ),
        (
            {},
            replace(LEA, sent=[NOW + timedelta(seconds=2)]),
            replace(NO_LIMITS, min_gap=timedelta(hours=1)),
            "global_cap",
        ),
    ],
    ids=["campaign_cap", "global_cap", "min_gap"],
)


@LATER_SMS
def test_an_sms_stamped_after_the_moment_judged_still_counts(campaign, customer, limits, reason):
    # A task reads its clock before it waits for the customer's lock: a worker that started
    # later may have committed an SMS stamped after this one's `now`.
    [decision] = decide([replace(X200_ENTER, **campaign)], customer=customer, limits=limits)
    assert (decision.status, decision.reason) == ("suppressed", reason)


def test_quiet_hours_are_read_in_the_customers_timezone():
    # 15:00 in Paris is 09:00 in New York: inside a quiet window of 08:00-10:00 there only.
    campaign = replace(X200_ENTER, quiet_hours=(time(8, 0), time(10, 0)))
    [paris] = decide([campaign])
    [new_york] = decide([campaign], customer=replace(LEA, timezone="America/New_York"))
    assert (paris.reason, new_york.reason) == ("", "quiet_hours")


def test_a_holdout_share_is_deterministic_and_close_to_its_percentage():
    members = [rules.in_holdout(7, f"C-{n}", 20) for n in range(10_000)]
    assert members == [rules.in_holdout(7, f"C-{n}", 20) for n in range(10_000)]
    assert 1_850 <= sum(members) <= 2_150
    assert not any(rules.in_holdout(7, f"C-{n}", 0) for n in range(1000))
    assert all(rules.in_holdout(7, f"C-{n}", 100) for n in range(1000))


# Each key's bucket in campaign 7, worked out once from the contract (the first 8 bytes of
# sha256("7:<customer key>") as a big-endian integer, modulo 100) and written down here:
# recomputing it in the test would only repeat the code. A change to the draw or to its
# bound shows.
@pytest.mark.parametrize(
    ("key", "percent", "held"),
    [
        ("C-67", 0, False),  # bucket 0
        ("C-67", 1, True),
        ("C-2", 20, True),  # bucket 19
        ("C-113", 20, False),  # bucket 20
        ("C-113", 21, True),
        ("C-140", 99, False),  # bucket 99
        ("C-140", 100, True),
    ],
)
def test_a_holdout_of_n_percent_holds_the_customers_in_buckets_below_n(key, percent, held):
    assert rules.in_holdout(7, key, percent) is held


def test_a_holdout_customer_is_recorded_and_not_sent():
    key = next(f"C-{n}" for n in range(1000) if rules.in_holdout(1, f"C-{n}", 50))
    [decision] = decide([replace(X200_ENTER, holdout_percent=50)], customer=replace(LEA, key=key))
    assert (decision.status, decision.reason) == ("holdout", "holdout")


@pytest.mark.parametrize(
    ("first_held_out", "percent", "status"), [(False, 100, "queued"), (True, 0, "holdout")]
)
def test_a_customer_stays_in_the_group_of_their_first_decision_whatever_the_share_now(
    first_held_out, percent, status
):
    campaign = replace(X200_ENTER, holdout_percent=percent)
    customer = replace(LEA, held_out_by_campaign={X200_ENTER.id: first_held_out})
    [decision] = decide([campaign], customer=customer)
    assert decision.status == status


@pytest.mark.parametrize(
    ("first_holdout_at", "first_texted_at", "held_out"),
    [
        (None, NOW, False),
        (NOW, None, True),
        (NOW, NOW + timedelta(days=1), True),
        (NOW + timedelta(days=1), NOW, False),
    ],
)
def test_a_customer_s_group_is_their_first_decision_s(first_holdout_at, first_texted_at, held_out):
    assert rules.first_held_out(first_holdout_at, first_texted_at) is held_out


# --- Several campaigns ------------------------------------------------------------------


def test_at_most_one_sms_goes_out_the_highest_priority_first():
    low = CampaignRule(2, priority=1)
    high = replace(X200_ENTER, id=3, priority=20)
    decisions = decide([low, X200_ENTER, high])
    assert [(d.campaign, d.status) for d in decisions] == [(3, "queued")]


def test_between_equal_priorities_the_stronger_intent_wins():
    audio = CampaignRule(4, priority=10, intent=IntentCondition(categories=("audio",)))
    x100 = CampaignRule(5, priority=10, intent=IntentCondition(skus=("X100",)))
    [decision] = decide([x100, X200_ENTER, audio])
    assert decision.campaign == 4  # the category's score 3.2 beats X200's 2.5 and X100's 0.7


@pytest.mark.parametrize(
    ("campaign", "strength", "other", "other_strength", "first"),
    [
        (CampaignRule(2, priority=20), 0.1, CampaignRule(1, priority=10), 9.0, True),
        (CampaignRule(2, priority=10), 0.1, CampaignRule(1, priority=20), 9.0, False),
        (CampaignRule(2, priority=10), 3.0, CampaignRule(1, priority=10), 2.5, True),
        (CampaignRule(2, priority=10), 2.5, CampaignRule(1, priority=10), 3.0, False),
        # All else equal, the older campaign (the lower id) goes first, as `rank` orders them.
        (CampaignRule(2, priority=10), 2.5, CampaignRule(1, priority=10), 2.5, False),
        (CampaignRule(1, priority=10), 2.5, CampaignRule(2, priority=10), 2.5, True),
    ],
)
def test_a_campaign_ranks_before_another_by_priority_then_intent_then_age(
    campaign, strength, other, other_strength, first
):
    match, other_match = rules.IntentMatch(strength), rules.IntentMatch(other_strength)
    assert rules.ranks_before(campaign, match, other, other_match) is first


def test_a_suppressed_campaign_makes_way_for_the_next_one_and_both_are_recorded():
    capped = replace(X200_ENTER, daily_budget=0)
    fallback = CampaignRule(2, priority=1)
    decisions = decide([capped, fallback])
    assert [(d.campaign, d.status, d.reason) for d in decisions] == [
        (1, "suppressed", "budget"),
        (2, "queued", ""),
    ]


def test_a_used_up_code_pool_makes_way_for_the_next_campaign():
    pooled = replace(X200_ENTER, holdout_percent=100)
    fallback = CampaignRule(2, priority=1)
    decisions = decide([pooled, fallback], budgets={1: BudgetUse(codes_left=0)})
    # Spent before the holdout is drawn, as a budget is: the holdout grows with the treated.
    assert [(d.campaign, d.status, d.reason) for d in decisions] == [
        (1, "suppressed", "budget"),
        (2, "queued", ""),
    ]


def test_one_sms_takes_one_code_from_the_pool_and_one_from_each_budget():
    assert BudgetUse(3, 40, codes_left=2).after_one_sms() == BudgetUse(4, 41, codes_left=1)
    assert BudgetUse(3, 40).after_one_sms() == BudgetUse(4, 41, codes_left=None)


def test_without_consent_every_matching_campaign_is_recorded_and_none_sent():
    decisions = decide([X200_ENTER, CampaignRule(2)], customer=replace(LEA, opted_in=False))
    assert [(d.status, d.reason) for d in decisions] == [("suppressed", "no_consent")] * 2


campaign_rules = st.builds(
    CampaignRule,
    id=st.integers(1, 50),
    priority=st.integers(-3, 3),
    stores=st.frozensets(st.sampled_from([RIVOLI, OPERA]), max_size=2),
    daily_budget=st.none() | st.integers(0, 2),
    holdout_percent=st.sampled_from([0, 50, 100]),
    per_customer_days=st.none() | st.just(7),
)


@given(st.lists(campaign_rules, max_size=8, unique_by=lambda c: c.id), st.booleans())
def test_never_more_than_one_sms_and_never_without_consent(campaigns, opted_in):
    customer = replace(LEA, opted_in=opted_in, sent_by_campaign={1: [NOW]})
    decisions = decide(
        campaigns, customer=customer, budgets={c.id: BudgetUse(1, 1) for c in campaigns}
    )
    sending = [d for d in decisions if d.status in ("queued", "holdout")]
    assert len(sending) <= 1
    assert all(d.status != "queued" for d in decisions) or opted_in
    # Everything before the winner was suppressed with a reason.
    assert all(d.reason for d in decisions if d.status == "suppressed")


# --- The campaign's dates at the decision -----------------------------------------------


@pytest.mark.parametrize(
    ("dates", "winner"),
    [
        ({"ends_at": NOW - timedelta(seconds=1)}, 2),
        ({"ends_at": NOW}, 2),
        ({"ends_at": NOW + timedelta(seconds=1)}, 1),
        ({"starts_at": NOW + timedelta(seconds=1)}, 2),
        ({"starts_at": NOW - timedelta(seconds=10)}, 1),
    ],
)
def test_a_visit_goes_to_a_campaign_running_when_it_is_decided(dates, winner):
    # Entered 5 s before the decision: a campaign that ended meanwhile can no longer text
    # (its send would find it stopped), so the visit is the next campaign's.
    lunch = replace(X200_ENTER, **dates)
    all_day = CampaignRule(2, priority=1)
    entered = replace(ENTERED, at=NOW - timedelta(seconds=5))
    if "starts_at" in dates:
        # A phone whose clock runs fast reports the visit after the start, before it comes.
        entered = replace(ENTERED, at=NOW + timedelta(seconds=30))
    decisions = decide([lunch, all_day], event=entered)
    assert [(d.campaign, d.status) for d in decisions] == [(winner, "queued")]


moments = st.integers(-900, 900).map(lambda seconds: NOW + timedelta(seconds=seconds))


@given(
    st.lists(
        st.builds(
            CampaignRule,
            id=st.integers(1, 20),
            priority=st.integers(-2, 2),
            starts_at=st.none() | moments,
            ends_at=st.none() | moments,
        ),
        max_size=6,
        unique_by=lambda c: c.id,
    ),
    st.integers(-300, 600),
)
def test_a_decision_to_text_is_only_for_a_campaign_its_send_would_find_running(campaigns, lag):
    # The send checks the campaign's dates at its own moment (rules.runs_at): a campaign
    # chosen that is not running when decided texts no one, and takes the visit from others.
    event = replace(ENTERED, at=NOW - timedelta(seconds=lag))
    decisions = decide(campaigns, event=event)
    running = {c.id for c in campaigns if rules.runs_at(c.starts_at, c.ends_at, NOW)}
    triggered = {c.id for c in campaigns if rules.triggered(c, event)}
    assert {d.campaign for d in decisions} <= running & triggered
    if running & triggered:
        assert [d.status for d in decisions] == ["queued"]
