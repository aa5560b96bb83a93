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


def delivery_rows_fetched(plan: dict[str, Any]) -> int:
    """Rows the plan fetched from the deliveries table, those its filters then dropped
    included. An index-only scan fetches none but those it cannot tell are visible to it
    (all of them until VACUUM has seen the table)."""
    fetched = 0
    if plan.get("Relation Name") == "promotions_delivery":
        if plan["Node Type"] == "Index Only Scan":
            fetched += plan["Heap Fetches"]
        else:
            fetched += (
                plan["Actual Rows"]
                + plan.get("Rows Removed by Filter", 0)
                + plan.get("Rows Removed by Index Recheck", 0)
            ) * plan["Actual Loops"]
    return fetched + sum(delivery_rows_fetched(child) for child in plan.get("Plans", ()))


def page_and_rows_fetched(api, query: str) -> tuple[dict[str, Any], int]:
    """The list's answer, and the deliveries its queries fetched but for its count (the
    page contract's, and as many as the filter picks)."""
    with CaptureQueriesContext(connection) as queries:
        response = api.get(f"/api/v1/deliveries?{query}")
    assert response.status_code == 200, response.content
    fetched = 0
    for sql in (q["sql"] for q in queries.captured_queries):
        if "promotions_delivery" in sql and not sql.startswith("SELECT COUNT(*)"):
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
                [[[explained]]] = cursor.fetchall()
            if isinstance(explained, str):
                explained = json.loads(explained)
            fetched += delivery_rows_fetched(explained["Plan"])
    return response.json(), fetched


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
    page, fetched = page_and_rows_fetched(api, query.format(old=old.pk, new=new.pk))

    newest = Delivery.objects.filter(campaign=old).order_by("-created_at").first()
    assert page["count"] == EACH
    assert page["results"][0]["id"] == newest.id
    assert {row["campaign"] for row in page["results"]} == {old.pk}
    # A page (its ids, then its rows), and the row that says it is full; not the campaign's
    # or status's every row sorted, nor every newer delivery of other campaigns passed over.
    assert fetched <= 2 * (PAGE + 1), fetched


def test_a_page_of_the_newest_campaign_reads_a_page_of_deliveries(api, old_and_new):
    _, new = old_and_new
    page, fetched = page_and_rows_fetched(api, f"campaign={new.pk}&status=sent")

    assert page["count"] == EACH
    assert {row["campaign"] for row in page["results"]} == {new.pk}
    assert fetched <= 2 * (PAGE + 1), fetched


@pytest.mark.django_db(transaction=True)  # VACUUM, for the index-only scans of a table in use
@pytest.mark.parametrize("query", ["", "campaign={campaign}&"])
def test_a_deep_page_fetches_the_rows_of_its_page_alone(api, query):
    """An export pages through every delivery: page 50 skips 4,900 deliveries in an index,
    without fetching each from the table (and joining it to its customer and store)."""
    campaign, store = CampaignFactory(), StoreFactory()
    start = timezone.now() - timedelta(days=1)
    Delivery.objects.bulk_create(
        Delivery(
            campaign=campaign,
            store=store,
            status=DeliveryStatus.SENT,
            created_at=start + timedelta(seconds=n),
        )
        for n in range(4 * EACH)
    )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE promotions_delivery")

    page, fetched = page_and_rows_fetched(api, f"{query.format(campaign=campaign.pk)}page=50")

    newest_first = Delivery.objects.order_by("-created_at").values_list("id", flat=True)
    assert page["count"] == 4 * EACH
    assert [row["id"] for row in page["results"]] == list(newest_first[49 * PAGE : 50 * PAGE])
    assert fetched <= 2 * (PAGE + 1), fetched
