"""The deliveries list at a retailer's scale: a page of it reads about a page of deliveries,
whichever filter picks them, on PostgreSQL's own plan for the query the view runs."""

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from promotions.models import Delivery, DeliveryStatus
from tests.factories import CampaignFactory, StoreFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's query plans"),
]

PAGE = 100
# Enough deliveries that PostgreSQL plans as on a large table (indexes over sorts).
EACH = 5_000


def deliveries(*, campaign, status: str, days_ago: int) -> None:
    """EACH deliveries of `campaign`, one a minute up to `days_ago` days ago, customers
    erased: the list names none."""
    store = StoreFactory()
    end = timezone.now() - timedelta(days=days_ago)
    Delivery.objects.bulk_create(
        Delivery(
            campaign=campaign, store=store, status=status, created_at=end - timedelta(minutes=n)
        )
        for n in range(EACH)
    )


@pytest.fixture
def old_and_new():
    """A campaign whose decisions (all failed: a carrier outage) are a month old, and one
    deciding now, as a list of millions holds them: the newest rows are someone else's."""
    old, new = CampaignFactory(), CampaignFactory()
    deliveries(campaign=old, status=DeliveryStatus.FAILED, days_ago=30)
    deliveries(campaign=new, status=DeliveryStatus.SENT, days_ago=0)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE promotions_delivery")
    return old, new


def delivery_rows_read(plan: dict[str, Any]) -> int:
    """Rows the plan read from the deliveries table, those its filters then dropped
    included."""
    read = 0
    if plan.get("Relation Name") == "promotions_delivery":
        read += (
            plan["Actual Rows"]
            + plan.get("Rows Removed by Filter", 0)
            + plan.get("Rows Removed by Index Recheck", 0)
        ) * plan["Actual Loops"]
    return read + sum(delivery_rows_read(child) for child in plan.get("Plans", ()))


def page_and_rows_read(api, query: str) -> tuple[dict[str, Any], int]:
    with CaptureQueriesContext(connection) as queries:
        response = api.get(f"/api/v1/deliveries?{query}")
    assert response.status_code == 200, response.content
    [page_sql] = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith('SELECT "promotions_delivery"."id"')
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {page_sql}")
        [[[explained]]] = cursor.fetchall()
    if isinstance(explained, str):
        explained = json.loads(explained)
    return response.json(), delivery_rows_read(explained["Plan"])


@pytest.mark.parametrize(
    "query",
    [
        "campaign={old}",
        "status=failed",
        "campaign={old}&status=failed",
    ],
)
def test_a_page_of_an_older_campaign_or_status_reads_a_page_of_deliveries(api, old_and_new, query):
    old, new = old_and_new
    page, read = page_and_rows_read(api, query.format(old=old.pk, new=new.pk))

    newest = Delivery.objects.filter(campaign=old).order_by("-created_at").first()
    assert page["count"] == EACH
    assert page["results"][0]["id"] == newest.id
    assert {row["campaign"] for row in page["results"]} == {old.pk}
    # A page and the one row that says it is full; not the campaign's or status's every row
    # sorted, nor every newer delivery of other campaigns passed over.
    assert read <= PAGE + 1, read


def test_a_page_of_the_newest_campaign_reads_a_page_of_deliveries(api, old_and_new):
    _, new = old_and_new
    page, read = page_and_rows_read(api, f"campaign={new.pk}&status=sent")

    assert page["count"] == EACH
    assert {row["campaign"] for row in page["results"]} == {new.pk}
    assert read <= PAGE + 1, read
