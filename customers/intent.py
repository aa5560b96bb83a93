"""Browsing-intent arithmetic on plain values: no Django, no clock.

Intent is kept per customer and SKU, per customer and category, and per customer for the
cart the site reports whole (cart events naming neither). Every function here
gives the same result whatever order the events arrive in, because web events arrive
late and out of order and a stitched visitor's history is applied after the fact.

The decayed score at time T is the sum over events of weight * 0.5 ** ((T - t) / half_life).
It is stored as (score, score_at) with score_at the newest event time, so adding an
event is O(1): decay the stored score forward, or the event's weight backward.
"""

from bisect import bisect_left, insort
from collections.abc import Iterable
from datetime import datetime

EVENT_WEIGHTS = {
    "page_view": 0.5,
    "product_view": 1.0,
    "add_to_cart": 3.0,
    "cart_abandoned": 5.0,
}
# Only product page views count as views; a page_view is often sent for the same page.
VIEW_EVENT = "product_view"
# A campaign asks for at most this many views, so keeping more would only cost space.
MAX_VIEW_TIMES = 100

CART_NONE = ""
CART_IN_CART = "in_cart"
CART_ABANDONED = "abandoned"
CART_EVENTS = {"add_to_cart": CART_IN_CART, "cart_abandoned": CART_ABANDONED}


def category_key(name: str) -> str:
    """What tells one category from another: sites spell one category with other cases and
    spacings ("Home Audio" in a breadcrumb, "home audio" in a data layer), and a marketer
    types it as they please. Intent is stored per spelling sent and read, and matched,
    per key."""
    return " ".join(name.split()).casefold()


def with_category(categories: list[str], current: str, name: str) -> list[str]:
    """The category keys a product's events counted towards, with one more (`name`, as
    sent). A row kept before these were lists only `current`, its category: the one its
    earlier events counted towards."""
    keys = set(categories) or ({category_key(current)} if current else set())
    return sorted(keys | {category_key(name)})


def decay_factor(seconds: float, half_life_seconds: float) -> float:
    """The share of a weight left after `seconds`."""
    return 0.5 ** (seconds / half_life_seconds)


def add_to_score(
    score: float,
    score_at: datetime | None,
    weight: float,
    at: datetime,
    half_life_seconds: float,
) -> tuple[float, datetime]:
    """Add an event of `weight` at `at` to a decayed score kept as of `score_at`."""
    if score_at is None:
        return weight, at
    if at >= score_at:
        elapsed = (at - score_at).total_seconds()
        return score * decay_factor(elapsed, half_life_seconds) + weight, at
    late_by = (score_at - at).total_seconds()
    return score + weight * decay_factor(late_by, half_life_seconds), score_at


def score_as_of(
    score: float, score_at: datetime | None, when: datetime, half_life_seconds: float
) -> float:
    """The decayed score at `when` (never grows for a `when` before `score_at`)."""
    if score_at is None:
        return 0.0
    elapsed = max(0.0, (when - score_at).total_seconds())
    return score * decay_factor(elapsed, half_life_seconds)


def score_of(
    events: Iterable[tuple[float, datetime]], when: datetime, half_life_seconds: float
) -> float:
    """The decayed score at `when` of these events (weight, time), kept as ingest keeps it:
    for a score as it stood before the events that came after (a dry run's past event)."""
    score, score_at = 0.0, None
    for weight, at in events:
        score, score_at = add_to_score(score, score_at, weight, at, half_life_seconds)
    return score_as_of(score, score_at, when, half_life_seconds)


def merge_scores(
    score: float,
    score_at: datetime | None,
    other: float,
    other_at: datetime | None,
    half_life_seconds: float,
) -> tuple[float, datetime | None]:
    """Two decayed scores as one, as if their events had been added one by one: the other
    score is, as of its own time, the weight of one event then."""
    if other_at is None:
        return score, score_at
    return add_to_score(score, score_at, other, other_at, half_life_seconds)


def add_view_time(view_times: list[int], at: int, window_start: int) -> list[int]:
    """Insert a view (epoch seconds) into the ascending list, keeping the window and the cap."""
    times = [t for t in view_times if t >= window_start]
    if at >= window_start:
        insort(times, at)
    return times[-MAX_VIEW_TIMES:]


def merge_view_times(view_times: list[int], other: list[int], window_start: int) -> list[int]:
    """Two ascending lists of views as one, keeping the window and the cap."""
    times = sorted(t for t in (*view_times, *other) if t >= window_start)
    return times[-MAX_VIEW_TIMES:]


def views_since(view_times: list[int], since: int) -> int:
    """How many views happened at or after `since` (epoch seconds)."""
    return len(view_times) - bisect_left(view_times, since)


def cart_after(
    cart_state: str, cart_updated_at: datetime | None, event_type: str, at: datetime
) -> tuple[str, datetime | None]:
    """The cart state after an event; an older cart event never overrides a newer one."""
    new_state = CART_EVENTS.get(event_type)
    if new_state is None:
        return cart_state, cart_updated_at
    if cart_updated_at is not None:
        if at < cart_updated_at:
            return cart_state, cart_updated_at
        # Two cart events at the same instant: the abandonment wins, whatever the order.
        if at == cart_updated_at and cart_state == CART_ABANDONED:
            return cart_state, cart_updated_at
    return new_state, at


def merge_carts(
    cart_state: str,
    cart_updated_at: datetime | None,
    other_state: str,
    other_updated_at: datetime | None,
) -> tuple[str, datetime | None]:
    """Two cart states as one: the other's is the result of its latest cart event."""
    if other_state == CART_NONE or other_updated_at is None:
        return cart_state, cart_updated_at
    event_type = next(event for event, state in CART_EVENTS.items() if state == other_state)
    return cart_after(cart_state, cart_updated_at, event_type, other_updated_at)


def latest(current: datetime | None, at: datetime) -> datetime:
    return at if current is None or at > current else current
