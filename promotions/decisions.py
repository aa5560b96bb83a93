"""From presence events to decisions: loads what `promotions.rules` needs in bulk, records
every decision as a Delivery (sent or not), and reserves paced send slots for the ones to send.

Idempotent in the data: a Delivery is unique per customer, campaign and presence event, so a
redelivered or doubled task records nothing twice and never queues a second SMS.
"""

import json
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from customers import intent
from customers.models import CategoryIntent, Customer, Product, ProductIntent, SmsConsent
from promotions import offers, presence, rules, sms, tracking
from promotions.models import (
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryReason,
    DeliveryStatus,
    LocationBatch,
    OfferCode,
    Presence,
    PresenceEvent,
    PresenceKind,
    SmsSender,
    Store,
    TriggerType,
)

# Handed to the SMS provider, or about to be: what caps and budgets count.
SENT_LIKE = (
    DeliveryStatus.QUEUED,
    DeliveryStatus.SENT,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.UNDELIVERED,
)
CODE_ATTEMPTS = 3


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
    histories = load_histories(customers.keys(), now=now, campaigns=campaigns.values())
    limits = global_limits()
    queued: list[int] = []
    with transaction.atomic():
        budgets = _lock_budgets(campaigns.values(), now=now)
        for event in events:
            customer = customers[event.customer_id]
            history = histories[customer.id]
            products, categories = signals.get(customer.id, ({}, {}))
            customer_facts = rules.CustomerFacts(
                key=customer.external_id,
                opted_in=customer.sms_consent == SmsConsent.OPTED_IN,
                has_phone=bool(customer.phone),
                timezone=customer_timezone(customer, event.store),
                products=products,
                categories=categories,
                sent_by_campaign=history.by_campaign,
                sent=history.sent,
            )
            decisions = rules.decide(live, facts[event.id], customer_facts, budgets, limits, now)
            for rank, decision in enumerate(decisions):
                delivery = _record(
                    decision,
                    campaign=campaigns[decision.campaign],
                    event=event,
                    customer=customer,
                    budget=budgets.get(decision.campaign, rules.BudgetUse()),
                    trace=_trace(event, decision, rank, decisions),
                    now=now,
                )
                if delivery is None:
                    continue
                history.add(decision.campaign, delivery.status, now)
                use = budgets.get(decision.campaign, rules.BudgetUse())
                if delivery.status == DeliveryStatus.QUEUED:
                    budgets[decision.campaign] = use.after_one_sms()
                    queued.append(delivery.id)
                elif decision.status == rules.QUEUED and use.codes_left is not None:
                    # The pool ran dry under the count (see _record): the batch's next
                    # events judge the campaign spent.
                    budgets[decision.campaign] = replace(use, codes_left=0)
        pace_sends(queued, now=now)
    return queued


def process_location_batch(*, batch_id: int, now: datetime) -> list[int]:
    """A stored batch from presence to decisions, in one transaction, so that a worker dying
    half-way leaves nothing decided-about but undecided: the redelivered batch starts over.
    Returns the deliveries to send. A batch processed before (redelivered after its worker
    died between deciding and enqueuing, or given to two workers) is not processed again:
    it returns what its first run decided and no task has claimed."""
    with transaction.atomic():
        # Marked processed first, in the transaction that processes it: the row lock makes a
        # second worker given the same batch wait, then find it processed.
        claimed = _claim_location_batch(batch_id, now=now)
        if claimed:
            ping_ids, sighting_ids = claimed
            event_ids = tracking.process_location_batch(
                ping_ids=ping_ids, sighting_ids=sighting_ids, now=now
            )
            return decide_presence_events(event_ids=event_ids, now=now)
    batch = LocationBatch.objects.filter(pk=batch_id).values_list("ping_ids", "sighting_ids")
    if not batch:  # past retention, purged
        return []
    return stranded_deliveries(ping_ids=batch[0][0], sighting_ids=batch[0][1])


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


def process_presence_tick(*, now: datetime) -> list[int]:
    """Timeouts and silent dwells, then their decisions, in one transaction."""
    with transaction.atomic():
        event_ids = tracking.expire_presence(now=now)
        return decide_presence_events(event_ids=event_ids, now=now)


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


Signals = tuple[dict[str, rules.BrowsingSignal], dict[str, rules.BrowsingSignal]]


@dataclass(frozen=True)
class _StoredBrowsing:
    """A customer's intent row for one SKU or category as stored: its signal with the score
    as kept at `score_at` (its newest event), not decayed to any moment yet."""

    signal: rules.BrowsingSignal
    score_at: datetime | None


def load_signals(customer_ids: Iterable[int], *, now: datetime) -> dict[int, Signals]:
    """Each customer's browsing, per SKU and per category, as the rules read it at `now`."""
    half_life = settings.INTENT_HALF_LIFE_DAYS * rules.DAY

    def at_now(stored: _StoredBrowsing) -> rules.BrowsingSignal:
        score = intent.score_as_of(stored.signal.score, stored.score_at, now, half_life)
        return replace(stored.signal, score=score)

    return {
        customer_id: (
            {key: at_now(stored) for key, stored in products.items()},
            {key: at_now(stored) for key, stored in categories.items()},
        )
        for customer_id, (products, categories) in _load_browsing(customer_ids).items()
    }


def _load_browsing(
    customer_ids: Iterable[int],
) -> dict[int, tuple[dict[str, _StoredBrowsing], dict[str, _StoredBrowsing]]]:
    ids = list(customer_ids)
    product_rows = list(ProductIntent.objects.filter(customer_id__in=ids))
    names = dict(
        Product.objects.filter(sku__in={row.sku for row in product_rows}).values_list("sku", "name")
    )
    browsing: dict[int, tuple[dict, dict]] = defaultdict(lambda: ({}, {}))

    def stored(row: ProductIntent | CategoryIntent, key: str, **extra: str) -> _StoredBrowsing:
        signal = rules.BrowsingSignal(
            key=key,
            view_times=tuple(row.view_times),
            cart_state=row.cart_state,
            cart_updated_at=row.cart_updated_at,
            score=row.score,
            **extra,
        )
        return _StoredBrowsing(signal, row.score_at)

    for row in product_rows:
        browsing[row.customer_id][0][row.sku] = stored(
            row, row.sku, category=row.category, product_name=names.get(row.sku, "")
        )
    for row in CategoryIntent.objects.filter(customer_id__in=ids):
        browsing[row.customer_id][1][row.category] = stored(row, row.category)
    return browsing


def customer_timezone(customer: Customer, store: Store | None) -> str:
    """The time zone a customer's quiet hours and offer expiry go by: their own, or, when
    the retailer gave none, the store's they are in (or, its store deleted since, the
    retailer's own, which its daily budgets go by)."""
    if customer.timezone:
        return customer.timezone
    return store.timezone if store is not None else settings.SMS_BUDGET_TIMEZONE


def load_histories(
    customer_ids: Iterable[int], *, now: datetime, campaigns: Iterable[Campaign]
) -> dict[int, History]:
    days = max(
        [settings.SMS_GLOBAL_CAP_DAYS] + [c.limit_per_customer_days or 0 for c in campaigns],
    )
    histories: dict[int, History] = defaultdict(History)
    for customer_id, campaign_id, status, created_at in Delivery.objects.filter(
        customer_id__in=list(customer_ids),
        status__in=[*SENT_LIKE, DeliveryStatus.HOLDOUT],
        created_at__gt=now - timedelta(days=days),
    ).values_list("customer_id", "campaign_id", "status", "created_at"):
        queued_or_holdout = rules.HOLDOUT if status == DeliveryStatus.HOLDOUT else rules.QUEUED
        histories[customer_id].add(campaign_id, queued_or_holdout, created_at)
    return histories


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
    midnight = now.astimezone(ZoneInfo(settings.SMS_BUDGET_TIMEZONE)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    counts = (
        Delivery.objects.filter(campaign_id__in=budgeted, status__in=SENT_LIKE)
        .values("campaign_id")
        .annotate(total=Count("id"), today=Count("id", filter=Q(created_at__gte=midnight)))
    )
    budgets = {row["campaign_id"]: rules.BudgetUse(row["today"], row["total"]) for row in counts}
    codes_left = dict.fromkeys(pooled, 0)
    codes_left.update(
        OfferCode.objects.filter(campaign__in=pooled, delivery__isnull=True)
        .values("campaign_id")
        .annotate(unused=Count("id"))
        .values_list("campaign_id", "unused")
    )
    for campaign_id, left in codes_left.items():
        budgets[campaign_id] = replace(budgets.get(campaign_id, rules.BudgetUse()), codes_left=left)
    return budgets


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
    status, reason = decision.status, decision.reason
    delivery = Delivery(
        customer=customer,
        campaign=campaign,
        presence_event=event,
        store=event.store,
        status=status,
        reason=reason,
        to=customer.phone,
        product_sku=decision.match.sku,
        intent_score=decision.match.strength,
        trace=trace,
        created_at=now,
        status_updated_at=now,
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
                        # Counted under the campaign's lock, so only a code deleted or
                        # locked meanwhile (the admin) gets here.
                        if pool_code is None:
                            delivery.status = DeliveryStatus.SUPPRESSED
                            delivery.reason = DeliveryReason.BUDGET
                            delivery.trace = {**trace, "limits": "the code pool is used up"}
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
    customers one code, the till crediting one's purchase to the other's SMS. A keyless code
    (one of two the till cannot tell apart, kept by migration 0015) is never handed out."""
    carried = Delivery.objects.filter(code_key=OuterRef("code_key"))
    return (
        OfferCode.objects.select_for_update(skip_locked=True)
        .filter(campaign=campaign, delivery__isnull=True, code_key__isnull=False)
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
    zone = ZoneInfo(customer_timezone(customer, event.store))
    expires = offer_expiry(delivery.created_at, campaign.offer_valid_days, zone)
    delivery.code = pool_code.code if pool_code else offers.generate_code()
    delivery.expires_at = expires
    delivery.body = offers.render_offer(
        campaign.offer_template,
        first_name=customer.first_name,
        store_name=event.store.name,
        product_name=decision.match.product_name,
        code=delivery.code,
        expires_at=expires.astimezone(zone).date(),
        locale=customer.locale,
    )
    delivery.encoding = offers.sms_encoding(delivery.body)
    delivery.segments = offers.sms_segments(delivery.body)


def offer_expiry(now: datetime, valid_days: int, zone: ZoneInfo) -> datetime:
    """The end of the offer's last valid day in the customer's timezone: "valid 7 days"
    means until the evening of the seventh day, not 7 times 24 hours to the minute."""
    last_day: date = (now.astimezone(zone) + timedelta(days=max(valid_days, 1) - 1)).date()
    return datetime.combine(last_day, datetime.max.time(), tzinfo=zone).replace(microsecond=0)


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
    }


def pace_sends(delivery_ids: list[int], *, now: datetime) -> None:
    """Give each queued SMS its send slot, spaced to the sender's messages-per-second limit
    across every worker (one locked row per sender holds the next free slot)."""
    if not delivery_ids:
        return
    gap = timedelta(seconds=1 / settings.SMS_SENDER_MPS)
    sender, _ = SmsSender.objects.get_or_create(
        sender=sms.sender_id(), defaults={"next_slot_at": now}
    )
    sender = SmsSender.objects.select_for_update().get(pk=sender.pk)
    slot = max(now, sender.next_slot_at)
    for delivery_id in delivery_ids:
        Delivery.objects.filter(id=delivery_id).update(send_after=slot)
        slot += gap
    sender.next_slot_at = slot
    sender.save(update_fields=["next_slot_at"])


# A decision for another campaign that wins its presence event: it was to text (whatever
# came of the send since: delivered, expired, stopped with its campaign) or to hold out.
# Live, the campaigns ranked after it were never judged for that event.
WINNING = (*SENT_LIKE, DeliveryStatus.FAILED, DeliveryStatus.HOLDOUT)

# When the live engine made a decision, in the order it made them: the moment its batch was
# processed (which is when the batch's events arrived and its deliveries are stamped), then,
# within the batch, its event's time and id, the order a batch decides its events in.
DecisionOrder = tuple[datetime, datetime, bool, int]


def _decision_order(moment: datetime, event_at: datetime, event_id: int | None) -> DecisionOrder:
    # A derived dwell, never stored, comes after the stored events of its instant.
    return (moment, event_at, event_id is None, event_id or 0)


def _event_time() -> Coalesce:
    """A delivery's presence event's time: what decides whether a dry run starting at
    `since` replays it. A delivery whose event was since deleted goes by its own time."""
    return Coalesce("presence_event__occurred_at", "created_at")


@dataclass(frozen=True)
class _Replayed:
    """A presence event as a dry run replays it: a stored one, or a dwell derived from its
    visit (presence records only the dwell minutes that active campaigns watch)."""

    fact: rules.PresenceFact
    customer: Customer
    store: Store
    arrived_at: datetime  # when the live engine had it to decide
    event_id: int | None = None  # None: derived, never stored

    @property
    def order(self) -> DecisionOrder:
        return _decision_order(self.arrived_at, self.fact.at, self.event_id)


@dataclass(frozen=True)
class _CountedSms:
    """An SMS or a holdout a dry run counts for caps: another campaign's real one, this
    campaign's real one for an event before the window, or one the run itself decided. It
    counts for the events decided after it."""

    order: DecisionOrder
    campaign: int
    status: str  # rules.QUEUED or rules.HOLDOUT
    event_id: int | None

    @property
    def at(self) -> datetime:
        """When it was recorded: what caps count from."""
        return self.order[0]


@dataclass(frozen=True)
class _Rival:
    """Another campaign's real SMS or holdout for a presence event, as `rules` ranks it: by
    the campaign's priority and the intent strength it was decided with."""

    rule: rules.CampaignRule
    match: rules.IntentMatch


def dry_run_campaign(
    *, campaign: Campaign, since: datetime, until: datetime, now: datetime | None = None
) -> dict:
    """What the campaign would have decided over the stored presence history, sending and
    writing nothing, as the live engine decides:

    - the events of the window are the ones replayed, and this campaign's real decisions
      about them are what the run decides again; its decisions about earlier events count as
      they are, even one recorded within the window (an event that arrived late);
    - each event is judged when the live engine had it (when it arrived), in the order the
      live engine decided them, with browsing as it stood at the event (views and cart
      changes after it are not counted, intent strength from what came before it) and the
      customer's consent as it stands now; its trigger and the campaign's dates go by the
      event's own time;
    - an event that reached the server later than the SMS validity is skipped, as live
      (counted in `arrived_too_late`);
    - an event another campaign really texted (or held the customer out for) is this
      campaign's only if it ranks first (priority, then intent strength): live, at most one
      SMS goes out per event. Otherwise it gets no decision (counted in `outranked`);
    - caps, budgets and the code pool count other campaigns' real SMS, this campaign's real
      ones for earlier events, and the run's own would-be SMS in place of this campaign's
      real ones within the window; only what was decided before each event counts;
    - a dwell campaign's dwells are derived from the visits where presence recorded none
      (it records only the minutes that active campaigns watch); approaches at a distance
      no active campaign watches were never recorded and cannot be: `warnings` says so.
    """
    now = now or timezone.now()
    rule = campaign_rule(campaign)
    limits = global_limits()
    validity = timedelta(seconds=settings.SMS_VALIDITY_SECONDS)
    events = list(
        PresenceEvent.objects.filter(occurred_at__gte=since, occurred_at__lt=until)
        .exclude(kind=PresenceKind.EXITED)
        .select_related("store", "zone", "customer")
        .order_by("occurred_at", "id")
    )
    replayed = [
        _Replayed(presence_fact(event), event.customer, event.store, event.created_at, event.id)
        for event in events
    ]
    replayed = [item for item in replayed if rules.triggered(rule, item.fact)]
    if rule.trigger_type == TriggerType.DWELL and rule.trigger_minutes:
        replayed += _derived_dwells(rule, replayed, since=since, until=until, now=now)
    # Live, an event older than the validity when it arrives is kept, but not decided.
    on_time = sorted(
        (item for item in replayed if item.arrived_at - item.fact.at <= validity),
        key=lambda item: item.order,
    )
    customers = {item.customer.id: item.customer for item in on_time}
    browsing = _load_browsing(customers.keys())
    decided_by = max((item.arrived_at for item in on_time), default=until)
    counted = _dry_run_counted_sms(
        campaign, customers, since=since, decided_by=decided_by, limits=limits
    )
    rivals = _rivals(campaign, {item.event_id for item in on_time if item.event_id is not None})
    # Events whose real SMS this campaign would have taken the place of.
    displaced: set[int] = set()

    by_status: dict[str, int] = defaultdict(int)
    by_reason: dict[str, int] = defaultdict(int)
    reached: set[int] = set()
    outranked = 0
    budget_zone = ZoneInfo(settings.SMS_BUDGET_TIMEZONE)
    spent_before = _dry_run_budget(campaign, since=since, budget_zone=budget_zone)
    per_day: dict[date, int] = defaultdict(int, spent_before.per_day)
    total, codes_left = spent_before.total, spent_before.codes_left
    for item in on_time:
        at, moment = item.fact.at, item.arrived_at
        customer = item.customer
        products, categories = browsing.get(customer.id, ({}, {}))
        facts_then = rules.CustomerFacts(
            key=customer.external_id,
            opted_in=customer.sms_consent == SmsConsent.OPTED_IN,
            has_phone=bool(customer.phone),
            timezone=customer_timezone(customer, item.store),
            products=_as_of(products, at, moment),
            categories=_as_of(categories, at, moment),
        )
        ranked = rules.rank([rule], item.fact, facts_then, moment)
        if not ranked:
            continue
        match = ranked[0][1]
        event_rivals = rivals.get(item.event_id, ()) if item.event_id is not None else ()
        if any(not rules.ranks_before(rule, match, r.rule, r.match) for r in event_rivals):
            outranked += 1
            continue
        history = History()
        for earlier in counted[customer.id]:
            if earlier.order >= item.order:
                continue  # decided after this event, live
            if earlier.event_id is not None and (
                # Ranked first, this campaign is judged before its rivals for this event...
                earlier.event_id == item.event_id
                # ...and its would-be SMS for an earlier event is the only one that event got.
                or (earlier.campaign != rule.id and earlier.event_id in displaced)
            ):
                continue
            history.add(earlier.campaign, earlier.status, earlier.at)
        facts_then = replace(facts_then, sent_by_campaign=history.by_campaign, sent=history.sent)
        day = moment.astimezone(budget_zone).date()
        budget = rules.BudgetUse(today=per_day[day], total=total, codes_left=codes_left)
        decisions = rules.decide([rule], item.fact, facts_then, {rule.id: budget}, limits, moment)
        for decision in decisions:
            by_status[decision.status] += 1
            if decision.reason:
                by_reason[decision.reason] += 1
            if decision.status in (rules.QUEUED, rules.HOLDOUT):
                counted[customer.id].append(
                    _CountedSms(item.order, decision.campaign, decision.status, item.event_id)
                )
                if item.event_id is not None:
                    displaced.add(item.event_id)
            if decision.status == rules.QUEUED:
                reached.add(customer.id)
                after = budget.after_one_sms()
                per_day[day], total, codes_left = after.today, after.total, after.codes_left
    return {
        "campaign": campaign.id,
        "since": since,
        "until": until,
        "presence_events": len(events),
        "matched": sum(by_status.values()),
        "would_send": by_status[rules.QUEUED],
        "customers_reached": len(reached),
        "by_status": {status: by_status[status] for status in DeliveryStatus.values},
        "by_reason": {reason: by_reason[reason] for reason in DeliveryReason.values},
        "arrived_too_late": len(replayed) - len(on_time),
        "outranked": outranked,
        "warnings": _unrecorded_approaches(campaign, rule),
    }


def _dry_run_counted_sms(
    campaign: Campaign,
    customers: Iterable[int],
    *,
    since: datetime,
    decided_by: datetime,
    limits: rules.GlobalLimits,
) -> dict[int, list[_CountedSms]]:
    """The customers' real SMS and holdouts as a dry run counts them, up to the last moment
    it judges (`decided_by`): every campaign's for events before `since`, other campaigns'
    for any; this campaign's for the window's events are what the run decides again. Each
    counts from when it was recorded, and for the events decided after it."""
    window = max(
        timedelta(days=max(limits.cap_days, campaign.limit_per_customer_days or 0)), limits.min_gap
    )
    counted: dict[int, list[_CountedSms]] = defaultdict(list)
    rows = (
        Delivery.objects.annotate(event_at=_event_time())
        .filter(
            customer_id__in=list(customers),
            status__in=[*SENT_LIKE, DeliveryStatus.HOLDOUT],
            created_at__gt=since - window,
            created_at__lte=decided_by,
        )
        .exclude(campaign=campaign, event_at__gte=since)
        .values_list(
            "customer_id", "campaign_id", "status", "created_at", "presence_event_id", "event_at"
        )
    )
    for customer_id, campaign_id, status, created_at, event_id, event_at in rows:
        order = _decision_order(created_at, event_at, event_id)
        queued_or_holdout = rules.HOLDOUT if status == DeliveryStatus.HOLDOUT else rules.QUEUED
        counted[customer_id].append(_CountedSms(order, campaign_id, queued_or_holdout, event_id))
    return counted


def _rivals(campaign: Campaign, event_ids: set[int]) -> dict[int, list[_Rival]]:
    """Other campaigns' real SMS and holdouts for these presence events: what won each live."""
    rivals: dict[int, list[_Rival]] = defaultdict(list)
    if not event_ids:
        return rivals
    rows = (
        Delivery.objects.filter(presence_event_id__in_batch=event_ids, status__in=WINNING)
        .exclude(campaign=campaign)
        .values_list("presence_event_id", "campaign_id", "campaign__priority", "intent_score")
    )
    for event_id, campaign_id, priority, strength in rows:
        rival = rules.CampaignRule(id=campaign_id, priority=priority)
        rivals[event_id].append(_Rival(rival, rules.IntentMatch(strength=strength)))
    return rivals


def _derived_dwells(
    rule: rules.CampaignRule,
    replayed: list[_Replayed],
    *,
    since: datetime,
    until: datetime,
    now: datetime,
) -> list[_Replayed]:
    """The campaign's dwells presence did not record, derived from the stored visits of its
    stores: presence announces only the dwell minutes active campaigns watch, so a new
    threshold has no events of its own. A visit entered at E dwelled N minutes at E + N when
    it was still on then, as presence would have announced it: its exit came later (or then,
    for a timeout, which announces the dwells reached before it ends the visit), or, still
    open, its last evidence kept it alive until then. A visit of neither kind (its presence
    since overwritten without an exit) cannot tell, and gives none."""
    minutes = timedelta(minutes=rule.trigger_minutes)
    entries = PresenceEvent.objects.filter(
        kind=PresenceKind.ENTERED,
        zone__isnull=True,
        occurred_at__gte=since - minutes,
        occurred_at__lt=until - minutes,
    )
    if rule.stores:
        entries = entries.filter(store_id__in=rule.stores)
    entries = list(entries.select_related("store", "customer").order_by("occurred_at", "id"))
    if not entries:
        return []
    customer_ids = {entry.customer_id for entry in entries}
    place_keys = {entry.place_key for entry in entries}
    exits: dict[tuple[int, str], list[tuple[datetime, bool]]] = defaultdict(list)
    for customer_id, place_key, at, evidence in (
        PresenceEvent.objects.filter(
            kind=PresenceKind.EXITED,
            customer_id__in_batch=customer_ids,
            place_key__in=place_keys,
            occurred_at__gt=entries[0].occurred_at,
        )
        .order_by("occurred_at")
        .values_list("customer_id", "place_key", "occurred_at", "evidence")
    ):
        exits[customer_id, place_key].append((at, evidence.get("reason") == "timeout"))
    open_visits = {
        (customer_id, place_key): presence.PlaceState.from_json(state)
        for customer_id, place_key, state in Presence.objects.filter(
            customer_id__in_batch=customer_ids, place_key__in=place_keys, inside=True
        ).values_list("customer_id", "place_key", "state")
    }
    timeout = timedelta(minutes=settings.PRESENCE_TIMEOUT_MINUTES)
    recorded = {
        (item.customer.id, item.fact.store, item.fact.at)
        for item in replayed
        if item.fact.kind == PresenceKind.DWELLED
    }
    derived = []
    for entry in entries:
        dwelled_at = entry.occurred_at + minutes
        if (entry.customer_id, entry.store_id, dwelled_at) in recorded:
            continue
        key = (entry.customer_id, entry.place_key)
        visit_exits = exits.get(key, [])
        after = bisect_right(visit_exits, entry.occurred_at, key=lambda exit_: exit_[0])
        if after < len(visit_exits):
            ended_at, timed_out = visit_exits[after]
            lasted = dwelled_at <= ended_at if timed_out else dwelled_at < ended_at
        else:
            state = open_visits.get(key)
            lasted = (
                state is not None
                and state.entered_at == entry.occurred_at
                and state.last_evidence_at is not None
                and dwelled_at <= min(state.last_evidence_at + timeout, now)
            )
        fact = rules.PresenceFact(
            PresenceKind.DWELLED, entry.store_id, dwelled_at, minutes=rule.trigger_minutes
        )
        if lasted and rules.triggered(rule, fact):
            # Live, the dwell is decided when presence announces it, not before its visit's
            # entry reached the server.
            arrived_at = max(dwelled_at, entry.created_at)
            derived.append(_Replayed(fact, entry.customer, entry.store, arrived_at))
    return derived


def _unrecorded_approaches(campaign: Campaign, rule: rules.CampaignRule) -> list[str]:
    """What a near campaign's dry run cannot count: presence records an approach only at the
    distances active campaigns watch, and the raw pings that could tell more are purged
    after the retention period and would need the whole state machine replayed."""
    if rule.trigger_type != TriggerType.NEAR or not rule.trigger_distance_m:
        return []
    distance = float(rule.trigger_distance_m)
    watched: set[int] = set()
    for other in Campaign.objects.filter(
        status=CampaignStatus.ACTIVE, trigger_type=TriggerType.NEAR, trigger_distance_m=distance
    ).prefetch_related("stores"):
        stores = {store.id for store in other.stores.all()}
        if not stores:
            return []  # watched at every store
        watched |= stores
    stores = campaign.stores.all() if rule.stores else Store.objects.all()
    unwatched = sorted(store.code for store in stores if store.id not in watched)
    if not unwatched:
        return []
    named = ", ".join(unwatched[:5])
    if len(unwatched) > 5:
        named += f" and {len(unwatched) - 5} more"
    return [
        f"Approaches within {distance:g} m of {named} were not recorded: presence records "
        f"an approach only at the distances active campaigns watch, and none watches "
        f"{distance:g} m there. These figures count only the approaches that were recorded; "
        f"once the campaign is active, its approaches are recorded from then on."
    ]


@dataclass(frozen=True)
class _SpentBefore:
    """What a campaign spent outside a dry run's replay, as the run starts."""

    per_day: dict[date, int]  # SMS per day they were recorded on, from the window's first
    total: int
    codes_left: int | None  # None: no pool


def _dry_run_budget(campaign: Campaign, *, since: datetime, budget_zone: ZoneInfo) -> _SpentBefore:
    """What the campaign had really spent on the events before the window, which the run
    does not replay: SMS in all and per day (on the day each was recorded, the day the live
    engine's budget counted it on, which may be in the window for an event that arrived
    late), and its pool's codes not drawn by them."""
    midnight = since.astimezone(budget_zone).replace(hour=0, minute=0, second=0, microsecond=0)
    spent = Delivery.objects.annotate(event_at=_event_time()).filter(
        campaign=campaign, status__in=SENT_LIKE, event_at__lt=since
    )
    per_day: dict[date, int] = {}
    for created_at in spent.filter(created_at__gte=midnight).values_list("created_at", flat=True):
        day = created_at.astimezone(budget_zone).date()
        per_day[day] = per_day.get(day, 0) + 1
    pool = OfferCode.objects.filter(campaign=campaign)
    codes_left = None
    if pool.exists():
        drawn_for = Coalesce("delivery__presence_event__occurred_at", "delivery__created_at")
        codes_left = (
            pool.annotate(drawn_for=drawn_for)
            .filter(Q(delivery__isnull=True) | Q(drawn_for__gte=since))
            .count()
        )
    return _SpentBefore(per_day, spent.count(), codes_left)


# The weight of the cart event that left a cart in each state.
CART_WEIGHTS = {state: intent.EVENT_WEIGHTS[event] for event, state in intent.CART_EVENTS.items()}


def _as_of(
    browsing: dict[str, _StoredBrowsing], at: datetime, moment: datetime
) -> dict[str, rules.BrowsingSignal]:
    """Browsing as it stood at the event `at`, later views and later cart changes removed,
    its score that of what came before `at`, decayed to `moment` (when the live engine
    judged the event, and recorded other campaigns' intent strength for it)."""
    half_life = settings.INTENT_HALF_LIFE_DAYS * rules.DAY
    epoch = at.timestamp()
    signals = {}
    for key, stored in browsing.items():
        signal = stored.signal
        views = tuple(t for t in signal.view_times if t <= epoch)
        carted = signal.cart_updated_at is not None and signal.cart_updated_at <= at
        signals[key] = replace(
            signal,
            view_times=views,
            cart_state=signal.cart_state if carted else "",
            score=_score_then(stored, views, at, moment, half_life),
        )
    return signals


def _score_then(
    stored: _StoredBrowsing,
    views: tuple[int, ...],
    at: datetime,
    moment: datetime,
    half_life: float,
) -> float:
    """The score of the browsing up to `at` (`views` are its views), decayed to `moment`.
    A score is stored as one number as of its newest event: with nothing browsed after `at`
    it is that number, decayed. Browsed since, the later events are in it too, and only the
    product views and the last cart change are kept with their times: the score is rebuilt
    from those up to `at`. Page views and older cart events are left out of it, so it can be
    lower than it was, never higher."""
    signal = stored.signal
    if stored.score_at is None or stored.score_at <= at:
        return intent.score_as_of(signal.score, stored.score_at, moment, half_life)
    view = intent.EVENT_WEIGHTS[intent.VIEW_EVENT]
    events = [(view, datetime.fromtimestamp(t, UTC)) for t in views]
    if signal.cart_state and signal.cart_updated_at is not None and signal.cart_updated_at <= at:
        events.append((CART_WEIGHTS[signal.cart_state], signal.cart_updated_at))
    return intent.score_of(events, moment, half_life)
