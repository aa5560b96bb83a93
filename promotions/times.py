"""Pure time rules: which local day an instant falls on, when a local day starts, when an
offer ends, and how an instant is written for the API and for people. No Django imports:
zones are passed in (a customer's, a store's, the budgets' SMS_BUDGET_TIMEZONE), so that
each rule is tested on plain values, across the midnights a zone repeats or skips."""

from datetime import UTC, date, datetime, time, timedelta, tzinfo


def local_day(instant: datetime, zone: tzinfo) -> date:
    """The calendar day an instant falls on in `zone`: the day a customer reads on their
    clock (an offer's last day), or the day a daily budget counts an SMS on, which a
    campaign's statistics are recorded under too. An aware instant only: a naive one
    would be read in the server's zone."""
    return instant.astimezone(zone).date()


def local_day_start(day: date, zone: tzinfo) -> datetime:
    """The first instant of a local day, in UTC. A midnight hour that comes twice (a zone
    falling back at 01:00) starts the day at its first pass; a midnight a zone springs
    forward over starts it when the clocks jump, the first instant the day has."""
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def offer_last_day(now: datetime, valid_days: int, zone: tzinfo) -> date:
    """The offer's last valid day, as its SMS gives it, in the customer's timezone: "valid
    7 days" is the seventh day, "valid 1 day" (or less) the day it is given."""
    return local_day(now, zone) + timedelta(days=max(valid_days, 1) - 1)


def offer_expiry(
    now: datetime, valid_days: int, zone: tzinfo, *, till_zone: tzinfo | None = None
) -> datetime:
    """The last instant of the offer's last valid day (offer_last_day) in the customer's
    timezone, in UTC: until the end of that day, not 7 times 24 hours to the minute. Taken
    from the next day's start, because the wall clock's 23:59:59 may come twice (a zone
    falling back at midnight) or a fraction of a second before the day ends.

    `till_zone`, the store's, when the customer's is another: the day the SMS names has not
    ended for its till until it ends there too, so the later of the two ends counts (a New
    York customer's "11/20" is still good at 21:30 on the 20th in a Los Angeles store)."""
    next_day = offer_last_day(now, valid_days, zone) + timedelta(days=1)
    zones = [zone] if till_zone is None else [zone, till_zone]
    return max(local_day_start(next_day, each) for each in zones) - timedelta(microseconds=1)


# How much later a local day can end in one zone than in another: UTC-12 to UTC+14.
ZONES_SPREAD = timedelta(hours=26)


def offer_end_at_till(expires_at: datetime, offer_zone: tzinfo, till_zone: tzinfo) -> datetime:
    """When an offer ends at a till in `till_zone`, which may be another store's than the one
    it was given in: `expires_at` (offer_expiry), or, when the day its SMS named ends later
    there, the end of that day at that till. `offer_zone` is the zone whose end of that day
    `expires_at` is, so it gives the day back. Never more than ZONES_SPREAD later."""
    next_day = local_day(expires_at, offer_zone) + timedelta(days=1)
    at_till = local_day_start(next_day, till_zone) - timedelta(microseconds=1)
    return max(expires_at, at_till)


def format_instant_for_api(value: datetime) -> str:
    """An instant as the API writes times in its messages (a code "expired on ...", a
    number that "opted out ... on ..."): ISO 8601 in UTC, to the second, e.g.
    2026-11-24T09:00:00Z. Whatever zone it was read in, so that a client compares it with
    the response's own times; the fraction of a second is cut, not rounded, so that a
    time never reads later than it was. DRF writes the API's date-time fields, and its
    renderer and the admin's export their instants, on their own: a whole second reads
    the same in all of them, and a fraction of one after it (tests/test_instant_formats.py
    pins both)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_instant_for_people(value: datetime) -> str:
    """An instant as messages for marketers and the admin write it: to the minute, in UTC,
    and saying so, e.g. "2026-11-24 09:00 UTC" (a campaign's end, its dates in a dry run's
    warnings, a presence event's label). UTC, the admin's zone, whatever zone it was read
    in; the minute is cut, not rounded."""
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
