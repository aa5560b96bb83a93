"""How lists read their query: the filters a list declares, its page, and nothing else."""

from typing import Any

import django_filters
from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.settings import api_settings


class KnownFiltersBackend(DjangoFilterBackend):
    """django-filter's backend, but a list's query parameter that names none of its filters
    is a 400 naming it, never ignored: ignored, `?campaign_id=3` (the filter is `campaign`)
    or `?customer=C-1001` answers every campaign's or every customer's deliveries, a 200 an
    export would take for the ones it asked for. A request body's unknown field is refused
    the same way (KnownFieldsOnly). A filter (or the page) given twice is a 400 too: read
    as its last value, `?status=sent&status=holdout` answers the holdout alone; and so is a
    filter with no value (`?customer_id=`), which django-filter leaves out, and a page that
    is no page number (`?page=0`), which DRF answers as a page past the last. An object
    read by its key takes its list's filters and ignores other parameters, as before."""

    def filter_queryset(self, request: Request, queryset: QuerySet, view: Any) -> QuerySet:
        if request.method == "GET" and getattr(view, "action", "list") == "list":
            filterset_class = self.get_filterset_class(view, queryset)
            filters = list(filterset_class.base_filters) if filterset_class else []
            paginator = getattr(view, "paginator", None)
            page = [paginator.page_query_param] if paginator is not None else []
            known = {*filters, *page, api_settings.URL_FORMAT_OVERRIDE}
            unknown = sorted(name for name in request.query_params if name not in known)
            if unknown:
                takes = ", ".join([*filters, *page]) or "no parameter"
                message = f"Unknown filter: this list takes {takes}."
                raise ValidationError({name: [message] for name in unknown})
            repeated = sorted(
                name for name in request.query_params if len(request.query_params.getlist(name)) > 1
            )
            if repeated:
                message = "Given more than once: a list takes one value a filter, and one page."
                raise ValidationError({name: [message] for name in repeated})
            number = request.query_params.get(page[0], "") if page else ""
            if number and not _page_number(number, getattr(paginator, "last_page_strings", ())):
                # DRF answers 404 "Invalid page." as for a page past the last one, which a
                # client reads as no such list or no such page: `?page=0` counts from 0.
                message = "A page is a whole number from 1, or last."
                raise ValidationError({page[0]: [message]})
            # django-filter reads a blank value as the filter left out: `?customer_id=` (a
            # tool's blank field) would answer every customer's deliveries.
            blank = sorted(
                name for name in filters if request.query_params.get(name, "x").strip() == ""
            )
            if blank:
                message = "This filter has no value: give one, or leave the filter out."
                raise ValidationError({name: [message] for name in blank})
        return super().filter_queryset(request, queryset, view)


def _page_number(text: str, last_page_strings: tuple[str, ...]) -> bool:
    """Whether a page parameter names a page: 1 or more in ASCII digits, or the last."""
    return text in last_page_strings or (text.isascii() and text.isdigit() and int(text) >= 1)


class StatusFilter(django_filters.ChoiceFilter):
    """A filter on a status, whose refusal names the statuses there are: Django's "Select a
    valid choice. ACTIVE is not one of the available choices." leaves a client to find them
    (the values are lower case; their labels, which the admin shows, are capitalised)."""

    def __init__(self, *, choices: list[tuple[str, str]], **kwargs: Any) -> None:
        values = ", ".join(value for value, _ in choices)
        kwargs.setdefault(
            "error_messages", {"invalid_choice": f"%(value)s is no status: give one of {values}."}
        )
        super().__init__(choices=choices, **kwargs)
