"""A "/" in a customer id. The server decodes %2F before routing, so the id would reach the
API as several path segments: no new id may hold one (a 400 saying why, in the API and the
admin), and a customer stored with one before can still be read, exported and erased."""

import pytest

from customers.models import Customer, Device
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

SLASH = "A customer id cannot contain '/': it is part of the customer's URL."


@pytest.mark.parametrize("segment", ["EU%2F12345", "EU/12345", "%2F12345", "a%2Fb%2Fc"])
def test_put_refuses_an_id_with_a_slash_and_says_why(api, segment):
    response = api.put(f"/api/v1/customers/{segment}", {"first_name": "Lea"})

    assert response.status_code == 400
    assert response.json() == {"external_id": [SLASH]}
    assert not Customer.objects.exists()


@pytest.mark.parametrize("method, suffix", [("get", ""), ("delete", ""), ("get", "/export")])
def test_an_id_with_a_slash_that_no_customer_has_is_a_clean_404(api, method, suffix):
    CustomerFactory(external_id="EU")

    response = getattr(api, method)(f"/api/v1/customers/EU%2F12345{suffix}")

    assert response.status_code == 404
    assert response.json() == {"detail": "No such customer."}
    assert Customer.objects.exists()


def test_a_put_to_an_export_is_not_a_customer_named_with_export_in_it(api):
    CustomerFactory(external_id="C-1")

    response = api.put("/api/v1/customers/C-1%2Fexport", {"first_name": "Lea"})

    assert response.status_code == 405
    assert list(Customer.objects.values_list("external_id", flat=True)) == ["C-1"]


def test_an_export_is_still_the_export_of_the_customer_before_it(api):
    CustomerFactory(external_id="C-1", phone="+33612345678")

    response = api.get("/api/v1/customers/C-1/export")

    assert response.status_code == 200
    assert response.json()["customer"]["phone"] == "+33612345678"


@pytest.mark.parametrize(
    "path", ["/api/v1/customers/C-1/", "/api/v1/customers/C-1/export/", "/api/v1/customers/%2F"]
)
def test_a_trailing_slash_is_still_no_customer_but_a_path_no_view_answers(api, path):
    CustomerFactory(external_id="C-1")

    response = api.put(path, {"first_name": "Lea"})

    assert response.status_code == 404
    assert response.json()["detail"].startswith("Not found")
    assert Customer.objects.get().first_name == "Léa"


def test_a_customer_stored_with_a_slash_before_can_be_read_exported_and_erased(api):
    # Stored before such ids were refused (the admin took them): what is held about them
    # stays within reach of the API, erasure above all.
    Customer.objects.create(external_id="EU/12345", phone="+33612345678")
    registered = api.post("/api/v1/devices", {"device_id": "d1", "customer_id": "EU/12345"})

    read = api.get("/api/v1/customers/EU%2F12345")
    exported = api.get("/api/v1/customers/EU%2F12345/export")
    erased = api.delete("/api/v1/customers/EU%2F12345")

    assert registered.status_code == 201
    assert read.json()["external_id"] == "EU/12345"
    assert exported.json()["devices"][0]["device_id"] == "d1"
    assert erased.status_code == 204
    assert not Customer.objects.exists()
    assert not Device.objects.exists()


def test_an_id_with_a_line_feed_is_still_refused_for_its_control_character(api):
    # The route takes every character, so the id's own rules say what is wrong with it.
    response = api.put("/api/v1/customers/EU%0A1", {"first_name": "Lea"})

    assert response.status_code == 400
    assert "control character" in response.json()["external_id"][0]


def test_the_admin_refuses_a_new_customer_id_with_a_slash(admin_client):
    page = admin_client.get("/admin/customers/customer/add/")
    form = {"external_id": "EU/12345", "first_name": "Lea"}
    for inline in page.context["inline_admin_formsets"]:
        form[f"{inline.formset.prefix}-TOTAL_FORMS"] = 0
        form[f"{inline.formset.prefix}-INITIAL_FORMS"] = 0

    response = admin_client.post("/admin/customers/customer/add/", form)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["external_id"] == [SLASH]
    assert not Customer.objects.exists()


def test_the_schema_documents_the_id_as_a_plain_string(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()

    operations = [
        (path, method)
        for path, methods in schema["paths"].items()
        if path.startswith("/api/v1/customers/")
        for method in methods
    ]
    parameters = {
        (path, method): schema["paths"][path][method]["parameters"] for path, method in operations
    }

    assert sorted(operations) == [
        ("/api/v1/customers/{external_id}", "delete"),
        ("/api/v1/customers/{external_id}", "get"),
        ("/api/v1/customers/{external_id}", "put"),
        ("/api/v1/customers/{external_id}/export", "get"),
    ]
    plain = [{"in": "path", "name": "external_id", "schema": {"type": "string"}, "required": True}]
    assert all(found == plain for found in parameters.values()), parameters
