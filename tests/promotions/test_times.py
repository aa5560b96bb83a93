"""The time rules on plain values, no database: an offer lasts to the end of its last local
day, a local day starts at its first instant, and instants are written the same way
wherever they are written. The zones are real ones whose clocks change at midnight:
Santiago falls back at 24:00 to 23:00 (Saturday's last hour comes twice) and springs
forward at 24:00 to 01:00 (Sunday has no midnight); Havana springs forward at 00:00 and
falls back at 01:00 to 00:00 (its midnight hour comes twice)."""

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from promotions.times import (
    format_instant_for_api,
    format_instant_for_people,
    local_day,
    local_day_start,
    offer_end_at_till,
    offer_expiry,
)

SANTIAGO = ZoneInfo("America/Santiago")
HAVANA = ZoneInfo("America/Havana")
PARIS = ZoneInfo("Europe/Paris")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
ONE_MICROSECOND = timedelta(microseconds=1)


# --- An offer's last day ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "valid_days", "last_day"),
    [
        # Valid one day: the day it is given, late in it or not.
        (datetime(2026, 11, 24, 9, 0, tzinfo=PARIS), 1, date(2026, 11, 24)),
        (datetime(2026, 11, 24, 23, 59, tzinfo=PARIS), 1, date(2026, 11, 24)),
        # Valid seven days: through the seventh day, the day it is given the first.
        (datetime(2026, 11, 24, 9, 0, tzinfo=PARIS), 7, date(2026, 11, 30)),
        (datetime(2026, 11, 24, 23, 59, tzinfo=PARIS), 7, date(2026, 11, 30)),
        # Fewer than one day is read as one.
        (datetime(2026, 11, 24, 9, 0, tzinfo=PARIS), 0, date(2026, 11, 24)),
        # Given in UTC, read in the customer's zone: 02:00 UTC is still the 23rd in LA.
        (datetime(2026, 11, 24, 2, 0, tzinfo=UTC), 1, date(2026, 11, 23)),
    ],
)
def test_an_offer_lasts_to_the_last_instant_of_its_last_local_day(given, valid_days, last_day):
    zone = PARIS if given.tzinfo is PARIS else LOS_ANGELES

    expires = offer_expiry(given, valid_days, zone)

    assert local_day(expires, zone) == last_day
    assert (expires + ONE_MICROSECOND).astimezone(zone) == datetime.combine(
        last_day + timedelta(days=1), datetime.min.time(), tzinfo=zone
    )
    assert expires.tzinfo is UTC


@pytest.mark.parametrize("valid_days", [1, 7])
def test_an_offer_ending_the_day_santiago_falls_back_at_midnight_keeps_its_repeated_hour(
    valid_days,
):
    # On Saturday 4 April 2026 Santiago's clocks go from 24:00 back to 23:00: the
    # Saturday's 23:00 hour comes twice. An offer whose last day is that Saturday (given
    # that day, or the Sunday before for seven days) is good through the second pass.
    given = datetime(2026, 4, 4, 12, 0, tzinfo=SANTIAGO) - timedelta(days=valid_days - 1)

    expires = offer_expiry(given, valid_days, SANTIAGO)

    first_pass_end = datetime(2026, 4, 4, 23, 59, 59, tzinfo=SANTIAGO)  # -03:00
    second_pass = datetime(2026, 4, 5, 3, 30, tzinfo=UTC)  # 23:30 again, at -04:00
    assert local_day(second_pass, SANTIAGO) == date(2026, 4, 4)
    assert first_pass_end < second_pass <= expires
    assert expires == datetime(2026, 4, 5, 4, 0, tzinfo=UTC) - ONE_MICROSECOND
    assert local_day(expires + ONE_MICROSECOND, SANTIAGO) == date(2026, 4, 5)


@pytest.mark.parametrize("valid_days", [1, 7])
def test_an_offer_ends_with_its_last_day_when_the_next_day_has_no_midnight(valid_days):
    # Havana springs forward at 00:00 to 01:00 on 8 March 2026: an offer whose last day is
    # the 7th ends as the 7th does, the moment the clocks jump.
    given = datetime(2026, 3, 7, 12, 0, tzinfo=HAVANA) - timedelta(days=valid_days - 1)

    expires = offer_expiry(given, valid_days, HAVANA)

    assert local_day(expires, HAVANA) == date(2026, 3, 7)
    assert (expires + ONE_MICROSECOND).astimezone(HAVANA) == datetime(
        2026, 3, 8, 1, 0, tzinfo=HAVANA
    )


def test_seven_days_over_a_change_of_clocks_are_seven_calendar_days_not_168_hours():
    # Santiago loses an hour in the night of 5 to 6 September 2026: given on the 1st, the
    # offer still ends as the 7th ends, 167 hours of clock time plus the rest of the 1st.
    given = datetime(2026, 9, 1, 0, 0, tzinfo=SANTIAGO)

    expires = offer_expiry(given, 7, SANTIAGO)

    assert local_day(expires, SANTIAGO) == date(2026, 9, 7)
    assert expires + ONE_MICROSECOND - given == timedelta(hours=7 * 24 - 1)


# --- Local days -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "zone", "starts_at"),
    [
        # Santiago springs forward at 24:00 to 01:00: Sunday 6 September 2026 has no
        # midnight, and starts when the clocks jump, at 01:00 (-03:00).
        (date(2026, 9, 6), SANTIAGO, datetime(2026, 9, 6, 4, 0, tzinfo=UTC)),
        # Havana likewise on Sunday 8 March 2026.
        (date(2026, 3, 8), HAVANA, datetime(2026, 3, 8, 5, 0, tzinfo=UTC)),
        # Havana falls back at 01:00 to 00:00 on 1 November 2026: its midnight comes twice,
        # and the day starts at the first (-04:00).
        (date(2026, 11, 1), HAVANA, datetime(2026, 11, 1, 4, 0, tzinfo=UTC)),
        # Santiago's Sunday after its clocks fell back starts at the later midnight (-04:00).
        (date(2026, 4, 5), SANTIAGO, datetime(2026, 4, 5, 4, 0, tzinfo=UTC)),
        (date(2026, 11, 24), UTC, datetime(2026, 11, 24, 0, 0, tzinfo=UTC)),
    ],
)
def test_a_local_day_starts_at_the_first_instant_it_has(day, zone, starts_at):
    start = local_day_start(day, zone)

    assert start == starts_at
    assert start.tzinfo is UTC
    assert local_day(start, zone) == day
    assert local_day(start - ONE_MICROSECOND, zone) == day - timedelta(days=1)


@pytest.mark.parametrize(
    ("instant", "zone", "day"),
    [
        (datetime(2026, 11, 24, 23, 30, tzinfo=UTC), PARIS, date(2026, 11, 25)),
        (datetime(2026, 11, 24, 23, 30, tzinfo=UTC), LOS_ANGELES, date(2026, 11, 24)),
        (datetime(2026, 11, 25, 0, 30, tzinfo=PARIS), UTC, date(2026, 11, 24)),
        # Santiago's repeated hour still belongs to the Saturday.
        (datetime(2026, 4, 5, 3, 30, tzinfo=UTC), SANTIAGO, date(2026, 4, 4)),
    ],
)
def test_an_instant_falls_on_the_day_its_zone_reads(instant, zone, day):
    assert local_day(instant, zone) == day


# --- Writing instants -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "written"),
    [
        (datetime(2026, 11, 24, 9, 15, 30, tzinfo=UTC), "2026-11-24T09:15:30Z"),
        # Microseconds are cut, not rounded up into the next second.
        (datetime(2026, 11, 24, 9, 15, 30, 999_999, tzinfo=UTC), "2026-11-24T09:15:30Z"),
        # Read in Paris, written in UTC.
        (datetime(2026, 11, 24, 10, 15, 30, 500_000, tzinfo=PARIS), "2026-11-24T09:15:30Z"),
        # An offset that is not a zone, across midnight into the day before.
        (
            datetime(2026, 11, 24, 0, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            "2026-11-23T19:00:00Z",
        ),
        # An offer's last instant reads as the last second of its day in UTC.
        (datetime(2026, 11, 25, 0, 0, tzinfo=UTC) - ONE_MICROSECOND, "2026-11-24T23:59:59Z"),
    ],
)
def test_the_api_writes_an_instant_in_utc_to_the_second(instant, written):
    assert format_instant_for_api(instant) == written


@pytest.mark.parametrize(
    ("instant", "written"),
    [
        (datetime(2026, 11, 24, 9, 15, 59, 999_999, tzinfo=UTC), "2026-11-24 09:15 UTC"),
        (datetime(2026, 11, 24, 10, 15, 30, tzinfo=PARIS), "2026-11-24 09:15 UTC"),
        (datetime(2026, 4, 4, 23, 30, fold=1, tzinfo=SANTIAGO), "2026-04-05 03:30 UTC"),
    ],
)
def test_people_read_an_instant_in_utc_to_the_minute_saying_so(instant, written):
    assert format_instant_for_people(instant) == written


def test_the_time_rules_load_without_django():
    # Pure: usable and testable with no settings, no app registry and no database.
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, promotions.times; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'rest_framework'}))",
        ],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        check=True,
    )

    assert loaded.stdout.strip() == "[]"


def test_an_offer_from_auckland_lasts_to_its_days_end_at_a_till_across_the_date_line():
    # Given in Auckland on Monday 23 November, "until 23/11": Honolulu's till reads the 23rd
    # for 23 hours after Auckland's has ended; Auckland's own till, only until it ends there.
    auckland, honolulu = ZoneInfo("Pacific/Auckland"), ZoneInfo("Pacific/Honolulu")
    given = datetime(2026, 11, 23, 10, 0, tzinfo=auckland)
    expires = offer_expiry(given, 1, auckland)

    assert offer_end_at_till(expires, auckland, honolulu) == (
        datetime(2026, 11, 24, 0, 0, tzinfo=honolulu) - ONE_MICROSECOND
    )
    assert offer_end_at_till(expires, auckland, auckland) == expires
    # A till ahead of the offer's zone never ends it sooner.
    assert offer_end_at_till(offer_expiry(given, 1, honolulu), honolulu, auckland) == (
        offer_expiry(given, 1, honolulu)
    )
