"""Campaign matching and limits on plain values: no Django, `now` passed in.

Given one presence event, the live campaigns and what is known of the customer, `decide`
returns the decisions to record: each campaign the event matches, in order of priority and
then intent strength, is judged against its limits until one would send (queued) or holds the
customer out (holdout). So at most one SMS goes out per presence event, and every campaign
judged before the winner is recorded with the reason it could not send. A beacon zone's entry
and the store entry it makes in the same instant are one arrival, decided as one event
(`decide_arrival`): the store's entry campaign and the zone's are ranked together. A campaign whose
uploaded code pool is used up cannot send: its budget is spent, and the next one is judged.
"""

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from customers.intent import CART_ABANDONED, CART_IN_CART, category_key

QUEUED, SUPPRESSED, HOLDOUT = "queued", "suppressed", "holdout"
NO_CONSENT, NO_PHONE, QUIET_HOURS = "no_consent", "no_phone", "quiet_hours"
CAMPAIGN_CAP, GLOBAL_CAP, BUDGET = "campaign_cap", "global_cap", "budget"

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WHOLE_CART = "the cart, reported without a SKU"
DAY = 86_400


@dataclass(frozen=True)
class IntentCondition:
    skus: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    min_views: int = 1
    within_days: int = 30
    cart_abandoned: bool = False


@dataclass(frozen=True)
class CampaignRule:
    id: int
    priority: int = 0
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    stores: frozenset[int] = frozenset()  # empty: every store
    trigger_type: str = "enter"
    trigger_minutes: int | None = None
    trigger_distance_m: float | None = None
    trigger_zone: str = ""
    intent: IntentCondition | None = None
    per_customer_days: int | None = None
    quiet_hours: tuple[time, time] | None = None
    allowed_days: frozenset[str] = frozenset(WEEKDAYS)
    daily_budget: int | None = None
    total_budget: int | None = None
    holdout_percent: int = 0


@dataclass(frozen=True)
class PresenceFact:
    kind: str  # entered, dwelled, exited, near
    store: int
    at: datetime
    zone_code: str | None = None  # set for a beacon zone's events
    minutes: int | None = None
    distance_m: float | None = None


@dataclass(frozen=True)
class BrowsingSignal:
    """A customer's intent for one SKU, one category or their whole cart, as stored on
    ingest."""

    key: str  # the SKU or the category ("" for the whole cart)
    view_times: tuple[int, ...] = ()  # epoch seconds, ascending
    cart_state: str = ""
    cart_updated_at: datetime | None = None
    score: float = 0.0  # decayed to `now` by the caller
    category: str = ""  # for a SKU: its category
    # For a SKU: every category its views counted towards (keys), its current one among them.
    categories: frozenset[str] = frozenset()
    product_name: str = ""  # for a SKU: the catalogue's name, else empty


@dataclass(frozen=True)
class CustomerFacts:
    key: str  # a stable id (the external id): holdout membership hashes it
    opted_in: bool
    has_phone: bool
    timezone: str  # the customer's, else the store's
    products: Mapping[str, BrowsingSignal] = field(default_factory=dict)
    # Keyed by category_key, as products' `category` is written; each signal's `key` is a
    # spelling the site sent, for the SMS.
    categories: Mapping[str, BrowsingSignal] = field(default_factory=dict)
    # The cart as the site reported it whole, naming neither a SKU nor a category.
    cart: BrowsingSignal | None = None
    # When this customer was sent an SMS (queued or handed over), per campaign and in all.
    sent_by_campaign: Mapping[int, Sequence[datetime]] = field(default_factory=dict)
    sent: Sequence[datetime] = ()
    # Per campaign the customer is in already: whether their first decision in it held them
    # out (True) or was to text them (False). See in_holdout_group.
    held_out_by_campaign: Mapping[int, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class BudgetUse:
    """What a campaign has spent, and what its uploaded code pool has left."""

    today: int = 0
    total: int = 0
    codes_left: int | None = None  # None: no pool, each SMS gets a generated code

    def after_one_sms(self) -> "BudgetUse":
        codes_left = None if self.codes_left is None else self.codes_left - 1
        return BudgetUse(self.today + 1, self.total + 1, codes_left)


@dataclass(frozen=True)
class GlobalLimits:
    cap_count: int = 3
    cap_days: int = 7
    quiet_hours: tuple[time, time] | None = None
    # Two offers minutes apart (walking past, then in) read as spam, whatever the weekly cap.
    min_gap: timedelta = timedelta(0)


@dataclass(frozen=True)
class IntentMatch:
    strength: float = 0.0
    sku: str = ""  # the product an offer is about, for {product_name}
    product_name: str = ""
    detail: str = ""  # why it matched, for the decision trace


@dataclass(frozen=True)
class Decision:
    campaign: int
    status: str  # queued, suppressed, holdout
    reason: str  # empty when queued
    match: IntentMatch
    detail: str = ""  # the limit that held it, in words
    event: int = 0  # of the arrival's events (see decide_arrival), the one it is about


def runs_at(starts_at: datetime | None, ends_at: datetime | None, at: datetime) -> bool:
    """Whether a campaign with these dates runs at `at`: from its start, until its end."""
    return (starts_at is None or starts_at <= at) and (ends_at is None or at < ends_at)


def triggered(campaign: CampaignRule, event: PresenceFact) -> bool:
    """Whether the event is what the campaign's trigger waits for, in one of its stores."""
    if campaign.stores and event.store not in campaign.stores:
        return False
    if not runs_at(campaign.starts_at, campaign.ends_at, event.at):
        return False
    match campaign.trigger_type:
        case "enter":
            return event.kind == "entered" and event.zone_code is None
        case "dwell":
            return (
                event.kind == "dwelled"
                and event.zone_code is None
                and event.minutes == campaign.trigger_minutes
            )
        case "near":
            return event.kind == "near" and event.distance_m == campaign.trigger_distance_m
        case "beacon_zone":
            return event.kind == "entered" and event.zone_code == campaign.trigger_zone
    return False


def intent_match(
    condition: IntentCondition | None, customer: CustomerFacts, now: datetime
) -> IntentMatch | None:
    """The customer's strongest browsing that satisfies the condition, or None.

    A SKU or category qualifies with `min_views` product views within `within_days`, or,
    for a cart condition, with a cart abandoned within that window: its own, or the whole
    cart the site reported abandoned with it put in before. With only the cart flag set,
    any abandoned cart qualifies: a product's, else one reported with its category alone,
    else the whole cart reported with neither.
    """
    if condition is None:
        return IntentMatch(detail="no intent condition")
    since = now.timestamp() - condition.within_days * DAY
    named = bool(condition.skus or condition.categories)
    # Named, a product or category put in the cart counts when the site then reported the
    # whole cart abandoned (its usual way): its own cart state stays "in cart". With nothing
    # named, the whole cart is matched as such below, naming the product last put in it.
    left_at = _whole_cart_left_at(customer, condition, since) if named else None
    best: IntentMatch | None = None
    skus = condition.skus if named else tuple(customer.products)
    for sku in skus:
        signal = customer.products.get(sku)
        if signal and _left_or_qualifies(signal, condition, since, left_at):
            candidate = IntentMatch(
                strength=signal.score,
                sku=sku,
                product_name=signal.product_name or sku,
                detail=_describe(signal, condition, since, f"SKU {sku}"),
            )
            best = _stronger(best, candidate)
    categories = condition.categories
    if not named and condition.cart_abandoned and best is None:
        # Any abandoned cart: one the site reported without a SKU is its category's. Only
        # then, though: a category's score sums all its products, so it would outscore the
        # product whose own cart was abandoned, and name one only looked at instead.
        categories = tuple(signal.key for signal in customer.categories.values())
    for category in categories:
        signal = customer.categories.get(category_key(category))
        if signal and _left_or_qualifies(signal, condition, since, left_at):
            product = _category_product(customer, category, condition, since, left_at)
            candidate = IntentMatch(
                strength=signal.score,
                sku=product.key if product else "",
                product_name=(product.product_name or product.key) if product else category,
                detail=_describe(signal, condition, since, f"category {category}"),
            )
            best = _stronger(best, candidate)
    if not named and condition.cart_abandoned and best is None:
        best = _whole_cart_match(customer, condition, since)
    return best


def _whole_cart_match(
    customer: CustomerFacts, condition: IntentCondition, since: float
) -> IntentMatch | None:
    """The whole cart, abandoned within the window and not gone back to since: a product or
    category put in the cart after it was abandoned restores it, as an add to cart naming
    neither does. The offer is about the product last put in the cart before it was
    abandoned; with none known it names none, and {product_name} renders empty."""
    cart = customer.cart
    if cart is None or _whole_cart_left_at(customer, condition, since) is None:
        return None
    in_cart = [p for p in customer.products.values() if _in_cart(p)]
    product = max(in_cart, key=lambda p: (p.cart_updated_at, p.key), default=None)
    return IntentMatch(
        strength=cart.score,
        sku=product.key if product else "",
        product_name=(product.product_name or product.key) if product else "",
        detail=_describe(cart, condition, since, WHOLE_CART),
    )


def _whole_cart_left_at(
    customer: CustomerFacts, condition: IntentCondition, since: float
) -> datetime | None:
    """When the site reported the whole cart abandoned, for a cart condition: within the
    window, and not gone back to since (a product or category put in the cart after it, as
    an add to cart naming neither, restores it). None otherwise."""
    cart = customer.cart
    if not condition.cart_abandoned or cart is None or not _qualifies(cart, condition, since):
        return None
    in_use = (
        *(p for p in customer.products.values() if _in_cart(p)),
        *(c for c in customer.categories.values() if _in_cart(c)),
    )
    if any(signal.cart_updated_at > cart.cart_updated_at for signal in in_use):
        return None
    return cart.cart_updated_at


def _left_or_qualifies(
    signal: BrowsingSignal, condition: IntentCondition, since: float, left_at: datetime | None
) -> bool:
    """_qualifies, or, for a cart condition, put in the whole cart before it was left."""
    if _qualifies(signal, condition, since):
        return True
    return left_at is not None and _in_cart(signal) and signal.cart_updated_at <= left_at


def _in_cart(signal: BrowsingSignal) -> bool:
    return signal.cart_state == CART_IN_CART and signal.cart_updated_at is not None


def _qualifies(signal: BrowsingSignal, condition: IntentCondition, since: float) -> bool:
    if condition.cart_abandoned:
        return (
            signal.cart_state == CART_ABANDONED
            and signal.cart_updated_at is not None
            and signal.cart_updated_at.timestamp() >= since
        )
    return _views_since(signal, since) >= condition.min_views


def _views_since(signal: BrowsingSignal, since: float) -> int:
    return sum(1 for t in signal.view_times if t >= since)


def _describe(signal: BrowsingSignal, condition: IntentCondition, since: float, what: str) -> str:
    if condition.cart_abandoned:
        return f"{what}: cart abandoned, score {signal.score:.2f}"
    views = _views_since(signal, since)
    return f"{what}: {views} views in {condition.within_days} days, score {signal.score:.2f}"


def _stronger(best: IntentMatch | None, candidate: IntentMatch) -> IntentMatch:
    # Ties keep the first found, which follows the campaign's own order of SKUs and categories.
    return candidate if best is None or candidate.strength > best.strength else best


def _category_product(
    customer: CustomerFacts,
    category: str,
    condition: IntentCondition,
    since: float,
    left_at: datetime | None = None,
) -> BrowsingSignal | None:
    """The product an offer matched on a category is about: for a cart condition, the one
    whose cart was abandoned in it, or last put in the whole cart left at `left_at` (the
    latest); else, or when the site reported the cart without a SKU, the customer's most
    viewed in it."""
    category = category_key(category)
    if condition.cart_abandoned:
        abandoned = [
            p
            for p in customer.products.values()
            if _in_category(p, category) and _left_or_qualifies(p, condition, since, left_at)
        ]
        if abandoned:
            return max(abandoned, key=lambda p: (p.cart_updated_at, p.key))
    return _favourite_product(customer, category, since)


def _favourite_product(
    customer: CustomerFacts, category: str, since: float
) -> BrowsingSignal | None:
    """The customer's most viewed product in a category within the window (then the latest)."""
    in_category = [p for p in customer.products.values() if _in_category(p, category)]
    if not in_category:
        return None
    return max(
        in_category,
        key=lambda p: (_views_since(p, since), p.view_times[-1] if p.view_times else 0, p.key),
    )


@dataclass(frozen=True)
class Limit:
    reason: str = ""  # a delivery reason; "" when the campaign may text
    detail: str = ""  # which limit, in words, for the decision trace


def limit_reason(
    campaign: CampaignRule,
    customer: CustomerFacts,
    budget: BudgetUse,
    limits: GlobalLimits,
    now: datetime,
) -> Limit:
    """Why the campaign may not text this customer now (no reason when it may), checked in
    the order a marketer reads them: consent and phone first, because they hold whatever
    else."""
    if not customer.opted_in:
        return Limit(NO_CONSENT, "the customer has not opted in to SMS")
    if not customer.has_phone:
        return Limit(NO_PHONE, "no valid mobile number")
    if quiet_for(campaign, limits, customer.timezone, now):
        return Limit(QUIET_HOURS, f"quiet hours or a day not allowed, in {customer.timezone}")
    # Every SMS the customer was given counts, even one stamped after `now`: a task reads its
    # clock before it waits for the customer's lock, so a worker that started later may have
    # taken the lock first and committed an SMS stamped later than this `now`. (A dry run,
    # which judges past events, gives each the history decided before it.)
    if campaign.per_customer_days:
        since = now - timedelta(days=campaign.per_customer_days)
        if any(since < at for at in customer.sent_by_campaign.get(campaign.id, ())):
            return Limit(
                CAMPAIGN_CAP, f"this campaign texted them within {campaign.per_customer_days} days"
            )
    since = now - timedelta(days=limits.cap_days)
    if sum(1 for at in customer.sent if since < at) >= limits.cap_count:
        return Limit(GLOBAL_CAP, f"{limits.cap_count} SMS in {limits.cap_days} days already")
    if limits.min_gap and any(now - limits.min_gap < at for at in customer.sent):
        minutes = round(limits.min_gap.total_seconds() / 60)
        return Limit(GLOBAL_CAP, f"another SMS within the last {minutes} minutes")
    if campaign.daily_budget is not None and budget.today >= campaign.daily_budget:
        return Limit(BUDGET, f"today's budget of {campaign.daily_budget} SMS is spent")
    if campaign.total_budget is not None and budget.total >= campaign.total_budget:
        return Limit(BUDGET, f"the total budget of {campaign.total_budget} SMS is spent")
    if budget.codes_left is not None and budget.codes_left <= 0:
        return Limit(BUDGET, "the code pool is used up")
    return Limit()


def quiet_for(campaign: CampaignRule, limits: GlobalLimits, timezone: str, now: datetime) -> bool:
    """Whether `now` is quiet for a customer in `timezone`: a day the campaign does not allow,
    or within its quiet hours or the global ones. Checked when deciding, and again when a
    paced send comes due."""
    local = now.astimezone(ZoneInfo(timezone))
    if WEEKDAYS[local.weekday()] not in campaign.allowed_days:
        return True
    windows = (campaign.quiet_hours, limits.quiet_hours)
    return any(window and in_window(local.time(), window) for window in windows)


def in_window(moment: time, window: tuple[time, time]) -> bool:
    """Whether a local time falls in a daily window [start, end), which may span midnight."""
    start, end = window
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end


def in_holdout(campaign: int, customer_key: str, percent: int) -> bool:
    """Deterministic: the same customer is always in, or always out of, a campaign's holdout,
    on every worker and across restarts (Python's hash() is salted per process)."""
    if percent <= 0:
        return False
    digest = hashlib.sha256(f"{campaign}:{customer_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < percent


def in_holdout_group(campaign: CampaignRule, customer: CustomerFacts) -> bool:
    """Whether the customer is in the campaign's holdout group. A customer stays in the group
    their first decision in the campaign put them in: a share edited since moves only the
    customers not in the campaign yet, or some texted customers would be held out (and some
    held out texted) and counted in both groups, which the lift compares."""
    first = customer.held_out_by_campaign.get(campaign.id)
    if first is not None:
        return first
    return in_holdout(campaign.id, customer.key, campaign.holdout_percent)


def first_held_out(first_holdout_at: datetime | None, first_texted_at: datetime | None) -> bool:
    """Whether a customer's first decision in a campaign held them out, from when it first
    held them out and when it was first to text them (None: never)."""
    if first_holdout_at is None:
        return False
    return first_texted_at is None or first_holdout_at <= first_texted_at


def rank(
    campaigns: Collection[CampaignRule], event: PresenceFact, customer: CustomerFacts, now: datetime
) -> list[tuple[CampaignRule, IntentMatch]]:
    """The campaigns the event triggers, still running at `now`, and whose intent condition
    holds, best first: highest priority, then strongest intent, then the oldest campaign."""
    return [
        (campaign, match) for campaign, match, _ in _rank_arrival(campaigns, [event], customer, now)
    ]


def _rank_arrival(
    campaigns: Collection[CampaignRule],
    events: Sequence[PresenceFact],
    customer: CustomerFacts,
    now: datetime,
) -> list[tuple[CampaignRule, IntentMatch, int]]:
    """`rank` over the presence events of one arrival, each campaign with the index of the
    event it is triggered by."""
    matches = []
    for campaign in campaigns:
        if not runs_at(campaign.starts_at, campaign.ends_at, now):
            # A visit made before the campaign's end but decided after it (a worker's lag, a
            # lost batch swept up): its send would find the campaign stopped and the shopper
            # texted by none, so the visit is for the campaigns running now.
            continue
        event = next((i for i, fact in enumerate(events) if triggered(campaign, fact)), None)
        if event is None:
            continue
        match = intent_match(campaign.intent, customer, now)
        if match is not None:
            matches.append((campaign, match, event))
    return sorted(matches, key=lambda cme: _rank_key(cme[0], cme[1]))


def ranks_before(
    campaign: CampaignRule, match: IntentMatch, other: CampaignRule, other_match: IntentMatch
) -> bool:
    """Whether `rank` puts the campaign, matching so, before the other one: a dry run asks it
    of a campaign that really texted the customer for the same presence event."""
    return _rank_key(campaign, match) < _rank_key(other, other_match)


def _rank_key(campaign: CampaignRule, match: IntentMatch) -> tuple[int, float, int]:
    return (-campaign.priority, -match.strength, campaign.id)


def decide(
    campaigns: Collection[CampaignRule],
    event: PresenceFact,
    customer: CustomerFacts,
    budgets: Mapping[int, BudgetUse],
    limits: GlobalLimits,
    now: datetime,
) -> list[Decision]:
    """The decisions for one presence event: see the module's docstring."""
    return decide_arrival(campaigns, [event], customer, budgets, limits, now)


def decide_arrival(
    campaigns: Collection[CampaignRule],
    events: Sequence[PresenceFact],
    customer: CustomerFacts,
    budgets: Mapping[int, BudgetUse],
    limits: GlobalLimits,
    now: datetime,
) -> list[Decision]:
    """The decisions for the presence events of one arrival, as for one event: a beacon
    zone's entry and the store entry it makes in the same instant are one walk through the
    door, so the campaigns they trigger are ranked together and at most one of them texts.
    Each decision names the event it is about (its index in `events`)."""
    decisions = []
    for campaign, match, event in _rank_arrival(campaigns, events, customer, now):
        limit = limit_reason(campaign, customer, budgets.get(campaign.id, BudgetUse()), limits, now)
        if limit.reason:
            decisions.append(
                Decision(campaign.id, SUPPRESSED, limit.reason, match, limit.detail, event)
            )
            continue
        if in_holdout_group(campaign, customer):
            decisions.append(Decision(campaign.id, HOLDOUT, "holdout", match, event=event))
        else:
            decisions.append(Decision(campaign.id, QUEUED, "", match, event=event))
        break
    return decisions


def arrival_key(event: PresenceFact, customer: int, event_id: int) -> tuple:
    """Which arrival a presence event is part of: a customer's entries into a store and its
    zones at one instant are one (a beacon zone's entry enters its store too); any other
    event is one on its own."""
    if event.kind == "entered":
        return (customer, event.store, event.at)
    return (customer, event_id)


def _in_category(product: BrowsingSignal, category: str) -> bool:
    """Whether the customer saw the product in the category (a key): a site lists one product
    under several (a headphone in audio and in sale), and its latest view names only one."""
    return product.category == category or category in product.categories
