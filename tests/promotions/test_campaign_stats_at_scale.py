"""A campaign's results at a national retailer's scale: millions of decisions, read on every
view of its stats and its results page. The deliveries are read once for the campaign's
figures (each figure its own query read them six times, seconds a view), and the figures are
those that a query a figure gives, on varied data: erased customers, deliveries naming no one,
customers decided into both groups, redemptions with and without an amount."""

import json
import random
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.db.models import Count, Q, Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from promotions import rules, selectors, services
from promotions.models import (
    FIRST_IN_EACH_GROUP,
    REDEEMABLE,
    Delivery,
    DeliveryReason,
    DeliveryStatus,
    Redemption,
)
from promotions.selectors import get_budget_zone, get_campaign_stats
from promotions.times import local_day, local_day_start
from tests.factories import CampaignFactory, CustomerFactory, DeliveryFactory, StoreFactory
from tests.promotions.test_deliveries_list_plans import delivery_rows_fetched

pytestmark = pytest.mark.django_db

SMS_WENT = Q(status__in=REDEEMABLE)
HELD_OUT = Q(status=DeliveryStatus.HOLDOUT)


def counted_a_query_a_figure(campaign: Any) -> dict[str, Any]:
    """The campaign's statistics as they were counted before they took one pass: each figure
    by its own query, the customers decided into both groups always read. The reference the
    one pass is held to."""
    deliveries = Delivery.objects.filter(campaign=campaign)
    by_status = dict(
        deliveries.values_list("status").annotate(n=Count("id")).values_list("status", "n")
    )
    by_reason = dict(
        deliveries.exclude(reason="")
        .values_list("reason")
        .annotate(n=Count("id"))
        .values_list("reason", "n")
    )
    redemptions = deliveries.filter(redemption__isnull=False)
    conditions = {
        "treated": SMS_WENT,
        "treated_redeemed": SMS_WENT & Q(redemption__isnull=False),
        "holdout": HELD_OUT,
        "holdout_redeemed": HELD_OUT & Q(redemption__isnull=False),
    }
    groups = {
        name: sum(
            deliveries.aggregate(n=Count(key, filter=condition, distinct=True))["n"]
            for key in ("customer", "erased_as")
        )
        for name, condition in conditions.items()
    }
    revenue = redemptions.aggregate(
        sms=Sum("redemption__amount", filter=SMS_WENT),
        holdout=Sum("redemption__amount", filter=HELD_OUT),
    )
    revenue["treated"] = revenue["sms"]
    both = (
        deliveries.values("customer", "erased_as")
        .annotate(
            **FIRST_IN_EACH_GROUP,
            sent=Count("id", filter=SMS_WENT),
            sent_redeemed=Count("id", filter=SMS_WENT & Q(redemption__isnull=False)),
            sent_revenue=Sum("redemption__amount", filter=SMS_WENT),
            held_redeemed=Count("id", filter=HELD_OUT & Q(redemption__isnull=False)),
            held_revenue=Sum("redemption__amount", filter=HELD_OUT),
        )
        .filter(first_holdout_at__isnull=False, first_texted_at__isnull=False)
        .order_by()
    )
    for row in both:
        if rules.first_held_out(row["first_holdout_at"], row["first_texted_at"]):
            other, customers = "treated", min(row["sent"], 1)
            redeemed, spent = min(row["sent_redeemed"], 1), row["sent_revenue"]
        else:
            other, customers = "holdout", 1
            redeemed, spent = min(row["held_redeemed"], 1), row["held_revenue"]
        groups[other] -= customers
        groups[f"{other}_redeemed"] -= redeemed
        revenue[other] = (revenue[other] or 0) - (spent or Decimal(0))

    def rate(customers: int, redeemed: int) -> float | None:
        return redeemed / customers if customers else None

    def money(amount: Decimal | None) -> str:
        return str(Decimal(amount or 0).quantize(Decimal("0.01")))

    treated_rate = rate(groups["treated"], groups["treated_redeemed"])
    holdout_rate = rate(groups["holdout"], groups["holdout_redeemed"])
    decisions = sum(by_status.values())
    return {
        "campaign": campaign.id,
        "presence_events_matched": decisions,
        "decisions": {
            "total": decisions,
            "by_status": {status: by_status.get(status, 0) for status in DeliveryStatus.values},
            "by_reason": {reason: by_reason.get(reason, 0) for reason in DeliveryReason.values},
        },
        "sent": sum(by_status.get(status, 0) for status in REDEEMABLE),
        "delivered": by_status.get(DeliveryStatus.DELIVERED, 0),
        "failed": by_status.get(DeliveryStatus.FAILED, 0),
        "redeemed": redemptions.filter(status__in=REDEEMABLE).count(),
        "treated": {
            "customers": groups["treated"],
            "redeemed": groups["treated_redeemed"],
            "rate": treated_rate,
            "revenue": money(revenue["treated"]),
        },
        "holdout": {
            "customers": groups["holdout"],
            "redeemed": groups["holdout_redeemed"],
            "rate": holdout_rate,
            "revenue": money(revenue["holdout"]),
        },
        "lift": (treated_rate - holdout_rate) / holdout_rate
        if treated_rate is not None and holdout_rate
        else None,
        "revenue": money(revenue["sms"]),
    }


def decided_at_random(seed: int) -> list[Any]:
    """Two campaigns' decisions drawn at random: a few customers decided many times each
    (texted, held out, both, in either order), erased customers (a shared random id),
    deliveries naming no one, every status and reason, and redemptions with amounts, with
    none, and of SMS that did not go."""
    draw = random.Random(seed)
    store = StoreFactory()
    campaigns = [CampaignFactory(), CampaignFactory()]
    customers = [CustomerFactory() for _ in range(draw.randint(1, 25))]
    erased = [uuid.uuid4() for _ in range(draw.randint(0, 3))]
    start = timezone.now() - timedelta(days=20)
    deliveries = []
    for _ in range(draw.randint(0, 70)):
        who = draw.random()
        customer, erased_as = draw.choice(customers), None
        if erased and who < 0.25:
            customer, erased_as = None, draw.choice(erased)
        elif who < 0.3:
            customer = None  # deleted without an erasure: names no one
        elif erased and who < 0.33:
            erased_as = draw.choice(erased)  # both: no path writes it, counted all the same
        deliveries.append(
            Delivery(
                campaign=draw.choice(campaigns),
                customer=customer,
                erased_as=erased_as,
                store=store,
                status=draw.choice(DeliveryStatus.values),
                reason=draw.choice(["", "", *DeliveryReason.values]),
                # Ties too: a customer first texted and held out in the same instant.
                created_at=start + timedelta(hours=draw.randint(0, 40)),
            )
        )
    Delivery.objects.bulk_create(deliveries)
    Redemption.objects.bulk_create(
        Redemption(
            delivery=delivery,
            store=store,
            amount=draw.choice([None, Decimal("0.00"), Decimal(draw.randint(1, 99_999)) / 100]),
            redeemed_at=delivery.created_at + timedelta(hours=1),
        )
        for delivery in Delivery.objects.filter(campaign__in=campaigns)
        if draw.random() < 0.4
    )
    return campaigns


@pytest.mark.parametrize("seed", range(40))
def test_the_one_pass_counts_what_a_query_a_figure_counted(seed):
    for campaign in decided_at_random(seed):
        assert get_campaign_stats(campaign=campaign) == counted_a_query_a_figure(campaign)


def test_a_customer_in_both_groups_whom_erasure_or_no_name_hides_is_still_counted_once():
    """Each way two decisions of one customer can be told: by the customer, by the erased
    id, and deliveries naming no one (one "customer" to the counts of both groups)."""
    store = StoreFactory()
    first = timezone.now() - timedelta(days=2)
    for who in ({"customer": CustomerFactory()}, {"erased_as": uuid.uuid4()}, {"customer": None}):
        campaign = CampaignFactory()
        held = Delivery.objects.create(
            campaign=campaign, store=store, status="holdout", created_at=first, **who
        )
        Delivery.objects.create(
            campaign=campaign,
            store=store,
            status="sent",
            created_at=first + timedelta(hours=1),
            **who,
        )
        Delivery.objects.create(campaign=campaign, customer=CustomerFactory(), status="sent")
        Redemption.objects.create(delivery=held, amount="4.00", redeemed_at=timezone.now())

        stats = get_campaign_stats(campaign=campaign)

        assert stats == counted_a_query_a_figure(campaign)
        if "customer" in who and who["customer"] is None:
            continue  # named by no one: in no group's count of customers
        assert stats["holdout"] == {
            "customers": 1,
            "redeemed": 1,
            "rate": 1.0,
            "revenue": "4.00",
        }
        assert stats["treated"]["customers"] == 1


def deliveries_reads(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if "promotions_delivery" in q["sql"]]


def test_the_stats_read_the_campaign_s_deliveries_once(api):
    campaign = CampaignFactory()
    for status in ("sent", "delivered", "holdout", "suppressed"):
        delivery = DeliveryFactory(campaign=campaign, status=status)
    Redemption.objects.create(delivery=delivery, amount="3.00", redeemed_at=timezone.now())

    with CaptureQueriesContext(connection) as queries:
        stats = api.get(f"/api/v1/campaigns/{campaign.id}/stats")

    assert stats.status_code == 200
    assert stats.json() == counted_a_query_a_figure(campaign)
    assert len(deliveries_reads(queries)) == 1


def test_the_results_page_reads_the_deliveries_once_for_the_totals_and_today(admin_client):
    """Days gone by are read from what beat recorded (CampaignDay); the totals, the stores
    and today from the deliveries: one read each, and one of today's redemptions."""
    campaign = CampaignFactory()
    today = local_day(timezone.now(), get_budget_zone())
    for days_ago in range(5):
        DeliveryFactory(campaign=campaign, created_at=timezone.now() - timedelta(days=days_ago))
    services.record_campaign_days(
        days=[today - timedelta(days=n) for n in range(1, 30)], now=timezone.now()
    )

    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(f"/admin/promotions/campaign/{campaign.pk}/results/")

    assert page.status_code == 200
    assert len(deliveries_reads(queries)) == 4


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's query plans")
def test_the_results_page_counts_the_days_beat_did_not_record_and_not_those_between(
    admin_client,
):
    """A campaign ten days old: the weeks before it have nothing beat could record, its days
    gone by are recorded, and the page counts today from the deliveries. Counting from the
    first day not recorded to today read every decision the campaign made, on every view."""
    campaign, store = CampaignFactory(), StoreFactory()
    zone = get_budget_zone()
    now = timezone.now()
    today = local_day(now, zone)
    today_start = local_day_start(today, zone)
    decided = [
        local_day_start(today - timedelta(days=days), zone) + timedelta(hours=1, seconds=n)
        for days in range(1, 10)
        for n in range(200)
    ]
    decided_today = [today_start + (now - today_start) * n / 50 for n in range(50)]
    Delivery.objects.bulk_create(
        Delivery(campaign=campaign, store=store, status="sent", created_at=at)
        for at in decided + decided_today
    )
    services.record_campaign_days(days=[today - timedelta(days=n) for n in range(1, 30)], now=now)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE promotions_delivery")

    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(f"/admin/promotions/campaign/{campaign.pk}/results/")

    assert page.status_code == 200
    fetched = 0
    for sql in deliveries_reads(queries):
        if '"promotions_delivery"."created_at" AT TIME ZONE' in sql:  # decisions per day
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
                [[[explained]]] = cursor.fetchall()
            if isinstance(explained, str):
                explained = json.loads(explained)
            fetched += delivery_rows_fetched(explained["Plan"])
    assert fetched <= len(decided_today), fetched


def rows_fetched(plan: dict[str, Any], relation: str) -> int:
    """Rows the plan fetched from `relation`, those its filters then dropped included."""
    fetched = 0
    if plan.get("Relation Name") == relation:
        fetched += (
            plan["Actual Rows"]
            + plan.get("Rows Removed by Filter", 0)
            + plan.get("Rows Removed by Index Recheck", 0)
        ) * plan["Actual Loops"]
    return fetched + sum(rows_fetched(child, relation) for child in plan.get("Plans", ()))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's query plans")
def test_the_results_page_reads_today_s_redemptions_not_every_campaign_s(admin_client):
    """Today's redemptions are counted on each view of a campaign's results page (and every
    hour by beat, for the days it records): a year of every campaign's redemptions, millions
    at a national retailer, was read each time to find them."""
    campaign, store = CampaignFactory(), StoreFactory()
    zone = get_budget_zone()
    now = timezone.now()
    today_start = local_day_start(local_day(now, zone), zone)
    # The campaign's redemptions of the months before, other campaigns', and today's.
    earlier = [today_start - timedelta(days=1 + n % 300, seconds=n) for n in range(3000)]
    today = [today_start + (now - today_start) * n / 10 for n in range(10)]
    others = CampaignFactory()
    deliveries = Delivery.objects.bulk_create(
        Delivery(
            campaign=others if n % 2 else campaign,
            store=store,
            status="sent",
            created_at=min(at, today_start) - timedelta(days=1),
        )
        for n, at in enumerate(earlier + today)
    )
    Redemption.objects.bulk_create(
        Redemption(delivery=delivery, store=store, amount="5.00", redeemed_at=at)
        for delivery, at in zip(deliveries, earlier + today, strict=True)
    )
    services.record_campaign_days(
        days=[local_day(now, zone) - timedelta(days=n) for n in range(1, 30)], now=now
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE promotions_redemption")
        cursor.execute("ANALYZE promotions_delivery")

    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(f"/admin/promotions/campaign/{campaign.pk}/results/")

    assert page.status_code == 200
    [sql] = [
        q["sql"]
        for q in queries.captured_queries
        if '"promotions_redemption"."redeemed_at" AT TIME ZONE' in q["sql"]
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
        [[[explained]]] = cursor.fetchall()
    if isinstance(explained, str):
        explained = json.loads(explained)
    fetched = sum(
        rows_fetched(explained["Plan"], relation)
        for relation in ("promotions_redemption", "promotions_delivery")
    )
    # Today's redemptions and their deliveries.
    assert fetched <= 2 * len(today), fetched


@pytest.mark.parametrize("seed", range(5))
def test_days_apart_are_counted_as_each_day_alone(seed):
    """The days a page asks for, scattered (days between recorded by beat), count as each
    counted on its own: every decision and redemption on its day, none of the days between."""
    draw = random.Random(seed)
    store, campaigns = StoreFactory(), [CampaignFactory(), CampaignFactory()]
    zone = get_budget_zone()
    today = local_day(timezone.now(), zone)
    first = local_day_start(today - timedelta(days=12), zone)
    deliveries = Delivery.objects.bulk_create(
        Delivery(
            campaign=draw.choice(campaigns),
            store=store,
            status=draw.choice(DeliveryStatus.values),
            # Midnights too: the first moment of a day is that day's.
            created_at=first
            + timedelta(hours=draw.randint(0, 12 * 24 - 1), minutes=draw.choice([0, 0, 30])),
        )
        for _ in range(200)
    )
    Redemption.objects.bulk_create(
        Redemption(
            delivery=delivery,
            amount=Decimal(draw.randint(0, 9_999)) / 100,
            redeemed_at=delivery.created_at + timedelta(hours=draw.randint(0, 30)),
        )
        for delivery in deliveries
        if draw.random() < 0.5
    )
    days = {today - timedelta(days=n) for n in draw.sample(range(14), 5)}

    for campaign in (None, *campaigns):
        each_alone = {}
        for day in days:
            each_alone.update(selectors.get_day_figures(days={day}, campaign=campaign))
        assert selectors.get_day_figures(days=days, campaign=campaign) == each_alone
