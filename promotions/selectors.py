"""Reads that are more than a lookup: campaign results and the deliveries list."""

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate

from promotions.feedback import REDEEMABLE
from promotions.models import Campaign, Delivery, DeliveryReason, DeliveryStatus

CENT = Decimal("0.01")


def list_deliveries() -> QuerySet[Delivery]:
    return Delivery.objects.select_related("customer", "store").order_by("-created_at", "-id")


def _rate(customers: int, redeemed: int) -> float | None:
    return redeemed / customers if customers else None


def get_campaign_stats(*, campaign: Campaign) -> dict[str, Any]:
    """The campaign's funnel and its lift: how much more often treated customers redeemed
    than the holdout, who were chosen the same way and sent nothing."""
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
    groups = deliveries.aggregate(
        treated=Count("customer", filter=Q(status__in=REDEEMABLE), distinct=True),
        treated_redeemed=Count(
            "customer",
            filter=Q(status__in=REDEEMABLE, redemption__isnull=False),
            distinct=True,
        ),
        holdout=Count("customer", filter=Q(status=DeliveryStatus.HOLDOUT), distinct=True),
        holdout_redeemed=Count(
            "customer",
            filter=Q(status=DeliveryStatus.HOLDOUT, redemption__isnull=False),
            distinct=True,
        ),
    )
    treated_rate = _rate(groups["treated"], groups["treated_redeemed"])
    holdout_rate = _rate(groups["holdout"], groups["holdout_redeemed"])
    lift = None
    if treated_rate is not None and holdout_rate:
        lift = (treated_rate - holdout_rate) / holdout_rate
    revenue = redemptions.aggregate(total=Sum("redemption__amount"))["total"]
    matched = deliveries.exclude(presence_event=None).values("presence_event").distinct().count()
    return {
        "campaign": campaign.id,
        "presence_events_matched": matched,
        "decisions": {
            "total": sum(by_status.values()),
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
        },
        "holdout": {
            "customers": groups["holdout"],
            "redeemed": groups["holdout_redeemed"],
            "rate": holdout_rate,
        },
        "lift": lift,
        "revenue": str(Decimal(revenue or 0).quantize(CENT)),
    }


def get_campaign_daily(*, campaign: Campaign, days: int, today: date) -> list[dict[str, Any]]:
    """SMS sent and redemptions per day over the last `days` days, oldest first (UTC days)."""
    since = today - timedelta(days=days - 1)
    sent = dict(
        Delivery.objects.filter(
            campaign=campaign, status__in=REDEEMABLE, created_at__date__gte=since
        )
        .annotate(day=TruncDate("created_at"))
        .values_list("day")
        .annotate(n=Count("id"))
        .values_list("day", "n")
    )
    redeemed = dict(
        Delivery.objects.filter(campaign=campaign, redemption__redeemed_at__date__gte=since)
        .annotate(day=TruncDate("redemption__redeemed_at"))
        .values_list("day")
        .annotate(n=Count("id"))
        .values_list("day", "n")
    )
    return [
        {"day": day, "sent": sent.get(day, 0), "redeemed": redeemed.get(day, 0)}
        for day in (since + timedelta(days=n) for n in range(days))
    ]


def get_campaign_by_store(*, campaign: Campaign) -> list[dict[str, Any]]:
    """Per store: decisions, SMS sent and redemptions."""
    return list(
        Delivery.objects.filter(campaign=campaign)
        .values("store__code", "store__name")
        .annotate(
            decisions=Count("id"),
            sent=Count("id", filter=Q(status__in=REDEEMABLE)),
            redeemed=Count("redemption"),
        )
        .order_by("-sent", "store__code")
    )
