"""The admin's lists of tables that grow with traffic (pings, sightings, location batches,
presence events, deliveries, browsing events), kept to bounded work at millions of rows:
Django's list counts every row a page shows a total of, offers the dates present in the
whole table above it, and searches each field for the text anywhere in it, none of which an
index serves (3.7 s a page at 3 million pings)."""

import calendar
import json
from collections.abc import Iterator
from datetime import date
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import get_fields_from_path
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.core.paginator import EmptyPage, Page, Paginator
from django.db import (
    DataError,
    NotSupportedError,
    OperationalError,
    connections,
    models,
    transaction,
)
from django.db.models import Max, Min, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy

from promotions.api.reports import LARGEST_ID, IdFormField
from promotions.database import database_unavailable

# Counted exactly up to this many rows (a few milliseconds through an index); past it, on
# PostgreSQL, the planner's estimate is shown as "about".
EXACT_COUNT_UP_TO = 10_000
# A search names one row, or one customer's or device's: the ids of this many at most.
RELATED_FOUND_AT_MOST = 100


class EstimatedCountPaginator(Paginator):
    """Counts a list exactly up to EXACT_COUNT_UP_TO rows, and past that, on PostgreSQL,
    takes the planner's estimate (from pg_class's row count and the filter's statistics)
    rather than counting millions of rows at each page. SQLite counts exactly: a table too
    large for that belongs on PostgreSQL."""

    @cached_property
    def _counted(self) -> int:
        """The exact count, or on PostgreSQL EXACT_COUNT_UP_TO + 1 for any more."""
        queryset = self.object_list
        if connections[queryset.db].vendor != "postgresql":
            return super().count
        return queryset[: EXACT_COUNT_UP_TO + 1].count()

    @cached_property
    def is_estimate(self) -> bool:
        return self._counted > EXACT_COUNT_UP_TO

    @cached_property
    def count(self) -> int:
        if not self.is_estimate:
            return self._counted
        return max(self._counted, planned_rows(self.object_list))

    def validate_number(self, number: Any) -> int:
        # An estimate may fall short of the rows there are: a page past it is still read.
        try:
            return super().validate_number(number)
        except EmptyPage:
            if self.is_estimate and int(number) > 0:
                return int(number)
            raise

    def page(self, number: Any) -> Page:
        if not self.is_estimate:
            return super().page(number)
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        return self._get_page(self.object_list[bottom : bottom + self.per_page], number, self)

    def get_elided_page_range(self, number: int = 1, **kwargs: Any) -> Iterator:
        # The last pages of an estimate are guesses, and reading one is an OFFSET of
        # millions of rows: only the pages near this one are offered, then "next".
        if not self.is_estimate:
            yield from super().get_elided_page_range(number, **kwargs)
            return
        number = int(number)
        first = max(1, number - 3)
        if first > 1:
            yield from (1, self.ELLIPSIS) if first > 2 else (1,)
        yield from range(first, min(number + 3, self.num_pages) + 1)
        yield self.ELLIPSIS


def planned_rows(queryset: QuerySet) -> int:
    """The rows PostgreSQL's planner expects `queryset` to return: read from the table's
    statistics, not from its rows."""
    # Without the joins that only read related rows for display: the planner's guess at
    # a join's size is far off (a sixth of the pings, joined to their devices).
    sql, params = queryset.select_related(None).order_by().query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class CheckedChangeList(ChangeList):
    """Django's list, where an address it cannot read is answered as Django answers a filter
    it does not know (the whole list, saying so: "?e=1"), never with a server error."""

    def get_filters(self, request: HttpRequest) -> tuple:
        try:
            return super().get_filters(request)
        except (ValueError, OverflowError) as error:
            # The date drill-down's year 9999: Django works out where the year, month or day
            # chosen ends, past the last date a datetime holds.
            raise IncorrectLookupParameters(error) from error

    def get_results(self, request: HttpRequest) -> None:
        # The filters named in the address reach the database as typed: PostgreSQL cannot
        # compare a NUL character (?status__exact=%00), neither database a pattern it cannot
        # compile (?name__regex=( ), SQLite has no JSON containment, and no date holds the
        # year 99999. The count, the list's first read, meets them; in a savepoint, so that
        # a transaction around the request is not left aborted.
        try:
            with transaction.atomic(using=self.queryset.db):
                super().get_results(request)
        except (DataError, NotSupportedError, ValueError, OverflowError) as error:
            raise IncorrectLookupParameters(error) from error
        except OperationalError as error:  # SQLite: its REGEXP function raised
            if database_unavailable(error):
                raise
            raise IncorrectLookupParameters(error) from error


class CheckedListAdmin(admin.ModelAdmin):
    """A list whose address is read by CheckedChangeList, and whose actions take only rows'
    ids: the base of every admin here."""

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return CheckedChangeList

    def response_action(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        # The page's checkboxes hold the rows' ids: only a forged form selects "abc", 1.5 or
        # a number past a bigint, which the database (or Django preparing it) would fail
        # with a server error. Refused as Django refuses a selection of nothing.
        row_id = IdFormField(min_value=1, max_value=LARGEST_ID)
        for selected in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
            try:
                row_id.clean(selected)
            except ValidationError:
                self.message_user(request, NOTHING_SELECTED, messages.WARNING)
                return None
        return super().response_action(request, queryset)


# Django's own words for an action posted with nothing selected.
NOTHING_SELECTED = gettext_lazy(
    "Items must be selected in order to perform actions on them. No items have been changed."
)


class BigListAdmin(CheckedListAdmin):
    """A list over a table of millions of rows. Its count is bounded
    (EstimatedCountPaginator, and no second count of the whole table beside a filtered
    one); its date drill-down offers the dates between the first row's and the last's
    (bounded_date_hierarchy), read through the date's index; filters show no counts per
    choice (each a count of the table); and a search finds the rows whose field equals the
    text typed, each field found by an index (a field of a related row, `customer__external_id`,
    is looked up there first). Its change list template renders the count as "about N"
    where estimated."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    change_list_template = "admin/big_list_change_list.html"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term or not self.search_fields:
            return queryset, False
        found = Q(pk__in=[])
        for name in self.search_fields:
            relation, _, field = name.rpartition("__")
            if not relation:
                found |= Q(**{field: term})
                continue
            related = self.model._meta.get_field(relation).related_model
            ids = related._default_manager.filter(**{field: term}).values_list("pk", flat=True)
            # Resolved first: "customer_id IN (3) OR event_id = 'x'" is one index each, where
            # the join Django writes is an OR across two tables, which no index serves.
            found |= Q(**{f"{relation}__in": list(ids[:RELATED_FOUND_AT_MOST])})
        return queryset.filter(found), False


def bounded_date_hierarchy(cl: ChangeList) -> dict:
    """Django's date drill-down (admin_list.date_hierarchy) with its choices read from the
    first and last dates of the whole table, two lookups in the date's index, instead of
    the distinct dates of the rows listed (a pass over every row of the list, the year or
    the month chosen): each year, month and day between them is offered, a day without
    rows included (its page is empty)."""
    field_name = cl.date_hierarchy
    year_field, month_field, day_field = (
        f"{field_name}__{part}" for part in ("year", "month", "day")
    )
    year, month, day = (cl.params.get(name) for name in (year_field, month_field, day_field))

    def link(filters: dict) -> str:
        return cl.get_query_string(filters, [f"{field_name}__"])

    bounds = cl.root_queryset.aggregate(first=Min(field_name), last=Max(field_name))
    if bounds["first"] is None:
        return {"show": True, "back": None, "choices": []}
    first, last = (_local_date(bounds[end], cl, field_name) for end in ("first", "last"))
    if not (year or month or day) and first.year == last.year:
        year = first.year
        if first.month == last.month:
            month = first.month

    if year and month and day:
        chosen = date(int(year), int(month), int(day))
        return {
            "show": True,
            "back": {
                "link": link({year_field: year, month_field: month}),
                "title": capfirst(formats.date_format(chosen, "YEAR_MONTH_FORMAT")),
            },
            "choices": [{"title": capfirst(formats.date_format(chosen, "MONTH_DAY_FORMAT"))}],
        }
    if year and month:
        year, month = int(year), int(month)
        days = [
            date(year, month, number)
            for number in range(1, calendar.monthrange(year, month)[1] + 1)
            if first <= date(year, month, number) <= last
        ]
        return {
            "show": True,
            "back": {"link": link({year_field: year}), "title": str(year)},
            "choices": [
                {
                    "link": link({year_field: year, month_field: month, day_field: each.day}),
                    "title": capfirst(formats.date_format(each, "MONTH_DAY_FORMAT")),
                }
                for each in days
            ],
        }
    if year:
        year = int(year)
        months = [
            date(year, number, 1)
            for number in range(1, 13)
            if (first.year, first.month) <= (year, number) <= (last.year, last.month)
        ]
        return {
            "show": True,
            "back": {"link": link({}), "title": "All dates"},
            "choices": [
                {
                    "link": link({year_field: year, month_field: each.month}),
                    "title": capfirst(formats.date_format(each, "YEAR_MONTH_FORMAT")),
                }
                for each in months
            ],
        }
    return {
        "show": True,
        "back": None,
        "choices": [
            {"link": link({year_field: str(each)}), "title": str(each)}
            for each in range(first.year, last.year + 1)
        ],
    }


def _local_date(value: Any, cl: ChangeList, field_name: str) -> date:
    """The day a bound falls on as the drill-down filters (the admin's time zone)."""
    field = get_fields_from_path(cl.model, field_name)[-1]
    if isinstance(field, models.DateTimeField):
        return (timezone.localtime(value) if timezone.is_aware(value) else value).date()
    return value
