"""The tags of the admin's big lists (promotions.admin_lists.BigListAdmin): Django's own,
each template overridable per model as Django's are, with bounded choices and counts
shown as "about N" where estimated."""

from django import template
from django.contrib.admin.templatetags.admin_list import pagination, search_form
from django.contrib.admin.templatetags.base import InclusionAdminNode

from promotions.admin_lists import bounded_date_hierarchy

register = template.Library()


@register.tag(name="bounded_date_hierarchy")
def bounded_date_hierarchy_tag(
    parser: template.base.Parser, token: template.base.Token
) -> InclusionAdminNode:
    return InclusionAdminNode(
        parser,
        token,
        func=bounded_date_hierarchy,
        template_name="date_hierarchy.html",
        takes_context=False,
    )


@register.tag(name="big_list_pagination")
def big_list_pagination_tag(
    parser: template.base.Parser, token: template.base.Token
) -> InclusionAdminNode:
    return InclusionAdminNode(
        parser,
        token,
        func=pagination,
        template_name="big_list_pagination.html",
        takes_context=False,
    )


@register.tag(name="big_list_search_form")
def big_list_search_form_tag(
    parser: template.base.Parser, token: template.base.Token
) -> InclusionAdminNode:
    return InclusionAdminNode(
        parser,
        token,
        func=search_form,
        template_name="big_list_search_form.html",
        takes_context=False,
    )
