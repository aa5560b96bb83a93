"""A campaign's dry run: what it would have decided over the stored presence history, as the
live engine (promotions.decisions) would have decided it, sending and writing nothing.
"""

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from heapq import heappop, heappush
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from customers import intent
from customers.models import BrowsingEvent, ConsentChange, Customer, SmsConsent
from promotions import presence, rules
from promotions.decisions import (
    SENT_LIKE,
    Browsing,
    History,
    StoredBrowsing,
    campaign_rule,
    customer_timezone,
    global_limits,
    history_window,
    load_browsing,
    presence_fact,
)
from promotions.models import (
    TEXTED_OR_HELD_OUT,
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryReason,
    DeliveryStatus,
    OfferCode,
    Presence,
    PresenceEvent,
    PresenceKind,
    Store,
    TriggerType,
    delivery_event_time,
)
from promotions.times import format_instant_for_people, local_day, local_day_start

# A decision to text whose SMS then ended without being sent: failed (stale, its offer
# expired, refused) or held back at its turn (a paced send slot tells it from a suppression
# when deciding). Live, it counted toward caps and budgets until then.
ENDED_UNSENT = Q(status=DeliveryStatus.FAILED) | Q(
    status=DeliveryStatus.SUPPRESSED, send_after__isnull=False
)

# When the live engine made a decision, in the order it made them: the moment its batch was
# processed (which is when the batch's events arrived and its deliveries are stamped), then,
# within the batch, its event's time and id, the order a batch decides its events in.
DecisionOrder = tuple[datetime, datetime, bool, int]


def _decision_order(moment: datetime, event_at: datetime, event_id: int | None) -> DecisionOrder:
    # A derived dwell, never stored, comes after the stored events of its instant.
    return (moment, event_at, event_id is None, event_id or 0)


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
    # When the live engine stopped counting it: its real SMS ended without being sent.
    until: datetime | None = None

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
      changes after it are not counted, each cart in the state its cart events had left it
      in then, intent strength from what came before it) and the customer's consent as
      the consent log says it stood then; its trigger and the campaign's dates go by the
      event's own time;
    - an event that reached the server later than the SMS validity is skipped, as live
      (counted in `arrived_too_late`);
    - an event another campaign won live (decided to text it, whatever came of the send, or
      held the customer out) is this campaign's only if it ranks first (priority, then
      intent strength): live, at most one SMS goes out per event, and per arrival (a
      beacon zone's entry and the store entry it makes, decided together). Otherwise it
      gets no decision (counted in `outranked`);
    - caps, budgets and the code pool count other campaigns' real SMS, this campaign's real
      ones for earlier events, and the run's own would-be SMS in place of this campaign's
      real ones within the window; only what was decided before each event counts, and a
      would-be SMS whose real one ended unsent (stale, refused, held back at its turn) stops
      counting then, as live;
    - a dwell campaign's dwells are derived from the visits where presence recorded none
      (it records only the minutes that active campaigns watch); approaches at a distance
      no active campaign watches were never recorded and cannot be: `warnings` says so, as
      it says when a view condition reaches back past the views ingest keeps.
    """
    now = now or timezone.now()
    rule = campaign_rule(campaign)
    limits = global_limits()
    validity = timedelta(seconds=settings.SMS_VALIDITY_SECONDS)
    in_period = PresenceEvent.objects.filter(occurred_at__gte=since, occurred_at__lt=until)
    waited = in_period.filter(_waited_for(rule))
    events = waited.select_related("store", "zone", "customer").order_by("occurred_at", "id")
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
    browsing = load_browsing(customers.keys())
    carts = _cart_histories(browsing)
    consent_logs = _consent_logs(customers.keys())
    decided_by = max((item.arrived_at for item in on_time), default=until)
    counted = _dry_run_counted_sms(
        campaign, customers, since=since, decided_by=decided_by, limits=limits
    )
    # Each customer's first decision in the campaign that put them in a group, as the run
    # goes: their real one for an event before the window, or the run's own.
    first_group = _first_groups(campaign, customers, since=since)
    # Each event's arrival (rules.arrival_key): the events live decided together with it,
    # the entries this campaign's trigger does not wait for included (the store's for a
    # beacon zone campaign, a zone's for a store entry campaign).
    arrivals: dict[tuple, set[int]] = defaultdict(set)
    for event in [*events, *_arrival_partners(in_period, waited)]:
        arrivals[rules.arrival_key(presence_fact(event), event.customer_id, event.id)].add(event.id)
    arrival_of = {event_id: ids for ids in arrivals.values() for event_id in ids}
    rivals = _rivals(
        campaign,
        {
            event_id
            for item in on_time
            if item.event_id is not None
            for event_id in arrival_of[item.event_id]
        },
    )
    # Events whose real SMS this campaign would have taken the place of.
    displaced: set[int] = set()
    # When this campaign's real SMS for an event ended without being sent (held back at its
    # turn, stale, refused): live, it gave its place in the caps and budgets back then.
    unsent_at = _unsent_at(campaign, {item.event_id for item in on_time if item.event_id})
    # The would-be SMS whose real one gave its place back: (when, tie-break, budget day, and
    # whether its pool code went back too: not one the provider took).
    given_back: list[tuple[datetime, int, date, bool]] = []

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
        while given_back and given_back[0][0] < moment:
            _, _, spent_on, code_back = heappop(given_back)
            per_day[spent_on] -= 1
            total -= 1
            if codes_left is not None and code_back:
                codes_left += 1
        customer = item.customer
        stored = browsing.get(customer.id, Browsing({}, {}))
        cart = carts.get(customer.id, _CartHistory())
        facts_then = rules.CustomerFacts(
            key=customer.external_id,
            opted_in=_consent_then(customer, consent_logs.get(customer.id, []), moment)
            == SmsConsent.OPTED_IN,
            has_phone=bool(customer.phone),
            timezone=customer_timezone(customer, item.store),
            products=_as_of(stored.products, cart.products, at, moment),
            categories=_as_of(stored.categories, cart.categories, at, moment),
            cart=_signal_as_of(stored.cart, cart.whole, at, moment) if stored.cart else None,
        )
        ranked = rules.rank([rule], item.fact, facts_then, moment)
        if not ranked:
            continue
        match = ranked[0][1]
        arrival = arrival_of[item.event_id] if item.event_id is not None else set()
        event_rivals = [rival for event_id in arrival for rival in rivals.get(event_id, ())]
        if any(not rules.ranks_before(rule, match, r.rule, r.match) for r in event_rivals):
            outranked += 1
            continue
        history = History()
        for earlier in counted[customer.id]:
            if earlier.order >= item.order:
                continue  # decided after this event, live
            if earlier.until is not None and earlier.until < moment:
                continue  # ended unsent before this event was decided, live
            if earlier.event_id is not None and (
                # Ranked first, this campaign is judged before its rivals for this arrival...
                earlier.event_id in arrival
                # ...and its would-be SMS for an earlier event is the only one that event got.
                or (earlier.campaign != rule.id and earlier.event_id in displaced)
            ):
                continue
            history.add(earlier.campaign, earlier.status, earlier.at)
        group = first_group.get(customer.id)
        in_group = {rule.id: group[1]} if group is not None and group[0] < item.order else {}
        facts_then = replace(
            facts_then,
            sent_by_campaign=history.by_campaign,
            sent=history.sent,
            held_out_by_campaign=in_group,
        )
        day = local_day(moment, budget_zone)
        budget = rules.BudgetUse(today=per_day[day], total=total, codes_left=codes_left)
        decisions = rules.decide([rule], item.fact, facts_then, {rule.id: budget}, limits, moment)
        for decision in decisions:
            by_status[decision.status] += 1
            if decision.reason:
                by_reason[decision.reason] += 1
            # Judged as live judged it, a would-be SMS whose real one ended unsent ends then.
            ended_unsent, code_back = unsent_at.get(item.event_id, (None, False))
            if decision.status != rules.QUEUED:
                ended_unsent = None
            if decision.status in (rules.QUEUED, rules.HOLDOUT):
                if not in_group:
                    first_group[customer.id] = (item.order, decision.status == rules.HOLDOUT)
                counted[customer.id].append(
                    _CountedSms(
                        item.order,
                        decision.campaign,
                        decision.status,
                        item.event_id,
                        ended_unsent,
                    )
                )
                displaced |= arrival
            if decision.status == rules.QUEUED:
                reached.add(customer.id)
                after = budget.after_one_sms()
                per_day[day], total, codes_left = after.today, after.total, after.codes_left
                if ended_unsent is not None:
                    heappush(given_back, (ended_unsent, len(given_back), day, code_back))
    return {
        "campaign": campaign.id,
        "since": since,
        "until": until,
        "presence_events": in_period.exclude(kind=PresenceKind.EXITED).count(),
        "matched": sum(by_status.values()),
        "would_send": by_status[rules.QUEUED],
        "customers_reached": len(reached),
        "by_status": {status: by_status[status] for status in DeliveryStatus.values},
        "by_reason": {reason: by_reason[reason] for reason in DeliveryReason.values},
        "arrived_too_late": len(replayed) - len(on_time),
        "outranked": outranked,
        "warnings": [
            *_outside_the_schedule(campaign, since=since, until=until),
            *_unrecorded_approaches(campaign, rule),
            *_views_no_longer_kept(rule, since=since, now=now),
        ],
    }


def _waited_for(rule: rules.CampaignRule) -> Q:
    """The stored events `rules.triggered` can take for the campaign, as a query: a year of a
    chain's visits is millions of events, and loading them all to keep those of its stores
    and trigger took minutes and gigabytes. rules.triggered still judges each one loaded."""
    match rule.trigger_type:
        case TriggerType.ENTER:
            waited = Q(kind=PresenceKind.ENTERED, zone__isnull=True)
        case TriggerType.DWELL:
            waited = Q(kind=PresenceKind.DWELLED, zone__isnull=True, minutes=rule.trigger_minutes)
        case TriggerType.NEAR:
            waited = Q(kind=PresenceKind.NEAR, distance_m=rule.trigger_distance_m)
        case TriggerType.BEACON_ZONE:
            waited = Q(kind=PresenceKind.ENTERED, zone__code=rule.trigger_zone)
        case _:
            return Q(pk__in=[])
    if rule.stores:
        waited &= Q(store_id__in=sorted(rule.stores))
    if rule.starts_at:
        waited &= Q(occurred_at__gte=rule.starts_at)
    if rule.ends_at:
        waited &= Q(occurred_at__lt=rule.ends_at)
    return waited


def _arrival_partners(in_period: QuerySet, waited: QuerySet) -> QuerySet:
    """The entries made in the same instant as an entry `waited` holds, by the same customer
    into the same store or one of its zones (rules.arrival_key), that `waited` leaves out."""
    entries = waited.filter(kind=PresenceKind.ENTERED)
    return (
        in_period.filter(kind=PresenceKind.ENTERED)
        .exclude(pk__in=entries.values("pk"))
        .filter(
            Exists(
                entries.filter(
                    customer_id=OuterRef("customer_id"),
                    store_id=OuterRef("store_id"),
                    occurred_at=OuterRef("occurred_at"),
                )
            )
        )
        .select_related("zone")
    )


def _outside_the_schedule(campaign: Campaign, *, since: datetime, until: datetime) -> list[str]:
    """Visits outside the campaign's dates are not its own, as live; a marketer dry-running a
    campaign that starts next week over last week's visits learns why it finds none."""
    starts, ends = campaign.starts_at, campaign.ends_at
    if not (starts and starts > since) and not (ends and ends < until):
        return []
    runs = " ".join(
        f"{word} {format_instant_for_people(moment)}"
        for word, moment in (("from", starts), ("until", ends))
        if moment is not None
    )
    return [
        f"The campaign runs {runs}: visits outside those dates are not counted here, as "
        "they would not be live. Clear its dates to see what it would have done over the "
        "whole period."
    ]


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
    counts from when it was recorded, and for the events decided after it; one that ended
    unsent (ENDED_UNSENT) only until then."""
    window = history_window(limits, [campaign])
    counted: dict[int, list[_CountedSms]] = defaultdict(list)
    rows = (
        Delivery.objects.annotate(event_at=delivery_event_time())
        .filter(
            Q(status__in=[*SENT_LIKE, DeliveryStatus.HOLDOUT]) | ENDED_UNSENT,
            customer_id__in=list(customers),
            created_at__gt=since - window,
            created_at__lte=decided_by,
        )
        .exclude(campaign=campaign, event_at__gte=since)
        .values_list(
            "customer_id",
            "campaign_id",
            "status",
            "created_at",
            "presence_event_id",
            "event_at",
            "status_updated_at",
        )
    )
    ended = (DeliveryStatus.FAILED, DeliveryStatus.SUPPRESSED)
    for customer_id, campaign_id, status, created_at, event_id, event_at, changed_at in rows:
        order = _decision_order(created_at, event_at, event_id)
        queued_or_holdout = rules.HOLDOUT if status == DeliveryStatus.HOLDOUT else rules.QUEUED
        until = changed_at if status in ended else None
        counted[customer_id].append(
            _CountedSms(order, campaign_id, queued_or_holdout, event_id, until)
        )
    return counted


def _consent_logs(customers: Iterable[int]) -> dict[int, list[ConsentChange]]:
    """The customers' consent logs, each in the order of its changes."""
    logs: dict[int, list[ConsentChange]] = defaultdict(list)
    rows = ConsentChange.objects.filter(customer_id__in_batch=list(customers)).only(
        "customer_id", "previous", "consent", "changed_at"
    )
    for change in rows.order_by("changed_at", "id"):
        logs[change.customer_id].append(change)
    return logs


def _consent_then(customer: Customer, log: list[ConsentChange], moment: datetime) -> str:
    """The customer's consent when the live engine decided at `moment`: what the last change
    logged by then set, or, before the first change, what that change replaced. Every change
    is logged (customers.services.set_sms_consent), a reply's STOP and START included; a
    customer whose log is empty has always had the consent they have now."""
    before = bisect_right(log, moment, key=lambda change: change.changed_at)
    if before:
        return log[before - 1].consent
    return log[0].previous if log else customer.sms_consent


def _first_groups(
    campaign: Campaign, customers: Iterable[int], *, since: datetime
) -> dict[int, tuple[DecisionOrder, bool]]:
    """The customers' first real decisions in the campaign that put them in a group
    (rules.in_holdout_group), of those about events before the window, however long ago:
    when each was decided, and whether it held them out."""
    rows = (
        Delivery.objects.annotate(event_at=delivery_event_time())
        .filter(
            TEXTED_OR_HELD_OUT,
            campaign=campaign,
            customer_id__in=list(customers),
            event_at__lt=since,
        )
        .values_list("customer_id", "status", "created_at", "presence_event_id", "event_at")
    )
    first: dict[int, tuple[DecisionOrder, bool]] = {}
    for customer_id, status, created_at, event_id, event_at in rows:
        order = _decision_order(created_at, event_at, event_id)
        if customer_id not in first or order < first[customer_id][0]:
            first[customer_id] = (order, status == DeliveryStatus.HOLDOUT)
    return first


def _unsent_at(campaign: Campaign, event_ids: set[int]) -> dict[int, tuple[datetime, bool]]:
    """When the campaign's real SMS for these events ended without being sent (ENDED_UNSENT),
    for those that did, and whether its pool code went back then (the delivery gave it up:
    not one the provider took)."""
    if not event_ids:
        return {}
    return {
        event_id: (ended_at, code is None)
        for event_id, ended_at, code in Delivery.objects.filter(
            ENDED_UNSENT,
            campaign=campaign,
            presence_event_id__in_batch=event_ids,
        ).values_list("presence_event_id", "status_updated_at", "code")
    }


def _rivals(campaign: Campaign, event_ids: set[int]) -> dict[int, list[_Rival]]:
    """Other campaigns' real SMS and holdouts for these presence events: what won each live."""
    rivals: dict[int, list[_Rival]] = defaultdict(list)
    if not event_ids:
        return rivals
    rows = (
        # A decision for another campaign that was to text or to hold out won its event:
        # live, the campaigns ranked after it were never judged for that event.
        Delivery.objects.filter(TEXTED_OR_HELD_OUT, presence_event_id__in_batch=event_ids)
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
    # Presence recorded a visit's dwell at E + N, or, when no campaign watched N minutes
    # until the visit had passed them, at the moment it was first evaluated.
    recorded: dict[tuple[int, int], list[datetime]] = defaultdict(list)
    for item in replayed:
        if item.fact.kind == PresenceKind.DWELLED and item.fact.minutes == rule.trigger_minutes:
            recorded[item.customer.id, item.fact.store].append(item.fact.at)
    derived = []
    for entry in entries:
        dwelled_at = entry.occurred_at + minutes
        key = (entry.customer_id, entry.place_key)
        visit_exits = exits.get(key, [])
        after = bisect_right(visit_exits, entry.occurred_at, key=lambda exit_: exit_[0])
        ended_at = visit_exits[after][0] if after < len(visit_exits) else None
        if any(
            dwelled_at <= at and (ended_at is None or at <= ended_at)
            for at in recorded.get((entry.customer_id, entry.store_id), ())
        ):
            continue
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


def _views_no_longer_kept(rule: rules.CampaignRule, *, since: datetime, now: datetime) -> list[str]:
    """What a view condition's dry run cannot count in full: ingest keeps a product's views
    INTENT_WINDOW_DAYS back from its newest event, so a visit earlier than that window less
    the condition's own days may have had views since dropped, and not qualify here."""
    condition = rule.intent
    if condition is None or condition.cart_abandoned:
        return []
    kept_days = settings.INTENT_WINDOW_DAYS
    complete_from = now - timedelta(days=kept_days - condition.within_days)
    if since >= complete_from:
        return []
    return [
        f"Product views are kept {kept_days} days (INTENT_WINDOW_DAYS): visits before "
        f"{format_instant_for_people(complete_from)} may be judged on fewer views than they "
        f"had then, so these figures can count fewer SMS than the campaign would have sent."
    ]


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
    midnight = local_day_start(local_day(since, budget_zone), budget_zone)
    spent = Delivery.objects.annotate(event_at=delivery_event_time()).filter(
        campaign=campaign, status__in=SENT_LIKE, event_at__lt=since
    )
    per_day: dict[date, int] = {}
    for created_at in spent.filter(created_at__gte=midnight).values_list("created_at", flat=True):
        day = local_day(created_at, budget_zone)
        per_day[day] = per_day.get(day, 0) + 1
    pool = OfferCode.objects.filter(campaign=campaign)
    codes_left = None
    if pool.exists():
        # Left as the window starts: drawable now, or drawn for an event the run decides
        # again (and drawable once that draw is undone: keyless codes never are).
        drawn_in_window = pool.exclude(code_key=None).annotate(
            drawn_for=delivery_event_time("delivery__")
        )
        codes_left = (
            pool.drawable().count()
            + drawn_in_window.filter(delivery__isnull=False, drawn_for__gte=since).count()
        )
    return _SpentBefore(per_day, spent.count(), codes_left)


@dataclass(frozen=True)
class _CartChange:
    """A cart event, and the state the cart stood in after it (intent.cart_after)."""

    at: datetime
    weight: float
    state: str
    updated_at: datetime | None


@dataclass(frozen=True)
class _CartHistory:
    """Each of a customer's carts (a SKU's, a category's, the whole cart's) through its cart
    events, in the order they occurred: the intent rows keep only the latest change."""

    products: dict[str, list[_CartChange]] = field(default_factory=dict)
    categories: dict[str, list[_CartChange]] = field(default_factory=dict)
    whole: list[_CartChange] = field(default_factory=list)


def _cart_histories(browsing: dict[int, Browsing]) -> dict[int, _CartHistory]:
    """The customers' carts through their stored cart events (kept until the customer is
    erased), in one query. An event counts towards its SKU's cart, and its category's: the
    one it names, or its SKU's as the customer's product intent holds it now (ingest counted
    it towards the one known then, which the SKU keeps once given); one naming neither is
    the whole cart's, as ingest folds them (customers.services._apply_to_intent)."""
    events = (
        BrowsingEvent.objects.filter(
            customer_id__in_batch=list(browsing), type__in=list(intent.CART_EVENTS)
        )
        .order_by("occurred_at", "id")
        .values_list("customer_id", "sku", "category", "type", "occurred_at")
    )
    histories: dict[int, _CartHistory] = defaultdict(_CartHistory)
    for customer_id, sku, category, event_type, at in events:
        history = histories[customer_id]
        if not category and sku:
            product = browsing[customer_id].products.get(sku)
            category = product.signal.category if product is not None else ""
        carts = []
        if sku:
            carts.append(history.products.setdefault(sku, []))
        if category:
            # Keyed as the stored rows are read (decisions.load_browsing).
            carts.append(history.categories.setdefault(intent.category_key(category), []))
        for changes in carts or [history.whole]:
            last = changes[-1] if changes else None
            state, updated_at = intent.cart_after(
                last.state if last else "", last.updated_at if last else None, event_type, at
            )
            weight = intent.EVENT_WEIGHTS[event_type]
            changes.append(_CartChange(at, weight, state, updated_at))
    return histories


# The weight of the cart event that left a cart in each state.
CART_WEIGHTS = {state: intent.EVENT_WEIGHTS[event] for event, state in intent.CART_EVENTS.items()}


def _as_of(
    browsing: dict[str, StoredBrowsing],
    carts: dict[str, list[_CartChange]],
    at: datetime,
    moment: datetime,
) -> dict[str, rules.BrowsingSignal]:
    """Browsing as it stood at the event `at`: see _signal_as_of."""
    return {
        key: _signal_as_of(stored, carts.get(key, []), at, moment)
        for key, stored in browsing.items()
    }


def _signal_as_of(
    stored: StoredBrowsing, cart: list[_CartChange], at: datetime, moment: datetime
) -> rules.BrowsingSignal:
    """One SKU's, category's or whole cart's intent as it stood at the event `at`, later
    views and later cart changes removed, its cart in the state its cart events up to `at`
    left it in, its score that of what came before `at`, decayed to `moment` (when the live
    engine judged the event, and recorded other campaigns' intent strength for it). With no
    cart event stored for it (an intent row written otherwise), its latest cart change is
    all there is: taken when it came before `at`."""
    half_life = settings.INTENT_HALF_LIFE_DAYS * rules.DAY
    signal = stored.signal
    views = tuple(t for t in signal.view_times if t <= at.timestamp())
    if cart:
        changes = cart[: bisect_right(cart, at, key=lambda change: change.at)]
    elif signal.cart_state and signal.cart_updated_at is not None:
        weight = CART_WEIGHTS[signal.cart_state]
        latest = _CartChange(
            signal.cart_updated_at, weight, signal.cart_state, signal.cart_updated_at
        )
        changes = [latest] if latest.at <= at else []
    else:
        changes = []
    then = changes[-1] if changes else None
    return replace(
        signal,
        view_times=views,
        cart_state=then.state if then else "",
        cart_updated_at=then.updated_at if then else None,
        score=_score_then(stored, views, changes, at, moment, half_life),
    )


def _score_then(
    stored: StoredBrowsing,
    views: tuple[int, ...],
    cart_changes: list[_CartChange],
    at: datetime,
    moment: datetime,
    half_life: float,
) -> float:
    """The score of the browsing up to `at` (`views` and `cart_changes` are its product views
    and cart events), decayed to `moment`. A score is stored as one number as of its newest
    event: with nothing browsed after `at` it is that number, decayed. Browsed since, the
    later events are in it too, and only the product views and the cart events are kept with
    their times: the score is rebuilt from those up to `at`. Page views are left out of it,
    so it can be lower than it was, never higher."""
    signal = stored.signal
    if stored.score_at is None or stored.score_at <= at:
        return intent.score_as_of(signal.score, stored.score_at, moment, half_life)
    view = intent.EVENT_WEIGHTS[intent.VIEW_EVENT]
    events = [(view, datetime.fromtimestamp(t, UTC)) for t in views]
    events += [(change.weight, change.at) for change in cart_changes]
    return intent.score_of(events, moment, half_life)
