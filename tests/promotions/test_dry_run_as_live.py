"""A dry run says what the live engine decided, on any small history: customers whose
consent changes now and then, a few stores, one or two campaigns with their limits, and
entries and dwells reaching the server on time. The live engine decides each batch when it
arrives; a dry run of one campaign over a window of that history (all of it, or from or
until a moment in it) then counts the decisions live made about the window's events,
answers for the period it was asked, and is never a server error."""

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, time, timedelta

import pytest
from django.db import transaction
from django.db.models import QuerySet
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, assume, event, given, note
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from customers.models import SmsConsent
from customers.services import set_sms_consent
from promotions import decisions
from promotions.models import Campaign, Delivery, DeliveryStatus, OfferCode, PresenceEvent
from promotions.rules import WEEKDAYS
from tests.factories import CampaignFactory, CustomerFactory, StoreFactory
from tests.promotions.test_dry_run import dry_decisions

pytestmark = pytest.mark.django_db

CONSENTS = [SmsConsent.OPTED_IN, SmsConsent.OPTED_OUT, SmsConsent.UNKNOWN]
QUIET_HOURS = [None, (time(21, 0), time(8, 0)), (time(12, 0), time(14, 0))]
DWELL_MINUTES = [5, 10]


@dataclass(frozen=True)
class CustomerPlan:
    consent: str
    has_phone: bool
    timezone: str  # "": the store's
    # (minutes into the history, the consent set then), logged through the customers service
    consent_changes: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class CampaignPlan:
    dwell_minutes: int | None  # None: an entry campaign
    stores: frozenset[int]  # indices into the stores; empty: every store
    priority: int
    per_customer_days: int | None
    quiet_hours: tuple[time, time] | None
    weekdays_only: bool
    daily_budget: int | None
    total_budget: int | None
    pool: int | None  # codes uploaded; None: a generated code for each SMS
    holdout_percent: int
    # Minutes into the history, or None: no start or no end.
    starts_at: int | None
    ends_at: int | None


@dataclass(frozen=True)
class EventPlan:
    customer: int
    store: int
    dwell_minutes: int | None  # None: an entry
    at: int  # minutes into the history
    delay: int  # seconds before the server had it: within the SMS validity, on time


def sometimes(values: st.SearchStrategy) -> st.SearchStrategy:
    """None three times in four, else one of the values: a limit or a date a campaign may
    have."""
    return st.tuples(st.integers(0, 3), values).map(lambda pair: pair[1] if pair[0] == 3 else None)


# A moment of the history, in minutes: mornings, lunchtimes and late evenings of its three
# days, an hour and a half of each, so that visits are minutes apart and quiet hours vary.
moments = st.builds(
    lambda day, hour, minute: (day * 24 + hour) * 60 + minute,
    st.integers(0, 2),
    st.sampled_from([9, 13, 22]),
    st.integers(0, 90),
)

customers_plans = st.builds(
    CustomerPlan,
    consent=st.sampled_from([SmsConsent.OPTED_IN, SmsConsent.OPTED_IN, *CONSENTS]),
    has_phone=st.integers(0, 9).map(bool),
    timezone=st.sampled_from(["", "Europe/Paris", "America/New_York"]),
    consent_changes=st.lists(
        st.tuples(moments, st.sampled_from([SmsConsent.OPTED_IN, *CONSENTS])), max_size=3
    ).map(tuple),
)

campaign_plans = st.builds(
    CampaignPlan,
    dwell_minutes=sometimes(st.sampled_from(DWELL_MINUTES)),
    stores=sometimes(st.frozensets(st.integers(0, 2), min_size=1, max_size=2)).map(
        lambda stores: stores or frozenset()
    ),
    priority=st.integers(0, 2),
    per_customer_days=st.sampled_from([None, 1, 7]),
    quiet_hours=st.sampled_from(QUIET_HOURS),
    weekdays_only=st.integers(0, 3).map(lambda n: n == 3),
    daily_budget=st.sampled_from([None, 1, 2]),
    total_budget=st.sampled_from([None, 2, 4]),
    pool=sometimes(st.integers(1, 2)),
    holdout_percent=st.sampled_from([0, 50, 100]),
    starts_at=sometimes(moments),
    ends_at=sometimes(moments),
)


@st.composite
def histories(draw: st.DrawFn) -> dict:
    stores = draw(st.lists(st.sampled_from(["Europe/Paris", "Asia/Tokyo"]), min_size=1, max_size=3))
    customers = draw(st.lists(customers_plans, min_size=2, max_size=4))
    # Two campaigns twice in three: the other one's SMS count, and it can win a visit.
    campaigns = draw(
        st.lists(campaign_plans, min_size=draw(st.sampled_from([1, 2, 2])), max_size=2)
    )
    events = draw(
        st.lists(
            st.builds(
                EventPlan,
                customer=st.integers(0, len(customers) - 1),
                store=st.integers(0, len(stores) - 1),
                dwell_minutes=sometimes(st.sampled_from(DWELL_MINUTES)),
                at=moments,
                # Up to SMS_VALIDITY_SECONDS: the latest an event is still decided.
                delay=st.sampled_from([0, 1, 2, 60, 300, 600]),
            ),
            min_size=2,
            max_size=10,
            # Presence records a customer's event of a kind at a place and instant once.
            unique_by=lambda event: (event.customer, event.store, event.dwell_minutes, event.at),
        )
    )
    return {
        "stores": stores,
        "customers": customers,
        "campaigns": campaigns,
        "events": events,
        "dry_run": draw(st.integers(0, len(campaigns) - 1)),
        # The window: the whole history, or from or until a moment of it.
        "since": draw(sometimes(moments)),
        "until": draw(sometimes(moments)),
        "min_gap_minutes": draw(st.sampled_from([0, 60, 240])),
        "cap_count": draw(st.sampled_from([1, 3, 5])),
        "budget_timezone": draw(st.sampled_from(["UTC", "America/Los_Angeles"])),
    }


def build_and_decide_live(history: dict, start: datetime) -> list:
    """The history's rows, decided live as it happened: each consent change when it was
    made, each batch of events when it arrived (consent changed in that instant first)."""
    minute = timedelta(minutes=1)
    stores = [StoreFactory(timezone=zone) for zone in history["stores"]]
    customers = []
    for plan in history["customers"]:
        customers.append(
            CustomerFactory(
                sms_consent=plan.consent,
                timezone=plan.timezone,
                **({} if plan.has_phone else {"phone": ""}),
            )
        )
    campaigns = []
    for plan in history["campaigns"]:
        campaign = CampaignFactory(
            trigger_type="dwell" if plan.dwell_minutes else "enter",
            trigger_minutes=plan.dwell_minutes,
            priority=plan.priority,
            limit_per_customer_days=plan.per_customer_days,
            quiet_hours_start=plan.quiet_hours[0] if plan.quiet_hours else None,
            quiet_hours_end=plan.quiet_hours[1] if plan.quiet_hours else None,
            daily_budget=plan.daily_budget,
            total_budget=plan.total_budget,
            holdout_percent=plan.holdout_percent,
            allowed_days=["mon", "tue", "wed", "thu", "fri"] if plan.weekdays_only else WEEKDAYS,
            starts_at=None if plan.starts_at is None else start + plan.starts_at * minute,
            ends_at=None if plan.ends_at is None else start + plan.ends_at * minute,
        )
        campaign.stores.add(*{stores[i % len(stores)] for i in plan.stores})
        for n in range(plan.pool or 0):
            OfferCode.objects.create(campaign=campaign, code=f"POOL-{campaign.id}-{n}")
        campaigns.append(campaign)
    timeline: list[tuple[datetime, int, object]] = []
    for customer, plan in zip(customers, history["customers"], strict=True):
        for at, consent in plan.consent_changes:
            timeline.append((start + at * minute, 0, (customer, consent)))
    batches: dict[datetime, list[int]] = defaultdict(list)
    for plan in history["events"]:
        at = start + plan.at * minute
        store = stores[plan.store]
        event = PresenceEvent.objects.create(
            customer=customers[plan.customer],
            store=store,
            place_key=f"store:{store.id}",
            kind="dwelled" if plan.dwell_minutes else "entered",
            minutes=plan.dwell_minutes,
            occurred_at=at,
            created_at=at + timedelta(seconds=plan.delay),
        )
        batches[event.created_at].append(event.id)
    timeline += [(arrived_at, 1, ids) for arrived_at, ids in batches.items()]
    for moment, step, what in sorted(timeline, key=lambda item: item[:2]):
        if step == 0:
            customer, consent = what
            customer.refresh_from_db()
            if set_sms_consent(customer=customer, consent=consent, source="crm", at=moment):
                customer.save()
        else:
            decisions.decide_presence_events(event_ids=what, now=moment)
    return campaigns


def decided(campaign: Campaign, *, since: datetime, until: datetime) -> QuerySet:
    """The campaign's real decisions about the events of the window."""
    return Delivery.objects.filter(
        campaign=campaign,
        presence_event__occurred_at__gte=since,
        presence_event__occurred_at__lt=until,
    )


def live_decisions(campaign: Campaign, *, since: datetime, until: datetime) -> dict:
    """The campaign's real decisions about the window's events, counted as a dry run counts
    its would-be ones."""
    rows = decided(campaign, since=since, until=until)
    statuses = Counter(rows.values_list("status", flat=True))
    reasons = Counter(rows.exclude(reason="").values_list("reason", flat=True))
    return {"by_status": dict(statuses), "by_reason": dict(reasons)}


@hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories())
def test_a_dry_run_decides_as_the_live_engine_did(api, history):
    now = timezone.now()
    # The history's three days start four days ago: every event reached the server a day
    # before the window ends at the latest, and a week's caps reach across all of it.
    start = now - timedelta(days=4)
    limits = override_settings(
        SMS_GLOBAL_MIN_GAP_MINUTES=history["min_gap_minutes"],
        SMS_GLOBAL_CAP_COUNT=history["cap_count"],
        SMS_BUDGET_TIMEZONE=history["budget_timezone"],
    )
    # Each example starts from the rows the test started with.
    with limits, transaction.atomic():
        try:
            note(repr(history))
            campaigns = build_and_decide_live(history, start)
            campaign = campaigns[history["dry_run"]]
            since, until = start - timedelta(hours=1), now - timedelta(minutes=1)
            if history["since"] is not None:
                since = start + timedelta(minutes=history["since"], seconds=30)
            if history["until"] is not None:
                until = start + timedelta(minutes=history["until"], seconds=30)
            assume(since < until)

            response = api.post(
                f"/api/v1/campaigns/{campaign.id}/dry-run",
                {"since": since.isoformat(), "until": until.isoformat()},
            )

            assert response.status_code == 200, response.content
            result = response.json()
            answered = (
                datetime.fromisoformat(result["since"]),
                datetime.fromisoformat(result["until"]),
            )
            assert answered == (since, until)
            live = live_decisions(campaign, since=since, until=until)
            event(f"{sorted(live['by_reason'])} queued={live['by_status'].get('queued', 0)}")
            assert dry_decisions(result) == live
            reached = decided(campaign, since=since, until=until).filter(
                status=DeliveryStatus.QUEUED
            )
            assert result["customers_reached"] == reached.values("customer").distinct().count()
        finally:
            transaction.set_rollback(True)
