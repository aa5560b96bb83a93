"""Reads that are more than a lookup: campaign results and the deliveries list."""

import operator
from collections import defaultdict
from collections.abc import Collection
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import reduce
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate

from promotions import rules
from promotions.models import (
    FIRST_IN_EACH_GROUP,
    REDEEMABLE,
    TEXTED_OR_HELD_OUT,
    Campaign,
    CampaignDay,
    Delivery,
    DeliveryReason,
    DeliveryStatus,
    Redemption,
)
from promotions.times import local_day_start

CENT = Decimal("0.01")
# The two groups as the statistics count them: the customers whose SMS went, and those held
# out.
SMS_WENT = Q(status__in=REDEEMABLE)
HELD_OUT = Q(status=DeliveryStatus.HOLDOUT)


def get_budget_zone() -> ZoneInfo:
    """The retailer's day, SMS_BUDGET_TIMEZONE: the day campaigns' daily budgets count, and so
    the day their results are counted by. One zone for every store: a campaign's day is one
    span of time wherever its stores are, so its figures for a day add up across stores and
    read against the daily budget that capped them."""
    return ZoneInfo(settings.SMS_BUDGET_TIMEZONE)


def list_deliveries() -> QuerySet[Delivery]:
    return Delivery.objects.select_related("customer", "store").order_by("-created_at", "-id")


def _rate(customers: int, redeemed: int) -> float | None:
    return redeemed / customers if customers else None


def get_campaign_stats(*, campaign: Campaign) -> dict[str, Any]:
    """The campaign's funnel and its lift: how much more often treated customers redeemed
    than the holdout, who were chosen the same way and sent nothing. Every figure is counted
    by one pass over the campaign's deliveries (a national retailer's campaign has millions:
    a query a figure read them six times); the customers decided into both groups, which
    that pass finds none of in nearly every campaign, by a second only when it finds some."""
    deliveries = Delivery.objects.filter(campaign=campaign)
    redeemed = Q(redemption__isnull=False)
    # A decision to text, as FIRST_IN_EACH_GROUP counts one.
    texted = TEXTED_OR_HELD_OUT & ~HELD_OUT
    no_one = Q(customer__isnull=True, erased_as__isnull=True)
    counts = deliveries.aggregate(
        decisions=Count("id"),
        **{
            f"status_{status}": Count("id", filter=Q(status=status))
            for status in DeliveryStatus.values
        },
        **{
            f"reason_{reason}": Count("id", filter=Q(reason=reason))
            for reason in DeliveryReason.values
        },
        redeemed=Count("redemption", filter=SMS_WENT),
        revenue_sms=Sum("redemption__amount", filter=SMS_WENT),
        revenue_holdout=Sum("redemption__amount", filter=HELD_OUT),
        **_customers_counted(
            treated=SMS_WENT,
            treated_redeemed=SMS_WENT & redeemed,
            holdout=HELD_OUT,
            holdout_redeemed=HELD_OUT & redeemed,
            # Whether anyone was decided into both groups (_may_be_in_both_groups).
            decided=TEXTED_OR_HELD_OUT,
            texted=texted,
        ),
        no_one_held_out=Count("id", filter=HELD_OUT & no_one),
        no_one_texted=Count("id", filter=texted & no_one),
    )
    by_status = {status: counts[f"status_{status}"] for status in DeliveryStatus.values}
    groups = {
        name: counts[f"{name}_customer"] + counts[f"{name}_erased_as"]
        for name in ("treated", "treated_redeemed", "holdout", "holdout_redeemed")
    }
    revenue = {"sms": counts["revenue_sms"], "holdout": counts["revenue_holdout"]}
    # The treated group's, before the customers it counted twice are taken out below.
    revenue["treated"] = revenue["sms"]
    twice = _counted_in_both_groups(deliveries) if _may_be_in_both_groups(counts) else []
    for customer in twice:
        # Counted in the group their first decision put them in only (rules.in_holdout_group).
        other = "treated" if customer.held_out else "holdout"
        groups[other] -= customer.customers
        groups[f"{other}_redeemed"] -= customer.redeemed
        revenue[other] = (revenue[other] or 0) - customer.revenue
    treated_rate = _rate(groups["treated"], groups["treated_redeemed"])
    holdout_rate = _rate(groups["holdout"], groups["holdout_redeemed"])
    lift = None
    if treated_rate is not None and holdout_rate:
        lift = (treated_rate - holdout_rate) / holdout_rate
    decisions = counts["decisions"]
    return {
        "campaign": campaign.id,
        # A decision is one presence event the campaign matched (one a customer, campaign and
        # event), and it outlives the event when its customer is erased.
        "presence_events_matched": decisions,
        "decisions": {
            "total": decisions,
            "by_status": by_status,
            "by_reason": {reason: counts[f"reason_{reason}"] for reason in DeliveryReason.values},
        },
        "sent": sum(by_status[status] for status in REDEEMABLE),
        "delivered": by_status[DeliveryStatus.DELIVERED],
        "failed": by_status[DeliveryStatus.FAILED],
        "redeemed": counts["redeemed"],
        "treated": {
            "customers": groups["treated"],
            "redeemed": groups["treated_redeemed"],
            "rate": treated_rate,
            "revenue": _money(revenue["treated"]),
        },
        "holdout": {
            "customers": groups["holdout"],
            "redeemed": groups["holdout_redeemed"],
            "rate": holdout_rate,
            "revenue": _money(revenue["holdout"]),
        },
        "lift": lift,
        # What the campaign's SMS brought in, as "redeemed" counts: the holdout's purchases
        # happened without one.
        "revenue": _money(revenue["sms"]),
    }


def _may_be_in_both_groups(counts: dict[str, int]) -> bool:
    """Whether some customer may have both a decision holding them out and one to text them
    (what _counted_in_both_groups reads). The customers held out and those texted add up to
    more than those decided either way only if someone is in both; that is counted by
    customer and by erased id, and deliveries naming neither are one "customer" to
    _counted_in_both_groups, told by their own counts. False only when it would find none."""
    return any(
        counts[f"holdout_{key}"] + counts[f"texted_{key}"] > counts[f"decided_{key}"]
        for key in ("customer", "erased_as")
    ) or (counts["no_one_held_out"] > 0 and counts["no_one_texted"] > 0)


def _money(amount: Decimal | None) -> str:
    return str(Decimal(amount or 0).quantize(CENT))


class _CountedTwice(NamedTuple):
    """A customer decided into both groups, and what the group they are not in (the other
    than their first decision's) counted of them."""

    held_out: bool
    customers: int
    redeemed: int
    revenue: Decimal


def _counted_in_both_groups(deliveries: QuerySet[Delivery]) -> list[_CountedTwice]:
    """The customers a campaign both texted and held out, which a holdout share edited
    before groups were kept could do (rules.in_holdout_group): few, read in one query."""
    rows = (
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
    counted = []
    for row in rows:
        if rules.first_held_out(row["first_holdout_at"], row["first_texted_at"]):
            counted.append(
                _CountedTwice(
                    True,
                    min(row["sent"], 1),
                    min(row["sent_redeemed"], 1),
                    row["sent_revenue"] or Decimal(0),
                )
            )
        else:
            counted.append(
                _CountedTwice(
                    False, 1, min(row["held_redeemed"], 1), row["held_revenue"] or Decimal(0)
                )
            )
    return counted


def _customers_counted(**groups: Q) -> dict[str, Count]:
    """How many customers each group of deliveries reaches, as aggregates for one pass
    (`{group}_customer` + `{group}_erased_as`): an erased customer counted once by the random
    id their deliveries were given in place of them."""
    # Without their nulls, which the counts skip but PostgreSQL sorts all the same: nearly
    # every delivery has no erased id.
    return {
        f"{name}_{key}": Count(
            key, filter=condition & Q(**{f"{key}__isnull": False}), distinct=True
        )
        for name, condition in groups.items()
        for key in ("customer", "erased_as")
    }


# A day with no decisions and no redemptions.
EMPTY_DAY: dict[str, Any] = {
    "decisions": 0,
    "sent": 0,
    "delivered": 0,
    "failed": 0,
    "holdout": 0,
    "suppressed": 0,
    "redeemed": 0,
    "revenue": Decimal("0.00"),
}


def get_day_figures(
    *, days: Collection[date], campaign: Campaign | None = None
) -> dict[tuple[int, date], dict[str, Any]]:
    """Figures per campaign and day (the budget's, get_budget_zone), counted from deliveries
    and redemptions: the decisions made that day (sent, delivered, ... of them) and the codes
    redeemed that day. Only (campaign, day) pairs with something to count are returned."""
    if not days:
        return {}
    zone = get_budget_zone()
    # The days' own spans, not all the time from the first to the last: the results page
    # asks for today and whichever days beat has no row for (those before the campaign
    # began, or without a decision), and counting every day between read all of a month's
    # decisions on each view.
    spans = _spans_of(days, zone)
    deliveries = Delivery.objects.filter(_within("created_at", spans))
    # Redemptions of codes that went out by SMS, as the campaign's statistics count them.
    redemptions = Redemption.objects.filter(
        _within("redeemed_at", spans), delivery__status__in=REDEEMABLE
    )
    if campaign is not None:
        deliveries = deliveries.filter(campaign=campaign)
        redemptions = redemptions.filter(delivery__campaign=campaign)
    figures: dict[tuple[int, date], dict[str, Any]] = defaultdict(lambda: dict(EMPTY_DAY))
    decided = (
        deliveries.annotate(day=TruncDate("created_at", tzinfo=zone))
        .values("campaign_id", "day")
        .annotate(
            decisions=Count("id"),
            sent=Count("id", filter=Q(status__in=REDEEMABLE)),
            delivered=Count("id", filter=Q(status=DeliveryStatus.DELIVERED)),
            # As in the campaign's statistics: undelivered counts as sent, not as failed.
            failed=Count("id", filter=Q(status=DeliveryStatus.FAILED)),
            holdout=Count("id", filter=Q(status=DeliveryStatus.HOLDOUT)),
            suppressed=Count("id", filter=Q(status=DeliveryStatus.SUPPRESSED)),
        )
        .order_by()
    )
    for row in decided:
        key = (row.pop("campaign_id"), row.pop("day"))
        if key[1] in days:
            figures[key].update(row)
    redeemed = (
        redemptions.annotate(day=TruncDate("redeemed_at", tzinfo=zone))
        .values("delivery__campaign_id", "day")
        .annotate(redeemed=Count("id"), revenue=Sum("amount"))
        .order_by()
    )
    for row in redeemed:
        key = (row["delivery__campaign_id"], row["day"])
        if key[1] in days:
            revenue = Decimal(row["revenue"] or 0).quantize(CENT)
            figures[key].update(redeemed=row["redeemed"], revenue=revenue)
    return dict(figures)


def _spans_of(days: Collection[date], zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """The days as spans of time in `zone`, from each run of consecutive days' first moment
    to the moment after its last, oldest first."""
    spans: list[tuple[datetime, datetime]] = []
    for day in sorted(days):
        start, end = local_day_start(day, zone), local_day_start(day + timedelta(days=1), zone)
        if spans and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


def _within(field: str, spans: list[tuple[datetime, datetime]]) -> Q:
    """Rows whose `field` falls in one of the spans."""
    return reduce(
        operator.or_, (Q(**{f"{field}__gte": start, f"{field}__lt": end}) for start, end in spans)
    )


def get_campaign_daily(*, campaign: Campaign, days: int, today: date) -> list[dict[str, Any]]:
    """The campaign's figures for each of the last `days` days (the budget's, as `today`),
    oldest first: days gone by as Celery beat recorded them (CampaignDay), today and any day
    not recorded yet counted from the deliveries. A day recorded in another zone (before
    SMS_BUDGET_TIMEZONE was changed) is counted again: its evening would be the next day's."""
    span = [today - timedelta(days=days - 1 - n) for n in range(days)]
    recorded = {
        row["day"]: row
        for row in CampaignDay.objects.filter(
            campaign=campaign,
            day__gte=span[0],
            day__lt=today,
            zone=settings.SMS_BUDGET_TIMEZONE,
        ).values("day", *EMPTY_DAY)
    }
    counted = get_day_figures(days={day for day in span if day not in recorded}, campaign=campaign)
    return [
        {**EMPTY_DAY, **(recorded.get(day) or counted.get((campaign.pk, day), {})), "day": day}
        for day in span
    ]


def get_campaign_by_store(*, campaign: Campaign) -> list[dict[str, Any]]:
    """Per store: decisions, SMS sent and the redemptions they brought (a holdout customer's
    purchase is the control group's, as in the totals)."""
    return list(
        Delivery.objects.filter(campaign=campaign)
        .values("store__code", "store__name")
        .annotate(
            decisions=Count("id"),
            sent=Count("id", filter=Q(status__in=REDEEMABLE)),
            redeemed=Count("redemption", filter=Q(status__in=REDEEMABLE)),
        )
        .order_by("-sent", "store__code")
    )
