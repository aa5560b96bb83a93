"""Daily campaign statistics: what Celery beat records for each campaign and day gone by,
and the results chart that reads them."""

import html
import re
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from promotions import tasks
from promotions.models import CampaignDay, DeliveryStatus, Redemption
from promotions.selectors import get_campaign_daily
from promotions.services import budget_days_before, record_campaign_days
from tests.factories import CampaignFactory, DeliveryFactory

pytestmark = pytest.mark.django_db

MONDAY, TUESDAY = date(2026, 11, 23), date(2026, 11, 24)


def at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def decide(campaign, day, status, hour=12, **extra):
    return DeliveryFactory(campaign=campaign, status=status, created_at=at(day, hour), **extra)


def redeem(delivery, when, amount=None):
    Redemption.objects.create(delivery=delivery, redeemed_at=when, amount=amount)


def figures(campaign, day):
    row = CampaignDay.objects.get(campaign=campaign, day=day)
    return {
        name: getattr(row, name)
        for name in (
            "decisions",
            "sent",
            "delivered",
            "failed",
            "holdout",
            "suppressed",
            "redeemed",
            "revenue",
        )
    }


def test_a_day_is_recorded_per_campaign_from_its_decisions_and_redemptions():
    walk_in, near = CampaignFactory(), CampaignFactory()
    delivered = decide(walk_in, MONDAY, DeliveryStatus.DELIVERED, hour=0)
    decide(walk_in, MONDAY, DeliveryStatus.SENT, hour=23)
    decide(walk_in, MONDAY, DeliveryStatus.UNDELIVERED)
    held = decide(walk_in, MONDAY, DeliveryStatus.HOLDOUT)
    decide(walk_in, MONDAY, DeliveryStatus.SUPPRESSED, reason="quiet_hours")
    decide(walk_in, TUESDAY, DeliveryStatus.SENT, hour=0)  # the next UTC day
    decide(near, MONDAY, DeliveryStatus.FAILED)
    # Redeemed on Monday evening and counted on Monday; one redeemed on Tuesday is not.
    redeem(delivered, at(MONDAY, 19), amount=Decimal("42.50"))
    # The holdout's purchase was made without an SMS: it is the baseline, not the result.
    redeem(held, at(MONDAY, 20), amount=Decimal("10.00"))
    redeem(decide(walk_in, MONDAY - timedelta(days=3), DeliveryStatus.SENT), at(TUESDAY, 9))

    assert record_campaign_days(days=[MONDAY], now=timezone.now()) == 2

    assert figures(walk_in, MONDAY) == {
        "decisions": 5,
        "sent": 3,  # sent, delivered and undelivered were all handed to Twilio
        "delivered": 1,
        "failed": 0,  # undelivered is counted as sent, as the campaign's statistics count it
        "holdout": 1,
        "suppressed": 1,
        "redeemed": 1,
        "revenue": Decimal("42.50"),
    }
    assert figures(near, MONDAY)["failed"] == 1
    assert not CampaignDay.objects.filter(day=TUESDAY).exists()


def test_recording_a_day_again_replaces_its_figures():
    campaign = CampaignFactory()
    delivery = decide(campaign, MONDAY, DeliveryStatus.SENT)
    record_campaign_days(days=[MONDAY], now=timezone.now())
    record_campaign_days(days=[MONDAY], now=timezone.now())
    assert CampaignDay.objects.count() == 1
    assert figures(campaign, MONDAY)["delivered"] == 0

    # Twilio's "delivered" came after midnight; the next hourly run catches it.
    delivery.status = DeliveryStatus.DELIVERED
    delivery.save()
    record_campaign_days(days=[MONDAY], now=timezone.now())
    assert figures(campaign, MONDAY)["delivered"] == 1

    delivery.delete()
    record_campaign_days(days=[MONDAY], now=timezone.now())
    assert not CampaignDay.objects.exists()


def utc_today() -> date:
    return timezone.now().astimezone(UTC).date()


def days_before(today: date, number: int) -> set[date]:
    return {today - timedelta(days=n) for n in range(1, number + 1)}


def test_the_days_before_today_are_the_budgets_days_utc_by_default_oldest_first():
    # Half past midnight in Paris on Wednesday is still Tuesday in UTC.
    paris_wednesday = datetime(2026, 11, 25, 0, 30, tzinfo=ZoneInfo("Europe/Paris"))

    assert budget_days_before(paris_wednesday, 2) == [date(2026, 11, 22), MONDAY]


def test_beat_records_the_two_days_before_today():
    campaign = CampaignFactory()
    today = utc_today()
    for days_ago in (0, 1, 2, 3):
        decide(campaign, today - timedelta(days=days_ago), DeliveryStatus.SENT, hour=0)

    assert tasks.record_campaign_days.delay().get() == 2

    # The task reads the clock itself: its today is ours, or the next day if midnight passed.
    ran_on = {today, utc_today()}
    recorded = set(CampaignDay.objects.values_list("day", flat=True))
    assert recorded in [days_before(day, 2) for day in ran_on]


def test_the_backfill_command_records_the_days_asked_for(capsys):
    campaign = CampaignFactory()
    today = utc_today()
    for days_ago in range(8):
        decide(campaign, today - timedelta(days=days_ago), DeliveryStatus.SENT, hour=1)

    call_command("record_campaign_days", "--days", "5")

    ran_on = {today, utc_today()}  # as above
    recorded = set(CampaignDay.objects.values_list("day", flat=True))
    assert recorded in [days_before(day, 5) for day in ran_on]
    assert "Recorded 5 campaign days" in capsys.readouterr().out


def test_the_chart_reads_recorded_days_and_counts_the_rest():
    campaign = CampaignFactory()
    today = TUESDAY + timedelta(days=1)
    decide(campaign, MONDAY, DeliveryStatus.SENT)
    decide(campaign, TUESDAY, DeliveryStatus.SENT)
    decide(campaign, today, DeliveryStatus.SENT)
    # Monday as beat recorded it (a figure the deliveries alone would not give).
    CampaignDay.objects.create(
        campaign=campaign, day=MONDAY, zone="UTC", decisions=9, sent=7, redeemed=2
    )

    daily = get_campaign_daily(campaign=campaign, days=3, today=today)

    assert [(d["day"], d["sent"], d["redeemed"]) for d in daily] == [
        (MONDAY, 7, 2),  # recorded
        (TUESDAY, 1, 0),  # not recorded yet: counted
        (today, 1, 0),  # today is always counted
    ]


def test_a_redemption_reported_days_late_reaches_its_recorded_day(api):
    # A till offline over the weekend reports on Wednesday a purchase made on Saturday, a day
    # beat has recorded and no longer records: the chart must agree with the totals.
    campaign = CampaignFactory()
    today = utc_today()
    saturday = today - timedelta(days=4)
    sent = decide(campaign, saturday, DeliveryStatus.DELIVERED, hour=10, expires_at=at(today, 23))
    record_campaign_days(days=[saturday], now=timezone.now())
    body = {
        "code": sent.code,
        "store_code": sent.store.code,
        "amount": "30.00",
        "redeemed_at": at(saturday, 18).isoformat(),
    }

    assert api.post("/api/v1/redemptions", body).status_code == 201

    assert (figures(campaign, saturday)["redeemed"], figures(campaign, saturday)["revenue"]) == (
        1,
        Decimal("30.00"),
    )
    daily = get_campaign_daily(campaign=campaign, days=7, today=today)
    assert [d["redeemed"] for d in daily if d["day"] == saturday] == [1]


def test_a_late_redemption_whose_day_cannot_be_recounted_is_not_recorded_either(api, monkeypatch):
    # The recount is part of the redemption: the till told to retry is not told on its
    # retry that the code was redeemed already.
    from django.db import OperationalError

    from promotions import feedback

    campaign = CampaignFactory()
    today = utc_today()
    saturday = today - timedelta(days=4)
    sent = decide(campaign, saturday, DeliveryStatus.DELIVERED, hour=10, expires_at=at(today, 23))
    record_campaign_days(days=[saturday], now=timezone.now())
    body = {
        "code": sent.code,
        "store_code": sent.store.code,
        "redeemed_at": at(saturday, 18).isoformat(),
    }

    def lock_timeout(**kwargs):
        raise OperationalError("canceling statement due to lock timeout")

    monkeypatch.setattr(feedback, "record_campaign_days", lock_timeout)
    first = api.post("/api/v1/redemptions", body)
    monkeypatch.undo()
    retried = api.post("/api/v1/redemptions", body)

    assert (first.status_code, retried.status_code) == (503, 201)
    assert figures(campaign, saturday)["redeemed"] == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
)
def test_two_tills_reporting_the_same_late_day_at_once_both_reach_its_figures(monkeypatch):
    from promotions import feedback, services

    campaign = CampaignFactory()
    today = utc_today()
    saturday = today - timedelta(days=4)
    first, second = (
        decide(campaign, saturday, DeliveryStatus.DELIVERED, hour=10, expires_at=at(today, 23))
        for _ in range(2)
    )
    record_campaign_days(days=[saturday], now=timezone.now())
    counted, second_started = threading.Event(), threading.Event()
    real_count = services.get_day_figures

    def count_then_wait(**kwargs):
        figures = real_count(**kwargs)
        if threading.current_thread().name == "first":
            counted.set()
            second_started.wait(5)
            time.sleep(0.5)  # the second till's recount would count now, without the lock
        return figures

    monkeypatch.setattr(services, "get_day_figures", count_then_wait)

    def redeem(delivery, amount):
        try:
            feedback.redeem(
                code=delivery.code,
                customer_id=None,
                store_code=delivery.store.code,
                amount=Decimal(amount),
                redeemed_at=at(saturday, 18),
            )
        finally:
            connection.close()

    till_one = threading.Thread(target=redeem, args=(first, "30.00"), name="first")
    till_one.start()
    assert counted.wait(10)
    till_two = threading.Thread(target=redeem, args=(second, "20.00"), name="second")
    till_two.start()
    second_started.set()
    till_one.join(20)
    till_two.join(20)

    assert (figures(campaign, saturday)["redeemed"], figures(campaign, saturday)["revenue"]) == (
        2,
        Decimal("50.00"),
    )


# --- The day a marketer reads: the one the daily budget counts (SMS_BUDGET_TIMEZONE) -------

LOS_ANGELES = ZoneInfo("America/Los_Angeles")


def la(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=LOS_ANGELES)


def la_today() -> date:
    return timezone.now().astimezone(LOS_ANGELES).date()


def per_day_rows(page: str) -> dict[str, list[str]]:
    """The results page's per-day table: day to its figures, as the marketer reads them."""
    table = re.search(r'<table id="per-day">(.*?)</table>', page, re.S).group(1)
    rows = re.findall(r"<tr><td>(.*?)</tr>", table, re.S)
    cells = [re.findall(r"<td>(.*?)</td>", "<td>" + row, re.S) for row in rows]
    cells = [[re.sub(r"<[^>]+>", "", cell).strip() for cell in row] for row in cells]
    return {row[0]: row[1:] for row in cells}


def test_the_results_page_counts_each_day_as_the_daily_budget_does(settings, admin_client):
    # A Los Angeles retailer: 2 SMS a day, its budget's day the Pacific one. Monday's second
    # SMS went at 17:30 there, Tuesday 01:30 UTC: cut at UTC midnight, the page showed
    # Monday 1 and Tuesday 3, a day over the budget the engine kept.
    settings.SMS_BUDGET_TIMEZONE = "America/Los_Angeles"
    campaign = CampaignFactory(daily_budget=2)
    monday = la_today() - timedelta(days=3)
    tuesday = monday + timedelta(days=1)
    for when in (la(monday, 10), la(monday, 17, 30), la(tuesday, 9), la(tuesday, 10)):
        DeliveryFactory(campaign=campaign, status=DeliveryStatus.SENT, created_at=when)
    # A purchase at 20:00 on Monday in Los Angeles is Monday's.
    sent = DeliveryFactory(campaign=campaign, status=DeliveryStatus.SENT, created_at=la(monday, 8))
    redeem(sent, la(monday, 20), amount=Decimal("25.00"))
    # Monday recorded by beat, Tuesday not yet: both read the same.
    record_campaign_days(days=[monday], now=timezone.now())

    page = admin_client.get(f"/admin/promotions/campaign/{campaign.pk}/results/").content.decode()

    days = per_day_rows(page)
    assert days[f"{monday:%Y-%m-%d}"] == ["3", "3", "0", "0", "0", "0", "1", "25.00"]
    assert days[f"{tuesday:%Y-%m-%d}"] == ["2", "2", "0", "0", "0", "0", "0", "0.00"]
    assert len(days) == 2
    assert "America/Los_Angeles" in page


def test_a_day_is_recorded_as_the_daily_budget_counts_it(settings):
    settings.SMS_BUDGET_TIMEZONE = "America/Los_Angeles"
    campaign = CampaignFactory()
    evening = decide(campaign, TUESDAY, DeliveryStatus.DELIVERED, hour=3)  # Monday, 19:00 PT
    decide(campaign, TUESDAY, DeliveryStatus.SENT, hour=9)  # Tuesday, 01:00 PT
    redeem(evening, at(TUESDAY, 5), amount=Decimal("12.00"))  # Monday, 21:00 PT

    record_campaign_days(days=[MONDAY, TUESDAY], now=timezone.now())

    assert figures(campaign, MONDAY)["sent"] == 1
    assert figures(campaign, MONDAY)["redeemed"] == 1
    assert figures(campaign, TUESDAY)["sent"] == 1
    assert figures(campaign, TUESDAY)["redeemed"] == 0


def test_the_days_beat_recounts_are_those_before_the_budgets_today(settings):
    settings.SMS_BUDGET_TIMEZONE = "America/Los_Angeles"
    # 03:00 UTC on Wednesday is still Tuesday evening in Los Angeles: Tuesday is not over.
    wednesday_utc = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)

    assert budget_days_before(wednesday_utc, 2) == [date(2026, 11, 22), MONDAY]


def test_a_day_recorded_in_another_zone_is_counted_again_not_shown_as_it_was(settings):
    # Rows beat recorded as UTC days (before an upgrade, or before SMS_BUDGET_TIMEZONE was
    # changed) would be shown under the budget's days with their evenings in the wrong one.
    campaign = CampaignFactory()
    monday = la_today() - timedelta(days=3)
    decide(campaign, monday + timedelta(days=1), DeliveryStatus.SENT, hour=2)  # Monday, PT
    record_campaign_days(days=[monday, monday + timedelta(days=1)], now=timezone.now())
    settings.SMS_BUDGET_TIMEZONE = "America/Los_Angeles"

    daily = get_campaign_daily(campaign=campaign, days=7, today=la_today())

    assert [d["sent"] for d in daily if d["day"] == monday] == [1]
    assert [d["sent"] for d in daily if d["day"] == monday + timedelta(days=1)] == [0]


def test_a_late_redemption_reaches_the_day_the_budget_counted_it_on(settings, api):
    settings.SMS_BUDGET_TIMEZONE = "America/Los_Angeles"
    campaign = CampaignFactory()
    saturday = la_today() - timedelta(days=4)
    sent = DeliveryFactory(
        campaign=campaign,
        status=DeliveryStatus.DELIVERED,
        created_at=la(saturday, 10),
        expires_at=timezone.now() + timedelta(days=2),
    )
    record_campaign_days(days=[saturday], now=timezone.now())
    body = {
        "code": sent.code,
        "store_code": sent.store.code,
        "amount": "30.00",
        "redeemed_at": la(saturday, 19).isoformat(),  # Sunday in UTC
    }

    assert api.post("/api/v1/redemptions", body).status_code == 201

    assert figures(campaign, saturday)["redeemed"] == 1
    daily = get_campaign_daily(campaign=campaign, days=7, today=la_today())
    assert [d["redeemed"] for d in daily if d["day"] == saturday] == [1]


def test_a_day_on_the_results_page_opens_that_days_deliveries(settings, admin_client):
    # The deliveries list's own date drill-down is in UTC: its Monday would hold Sunday
    # evening's SMS in Los Angeles and lose Monday evening's. The day's link lists what the
    # results page counted on it.
    settings.SMS_BUDGET_TIMEZONE = "America/Los_Angeles"
    campaign = CampaignFactory()
    monday = la_today() - timedelta(days=3)
    sunday, tuesday = monday - timedelta(days=1), monday + timedelta(days=1)
    sent = {
        when: DeliveryFactory(campaign=campaign, created_at=when).code
        for when in (la(sunday, 20), la(monday, 10), la(monday, 17, 30), la(tuesday, 9))
    }
    other_campaign = DeliveryFactory(created_at=la(monday, 12)).code

    page = admin_client.get(f"/admin/promotions/campaign/{campaign.pk}/results/").content.decode()
    [link] = re.findall(rf'<td><a href="([^"]+)">{monday:%Y-%m-%d}</a></td>', page)
    listed = admin_client.get(html.unescape(link)).content.decode()

    assert sent[la(monday, 10)] in listed and sent[la(monday, 17, 30)] in listed
    assert sent[la(sunday, 20)] not in listed and sent[la(tuesday, 9)] not in listed
    assert other_campaign not in listed
