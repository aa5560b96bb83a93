"""Time at its edges: limits whose window is the minimum gap, local days whose midnight hour
comes twice or never, an offer's last second, and an offer's expiry read as its SMS gave it
after the customer's time zone changed."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from promotions import decisions, dry_run, sending
from promotions.models import Delivery, PresenceEvent, Redemption
from promotions.sms import locmem
from promotions.times import offer_expiry
from tests.factories import CampaignFactory, CustomerFactory, DeliveryFactory, StoreFactory
from tests.test_site import readonly_field

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def outbox(settings):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    return locmem.outbox


def entry(customer, store, at: datetime, *, arrived_at: datetime | None = None) -> PresenceEvent:
    return PresenceEvent.objects.create(
        customer=customer,
        store=store,
        kind="entered",
        place_key=f"store:{store.id}",
        occurred_at=at - timedelta(seconds=5),
        created_at=arrived_at or at,
    )


def walk_in(customer, store, now: datetime) -> list[int]:
    """The customer enters the store at `now`, decided by the live engine."""
    return decisions.decide_presence_events(event_ids=[entry(customer, store, now).id], now=now)


def texted(customer, store, now: datetime) -> Delivery:
    """The customer enters the store at `now` and is sent the offer."""
    [queued] = walk_in(customer, store, now)
    sending.send_delivery(delivery_id=queued, now=now)
    return Delivery.objects.get(pk=queued)


def redeem(api, code: str, store_code: str, at: datetime):
    body = {"code": code, "store_code": store_code, "redeemed_at": at.isoformat()}
    return api.post("/api/v1/redemptions", body)


# --- The global minimum gap ---------------------------------------------------------------


def test_the_minimum_gap_holds_an_sms_sent_before_the_caps_window(settings):
    # "At most 5 SMS a day, and never two within 3 days": an SMS 2 days ago holds the next.
    settings.SMS_GLOBAL_CAP_COUNT = 5
    settings.SMS_GLOBAL_CAP_DAYS = 1
    settings.SMS_GLOBAL_MIN_GAP_MINUTES = 3 * 24 * 60
    now = datetime.now(UTC)
    store, customer = StoreFactory(), CustomerFactory()
    other = CampaignFactory()
    DeliveryFactory(customer=customer, campaign=other, created_at=now - timedelta(days=2))
    CampaignFactory().stores.add(store)

    assert walk_in(customer, store, now) == []
    [delivery] = Delivery.objects.exclude(campaign=other)
    assert (delivery.status, delivery.reason) == ("suppressed", "global_cap")


# --- A local midnight that comes twice ----------------------------------------------------

# Havana falls back at 01:00 to 00:00 on 1 November 2026: 00:00-00:59 happens twice.
HAVANA_FIRST_MIDNIGHT_HOUR = datetime(2026, 11, 1, 4, 10, tzinfo=UTC)  # 00:10 -04:00
HAVANA_SECOND_MIDNIGHT_HOUR = datetime(2026, 11, 1, 5, 10, tzinfo=UTC)  # 00:10 -05:00


def test_a_daily_budget_counts_the_first_of_two_midnight_hours(settings):
    # An SMS in the first of those hours is that day's, and the day's budget of 1 is spent.
    settings.SMS_BUDGET_TIMEZONE = "America/Havana"
    settings.SMS_GLOBAL_MIN_GAP_MINUTES = 0
    store = StoreFactory(timezone="America/Havana")
    campaign = CampaignFactory(daily_budget=1)
    campaign.stores.add(store)
    DeliveryFactory(campaign=campaign, store=store, created_at=HAVANA_FIRST_MIDNIGHT_HOUR)
    customer = CustomerFactory(timezone="America/Havana")

    assert walk_in(customer, store, HAVANA_SECOND_MIDNIGHT_HOUR) == []
    delivery = Delivery.objects.get(customer=customer)
    assert (delivery.status, delivery.reason) == ("suppressed", "budget")


def test_a_dry_run_from_the_second_midnight_hour_counts_the_first_ones_sms(settings):
    # The campaign's SMS of the day went in the first midnight hour; a dry run starting in
    # the second one has that day's budget of 1 spent already, as live.
    settings.SMS_BUDGET_TIMEZONE = "America/Havana"
    settings.SMS_GLOBAL_MIN_GAP_MINUTES = 0
    store = StoreFactory(timezone="America/Havana")
    campaign = CampaignFactory(daily_budget=1)
    campaign.stores.add(store)
    DeliveryFactory(campaign=campaign, store=store, created_at=HAVANA_FIRST_MIDNIGHT_HOUR)
    since = HAVANA_SECOND_MIDNIGHT_HOUR - timedelta(minutes=5)
    entry(CustomerFactory(timezone="America/Havana"), store, HAVANA_SECOND_MIDNIGHT_HOUR)

    result = dry_run.dry_run_campaign(
        campaign=campaign,
        since=since,
        until=since + timedelta(hours=1),
        now=since + timedelta(days=1),
    )

    assert (result["would_send"], result["by_reason"]["budget"]) == (0, 1)


# --- An offer's last day --------------------------------------------------------------------


def test_an_offer_lasts_to_the_end_of_its_last_day_when_that_day_repeats_its_last_hour(api):
    # Santiago falls back at 24:00 to 23:00 on Saturday 4 April 2026. An offer valid one day,
    # given that Saturday, says "04/04" and is good until the end of the Saturday: through
    # its second 23:00 hour, not after.
    santiago = ZoneInfo("America/Santiago")
    store = StoreFactory(code="COSTANERA", timezone="America/Santiago")
    CampaignFactory(offer_valid_days=1, offer_template="{code} until {expires_at}").stores.add(
        store
    )
    customer = CustomerFactory(timezone="America/Santiago", locale="es-CL")
    delivery = texted(customer, store, datetime(2026, 4, 4, 12, 0, tzinfo=santiago))
    assert delivery.body.startswith(f"{delivery.code} until 04/04\n")
    saturday_late = datetime(2026, 4, 5, 3, 30, tzinfo=UTC)  # 23:30, the second time
    assert saturday_late.astimezone(santiago).date() == date(2026, 4, 4)
    sunday = datetime(2026, 4, 5, 0, 0, tzinfo=santiago)

    assert redeem(api, delivery.code, "COSTANERA", sunday).status_code == 409
    assert redeem(api, delivery.code, "COSTANERA", saturday_late).status_code == 201


def test_an_offer_is_still_good_in_the_last_second_of_its_last_day(api):
    # "Valid until 24/11": a till reporting 23:59:59.5 on the 24th is within that day; the
    # 25th's first instant is not.
    paris = ZoneInfo("Europe/Paris")
    given = datetime(2026, 11, 24, 10, 0, tzinfo=paris)
    expires = offer_expiry(given, 1, paris)
    store = StoreFactory(code="RIVOLI")
    DeliveryFactory(code="K7Q2-M9XB", store=store, created_at=given, expires_at=expires)
    last_second = datetime(2026, 11, 24, 23, 59, 59, 500_000, tzinfo=paris)
    next_day = datetime(2026, 11, 25, 0, 0, tzinfo=paris)

    assert redeem(api, "K7Q2-M9XB", "RIVOLI", next_day).status_code == 409
    assert redeem(api, "K7Q2-M9XB", "RIVOLI", last_second).status_code == 201


def test_an_offer_is_good_through_its_last_day_at_the_till_of_a_store_in_another_zone(
    api, admin_client
):
    # A New York customer shops in Los Angeles at 18:00 on 20 November (21:00 in New York):
    # their SMS says "11/20". At 21:30 that evening the till in Los Angeles still reads the
    # 20th, though New York has passed midnight: the code is good until the 20th ends there.
    los_angeles = ZoneInfo("America/Los_Angeles")
    store = StoreFactory(code="GROVE", timezone="America/Los_Angeles")
    CampaignFactory(offer_valid_days=1, offer_template="{code} until {expires_at}").stores.add(
        store
    )
    customer = CustomerFactory(timezone="America/New_York", locale="en-US")
    delivery = texted(customer, store, datetime(2026, 11, 20, 18, 0, tzinfo=los_angeles))
    assert delivery.body.startswith(f"{delivery.code} until 11/20\n")
    evening = datetime(2026, 11, 20, 21, 30, tzinfo=los_angeles)
    next_day = datetime(2026, 11, 21, 0, 0, tzinfo=los_angeles)

    assert redeem(api, delivery.code, "GROVE", next_day).status_code == 409
    assert redeem(api, delivery.code, "GROVE", evening).status_code == 201
    page = admin_client.get(f"/admin/promotions/delivery/{delivery.pk}/change/").content.decode()
    assert readonly_field(page, "Valid until, as its SMS says") == (
        "Nov. 20, 2026, 11:59 p.m. (America/Los_Angeles)"
    )


def test_an_offer_is_good_through_its_last_day_at_a_till_in_another_zone_than_its_store(api):
    # A New York customer is texted in a New York store on 18 November, "until 11/20", then
    # flies to Los Angeles. At 21:30 on the 20th the till there still reads the 20th (New
    # York has passed midnight): the code is good there until the 20th ends, as it would be
    # had the SMS been given in that store; by card as by code.
    new_york, los_angeles = ZoneInfo("America/New_York"), ZoneInfo("America/Los_Angeles")
    fifth_avenue = StoreFactory(code="FIFTH", timezone="America/New_York")
    StoreFactory(code="GROVE", timezone="America/Los_Angeles")
    CampaignFactory(offer_valid_days=3, offer_template="{code} until {expires_at}").stores.add(
        fifth_avenue
    )
    customer = CustomerFactory(external_id="C-NY", timezone="America/New_York", locale="en-US")
    delivery = texted(customer, fifth_avenue, datetime(2026, 11, 18, 12, 0, tzinfo=new_york))
    assert delivery.body.startswith(f"{delivery.code} until 11/20\n")
    evening = datetime(2026, 11, 20, 21, 30, tzinfo=los_angeles)
    next_day = datetime(2026, 11, 21, 0, 0, tzinfo=los_angeles)

    refused = redeem(api, delivery.code, "GROVE", next_day)
    assert refused.status_code == 409
    assert refused.json()["detail"] == "This code expired on 2026-11-21T07:59:59Z."
    assert redeem(api, delivery.code, "GROVE", evening).status_code == 201
    Redemption.objects.all().delete()
    by_card = {"customer_id": "C-NY", "store_code": "GROVE", "redeemed_at": evening.isoformat()}
    assert api.post("/api/v1/redemptions", by_card).status_code == 201
    late = {**by_card, "redeemed_at": next_day.isoformat()}
    Redemption.objects.all().delete()
    assert api.post("/api/v1/redemptions", late).status_code == 404


def test_an_offer_given_in_a_store_behind_the_customers_zone_still_ends_with_its_day_there():
    # The SMS's date is the customer's; the code lasts until that date ends in the later of
    # their zone and the store's, never before it ends in either.
    new_york, los_angeles = ZoneInfo("America/New_York"), ZoneInfo("America/Los_Angeles")
    given = datetime(2026, 11, 20, 18, 0, tzinfo=los_angeles)

    assert offer_expiry(given, 1, new_york, till_zone=los_angeles) == datetime(
        2026, 11, 21, 0, 0, tzinfo=los_angeles
    ) - timedelta(microseconds=1)
    assert offer_expiry(given, 1, los_angeles, till_zone=new_york) == offer_expiry(
        given, 1, los_angeles
    )


# --- The admin's reading of an offer's expiry -----------------------------------------------


def test_the_admin_shows_the_expiry_its_sms_gave_after_the_customer_moves(admin_client):
    # The SMS told a Los Angeles customer "12/06"; they have since moved to Paris. The
    # delivery still says what its SMS said.
    los_angeles = ZoneInfo("America/Los_Angeles")
    store = StoreFactory(timezone="America/Los_Angeles")
    CampaignFactory(offer_valid_days=1, offer_template="{code} until {expires_at}").stores.add(
        store
    )
    customer = CustomerFactory(timezone="America/Los_Angeles", locale="en-US")
    delivery = texted(customer, store, datetime(2026, 12, 6, 10, 0, tzinfo=los_angeles))
    assert delivery.body.startswith(f"{delivery.code} until 12/06\n")
    customer.timezone = "Europe/Paris"
    customer.save()

    page = admin_client.get(f"/admin/promotions/delivery/{delivery.pk}/change/").content.decode()

    assert readonly_field(page, "Valid until, as its SMS says") == (
        "Dec. 6, 2026, 11:59 p.m. (America/Los_Angeles)"
    )
