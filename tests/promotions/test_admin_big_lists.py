"""The admin's lists of tables that grow with traffic (pings, sightings, location batches,
presence events, deliveries, browsing events) at a national retailer's scale: a page reads
a bounded part of its table. No count of the whole table, no pass over its dates for the
drill-down, and searches that an index answers (a marketer types an id or a code, whole)."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext

from customers.models import BrowsingEvent, Visitor
from promotions import admin_lists
from promotions.admin_lists import BigListAdmin
from promotions.models import Delivery, LocationBatch, Ping, PresenceEvent, Sighting
from tests.factories import CustomerFactory, DeliveryFactory, DeviceFactory, StoreFactory

pytestmark = pytest.mark.django_db

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL's counts and estimates"
)

BIG_LISTS = {
    "/admin/promotions/ping/": Ping,
    "/admin/promotions/sighting/": Sighting,
    "/admin/promotions/locationbatch/": LocationBatch,
    "/admin/promotions/presenceevent/": PresenceEvent,
    "/admin/promotions/delivery/": Delivery,
    "/admin/customers/browsingevent/": BrowsingEvent,
}

START = datetime(2026, 10, 30, 12, tzinfo=UTC)


def pings(count: int, *, every: timedelta = timedelta(hours=1), device=None) -> list[Ping]:
    device = device or DeviceFactory()
    return Ping.objects.bulk_create(
        Ping(
            device=device,
            latitude=48.86,
            longitude=2.34,
            accuracy=10,
            recorded_at=START + n * every,
        )
        for n in range(count)
    )


def analyze(model) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {model._meta.db_table}")


def counts_whole_table(sql: str) -> bool:
    """A COUNT with no LIMIT bounding the rows it reads."""
    return "COUNT(" in sql.upper() and " LIMIT " not in sql.upper()


def reads_distinct_dates(sql: str) -> bool:
    """Django's drill-down: the distinct years, months or days of the rows listed."""
    return bool(re.search(r"DISTINCT|DATE_TRUNC|django_datetime_trunc", sql, re.IGNORECASE))


@pytest.mark.parametrize("url", BIG_LISTS)
def test_each_big_list_reads_no_distinct_dates_and_no_facets(admin_client, url):
    pings(3)

    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(url)

    assert page.status_code == 200
    assert not [q["sql"] for q in queries if reads_distinct_dates(q["sql"])]
    assert isinstance(admin.site.get_model_admin(BIG_LISTS[url]), BigListAdmin)


@on_postgresql
@pytest.mark.parametrize("url", BIG_LISTS)
def test_each_big_list_counts_no_whole_table_on_postgresql(admin_client, url):
    pings(3)

    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(url)

    assert page.status_code == 200
    assert not [q["sql"] for q in queries if counts_whole_table(q["sql"])]


@on_postgresql
def test_a_list_past_the_exact_count_shows_an_estimate_and_pages_near_this_one(
    admin_client, monkeypatch
):
    monkeypatch.setattr(admin_lists, "EXACT_COUNT_UP_TO", 150)
    pings(400)
    analyze(Ping)

    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get("/admin/promotions/ping/", {"p": "2"})

    assert not [q["sql"] for q in queries if counts_whole_table(q["sql"])]
    paginator = page.context["cl"].paginator
    assert paginator.is_estimate
    assert 150 < paginator.count <= 1_000
    assert re.search(r"about \d+ pings", page.content.decode())
    # The last pages of an estimate are not offered: reading one is an OFFSET of millions.
    offered = list(paginator.get_elided_page_range(2))
    assert offered[-1] == paginator.ELLIPSIS
    assert paginator.num_pages not in offered[:-1] or paginator.num_pages <= 5
    assert len(page.context["cl"].result_list) == 100


@on_postgresql
def test_a_page_past_an_estimate_that_fell_short_is_still_read(admin_client, monkeypatch):
    monkeypatch.setattr(admin_lists, "EXACT_COUNT_UP_TO", 150)
    pings(400)
    analyze(Ping)
    monkeypatch.setattr(admin_lists, "planned_rows", lambda queryset: 160)

    page = admin_client.get("/admin/promotions/ping/", {"p": "4"})

    assert page.status_code == 200
    assert len(page.context["cl"].result_list) == 100


def test_a_list_under_the_exact_count_counts_exactly(admin_client):
    pings(7)

    page = admin_client.get("/admin/promotions/ping/")

    assert page.context["cl"].result_count == 7
    assert not page.context["cl"].paginator.is_estimate
    assert "7 pings" in page.content.decode()
    assert "about 7" not in page.content.decode()


def drill_down(page) -> list[str]:
    return (
        [choice["title"] for choice in page.context["choices"]] if "choices" in page.context else []
    )


def test_the_date_drill_down_offers_every_year_between_the_first_row_and_the_last(admin_client):
    pings(2, every=timedelta(days=500))  # 2026-10-30 and 2028-03-13: none in 2027

    page = admin_client.get("/admin/promotions/ping/")

    assert drill_down(page) == ["2026", "2027", "2028"]


def test_the_date_drill_down_offers_each_day_of_a_month_between_the_bounds(admin_client):
    pings(2, every=timedelta(days=3))  # 30 October and 2 November

    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(
            "/admin/promotions/ping/", {"recorded_at__year": "2026", "recorded_at__month": "10"}
        )

    assert not [q["sql"] for q in queries if reads_distinct_dates(q["sql"])]
    assert drill_down(page) == ["October 30", "October 31"]
    assert len(page.context["cl"].result_list) == 1


def test_the_date_drill_down_to_a_day_lists_that_days_rows(admin_client):
    listed = pings(3, every=timedelta(days=1))

    page = admin_client.get(
        "/admin/promotions/ping/",
        {"recorded_at__year": "2026", "recorded_at__month": "10", "recorded_at__day": "31"},
    )

    assert [row.pk for row in page.context["cl"].result_list] == [listed[1].pk]


def test_the_date_drill_down_starts_at_the_months_when_the_rows_span_one_year(admin_client):
    pings(2, every=timedelta(days=40))  # October and December 2026

    page = admin_client.get("/admin/promotions/ping/")

    assert drill_down(page) == ["October 2026", "November 2026", "December 2026"]


@pytest.mark.parametrize("url", BIG_LISTS)
@pytest.mark.parametrize(
    "drilled",
    [
        {"year": "9999"},
        {"year": "9999", "month": "12"},
        {"year": "9999", "month": "12", "day": "31"},
    ],
    ids=["year", "month", "day"],
)
def test_a_date_drilled_to_the_last_year_a_date_can_hold_is_refused_not_a_server_error(
    admin_client, url, drilled
):
    # The end of the year, month or day 9999 is past what a date can hold: Django's list
    # works it out before it reads a row.
    date_field = admin.site.get_model_admin(BIG_LISTS[url]).date_hierarchy
    address = {f"{date_field}__{part}": value for part, value in drilled.items()}

    response = admin_client.get(url, address)

    # As Django answers a filter it cannot read: the whole list, saying so.
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")
    assert admin_client.get(response["Location"]).status_code == 200


def test_a_browsing_event_is_found_by_its_id_whole_not_by_a_part(admin_client):
    customer = CustomerFactory(external_id="crm-4471")
    visitor = Visitor.objects.create(visitor_id="v-9f3a")
    wanted = BrowsingEvent.objects.create(
        event_id="web-123456", type="view", sku="X200", occurred_at=START, customer=customer
    )
    by_visitor = BrowsingEvent.objects.create(
        event_id="web-777", type="view", sku="Z9", occurred_at=START, visitor=visitor
    )
    BrowsingEvent.objects.create(event_id="web-1234567", type="view", occurred_at=START)

    def found(term: str) -> list[int]:
        page = admin_client.get("/admin/customers/browsingevent/", {"q": term})
        return sorted(row.pk for row in page.context["cl"].result_list)

    assert found("web-123456") == [wanted.pk]
    assert found(" X200 ") == [wanted.pk]
    assert found("crm-4471") == [wanted.pk]
    assert found("v-9f3a") == [by_visitor.pk]
    assert found("web-12") == []


def test_a_search_reads_no_text_anywhere_and_joins_no_related_table(admin_client):
    customer = CustomerFactory(external_id="crm-4471")
    wanted = DeliveryFactory(customer=customer, twilio_sid="SM0123")
    DeliveryFactory()

    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get("/admin/promotions/delivery/", {"q": "crm-4471"})

    assert [row.pk for row in page.context["cl"].result_list] == [wanted.pk]
    searched = [
        q["sql"].upper()
        for q in queries
        if '"PROMOTIONS_DELIVERY"."TWILIO_SID" =' in q["sql"].upper()
    ]
    assert searched  # the count and the page
    for sql in searched:
        assert " LIKE " not in sql
        assert "CUSTOMERS_CUSTOMER" not in sql.split(" WHERE ", 1)[1]
    by_sid = admin_client.get("/admin/promotions/delivery/", {"q": "SM0123"})
    assert [row.pk for row in by_sid.context["cl"].result_list] == [wanted.pk]


def test_a_devices_pings_sightings_and_a_customers_presence_events_are_found_by_id(
    admin_client,
):
    device = DeviceFactory(device_id="lea-iphone")
    wanted = pings(2, device=device)
    pings(2)
    store = StoreFactory()
    sighting = Sighting.objects.create(
        source="gateway", device=device, store=store, rssi=-60, seen_at=START
    )
    event = PresenceEvent.objects.create(
        customer=device.customer, place_key="s", kind="entered", store=store, occurred_at=START
    )
    PresenceEvent.objects.create(
        customer=CustomerFactory(), place_key="s", kind="entered", store=store, occurred_at=START
    )

    def found(url: str, term: str) -> list[int]:
        page = admin_client.get(url, {"q": term})
        return sorted(row.pk for row in page.context["cl"].result_list)

    assert found("/admin/promotions/ping/", "lea-iphone") == sorted(p.pk for p in wanted)
    assert found("/admin/promotions/sighting/", "lea-iphone") == [sighting.pk]
    assert found("/admin/promotions/presenceevent/", device.customer.external_id) == [event.pk]


@pytest.mark.parametrize("model", BIG_LISTS.values())
def test_each_searched_field_and_drilled_date_leads_an_index(model):
    """An equality a search makes, or the first and last dates the drill-down reads, is
    answered from an index only where the column leads one."""
    model_admin = admin.site.get_model_admin(model)
    columns = []
    for name in model_admin.search_fields:
        relation, _, field = name.rpartition("__")
        owner = model._meta.get_field(relation).related_model if relation else model
        columns.append((owner, owner._meta.get_field(field).column))
        if relation:
            columns.append((model, model._meta.get_field(relation).column))
    if model_admin.date_hierarchy:
        columns.append((model, model._meta.get_field(model_admin.date_hierarchy).column))
    with connection.cursor() as cursor:
        for owner, column in columns:
            constraints = connection.introspection.get_constraints(cursor, owner._meta.db_table)
            leading = {c["columns"][0] for c in constraints.values() if c["index"] or c["unique"]}
            assert column in leading, f"{owner._meta.db_table}.{column} leads no index"


def test_pings_are_listed_newest_first_by_when_they_were_taken(admin_client):
    """By the drill-down's date, not by arrival: a day or month chosen is then read from
    the date's index a page at a time (by id, a month long past read every newer row)."""
    taken_late, taken_early = pings(2, every=timedelta(hours=-1))  # stored newest first
    uploaded_late = pings(1, every=timedelta(hours=1))[0]
    uploaded_late.recorded_at = START - timedelta(days=1)
    uploaded_late.save()

    page = admin_client.get("/admin/promotions/ping/")

    assert [row.pk for row in page.context["cl"].result_list] == [
        taken_late.pk,
        taken_early.pk,
        uploaded_late.pk,
    ]
