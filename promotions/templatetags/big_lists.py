"""The tags of the admin's big lists (promotions.admin_lists.BigListAdmin): Django's own,
each template overridable per model as Django's are, with bounded choices and counts
shown as "about N" where estimated."""

from collections.abc import Callable

from django import template
from django.contrib.admin.templatetags.admin_list import pagination, search_form
from django.contrib.admin.templatetags.base import InclusionAdminNode

from promotions.admin_lists import bounded_date_hierarchy

register = template.Library()


def _register(name: str, func: Callable[..., dict], template_name: str) -> None:
    """Register `func` as the inclusion tag `name`, rendered with `template_name` the way
    Django's admin renders its own (admin/<app>/<model>/ first)."""

    def tag(parser: template.base.Parser, token: template.base.Token) -> InclusionAdminNode:
        return InclusionAdminNode(
            parser, token, func=func, template_name=template_name, takes_context=False
        )

    register.tag(name, tag)


_register("bounded_date_hierarchy", bounded_date_hierarchy, "date_hierarchy.html")
_register("big_list_pagination", pagination, "big_list_pagination.html")
_register("big_list_search_form", search_form, "big_list_search_form.html")
