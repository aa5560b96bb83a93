"""{expires_at} in the customer's habit: month first for a customer in the US, whether their
locale says so with a script subtag (en-Latn-US) or names no country at all (en) and their
phone number is American; day first elsewhere."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from promotions import decisions
from promotions.models import Delivery, PresenceEvent
from promotions.offers import format_expiry
from tests.factories import CampaignFactory, CustomerFactory, StoreFactory

pytestmark = pytest.mark.django_db

NEW_YORK = ZoneInfo("America/New_York")
# Noon on 5 December: a one-day offer runs until the end of the day.
NOON = datetime(2026, 12, 5, 12, 0, tzinfo=NEW_YORK)


def offer_text(*, locale: str, phone: str, zone: str = "America/New_York") -> str:
    store = StoreFactory(timezone=zone)
    campaign = CampaignFactory(offer_valid_days=1, offer_template="{code} until {expires_at}")
    campaign.stores.add(store)
    customer = CustomerFactory(locale=locale, phone=phone, timezone=zone)
    event = PresenceEvent.objects.create(
        customer=customer,
        store=store,
        kind="entered",
        place_key=f"store:{store.id}",
        occurred_at=NOON - timedelta(seconds=5),
        created_at=NOON,
    )
    [queued] = decisions.decide_presence_events(event_ids=[event.id], now=NOON)
    return Delivery.objects.get(pk=queued).body.splitlines()[0]


@pytest.mark.parametrize(
    ("locale", "phone"),
    [
        ("en", "+12125550123"),  # no country in the locale: the number's
        ("en-Latn-US", "+33612345678"),  # the locale's country, past its script
        ("en_US", "+33612345678"),
        ("es-US", "+12125550123"),
        ("", "+12125550123"),
    ],
)
def test_a_customer_in_the_us_reads_the_month_first(locale, phone):
    assert offer_text(locale=locale, phone=phone).endswith(" until 12/05")


@pytest.mark.parametrize(
    ("locale", "phone", "zone"),
    [
        ("en", "+447700900123", "Europe/London"),
        ("en-GB", "+12125550123", "America/New_York"),  # the locale's country wins
        ("fr-FR", "+33612345678", "Europe/Paris"),
        ("fr", "+16135550123", "America/Toronto"),  # Canada writes day first here
        ("en", "not a number", "America/New_York"),
    ],
)
def test_a_customer_elsewhere_reads_the_day_first(locale, phone, zone):
    assert offer_text(locale=locale, phone=phone, zone=zone).endswith(" until 05/12")


def test_a_short_date_is_written_as_the_region_reads_it():
    day = datetime(2026, 12, 5).date()

    assert format_expiry(day, locale="en-US") == "12/05"
    assert format_expiry(day, locale="en", phone="+12125550123") == "12/05"
    assert format_expiry(day, locale="en") == "05/12"
