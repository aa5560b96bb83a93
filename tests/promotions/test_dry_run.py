"""A dry run counts what the live engine would have sent over the stored history, no more:
the period it takes, the events live would not decide (too late, won by another campaign),
the other campaigns' SMS as live counted them, and the dwells and approaches presence did
or did not record."""

from collections import Counter, defaultdict
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db.models.signals import post_init
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from customers import intent
from customers.models import ProductIntent
from promotions import decisions, rules, sending, tracking
from promotions.models import (
    Campaign,
    Delivery,
    DeliveryStatus,
    OfferCode,
    Ping,
    PresenceEvent,
)
from tests.factories import (
    CampaignFactory,
    CustomerFactory,
    DeliveryFactory,
    DeviceFactory,
    StoreFactory,
    ZoneFactory,
)

pytestmark = pytest.mark.django_db

RIVOLI = (48.8606, 2.3417)
# About 330 m north of Rivoli: outside its 60 m fence and the exit margin.
STREET = (48.8636, 2.3417)


@pytest.fixture
def rivoli():
    return StoreFactory(code="RIVOLI", latitude=RIVOLI[0], longitude=RIVOLI[1])


def iso(moment: datetime) -> str:
    return moment.isoformat()


def dry_run(api, campaign, *, since: datetime, until: datetime | None = None) -> dict:
    body = {"since": iso(since), "until": iso(until or timezone.now())}
    response = api.post(f"/api/v1/campaigns/{campaign.id}/dry-run", body)
    assert response.status_code == 200, response.json()
    return response.json()


def presence_event(customer, store, *, at: datetime, arrived_at: datetime | None = None, **fields):
    """A presence event as presence records it, decided (or not) when it arrived."""
    fields.setdefault("kind", "entered")
    fields.setdefault("place_key", f"store:{store.id}")
    return PresenceEvent.objects.create(
        customer=customer, store=store, occurred_at=at, created_at=arrived_at or at, **fields
    )


# --- The period -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("0001-01-01T00:00:00Z", "0001-06-01T00:00:00Z", "366 days at most"),
        ("9999-12-31T23:30:00Z", "9999-12-31T23:59:00+14:00", "must be in the past"),
    ],
    ids=["first_year", "last_year"],
)
def test_a_dry_run_out_of_stored_history_is_a_400_that_says_why(
    api, settings, since, until, message
):
    settings.SMS_BUDGET_TIMEZONE = "Pacific/Kiritimati"  # UTC+14
    campaign = CampaignFactory()

    response = api.post(
        f"/api/v1/campaigns/{campaign.id}/dry-run", {"since": since, "until": until}
    )

    assert response.status_code == 400
    [error] = response.json()["since"]
    assert message in error


def test_a_dry_run_as_far_back_as_it_goes_is_answered(api, settings):
    settings.SMS_BUDGET_TIMEZONE = "America/Los_Angeles"
    campaign = CampaignFactory(daily_budget=10)
    since = timezone.now() - timedelta(days=365, hours=23)

    result = dry_run(api, campaign, since=since, until=since + timedelta(days=366))

    assert (result["presence_events"], result["would_send"]) == (0, 0)


ANY_INSTANT = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones()
)
EDGES = [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, tzinfo=UTC)]
# Around the bounds: within the last 366 days, or just before, or ahead, with any offset.
RECENT = st.builds(
    lambda seconds, zone: (datetime.now(UTC) + timedelta(seconds=seconds)).astimezone(zone),
    st.integers(-400 * 86_400, 400 * 86_400),
    st.timezones(),
)


@hypothesis_settings(
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    since=ANY_INSTANT | RECENT | st.sampled_from(EDGES),
    until=ANY_INSTANT | RECENT | st.sampled_from(EDGES),
    budget_zone=st.sampled_from(["America/Los_Angeles", "Pacific/Kiritimati"]),
)
def test_no_period_is_a_server_error(api, settings, since, until, budget_zone):
    settings.SMS_BUDGET_TIMEZONE = budget_zone
    campaign = CampaignFactory(daily_budget=10, limit_per_customer_days=365)
    body = {"since": since.isoformat(), "until": until.isoformat()}

    response = api.post(f"/api/v1/campaigns/{campaign.id}/dry-run", body)

    assert response.status_code in (200, 400), response.content


# --- Events the live engine would not decide --------------------------------------------


def test_a_dry_run_does_not_send_for_an_event_that_arrived_too_late_to_text(api, rivoli):
    """Pings uploaded 20 minutes late (the phone was offline): live, the entry is recorded
    but not decided (older than SMS_VALIDITY_SECONDS when it arrived)."""
    campaign = CampaignFactory()
    campaign.stores.add(rivoli)
    at = timezone.now() - timedelta(hours=1)
    late = presence_event(CustomerFactory(), rivoli, at=at, arrived_at=at + timedelta(minutes=20))
    assert decisions.decide_presence_events(event_ids=[late.id], now=late.created_at) == []
    assert not Delivery.objects.exists()

    result = dry_run(api, campaign, since=at - timedelta(hours=1))

    assert (result["matched"], result["would_send"], result["arrived_too_late"]) == (0, 0, 1)


def test_an_event_that_arrived_within_the_validity_is_decided(api, rivoli, settings):
    campaign = CampaignFactory()
    campaign.stores.add(rivoli)
    at = timezone.now() - timedelta(hours=1)
    presence_event(CustomerFactory(), rivoli, at=at, arrived_at=at + timedelta(minutes=9))

    result = dry_run(api, campaign, since=at - timedelta(hours=1))

    assert (result["would_send"], result["arrived_too_late"]) == (1, 0)


def test_a_dry_run_that_decides_visits_answers_for_the_period_it_was_asked(api, rivoli):
    now = timezone.now()
    # It ended 3 days ago: part of the week asked for is outside its dates.
    campaign = CampaignFactory(ends_at=now - timedelta(days=3))
    campaign.stores.add(rivoli)
    at = now - timedelta(days=4)
    presence_event(CustomerFactory(), rivoli, at=at, arrived_at=at + timedelta(seconds=5))
    since, until = now - timedelta(days=7), now - timedelta(minutes=1)

    result = dry_run(api, campaign, since=since, until=until)

    assert result["would_send"] == 1
    assert (result["since"], result["until"]) == (
        iso(since).replace("+00:00", "Z"),
        iso(until).replace("+00:00", "Z"),
    )
    [warning] = result["warnings"]
    assert "runs until " in warning


@pytest.mark.parametrize(
    ("real_status", "real_priority", "would_send", "outranked"),
    [
        (DeliveryStatus.DELIVERED, 10, 0, 1),
        (DeliveryStatus.HOLDOUT, 10, 0, 1),
        # Stale before its turn, say: it was still the event's one decision to text.
        (DeliveryStatus.FAILED, 10, 0, 1),
        # Live, this campaign would have been judged first and sent: the other never would.
        (DeliveryStatus.DELIVERED, -10, 1, 0),
        # A campaign judged and held back by a limit leaves the event to the next one.
        (DeliveryStatus.SUPPRESSED, 10, 1, 0),
    ],
)
def test_an_event_another_campaign_texted_is_this_campaigns_only_if_it_ranks_first(
    api, rivoli, real_status, real_priority, would_send, outranked
):
    customer = CustomerFactory()
    live = CampaignFactory(priority=real_priority)
    live.stores.add(rivoli)
    draft = CampaignFactory(status="draft", priority=0)
    draft.stores.add(rivoli)
    at = timezone.now() - timedelta(hours=2)
    event = presence_event(customer, rivoli, at=at)
    # What the live engine recorded: decided when the batch was processed, 2 s later.
    DeliveryFactory(
        customer=customer,
        campaign=live,
        store=rivoli,
        presence_event=event,
        status=real_status,
        created_at=at + timedelta(seconds=2),
    )

    result = dry_run(api, draft, since=at - timedelta(hours=1))

    assert (result["would_send"], result["outranked"]) == (would_send, outranked)
    assert result["matched"] == would_send


def test_another_campaigns_sms_counts_from_its_events_time(api, rivoli, settings):
    """Live, two entries a second apart (two fences) are decided in one batch: the second
    sees the first one's SMS, though it is stamped when the batch was processed."""
    settings.SMS_GLOBAL_MIN_GAP_MINUTES = 60
    opera = StoreFactory(code="OPERA")
    customer = CustomerFactory()
    live = CampaignFactory()
    live.stores.add(rivoli)
    draft = CampaignFactory(status="draft")
    draft.stores.add(opera)
    at = timezone.now() - timedelta(hours=2)
    texted = presence_event(customer, rivoli, at=at, arrived_at=at + timedelta(seconds=2))
    presence_event(
        customer, opera, at=at + timedelta(seconds=1), arrived_at=at + timedelta(seconds=2)
    )
    DeliveryFactory(
        customer=customer,
        campaign=live,
        store=rivoli,
        presence_event=texted,
        created_at=at + timedelta(seconds=2),
    )

    result = dry_run(api, draft, since=at - timedelta(hours=1))

    assert (result["would_send"], result["by_reason"]["global_cap"]) == (0, 1)


def test_a_campaigns_would_be_sms_takes_the_place_of_the_real_one_it_outranks(
    api, rivoli, settings
):
    """Ranked first, the campaign texts the entry in the other's stead: the other's real SMS
    for it never goes out, so only the campaign's own holds the customer's next entry."""
    settings.SMS_GLOBAL_MIN_GAP_MINUTES = 60
    settings.SMS_GLOBAL_CAP_COUNT = 2
    customer = CustomerFactory()
    live = CampaignFactory(priority=0)
    live.stores.add(rivoli)
    draft = CampaignFactory(status="draft", priority=10)
    draft.stores.add(rivoli)
    at = timezone.now() - timedelta(hours=5)
    first = presence_event(customer, rivoli, at=at)
    DeliveryFactory(
        customer=customer,
        campaign=live,
        store=rivoli,
        presence_event=first,
        created_at=at + timedelta(seconds=2),
    )
    presence_event(customer, rivoli, at=at + timedelta(hours=2))

    result = dry_run(api, draft, since=at - timedelta(hours=1))

    # Two SMS in the week, within the cap of two: the first entry's is counted once.
    assert (result["would_send"], result["by_reason"]["global_cap"]) == (2, 0)


# --- What presence recorded -------------------------------------------------------------


def pings(device, *moves: tuple[float, tuple[float, float]], now: datetime) -> None:
    """Fixes `(minutes ago, place)`, each processed as it arrives, as the live engine does."""
    for minutes_ago, (latitude, longitude) in moves:
        at = now - timedelta(minutes=minutes_ago)
        ping = Ping.objects.create(
            device=device, latitude=latitude, longitude=longitude, accuracy=10, recorded_at=at
        )
        tracking.process_location_batch(ping_ids=[ping.id], now=at)


def watched_dwell(store, minutes):
    """An active dwell campaign no customer matches: presence records its dwells."""
    campaign = CampaignFactory(trigger_type="dwell", trigger_minutes=minutes, intent_skus=["NONE"])
    campaign.stores.add(store)


@pytest.mark.parametrize(
    ("visit", "timed_out", "dwelled"),
    [
        # Still inside, the last fix 3 minutes ago.
        ([(20, RIVOLI), (15, RIVOLI), (12, RIVOLI), (9, RIVOLI), (6, RIVOLI), (3, RIVOLI)], 0, 1),
        # Walked out after 18 minutes, and after 8.
        ([(40, RIVOLI), (35, RIVOLI), (30, RIVOLI), (25, RIVOLI), (22, STREET)], 0, 1),
        ([(40, RIVOLI), (36, RIVOLI), (34, RIVOLI), (32, STREET)], 0, 0),
        # No signal after 3 minutes inside: the timeout (15 min) ends the visit 18 minutes
        # after the entry, with the dwells it reached.
        ([(60, RIVOLI), (57, RIVOLI)], 1, 1),
    ],
)
def test_a_dry_run_of_a_new_dwell_time_finds_the_visits_that_lasted_it(
    api, rivoli, visit, timed_out, dwelled
):
    """Presence records only the dwell minutes active campaigns watch: a draft's 10 minutes
    next to an active campaign's 5 are derived from the visits."""
    watched_dwell(rivoli, 5)
    draft = CampaignFactory(status="draft", trigger_type="dwell", trigger_minutes=10)
    draft.stores.add(rivoli)
    device = DeviceFactory()
    now = timezone.now()
    pings(device, *visit, now=now)
    if timed_out:
        tracking.expire_presence(now=now)
    assert PresenceEvent.objects.filter(kind="dwelled", minutes=5).exists()
    assert not PresenceEvent.objects.filter(minutes=10).exists()

    result = dry_run(api, draft, since=now - timedelta(hours=2), until=now)

    assert (result["matched"], result["would_send"]) == (dwelled, dwelled)


def test_a_dwell_presence_recorded_is_counted_once(api, rivoli):
    watched_dwell(rivoli, 10)
    draft = CampaignFactory(status="draft", trigger_type="dwell", trigger_minutes=10)
    draft.stores.add(rivoli)
    device = DeviceFactory()
    now = timezone.now()
    pings(device, (30, RIVOLI), (25, RIVOLI), (19, RIVOLI), (14, STREET), now=now)
    assert PresenceEvent.objects.filter(kind="dwelled", minutes=10).count() == 1

    result = dry_run(api, draft, since=now - timedelta(hours=1), until=now)

    assert result["matched"] == 1


def test_a_derived_dwell_of_a_visit_that_arrived_late_is_not_texted(api, rivoli):
    """A phone offline for the visit uploads it 40 minutes on: its dwells come too late."""
    draft = CampaignFactory(status="draft", trigger_type="dwell", trigger_minutes=10)
    draft.stores.add(rivoli)
    device = DeviceFactory()
    now = timezone.now()
    visit = [
        Ping.objects.create(
            device=device,
            latitude=lat,
            longitude=lon,
            accuracy=10,
            recorded_at=now - timedelta(minutes=minutes_ago),
        )
        for minutes_ago, (lat, lon) in ((60, RIVOLI), (50, RIVOLI), (45, RIVOLI), (40, STREET))
    ]
    tracking.process_location_batch(ping_ids=[p.id for p in visit], now=now)

    result = dry_run(api, draft, since=now - timedelta(hours=2), until=now)

    assert (result["matched"], result["arrived_too_late"]) == (0, 1)


@pytest.mark.parametrize(
    ("watching", "warned"),
    [
        ({"trigger_distance_m": 100}, True),
        ({"trigger_distance_m": 250, "status": "paused"}, True),
        ({"trigger_distance_m": 250}, False),
        ({"trigger_distance_m": 250, "stores": ["OTHER"]}, True),
    ],
    ids=["another_distance", "paused", "watched", "elsewhere"],
)
def test_a_dry_run_says_when_the_approaches_it_needs_were_never_recorded(
    api, rivoli, watching, warned
):
    watching = dict(watching)
    stores = watching.pop("stores", ["RIVOLI"])
    other = CampaignFactory(trigger_type="near", **watching)
    other.stores.add(*[StoreFactory(code=c) if c != "RIVOLI" else rivoli for c in stores])
    draft = CampaignFactory(status="draft", trigger_type="near", trigger_distance_m=250)
    draft.stores.add(rivoli)

    result = dry_run(api, draft, since=timezone.now() - timedelta(days=7))

    if warned:
        [warning] = result["warnings"]
        assert "within 250 m of RIVOLI were not recorded" in warning
    else:
        assert result["warnings"] == []


def test_a_dry_run_of_any_other_trigger_has_nothing_to_warn_about(api, rivoli):
    draft = CampaignFactory(status="draft")
    draft.stores.add(rivoli)
    assert dry_run(api, draft, since=timezone.now() - timedelta(days=7))["warnings"] == []


@pytest.mark.parametrize(
    ("intent", "days_back", "warned"),
    [
        ({"intent_skus": ["SKU-1"], "intent_within_days": 30}, 50, False),
        ({"intent_skus": ["SKU-1"], "intent_within_days": 30}, 70, True),
        ({"intent_categories": ["shoes"], "intent_within_days": 7}, 100, True),
        # An abandoned cart is kept with its time whatever its age; no intent needs nothing.
        ({"intent_skus": ["SKU-1"], "intent_cart_abandoned": True}, 200, False),
        ({}, 200, False),
    ],
)
def test_a_dry_run_says_when_it_reaches_back_past_the_views_kept(
    api, rivoli, settings, intent, days_back, warned
):
    settings.INTENT_WINDOW_DAYS = 90
    draft = CampaignFactory(status="draft", **intent)
    draft.stores.add(rivoli)

    result = dry_run(api, draft, since=timezone.now() - timedelta(days=days_back))

    found = [w for w in result["warnings"] if "views are kept 90 days" in w]
    assert len(found) == int(warned)


@pytest.mark.parametrize(
    ("dates", "warned"),
    [
        ({"starts_at": timedelta(days=7)}, "runs from "),
        ({"ends_at": timedelta(days=-3)}, "runs until "),
        ({"starts_at": timedelta(days=-30), "ends_at": timedelta(days=30)}, None),
        ({}, None),
    ],
)
def test_a_dry_run_says_when_the_campaign_s_dates_leave_out_part_of_the_period(
    api, rivoli, dates, warned
):
    now = timezone.now()
    draft = CampaignFactory(status="draft", **{name: now + delta for name, delta in dates.items()})
    draft.stores.add(rivoli)

    result = dry_run(api, draft, since=now - timedelta(days=7))

    if warned:
        [warning] = result["warnings"]
        assert warned in warning and "Clear its dates" in warning
    else:
        assert result["warnings"] == []


# --- As the live engine decided ---------------------------------------------------------
# The live engine decides first, each event when it arrived; then the dry run of the same
# campaign over the same window says what it would have decided, and the two agree.


def decide_live(*events):
    """The events decided as they arrived: those that arrived together as one batch."""
    batches = defaultdict(list)
    for event in events:
        batches[event.created_at].append(event.id)
    for arrived_at in sorted(batches):
        decisions.decide_presence_events(event_ids=batches[arrived_at], now=arrived_at)


def live_decisions(campaign) -> dict:
    """The campaign's real decisions, counted as a dry run counts its would-be ones."""
    rows = Delivery.objects.filter(campaign=campaign)
    statuses = Counter(rows.values_list("status", flat=True))
    reasons = Counter(rows.exclude(reason="").values_list("reason", flat=True))
    return {"by_status": dict(statuses), "by_reason": dict(reasons)}


def dry_decisions(result: dict) -> dict:
    return {key: {k: n for k, n in result[key].items() if n} for key in ("by_status", "by_reason")}


def half_life() -> float:
    from django.conf import settings

    return settings.INTENT_HALF_LIFE_DAYS * rules.DAY


def browsed(customer, sku, *views: datetime, page_views: int = 0):
    """Product views, and page views at the last one, kept as ingest keeps them."""
    weights = [(1.0, at) for at in views] + [(0.5, views[-1])] * page_views
    return ProductIntent.objects.create(
        customer=customer,
        sku=sku,
        view_times=[int(at.timestamp()) for at in views],
        last_seen_at=views[-1],
        score=intent.score_of(weights, views[-1], half_life()),
        score_at=views[-1],
    )


def test_browsing_after_an_event_does_not_win_it_from_the_campaign_that_won_it_live(api, rivoli):
    """Same priority: B's stronger intent wins the entry live. An hour on, the customer
    views A's product again and again: A's strength at the entry is still below B's."""
    a = CampaignFactory(intent_skus=["A"])
    b = CampaignFactory(intent_skus=["B"])
    a.stores.add(rivoli)
    b.stores.add(rivoli)
    customer = CustomerFactory()
    at = timezone.now() - timedelta(hours=3)
    a_views = browsed(customer, "A", at - timedelta(hours=1))
    browsed(customer, "B", at - timedelta(hours=1), page_views=8)
    decide_live(presence_event(customer, rivoli, at=at))
    assert live_decisions(b)["by_status"] == {"queued": 1}
    later = [at + timedelta(hours=1, minutes=n) for n in range(20)]
    for view in later:
        a_views.view_times.append(int(view.timestamp()))
        a_views.score, a_views.score_at = intent.add_to_score(
            a_views.score, a_views.score_at, 1.0, view, half_life()
        )
    a_views.save()

    result = dry_run(api, a, since=at - timedelta(minutes=30))

    assert dry_decisions(result) == live_decisions(a) == {"by_status": {}, "by_reason": {}}
    assert result["outranked"] == 1


def test_a_draft_that_was_stronger_at_an_event_wins_it_days_later(api, rivoli):
    """Same priority: at the entry, the draft's product had been viewed more than the live
    campaign's. Three days on its score has decayed, as the live one's has: the draft still
    ranks first, as it would have at the entry."""
    live = CampaignFactory(intent_skus=["B"])
    draft = CampaignFactory(status="draft", intent_skus=["A"])
    live.stores.add(rivoli)
    draft.stores.add(rivoli)
    customer = CustomerFactory()
    at = timezone.now() - timedelta(days=3)
    browsed(customer, "A", at - timedelta(hours=3), at - timedelta(hours=1))
    browsed(customer, "B", at - timedelta(hours=1), page_views=1)
    decide_live(presence_event(customer, rivoli, at=at))
    assert live_decisions(live)["by_status"] == {"queued": 1}
    products = decisions.load_signals([customer.id], now=at)[customer.id][0]
    facts = rules.CustomerFacts(
        key="", opted_in=True, has_phone=True, timezone="UTC", products=products
    )
    event = decisions.presence_fact(PresenceEvent.objects.get())
    [(first, _), _] = rules.rank(
        [decisions.campaign_rule(c) for c in (live, draft)], event, facts, at
    )
    assert first.id == draft.id  # had it been active

    result = dry_run(api, draft, since=at - timedelta(hours=1))

    assert (result["would_send"], result["outranked"]) == (1, 0)


def window_start(settings) -> datetime:
    """10:00 two days ago, in the budget's time zone: the day's budget has the day ahead."""
    zone = ZoneInfo(settings.SMS_BUDGET_TIMEZONE)
    day = (timezone.now() - timedelta(days=2)).astimezone(zone).date()
    return datetime.combine(day, time(10, 0), tzinfo=zone)


@pytest.mark.parametrize(
    ("limits", "reason"),
    [
        ({"limit_per_customer_days": 7}, "campaign_cap"),
        ({"daily_budget": 1}, "budget"),
        ({"total_budget": 1}, "budget"),
        ({"pool": ["ONLY-1"]}, "budget"),
    ],
    ids=["campaign_cap", "daily_budget", "total_budget", "code_pool"],
)
def test_the_campaigns_sms_for_an_event_just_before_the_window_counts_in_it(
    api, rivoli, settings, limits, reason
):
    """An entry a minute before `since`, uploaded two minutes late, was texted a minute into
    the window: the window's next entry is held back live, and in the dry run."""
    limits = dict(limits)
    pool = limits.pop("pool", [])
    campaign = CampaignFactory(**limits)
    campaign.stores.add(rivoli)
    for code in pool:
        OfferCode.objects.create(campaign=campaign, code=code)
    customer = CustomerFactory()
    since = window_start(settings)
    decide_live(
        presence_event(
            customer,
            rivoli,
            at=since - timedelta(minutes=1),
            arrived_at=since + timedelta(minutes=1),
        ),
        presence_event(customer, rivoli, at=since + timedelta(hours=2)),
    )
    assert live_decisions(campaign) == {
        "by_status": {"queued": 1, "suppressed": 1},
        "by_reason": {reason: 1},
    }

    result = dry_run(api, campaign, since=since, until=since + timedelta(hours=3))

    # The window's entry only: the one before it is not the run's to decide again.
    assert dry_decisions(result) == {"by_status": {"suppressed": 1}, "by_reason": {reason: 1}}


def test_quiet_hours_are_judged_when_the_live_engine_had_the_event(api, rivoli):
    """An entry at 20:58 in Paris whose ping reached the server at 21:03, in the campaign's
    quiet hours from 21:00: live, it was held back for quiet hours."""
    paris = ZoneInfo("Europe/Paris")
    campaign = CampaignFactory(quiet_hours_start=time(21, 0), quiet_hours_end=time(8, 0))
    campaign.stores.add(rivoli)
    customer = CustomerFactory(timezone="Europe/Paris")
    day = (timezone.now() - timedelta(days=2)).astimezone(paris).date()
    at = datetime.combine(day, time(20, 58), tzinfo=paris)
    decide_live(presence_event(customer, rivoli, at=at, arrived_at=at + timedelta(minutes=5)))
    assert live_decisions(campaign)["by_reason"] == {"quiet_hours": 1}

    result = dry_run(api, campaign, since=at - timedelta(hours=1), until=at + timedelta(hours=1))

    assert dry_decisions(result) == live_decisions(campaign)


def test_another_campaigns_sms_counts_only_from_when_it_was_recorded(api, rivoli, settings):
    """B's entry at 10:00 reached the server at 10:08, and was texted then; A's at 10:05
    (another store) was decided at 10:05, before B's SMS existed: held out live (a holdout
    is not counted against other campaigns, so B still texted). Counted from 10:00, B's SMS
    would have held A back with the 60-minute gap."""
    settings.SMS_GLOBAL_MIN_GAP_MINUTES = 60
    opera = StoreFactory(code="OPERA")
    b = CampaignFactory(priority=10)
    b.stores.add(rivoli)
    a = CampaignFactory(holdout_percent=100)
    a.stores.add(opera)
    customer = CustomerFactory()
    at = timezone.now() - timedelta(hours=3)
    decide_live(
        presence_event(customer, rivoli, at=at, arrived_at=at + timedelta(minutes=8)),
        presence_event(customer, opera, at=at + timedelta(minutes=5)),
    )
    assert live_decisions(b)["by_status"] == {"queued": 1}
    assert live_decisions(a)["by_status"] == {"holdout": 1}

    result = dry_run(api, a, since=at - timedelta(hours=1))

    assert dry_decisions(result) == live_decisions(a)


@pytest.mark.parametrize(
    ("first", "decided"),
    [("RIVOLI", {"suppressed": 1}), ("OPERA", {"holdout": 1})],
    ids=["other_campaigns_event_first", "this_campaigns_event_first"],
)
def test_another_campaigns_sms_of_the_same_batch_counts_for_the_events_after_it(
    api, rivoli, settings, first, decided
):
    """Two entries a second apart (two fences), decided in one batch in the order they
    occurred: another campaign's SMS counts for the entry after its own, not the one
    before, though the batch stamps both with one time."""
    settings.SMS_GLOBAL_MIN_GAP_MINUTES = 60
    stores = {"RIVOLI": rivoli, "OPERA": StoreFactory(code="OPERA")}
    other = CampaignFactory()
    other.stores.add(rivoli)
    campaign = CampaignFactory(holdout_percent=100)
    campaign.stores.add(stores["OPERA"])
    customer = CustomerFactory()
    at = timezone.now() - timedelta(hours=2)
    second = "OPERA" if first == "RIVOLI" else "RIVOLI"
    batch_at = at + timedelta(seconds=2)
    decide_live(
        presence_event(customer, stores[first], at=at, arrived_at=batch_at),
        presence_event(customer, stores[second], at=at + timedelta(seconds=1), arrived_at=batch_at),
    )
    assert live_decisions(campaign)["by_status"] == decided

    result = dry_run(api, campaign, since=at - timedelta(hours=1))

    assert dry_decisions(result) == live_decisions(campaign)


def test_a_would_be_sms_for_an_event_another_campaign_texted_counts_for_the_cap(api, rivoli):
    """The draft outranks the campaign that texted two entries: its would-be SMS for the
    first takes the other's place, and holds its second back for its own cap."""
    live = CampaignFactory(priority=0)
    live.stores.add(rivoli)
    draft = CampaignFactory(status="draft", priority=10, limit_per_customer_days=7)
    draft.stores.add(rivoli)
    customer = CustomerFactory()
    at = timezone.now() - timedelta(hours=5)
    decide_live(
        presence_event(customer, rivoli, at=at),
        presence_event(customer, rivoli, at=at + timedelta(hours=2)),
    )
    assert live_decisions(live)["by_status"] == {"queued": 2}

    result = dry_run(api, draft, since=at - timedelta(hours=1))

    assert (result["would_send"], result["by_reason"]["campaign_cap"]) == (1, 1)


def test_an_event_whose_sms_was_held_back_at_its_turn_stays_the_other_campaigns(api, rivoli):
    """Live, the priority campaign won the entry at 20:59:58 in Paris, and its SMS, whose
    turn came at 21:00:01 in its quiet hours, was held back then (suppressed, quiet_hours).
    The campaign ranked after it was never judged for that entry: won at the decision, the
    event was not passed on when the send was held back."""
    paris = ZoneInfo("Europe/Paris")
    first = CampaignFactory(priority=10, quiet_hours_start=time(21, 0), quiet_hours_end=time(8, 0))
    first.stores.add(rivoli)
    second = CampaignFactory(priority=0)
    second.stores.add(rivoli)
    customer = CustomerFactory(timezone="Europe/Paris")
    day = (timezone.now() - timedelta(days=2)).astimezone(paris).date()
    at = datetime.combine(day, time(20, 59, 58), tzinfo=paris)
    decide_live(presence_event(customer, rivoli, at=at))
    (queued,) = Delivery.objects.filter(campaign=first, status=DeliveryStatus.QUEUED)
    sending.send_delivery(delivery_id=queued.id, now=at + timedelta(seconds=3))
    assert live_decisions(first) == {
        "by_status": {"suppressed": 1},
        "by_reason": {"quiet_hours": 1},
    }
    assert live_decisions(second) == {"by_status": {}, "by_reason": {}}

    result = dry_run(api, second, since=at - timedelta(hours=1), until=at + timedelta(hours=1))

    assert dry_decisions(result) == live_decisions(second)
    assert result["outranked"] == 1


@pytest.mark.parametrize("welcome_status", ["active", "draft"])
@pytest.mark.parametrize("entry_status", ["active", "draft"])
def test_a_walk_in_by_the_entrance_beacon_is_one_arrival_to_a_dry_run_too(
    api, rivoli, settings, welcome_status, entry_status
):
    """The entrance zone's entry and the store entry it makes, in one instant: live, the
    store's entry campaign (priority 10) and the entrance's welcome (priority 1) are ranked
    together and only the first texts. A dry run of either says what live would have."""
    settings.SMS_GLOBAL_MIN_GAP_MINUTES = 60
    entrance = ZoneFactory(store=rivoli, code="entrance")
    welcome = CampaignFactory(trigger_type="beacon_zone", trigger_zone="entrance", priority=1)
    welcome.stores.add(rivoli)
    entry = CampaignFactory(priority=10)
    entry.stores.add(rivoli)
    customer = CustomerFactory()
    at = timezone.now() - timedelta(hours=2)
    both = [
        presence_event(
            customer, rivoli, at=at, zone=entrance, place_key=f"zone:{rivoli.id}:entrance"
        ),
        presence_event(customer, rivoli, at=at),
    ]
    Campaign.objects.filter(id=welcome.id).update(status=welcome_status)
    Campaign.objects.filter(id=entry.id).update(status=entry_status)
    decide_live(*both)
    Campaign.objects.filter(id__in=[welcome.id, entry.id]).update(status="active")

    welcome_run = dry_run(api, welcome, since=at - timedelta(hours=1))
    entry_run = dry_run(api, entry, since=at - timedelta(hours=1))

    # The welcome is the arrival's only where the entry campaign did not run.
    welcomed = entry_status == "draft"
    assert (welcome_run["would_send"], welcome_run["outranked"]) == (welcomed, not welcomed)
    assert (entry_run["would_send"], entry_run["outranked"]) == (1, 0)


@pytest.mark.parametrize("spent", ["daily_budget", "code_pool", "campaign_cap"])
def test_an_sms_that_never_went_gives_its_budget_back_to_a_dry_run_as_live(
    api, rivoli, settings, spent
):
    """A daily budget of one, a pool of one code, or a cap of one SMS a week: live, the first
    SMS failed at its turn (stale, its customer gone), which gave its place back (its code to
    the pool), and the next visit was texted. A dry run decides as live did."""
    campaign = CampaignFactory(
        daily_budget=1 if spent == "daily_budget" else None,
        limit_per_customer_days=7 if spent == "campaign_cap" else None,
    )
    campaign.stores.add(rivoli)
    if spent == "code_pool":
        OfferCode.objects.create(campaign=campaign, code="ONLY-ONE")
    at = timezone.now() - timedelta(hours=3)
    customer = CustomerFactory()
    first = presence_event(customer, rivoli, at=at)
    decide_live(first)
    (queued,) = Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.QUEUED)
    validity = timedelta(seconds=settings.SMS_VALIDITY_SECONDS)
    sending.send_delivery(delivery_id=queued.id, now=at + validity + timedelta(seconds=1))
    assert Delivery.objects.get(id=queued.id).status == DeliveryStatus.FAILED
    again = customer if spent == "campaign_cap" else CustomerFactory()
    decide_live(presence_event(again, rivoli, at=at + timedelta(minutes=90)))
    assert Delivery.objects.filter(campaign=campaign).count() == 2
    assert Delivery.objects.filter(campaign=campaign, reason="").count() == 2  # both to text

    result = dry_run(api, campaign, since=at - timedelta(hours=1))

    assert (result["would_send"], result["by_reason"]["budget"]) == (2, 0)


def test_another_campaigns_sms_counts_until_it_ended_unsent(api, rivoli, settings):
    """Live, another campaign's SMS waited at the sender (decided at 10:00, failed stale at
    10:50) and held this campaign's entry at 10:30 back by the 60-minute gap: a dry run
    counts it until it ended, as live did."""
    settings.SMS_GLOBAL_MIN_GAP_MINUTES = 60
    opera = StoreFactory(code="OPERA")
    other = CampaignFactory()
    other.stores.add(opera)
    campaign = CampaignFactory()
    campaign.stores.add(rivoli)
    customer = CustomerFactory()
    at = timezone.now() - timedelta(hours=3)
    decide_live(presence_event(customer, opera, at=at))
    decide_live(presence_event(customer, rivoli, at=at + timedelta(minutes=30)))
    (waiting,) = Delivery.objects.filter(campaign=other, status=DeliveryStatus.QUEUED)
    sending.send_delivery(delivery_id=waiting.id, now=at + timedelta(minutes=50))
    assert Delivery.objects.get(id=waiting.id).status == DeliveryStatus.FAILED
    assert live_decisions(campaign)["by_reason"] == {"global_cap": 1}

    result = dry_run(api, campaign, since=at - timedelta(hours=1))

    assert dry_decisions(result) == live_decisions(campaign)


# --- What it reads ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "wanted"),
    [
        ({"trigger_type": "enter"}, {"kind": "entered"}),
        ({"trigger_type": "dwell", "trigger_minutes": 5}, {"kind": "dwelled", "minutes": 5}),
        (
            {"trigger_type": "near", "trigger_distance_m": 300.0},
            {"kind": "near", "distance_m": 300.0},
        ),
    ],
)
def test_a_dry_run_reads_only_the_events_its_trigger_waits_for(api, rivoli, trigger, wanted):
    """A year of a chain's visits is millions of events: a campaign's dry run loads those of its
    stores and trigger, not every visit of every store (100,000 elsewhere took 19 s and 330 MB,
    past a gunicorn worker's timeout)."""
    opera = StoreFactory(code="OPERA")
    campaign = CampaignFactory(status="draft", **trigger)
    campaign.stores.add(rivoli)
    lea = CustomerFactory()
    now = timezone.now()
    presence_event(lea, rivoli, at=now - timedelta(hours=1), **wanted)
    entrance = ZoneFactory(store=rivoli, code="entrance")
    others = [
        {"store": opera, **wanted},
        {"store": rivoli, "kind": "entered", "zone": entrance, "place_key": "zone"},
        {"store": rivoli, "kind": "dwelled", "minutes": 20},
        {"store": rivoli, "kind": "near", "distance_m": 1000},
    ]
    for n in range(40):
        fields = dict(others[n % len(others)])
        presence_event(lea, fields.pop("store"), at=now - timedelta(hours=2, minutes=n), **fields)
    loaded = Counter()

    def count(sender: type, **kwargs: object) -> None:
        loaded[sender] += 1

    post_init.connect(count, sender=PresenceEvent)
    try:
        result = dry_run(api, campaign, since=now - timedelta(days=1))
    finally:
        post_init.disconnect(count, sender=PresenceEvent)

    assert (result["presence_events"], result["matched"]) == (41, 1)
    assert loaded[PresenceEvent] == 1
