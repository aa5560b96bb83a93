"""From presence events to decisions: loads what `promotions.rules` needs in bulk, records
every decision as a Delivery (sent or not), and reserves paced send slots for the ones to send.

Idempotent in the data: a Delivery is unique per customer, campaign and presence event, so a
redelivered or doubled task records nothing twice and never queues a second SMS.
"""

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from time import monotonic
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from customers import intent
from customers.models import (
    CartIntent,
    CategoryIntent,
    Customer,
    Product,
    ProductIntent,
    SmsConsent,
)
from promotions import offers, rules, sms, tracking
from promotions.batch_sql import rows_source
from promotions.database import against_current_places, database_unavailable, held_rows
from promotions.models import (
    FIRST_IN_EACH_GROUP,
    TEXTED_OR_HELD_OUT,
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryReason,
    DeliveryStatus,
    LocationBatch,
    OfferCode,
    PresenceEvent,
    PresenceKind,
    SmsSender,
    Store,
)
from promotions.offers import normalise_code
from promotions.times import local_day, local_day_start, offer_expiry, offer_last_day

# Handed to the SMS provider, or about to be: what caps and budgets count.
SENT_LIKE = (
    DeliveryStatus.QUEUED,
    DeliveryStatus.SENT,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.UNDELIVERED,
)
CODE_ATTEMPTS = 3
# The lost-batch sweep reads its batches this many at a time, oldest first.
SWEEP_PAGE = 100

logger = logging.getLogger(__name__)


def campaign_rule(campaign: Campaign) -> rules.CampaignRule:
    """A campaign as the pure rules see it (its stores prefetched)."""
    intent = None
    if campaign.has_intent:
        intent = rules.IntentCondition(
            skus=tuple(campaign.intent_skus),
            categories=tuple(campaign.intent_categories),
            min_views=campaign.intent_min_views,
            within_days=campaign.intent_within_days,
            cart_abandoned=campaign.intent_cart_abandoned,
        )
    quiet = None
    if campaign.quiet_hours_start is not None and campaign.quiet_hours_end is not None:
        quiet = (campaign.quiet_hours_start, campaign.quiet_hours_end)
    return rules.CampaignRule(
        id=campaign.id,
        priority=campaign.priority,
        starts_at=campaign.starts_at,
        ends_at=campaign.ends_at,
        stores=frozenset(store.id for store in campaign.stores.all()),
        trigger_type=campaign.trigger_type,
        trigger_minutes=campaign.trigger_minutes,
        trigger_distance_m=campaign.trigger_distance_m,
        trigger_zone=campaign.trigger_zone,
        intent=intent,
        per_customer_days=campaign.limit_per_customer_days,
        quiet_hours=quiet,
        allowed_days=frozenset(campaign.allowed_days),
        daily_budget=campaign.daily_budget,
        total_budget=campaign.total_budget,
        holdout_percent=campaign.holdout_percent,
    )


def global_limits() -> rules.GlobalLimits:
    return rules.GlobalLimits(
        cap_count=settings.SMS_GLOBAL_CAP_COUNT,
        cap_days=settings.SMS_GLOBAL_CAP_DAYS,
        quiet_hours=settings.SMS_GLOBAL_QUIET_HOURS,
        min_gap=timedelta(minutes=settings.SMS_GLOBAL_MIN_GAP_MINUTES),
    )


def presence_fact(event: PresenceEvent) -> rules.PresenceFact:
    return rules.PresenceFact(
        kind=event.kind,
        store=event.store_id,
        at=event.occurred_at,
        zone_code=event.zone.code if event.zone_id else None,
        minutes=event.minutes,
        distance_m=event.distance_m,
    )


@dataclass
class History:
    """What a customer was sent recently; grows as a batch decides, so that a second event
    in the same batch already sees the first one's SMS."""

    by_campaign: dict[int, list[datetime]] = field(default_factory=lambda: defaultdict(list))
    sent: list[datetime] = field(default_factory=list)

    def add(self, campaign: int, status: str, at: datetime) -> None:
        # A holdout customer is treated like a sent one for the campaign's own cap, so the
        # holdout group is measured at the same frequency as the treated group.
        if status in (rules.QUEUED, rules.HOLDOUT):
            self.by_campaign[campaign].append(at)
        if status == rules.QUEUED:
            self.sent.append(at)


def decide_presence_events(*, event_ids: Iterable[int], now: datetime) -> list[int]:
    """Decide every fresh presence event; returns the ids of the deliveries queued to send.

    An event older than the SMS validity period is history (a late batch, a replay): it is
    kept for dry-runs, but an offer about it would reach a customer who walked on.

    Callers hold the events' customers locked (tracking locks them) until the deliveries
    commit: erasing a customer takes the same lock first, so it anonymises every delivery
    recorded before it and no worker records one for a customer it has erased.
    """
    event_ids = list(event_ids)
    if not event_ids:
        return []
    validity = timedelta(seconds=settings.SMS_VALIDITY_SECONDS)
    events = list(
        PresenceEvent.objects.filter(id__in=event_ids, occurred_at__gte=now - validity)
        .exclude(kind=PresenceKind.EXITED)
        .select_related("store", "zone", "customer")
        .order_by("occurred_at", "id")
    )
    campaigns = {
        c.id: c
        for c in Campaign.objects.filter(status=CampaignStatus.ACTIVE).prefetch_related("stores")
    }
    live = [campaign_rule(c) for c in campaigns.values()]
    facts = {event.id: presence_fact(event) for event in events}
    events = [e for e in events if any(rules.triggered(c, facts[e.id]) for c in live)]
    if not events:
        return []
    customers = {event.customer_id: event.customer for event in events}
    signals = load_signals(customers.keys(), now=now)
    limits = global_limits()
    histories = load_histories(
        customers.keys(), now=now, campaigns=campaigns.values(), limits=limits
    )
    held_out = load_holdout_groups(customers.keys(), campaigns=campaigns.keys())
    with transaction.atomic():
        budgets = _lock_budgets(campaigns.values(), now=now)
        decided_before = _decided_before(events)
        landed: dict[DecisionKey, int] = {}
        unsaved: list[_Decided] = []
        queued: list[DecisionKey] = []
        for arrival in arrivals(events, facts):
            if any(event.id in decided_before for event in arrival):
                # By a run before (a retried or doubled task), all its decisions together:
                # judged again, its SMS would now hold the campaign's cap and pass the
                # visit on to the next campaign, a second SMS for one event.
                continue
            event = arrival[0]
            customer = customers[event.customer_id]
            history = histories[customer.id]
            browsing = signals.get(customer.id, Signals({}, {}))
            customer_facts = rules.CustomerFacts(
                key=customer.external_id,
                opted_in=customer.sms_consent == SmsConsent.OPTED_IN,
                has_phone=bool(customer.phone),
                timezone=customer_timezone(customer, event.store),
                products=browsing.products,
                categories=browsing.categories,
                cart=browsing.cart,
                sent_by_campaign=history.by_campaign,
                sent=history.sent,
                held_out_by_campaign=held_out[customer.id],
            )
            arrival_facts = [facts[e.id] for e in arrival]
            decisions = rules.decide_arrival(
                live, arrival_facts, customer_facts, budgets, limits, now
            )
            rank = -1
            while (rank := rank + 1) < len(decisions):
                decision = decisions[rank]
                event = arrival[decision.event]
                key = (customer.id, decision.campaign, event.id)
                decided = _Decided(
                    key,
                    decision,
                    campaign=campaigns[decision.campaign],
                    event=event,
                    customer=customer,
                    trace=_trace(event, decision, rank, decisions),
                )
                use = budgets.get(decision.campaign, rules.BudgetUse())
                draws_pool_code = decision.status == rules.QUEUED and use.codes_left is not None
                if draws_pool_code:
                    # Drawn one at a time: the draw locks its code, and an empty pool changes
                    # the decision (see _record).
                    delivery = decided.record(budget=use, now=now)
                    if delivery is None:
                        continue
                    landed[key] = delivery.id
                else:
                    delivery = decided.delivery(now=now)
                    unsaved.append(decided)
                history.add(decision.campaign, delivery.status, now)
                if delivery.status in (rules.QUEUED, rules.HOLDOUT):
                    # The customer's group from now on, for the batch's next events too.
                    held_out[customer.id].setdefault(
                        decision.campaign, delivery.status == rules.HOLDOUT
                    )
                if delivery.status == DeliveryStatus.QUEUED:
                    budgets[decision.campaign] = use.after_one_sms()
                    queued.append(key)
                elif draws_pool_code:
                    # The pool ran dry under the count (see _record): the batch's next
                    # events judge the campaign spent, and this visit goes on to the
                    # campaigns ranked after it, as it would have had the count seen it.
                    budgets[decision.campaign] = replace(use, codes_left=0)
                    # It was the arrival's last decision (a queued one ends the ranking).
                    decided_ids = {d.campaign for d in decisions}
                    decisions += rules.decide_arrival(
                        [c for c in live if c.id not in decided_ids],
                        arrival_facts,
                        customer_facts,
                        budgets,
                        limits,
                        now,
                    )
        landed.update(_insert_decisions(unsaved, now=now))
        queued_ids = [landed[key] for key in queued if key in landed]
        pace_sends(queued_ids, now=now)
    return queued_ids


def arrivals(
    events: list[PresenceEvent], facts: dict[int, rules.PresenceFact]
) -> list[list[PresenceEvent]]:
    """The events, in their order, as arrivals (rules.arrival_key): a customer's entries
    into a store and its zones at one instant together, decided as one."""
    grouped: dict[tuple, list[PresenceEvent]] = {}
    for event in events:
        key = rules.arrival_key(facts[event.id], event.customer_id, event.id)
        grouped.setdefault(key, []).append(event)
    return list(grouped.values())


def process_location_batch(*, batch_id: int, now: datetime) -> list[int]:
    """A stored batch from presence to decisions, in one transaction, so that a worker dying
    half-way leaves nothing decided-about but undecided: the redelivered batch starts over.
    Returns the deliveries to send. A batch processed before (redelivered after its worker
    died between deciding and enqueuing, or given to two workers) is not processed again:
    it returns what its first run decided and no task has claimed. A store deleted while it
    is processed has it processed again at once, not left for the sweep with its other
    shoppers (database.against_current_places)."""
    decided = against_current_places(lambda: _process_unprocessed_batch(batch_id, now=now))
    if decided is not None:
        return decided
    batch = LocationBatch.objects.filter(pk=batch_id).values_list("ping_ids", "sighting_ids")
    if not batch:  # past retention, purged
        return []
    return stranded_deliveries(ping_ids=batch[0][0], sighting_ids=batch[0][1])


def _process_unprocessed_batch(batch_id: int, *, now: datetime) -> list[int] | None:
    """The batch processed in one transaction, its deliveries to send; None if it was
    processed before."""
    with transaction.atomic():
        # Marked processed first, in the transaction that processes it: the row lock makes
        # a second worker given the same batch wait, then find it processed.
        claimed = _claim_location_batch(batch_id, now=now)
        if claimed is None:
            return None
        ping_ids, sighting_ids = claimed
        event_ids = tracking.process_location_batch(
            ping_ids=ping_ids, sighting_ids=sighting_ids, now=now
        )
        return decide_presence_events(event_ids=event_ids, now=now)


def _claim_location_batch(batch_id: int, *, now: datetime) -> tuple[list[int], list[int]] | None:
    """Mark the batch processed if no one has; its ping and sighting ids if this did."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {LocationBatch._meta.db_table} SET processed_at = %s "
            "WHERE id = %s AND processed_at IS NULL RETURNING ping_ids, sighting_ids",
            [now, batch_id],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    # JSON columns come back from a cursor as text.
    ping_ids, sighting_ids = (json.loads(v) if isinstance(v, str) else v for v in row)
    return ping_ids, sighting_ids


def decide_lost_batches(
    *, now: datetime, budget_seconds: float, queue_sends: Callable[[list[int]], object]
) -> int:
    """Process unprocessed batches older than SWEEP_AFTER_SECONDS at `now`, handing each
    one's deliveries to `queue_sends`, until none is left or the time budget is spent;
    returns how many were processed. Kept under a beat period, so that runs rarely overlap
    (two that do are safe: each batch's row is claimed once). A broker outage leaves a
    backlog of thousands of batches, more than any fixed count per run would clear in
    hours. A batch whose processing fails (a bug, a row the code did not expect) is logged
    and passed over: first in line, it would otherwise fail every run and hold up every
    lost batch behind it. A database that is away fails the whole run, for its task to
    retry."""
    deadline = monotonic() + min(budget_seconds, settings.CELERY_TASK_SOFT_TIME_LIMIT / 2)
    older_than = timedelta(seconds=settings.SWEEP_AFTER_SECONDS)
    failed: set[int] = set()
    swept = 0
    while monotonic() < deadline:
        # Failed batches stay unprocessed, first in line: read past them.
        page = tracking.unprocessed_batches(
            now=now, older_than=older_than, limit=len(failed) + SWEEP_PAGE
        )
        batch_ids = [batch_id for batch_id in page if batch_id not in failed]
        if not batch_ids:
            break
        for batch_id in batch_ids:
            if monotonic() >= deadline:
                break
            try:
                # Each batch at the time it is processed: a run lasts most of a beat period,
                # and its sends are paced from when they are decided.
                queue_sends(process_location_batch(batch_id=batch_id, now=timezone.now()))
            except Exception as error:
                if database_unavailable(error):
                    raise
                logger.exception("The sweep could not process location batch %d.", batch_id)
                failed.add(batch_id)
            else:
                swept += 1
    return swept


def process_presence_tick(*, now: datetime) -> list[int]:
    """Timeouts and silent dwells, then their decisions, in one transaction. A store deleted
    while it runs has it run again at once (database.against_current_places), where the
    tick failed, and every shopper's dwell and timeout waited for the next minute's."""

    def tick() -> list[int]:
        with transaction.atomic():
            event_ids = tracking.expire_presence(now=now)
            return decide_presence_events(event_ids=event_ids, now=now)

    return against_current_places(tick)


def stranded_deliveries(
    *,
    ping_ids: Iterable[int] = (),
    sighting_ids: Iterable[int] = (),
    due_before: datetime | None = None,
) -> list[int]:
    """Queued deliveries no worker has claimed: of the presence events these pings and
    sightings caused (a batch redelivered after its worker died between deciding and
    enqueuing the sends), or, with `due_before`, any whose send slot passed long ago (their
    task was lost with a broker's queue). Sending them again is safe: a send claims its row."""
    queued = Delivery.objects.filter(status=DeliveryStatus.QUEUED, claimed_at=None)
    if due_before is not None:
        queued = queued.filter(send_after__lt=due_before)
    else:
        queued = queued.filter(
            Q(presence_event__ping_id__in_batch=set(ping_ids))
            | Q(presence_event__sighting_id__in_batch=set(sighting_ids))
        )
    return list(queued.order_by("send_after").values_list("id", flat=True)[:10_000])


class Signals(NamedTuple):
    """A customer's browsing as the rules read it: per SKU, per category, and their cart
    as the site reported it whole (None: never)."""

    products: dict[str, rules.BrowsingSignal]
    categories: dict[str, rules.BrowsingSignal]
    cart: rules.BrowsingSignal | None = None


@dataclass(frozen=True)
class StoredBrowsing:
    """A customer's intent row for one SKU or category as stored: its signal with the score
    as kept at `score_at` (its newest event), not decayed to any moment yet."""

    signal: rules.BrowsingSignal
    score_at: datetime | None


class Browsing(NamedTuple):
    """A customer's intent rows as stored, read as Signals are."""

    products: dict[str, StoredBrowsing]
    categories: dict[str, StoredBrowsing]
    cart: StoredBrowsing | None = None


def load_signals(customer_ids: Iterable[int], *, now: datetime) -> dict[int, Signals]:
    """Each customer's browsing, per SKU and per category, as the rules read it at `now`."""
    half_life = settings.INTENT_HALF_LIFE_DAYS * rules.DAY

    def at_now(stored: StoredBrowsing) -> rules.BrowsingSignal:
        score = intent.score_as_of(stored.signal.score, stored.score_at, now, half_life)
        return replace(stored.signal, score=score)

    return {
        customer_id: Signals(
            {key: at_now(stored) for key, stored in browsing.products.items()},
            {key: at_now(stored) for key, stored in browsing.categories.items()},
            at_now(browsing.cart) if browsing.cart else None,
        )
        for customer_id, browsing in load_browsing(customer_ids).items()
    }


def load_browsing(customer_ids: Iterable[int]) -> dict[int, Browsing]:
    ids = list(customer_ids)
    product_rows = list(ProductIntent.objects.filter(customer_id__in=ids))
    names = dict(
        Product.objects.filter(sku__in={row.sku for row in product_rows}).values_list("sku", "name")
    )
    products: dict[int, dict[str, StoredBrowsing]] = defaultdict(dict)
    categories: dict[int, dict[str, StoredBrowsing]] = defaultdict(dict)

    def stored(
        row: ProductIntent | CategoryIntent | CartIntent, key: str, **extra: Any
    ) -> StoredBrowsing:
        signal = rules.BrowsingSignal(
            key=key,
            cart_state=row.cart_state,
            cart_updated_at=row.cart_updated_at,
            score=row.score,
            **extra,
        )
        return StoredBrowsing(signal, row.score_at)

    for row in product_rows:
        products[row.customer_id][row.sku] = stored(
            row,
            row.sku,
            view_times=tuple(row.view_times),
            category=intent.category_key(row.category),
            categories=frozenset(row.categories),
            product_name=names.get(row.sku, ""),
        )
    for row in CategoryIntent.objects.filter(customer_id__in=ids).order_by("pk"):
        key = intent.category_key(row.category)
        row_stored = stored(row, row.category, view_times=tuple(row.view_times))
        same_key = categories[row.customer_id].get(key)
        categories[row.customer_id][key] = (
            _merged_browsing(same_key, row_stored) if same_key else row_stored
        )
    carts = {
        row.customer_id: stored(row, "") for row in CartIntent.objects.filter(customer_id__in=ids)
    }
    return {
        customer_id: Browsing(
            products[customer_id], categories[customer_id], carts.get(customer_id)
        )
        for customer_id in {*products, *categories, *carts}
    }


NEVER = datetime.min.replace(tzinfo=UTC)


def _merged_browsing(one: StoredBrowsing, other: StoredBrowsing) -> StoredBrowsing:
    """Two rows of one category, spelt two ways, as one: what their events, folded one by
    one into a single row, would have left, under the spelling of the latest."""
    half_life = settings.INTENT_HALF_LIFE_DAYS * rules.DAY
    score, score_at = intent.merge_scores(
        one.signal.score, one.score_at, other.signal.score, other.score_at, half_life
    )
    cart_state, cart_updated_at = intent.merge_carts(
        one.signal.cart_state,
        one.signal.cart_updated_at,
        other.signal.cart_state,
        other.signal.cart_updated_at,
    )
    view_times = intent.merge_view_times(
        list(one.signal.view_times), list(other.signal.view_times), window_start=0
    )
    latest = max(one, other, key=lambda browsing: browsing.score_at or NEVER)
    signal = replace(
        latest.signal,
        view_times=tuple(view_times),
        cart_state=cart_state,
        cart_updated_at=cart_updated_at,
        score=score,
    )
    return StoredBrowsing(signal, score_at)


def customer_timezone(customer: Customer, store: Store | None) -> str:
    """The time zone a customer's quiet hours and offer expiry go by: their own, or, when
    the retailer gave none, the store's they are in (or, its store deleted since, the
    retailer's own, which its daily budgets go by)."""
    if customer.timezone:
        return customer.timezone
    return store.timezone if store is not None else settings.SMS_BUDGET_TIMEZONE


def history_window(limits: rules.GlobalLimits, campaigns: Iterable[Campaign]) -> timedelta:
    """How far back an SMS can still hold the next one for these campaigns: the longest of
    the global cap's days, the campaigns' own caps' and the minimum gap between two SMS
    (which a retailer may set longer than the caps, "never two within 3 days")."""
    days = max([limits.cap_days, *(c.limit_per_customer_days or 0 for c in campaigns)])
    return max(timedelta(days=days), limits.min_gap)


def load_histories(
    customer_ids: Iterable[int],
    *,
    now: datetime,
    campaigns: Iterable[Campaign],
    limits: rules.GlobalLimits,
) -> dict[int, History]:
    histories: dict[int, History] = defaultdict(History)
    for customer_id, campaign_id, status, created_at in Delivery.objects.filter(
        customer_id__in=list(customer_ids),
        status__in=[*SENT_LIKE, DeliveryStatus.HOLDOUT],
        created_at__gt=now - history_window(limits, campaigns),
    ).values_list("customer_id", "campaign_id", "status", "created_at"):
        queued_or_holdout = rules.HOLDOUT if status == DeliveryStatus.HOLDOUT else rules.QUEUED
        histories[customer_id].add(campaign_id, queued_or_holdout, created_at)
    return histories


def load_holdout_groups(
    customer_ids: Iterable[int], *, campaigns: Iterable[int]
) -> dict[int, dict[int, bool]]:
    """Per customer, the campaigns they are in already and whether their first decision in
    each held them out (rules.in_holdout_group), in one query. However long ago it was: a
    customer stays in their group for the campaign's life."""
    held_out: dict[int, dict[int, bool]] = defaultdict(dict)
    rows = (
        Delivery.objects.filter(
            TEXTED_OR_HELD_OUT,
            customer_id__in=list(customer_ids),
            campaign_id__in=list(campaigns),
        )
        .values("customer_id", "campaign_id")
        .annotate(**FIRST_IN_EACH_GROUP)
        .order_by()
    )
    for row in rows:
        held_out[row["customer_id"]][row["campaign_id"]] = rules.first_held_out(
            row["first_holdout_at"], row["first_texted_at"]
        )
    return held_out


def _lock_budgets(campaigns: Iterable[Campaign], *, now: datetime) -> dict[int, rules.BudgetUse]:
    """Lock the campaigns that have a budget or a code pool, then count what they spent and
    the pool codes they have left: two workers deciding at once take turns, so a budget is
    never overspent, and the rules know which pools are used up before they rank."""
    campaigns = list(campaigns)
    budgeted = [c.id for c in campaigns if c.daily_budget is not None or c.total_budget is not None]
    pooled = set(
        OfferCode.objects.filter(campaign__in=[c.id for c in campaigns])
        .values_list("campaign_id", flat=True)
        .distinct()
    )
    if not budgeted and not pooled:
        return {}
    list(Campaign.objects.select_for_update().filter(id__in=[*budgeted, *pooled]).order_by("id"))
    budget_zone = ZoneInfo(settings.SMS_BUDGET_TIMEZONE)
    midnight = local_day_start(local_day(now, budget_zone), budget_zone)
    counts = (
        Delivery.objects.filter(campaign_id__in=budgeted, status__in=SENT_LIKE)
        .values("campaign_id")
        .annotate(total=Count("id"), today=Count("id", filter=Q(created_at__gte=midnight)))
    )
    budgets = {row["campaign_id"]: rules.BudgetUse(row["today"], row["total"]) for row in counts}
    codes_left = dict.fromkeys(pooled, 0)
    codes_left.update(
        OfferCode.objects.drawable()
        .filter(campaign__in=pooled)
        .values("campaign_id")
        .annotate(unused=Count("id"))
        .values_list("campaign_id", "unused")
    )
    for campaign_id, left in codes_left.items():
        budgets[campaign_id] = replace(budgets.get(campaign_id, rules.BudgetUse()), codes_left=left)
    return budgets


# A decision's place in the unique constraint: customer, campaign, presence event.
DecisionKey = tuple[int, int, int]


@dataclass
class _Decided:
    """A decision on its way to its Delivery row, with what recording it takes."""

    key: DecisionKey
    decision: rules.Decision
    campaign: Campaign
    event: PresenceEvent
    customer: Customer
    trace: dict
    row: Delivery | None = None

    def delivery(self, *, now: datetime) -> Delivery:
        """Its Delivery as _record would insert it without a pool code, not saved yet."""
        self.row = _new_delivery(
            self.decision,
            campaign=self.campaign,
            event=self.event,
            customer=self.customer,
            trace=self.trace,
            now=now,
        )
        if self.row.status in (rules.QUEUED, rules.HOLDOUT):
            _write_offer(
                self.row, self.campaign, self.event, self.customer, self.decision, pool_code=None
            )
        # Saved by bulk_create, which skips Delivery.save: the key the till looks up by.
        self.row.code_key = normalise_code(self.row.code) if self.row.code else None
        return self.row

    def record(self, *, budget: rules.BudgetUse, now: datetime) -> Delivery | None:
        return _record(
            self.decision,
            campaign=self.campaign,
            event=self.event,
            customer=self.customer,
            budget=budget,
            trace=self.trace,
            now=now,
        )


def _decided_before(events: list[PresenceEvent]) -> set[int]:
    """Those of these events decided already. Read under their customers' locks (see
    decide_presence_events), so no other worker decides one before this one commits."""
    return set(
        Delivery.objects.filter(
            presence_event__in_batch={event.id for event in events}
        ).values_list("presence_event_id", flat=True)
    )


def _insert_decisions(unsaved: list[_Decided], *, now: datetime) -> dict[DecisionKey, int]:
    """Insert the batch's deliveries that draw no pool code at once, a statement a thousand
    rows; the ids of those recorded. The unique constraint still holds a decision to one
    Delivery: a row it turns away was recorded meanwhile (no worker can, under the
    customers' locks), and is not this run's to send. A row whose generated code collided
    with another delivery's is recorded again on its own, with a code drawn again."""
    if not unsaved:
        return {}
    _hold_campaigns({u.key[1] for u in unsaved})
    Delivery.objects.bulk_create([u.row for u in unsaved], batch_size=1000, ignore_conflicts=True)
    stored = {
        (customer_id, campaign_id, event_id): (pk, code)
        for pk, customer_id, campaign_id, event_id, code in Delivery.objects.filter(
            presence_event__in_batch={u.key[2] for u in unsaved}
        ).values_list("id", "customer_id", "campaign_id", "presence_event_id", "code")
    }
    landed = {}
    for decided in unsaved:
        found = stored.get(decided.key)
        if found is None:  # turned away for its code alone: no pool, so a code drawn again
            delivery = decided.record(budget=rules.BudgetUse(), now=now)
            if delivery is not None:
                landed[decided.key] = delivery.id
        elif found[1] == decided.row.code:
            landed[decided.key] = found[0]
    return landed


def _hold_campaigns(ids: set[int]) -> None:
    """Hold the campaigns deliveries are about to be recorded for until they commit (a key
    share, as the deliveries' foreign key takes when they commit, taken now): a campaign's
    deletion (services.delete_campaigns) waits for them, then counts them and refuses. One
    in flight is waited for here; the campaign is then gone, the deliveries' commit fails,
    and the batch runs again without it (database.against_current_places). Campaigns with
    a budget or a code pool are locked for update already (_lock_budgets), before these: a
    deletion takes them in that order too."""
    held_rows(
        Campaign.objects.filter(id__in=ids).order_by("id").values_list("id"), strength="KEY SHARE"
    )


def _new_delivery(
    decision: rules.Decision,
    *,
    campaign: Campaign,
    event: PresenceEvent,
    customer: Customer,
    trace: dict,
    now: datetime,
) -> Delivery:
    return Delivery(
        customer=customer,
        campaign=campaign,
        presence_event=event,
        store=event.store,
        status=decision.status,
        reason=decision.reason,
        to=customer.phone,
        product_sku=decision.match.sku,
        intent_score=decision.match.strength,
        trace=trace,
        created_at=now,
        status_updated_at=now,
    )


def _record(
    decision: rules.Decision,
    *,
    campaign: Campaign,
    event: PresenceEvent,
    customer: Customer,
    budget: rules.BudgetUse,
    trace: dict,
    now: datetime,
) -> Delivery | None:
    """Insert the decision's Delivery; None when this decision was recorded before. A queued
    one takes a code from the campaign's pool when it has one; a holdout one never does (it
    is never texted, and its purchases are found by the customer, not by the code)."""
    status = decision.status
    delivery = _new_delivery(
        decision, campaign=campaign, event=event, customer=customer, trace=trace, now=now
    )
    writes_offer = status in (rules.QUEUED, rules.HOLDOUT)
    # Pool codes that collided with a delivery's code: never drawn twice by this decision.
    collided: set[int] = set()
    for _ in range(CODE_ATTEMPTS):
        pool_code = None
        try:
            with transaction.atomic():
                if writes_offer:
                    if status == rules.QUEUED and budget.codes_left is not None:
                        pool_code = _draw_pool_code(campaign, skip=collided)
                        # Counted under the campaign's lock, so only a code the count could
                        # not see as gone gets here: deleted or locked meanwhile (the admin),
                        # or carried by a delivery though its link was cleared.
                        if pool_code is None:
                            delivery.status = DeliveryStatus.SUPPRESSED
                            delivery.reason = DeliveryReason.BUDGET
                            delivery.trace = {
                                **trace,
                                "limits": DeliveryReason.BUDGET,
                                "limit": "the code pool is used up",
                            }
                            writes_offer = False
                    if writes_offer:
                        _write_offer(delivery, campaign, event, customer, decision, pool_code)
                delivery.save(force_insert=True)
                if pool_code is not None:
                    pool_code.delivery = delivery
                    pool_code.save(update_fields=["delivery"])
                return delivery
        except IntegrityError:
            delivery.pk = None
            if Delivery.objects.filter(
                customer=customer, campaign=campaign, presence_event=event
            ).exists():
                return None
            # Otherwise the code collided with another delivery's: a generated one is drawn
            # again, a pool code is passed over for the pool's next.
            if pool_code is not None:
                collided.add(pool_code.id)
    raise RuntimeError("Could not record a delivery with a unique code.")


def _draw_pool_code(campaign: Campaign, *, skip: Iterable[int] = ()) -> OfferCode | None:
    """The campaign's next pool code free to send, locked for this transaction. A code a
    delivery already carries is not free, whatever its pool row says: its link to that
    delivery may have been cleared (in the admin), and sending it again would hand two
    customers one code, the till crediting one's purchase to the other's SMS."""
    carried = Delivery.objects.filter(code_key=OuterRef("code_key"))
    return (
        OfferCode.objects.drawable()
        .select_for_update(skip_locked=True)
        .filter(campaign=campaign)
        .exclude(id__in=list(skip))
        .exclude(Exists(carried))
        .order_by("id")
        .first()
    )


def _write_offer(
    delivery: Delivery,
    campaign: Campaign,
    event: PresenceEvent,
    customer: Customer,
    decision: rules.Decision,
    pool_code: OfferCode | None,
) -> None:
    zone_name = customer_timezone(customer, event.store)
    zone = ZoneInfo(zone_name)
    # The SMS gives the last day in the customer's zone; the code lasts until that day ends
    # at the store's till too, when the store's zone ends it later.
    last_day = offer_last_day(delivery.created_at, campaign.offer_valid_days, zone)
    till_zone = ZoneInfo(event.store.timezone)
    expires = offer_expiry(
        delivery.created_at, campaign.offer_valid_days, zone, till_zone=till_zone
    )
    delivery.code = pool_code.code if pool_code else offers.generate_code()
    delivery.expires_at = expires
    # The day its SMS gave, read in the zone whose end of it is the code's (the admin): its
    # last moment there, whatever the customer's zone has become since.
    if local_day(expires, zone) != last_day:
        zone_name = event.store.timezone
    delivery.trace = {**delivery.trace, "offer_timezone": zone_name}
    delivery.body = offers.render_offer(
        campaign.offer_template,
        first_name=customer.first_name,
        store_name=event.store.name,
        product_name=decision.match.product_name,
        code=delivery.code,
        expires_at=last_day,
        locale=customer.locale,
        phone=customer.phone,
    )
    delivery.encoding = offers.sms_encoding(delivery.body)
    delivery.segments = offers.sms_segments(delivery.body)


def _trace(
    event: PresenceEvent, decision: rules.Decision, rank: int, decisions: list[rules.Decision]
) -> dict:
    return {
        "event": {
            "id": event.id,
            "kind": event.kind,
            "store": event.store.code,
            "zone": event.zone.code if event.zone_id else None,
            "at": event.occurred_at.isoformat(),
            "ping": event.ping_id,
            "sighting": event.sighting_id,
            "why": event.evidence.get("reason", ""),
        },
        "intent": decision.match.detail,
        "rank": rank + 1,
        "ranked": [d.campaign for d in decisions],
        "limits": decision.reason or "all passed",
        "limit": decision.detail,
    }


def pace_sends(
    delivery_ids: list[int], *, now: datetime, not_before: datetime | None = None
) -> None:
    """Give each queued SMS its send slot, spaced to the sender's rate across every worker
    (one locked row per sender holds the next free slot). The rate is in segments a second,
    as Twilio's is (a long code sends one segment a second, error 21611 past it): an SMS of
    two segments takes two of the sender's turns. `not_before`: no slot before it (a
    retry's, after the wait the provider asked for); the sender's later SMS come after.

    The next free slot is the end of the live bookings: an SMS that ended without being
    sent (its campaign paused, quiet hours, a STOP, an erasure) gives its turn back, or an
    idle sender would hold a new shopper's SMS back behind a burst that never went.

    An SMS whose slot would come when it can no longer go (offers.why_past_due: stale, or
    its offer expired) fails now as its send would, and takes no slot: booked, it would push
    the sender's next free slot past slots no send can use."""
    if not delivery_ids:
        return
    earliest = max(now, not_before or now)
    if settings.CELERY_TASK_ALWAYS_EAGER:
        # Without a broker the sends run inside the request, at once: slots booked for them
        # would run ahead of a clock no send waits for, until later shoppers' SMS expired
        # in a queue that does not exist.
        Delivery.objects.filter(id__in=delivery_ids).update(send_after=earliest)
        return
    # sending imports this module (for the rules a send checks again): imported here.
    from promotions import sending

    gap = timedelta(seconds=1 / settings.SMS_SENDER_MPS)
    validity = timedelta(seconds=settings.SMS_VALIDITY_SECONDS)
    queued = {
        delivery_id: (visited_at, expires_at, segments)
        for delivery_id, visited_at, expires_at, segments in Delivery.objects.filter(
            id__in=delivery_ids, status=DeliveryStatus.QUEUED, claimed_at=None
        ).values_list("id", sending.delivery_visited_at(), "expires_at", "segments")
    }
    sender, _ = SmsSender.objects.get_or_create(
        sender=sms.sender_id(), defaults={"next_slot_at": now}
    )
    sender = SmsSender.objects.select_for_update().get(pk=sender.pk)
    slot = max(earliest, min(sender.next_slot_at, _end_of_bookings(now, gap, delivery_ids)))
    past_due = defaultdict(list)
    slots = []
    for delivery_id in delivery_ids:
        if delivery_id not in queued:
            # A retry's, deleted, failed or suppressed meanwhile (or being sent): no slot.
            continue
        visited_at, expires_at, segments = queued[delivery_id]
        why = offers.why_past_due(
            slot, visited_at=visited_at, expires_at=expires_at, validity=validity
        )
        if why:
            past_due[why].append(delivery_id)
            continue
        slots.append((delivery_id, slot))
        slot += gap * max(1, segments)
    if slots:
        _write_send_slots(slots)
        sender.next_slot_at = slot
        sender.save(update_fields=["next_slot_at"])
    for why, failed in past_due.items():
        sending.fail_unsent(failed, now=now, why=why)


def _end_of_bookings(now: datetime, gap: timedelta, rebooked: list[int]) -> datetime:
    """When the sender is through the SMS it has already taken on, or `now`: read under the
    sender's lock, so the bookings of every worker are in. Those are the SMS waiting for
    their slot and those whose slot came (sent, being sent, or refused by the provider),
    whose segments still hold the sender for `gap` each; not those that ended without
    being sent. The SMS being booked again (a retry's) give their old slots up. Every
    paced SMS is the sender's: there is one, sms.sender_id()."""
    unsent = Q(status__in=(DeliveryStatus.SUPPRESSED, DeliveryStatus.HOLDOUT)) | Q(
        status=DeliveryStatus.FAILED, claimed_at=None, sent_at=None
    )
    # No SMS holds the sender longer than the longest one does, so a slot before this
    # cannot end after `now`, nor after the latest slot's end.
    longest = gap * offers.LONGEST_SMS_SEGMENTS
    taken = (
        Delivery.objects.filter(send_after__isnull=False).exclude(id__in=rebooked).exclude(unsent)
    )
    latest = (
        taken.filter(send_after__gt=now - longest)
        .order_by("-send_after")
        .values_list("send_after", flat=True)
        .first()
    )
    if latest is None:
        return now
    ends = [
        send_after + gap * max(1, segments)
        for send_after, segments in taken.filter(send_after__gt=latest - longest).values_list(
            "send_after", "segments"
        )
    ]
    return max(now, *ends)


def _write_send_slots(slots: list[tuple[int, datetime]]) -> None:
    """Each delivery's send_after, in one statement for the batch."""
    if not slots:
        return
    table = Delivery._meta.db_table
    source, params = rows_source(["bigint", "timestamptz"], slots)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH slot (id, send_after) AS ({source}) UPDATE {table} "
            f"SET send_after = slot.send_after FROM slot WHERE {table}.id = slot.id",
            params,
        )
