"""Erasing a customer takes the admin's history of changes to them (django.contrib.admin's
LogEntry) along: it names the customer, their devices and their browsers."""

from io import StringIO

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import call_command

from customers.models import Customer, Device, Visitor

pytestmark = pytest.mark.django_db

LEA = {
    "phone": "+33687654321",
    "first_name": "Zoeline",
    "timezone": "Europe/Paris",
    "locale": "fr-FR",
    "sms_consent": "opted_in",
    "consent_source": "web_form",
}
# What names Lea anywhere in the database.
TRACES = ["CUST-ZZ-991", "zoeline-pixel", "cookie-zz-991", "Zoeline", "33687654321"]


def dump() -> str:
    out = StringIO()
    call_command("dumpdata", stdout=out)
    return out.getvalue()


def admin_form(client, url: str, **fields) -> dict:
    """The admin's own change form, as a marketer would post it: its fields as they stand,
    with the changes, and its inlines unchanged."""
    page = client.get(url)
    form = {
        name: value
        for name, value in page.context["adminform"].form.initial.items()
        if value is not None
    }
    for inline in page.context["inline_admin_formsets"]:
        form[f"{inline.formset.prefix}-TOTAL_FORMS"] = 0
        form[f"{inline.formset.prefix}-INITIAL_FORMS"] = 0
    return {**form, **fields}


def edit_in_the_admin(client, row, **fields) -> None:
    url = f"/admin/customers/{row._meta.model_name}/{row.pk}/change/"
    response = client.post(url, admin_form(client, url, **fields))
    assert response.status_code == 302, response.context["adminform"].form.errors


@pytest.fixture
def lea(api, admin_client):
    """Lea, with a phone and a browser, each edited once by a marketer in the admin."""
    assert api.put("/api/v1/customers/CUST-ZZ-991", LEA).status_code == 201
    api.post("/api/v1/devices", {"device_id": "zoeline-pixel", "customer_id": "CUST-ZZ-991"})
    api.post("/api/v1/identify", {"visitor_id": "cookie-zz-991", "customer_id": "CUST-ZZ-991"})
    edit_in_the_admin(admin_client, Customer.objects.get(), first_name="Zoeline")
    edit_in_the_admin(admin_client, Device.objects.get(), platform="android")
    edit_in_the_admin(admin_client, Visitor.objects.get())
    assert LogEntry.objects.count() == 3
    before = dump()
    assert [trace for trace in TRACES if trace not in before] == []
    return Customer.objects.get()


@pytest.fixture
def tom(api, admin_client):
    """Another customer the admin edited: his history stays."""
    assert api.put("/api/v1/customers/C-TOM", {"first_name": "Tom"}).status_code == 201
    edit_in_the_admin(admin_client, Customer.objects.get(external_id="C-TOM"), first_name="Tom")
    return Customer.objects.get(external_id="C-TOM")


def test_erasing_through_the_api_leaves_no_admin_history_naming_them(api, lea, tom):
    assert api.delete("/api/v1/customers/CUST-ZZ-991").status_code == 204

    after = dump()
    assert [trace for trace in TRACES if trace in after] == []
    assert list(LogEntry.objects.values_list("object_repr", flat=True)) == ["C-TOM"]


def test_erasing_through_the_admin_leaves_no_admin_history_naming_them(admin_client, lea, tom):
    response = admin_client.post(
        "/admin/customers/customer/",
        {"action": "erase", "_selected_action": [lea.pk], "confirmed": "yes"},
    )

    assert response.status_code == 302
    assert not Customer.objects.filter(pk=lea.pk).exists()
    after = dump()
    assert [trace for trace in TRACES if trace in after] == []
    assert list(LogEntry.objects.values_list("object_repr", flat=True)) == ["C-TOM"]


def test_erasing_keeps_the_history_of_a_device_that_went_to_another_customer(
    api, admin_client, lea, tom
):
    # The phone is Tom's now: what the admin did to it is about his device.
    api.post("/api/v1/devices", {"device_id": "zoeline-pixel", "customer_id": "C-TOM"})

    assert api.delete("/api/v1/customers/CUST-ZZ-991").status_code == 204

    assert sorted(LogEntry.objects.values_list("object_repr", flat=True)) == [
        "C-TOM",
        "zoeline-pixel",
    ]
