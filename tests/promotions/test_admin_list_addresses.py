"""A list's address holds its filters, and anyone can type one: a value the database cannot
compare is answered as Django answers a filter it does not know (the whole list, saying so),
never with a server error, for a marketer as for an administrator."""

import pytest
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.test import RequestFactory

from promotions.admin_lists import CheckedChangeList
from tests.factories import CampaignFactory, DeliveryFactory, StoreFactory

pytestmark = pytest.mark.django_db


ADDRESSES = [
    # PostgreSQL cannot compare text holding a NUL character.
    "/admin/promotions/campaign/?status__exact=%00",
    "/admin/promotions/delivery/?status__exact=%00",
    "/admin/promotions/presenceevent/?kind__exact=%00",
    "/admin/customers/customer/?sms_consent__exact=%00",
    "/admin/promotions/store/?timezone=%00",
    # A pattern neither database can compile.
    "/admin/promotions/campaign/?name__regex=(",
    "/admin/customers/customer/?first_name__iregex=*",
    # A JSON containment, which SQLite does not have.
    "/admin/promotions/store/?polygon__contains=%7B%7D",
    "/admin/promotions/campaign/?intent_skus__contains=X200",
    # A year past the last a date can hold.
    "/admin/promotions/campaign/?starts_at__year=99999",
]


@pytest.mark.parametrize("address", ADDRESSES)
@pytest.mark.parametrize("who", ["marketer", "admin_client"])
def test_a_filter_the_database_cannot_compare_is_no_server_error(request, who, address):
    client = request.getfixturevalue(who)
    campaign = CampaignFactory(name="Welcome")
    campaign.stores.add(StoreFactory())
    DeliveryFactory(campaign=campaign)

    response = client.get(address)

    assert response.status_code in (200, 302)
    if response.status_code == 302:  # refused: the whole list, saying the filter was wrong
        assert response["Location"].endswith("?e=1")
        assert client.get(response["Location"]).status_code == 200


def test_every_list_of_passage_s_own_reads_its_address_so():
    request = RequestFactory().get("/")
    own = [
        model_admin
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label in ("promotions", "customers", "auth")
    ]

    assert own
    assert all(
        issubclass(model_admin.get_changelist(request), CheckedChangeList) for model_admin in own
    ), [type(a).__name__ for a in own if not issubclass(a.get_changelist(request), ChangeList)]


# Only a forged form selects these: the page's checkboxes hold the rows' ids.
FORGED_SELECTIONS = [["abc"], ["99999999999999999999999"], ["\x00"], ["1.5"]]


@pytest.mark.parametrize("selected", FORGED_SELECTIONS)
@pytest.mark.parametrize(
    ("page", "action"),
    [
        ("promotions/campaign", "pause"),
        ("promotions/campaign", "duplicate"),
        ("promotions/campaign", "dry_run_last_week"),
        ("promotions/zone", "delete_selected"),
        ("promotions/beacon", "delete_selected"),
    ],
)
def test_an_action_on_a_selection_no_row_can_have_does_nothing_and_says_so(
    marketer, page, action, selected
):
    campaign = CampaignFactory(name="Welcome", status="active")

    response = marketer.post(
        f"/admin/{page}/", {"action": action, "_selected_action": selected}, follow=True
    )

    assert response.status_code == 200
    assert "No items have been changed" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == "active"
    assert list(type(campaign).objects.values_list("name", flat=True)) == ["Welcome"]


# Django's own lists of staff accounts, which administrators alone open.
STAFF_ADDRESSES = ["/admin/auth/user/?username=%00", "/admin/auth/group/?name__regex=("]


@pytest.mark.parametrize("address", STAFF_ADDRESSES)
def test_a_staff_list_filter_the_database_cannot_compare_is_no_server_error(admin_client, address):
    response = admin_client.get(address)

    assert response.status_code in (200, 302)
    if response.status_code == 302:
        assert response["Location"].endswith("?e=1")


@pytest.mark.parametrize("selected", FORGED_SELECTIONS)
def test_an_action_on_staff_accounts_no_row_can_be_does_nothing(admin_client, selected):
    response = admin_client.post(
        "/admin/auth/user/",
        {"action": "delete_selected", "_selected_action": selected},
        follow=True,
    )

    assert response.status_code == 200
    assert "No items have been changed" in response.content.decode()
