"""What an operator sees: health, the schema and its docs, the demo."""

import pytest
from django.core.management import call_command
from django.test import Client

from customers.models import Customer, ProductIntent
from promotions.models import ApiKey, Campaign, Store
from tests.factories import DeliveryFactory

pytestmark = pytest.mark.django_db


def test_healthz_reports_the_database_and_the_broker():
    response = Client().get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["broker"].startswith("none")


def test_the_openapi_schema_describes_every_operation_of_the_contract():
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    expected = {
        "/api/v1/customers/{external_id}": {"get", "put", "delete"},
        "/api/v1/customers/{external_id}/export": {"get"},
        "/api/v1/devices": {"post"},
        "/api/v1/identify": {"post"},
        "/api/v1/events": {"post"},
        "/api/v1/pings": {"post"},
        "/api/v1/sightings": {"post"},
        "/api/v1/gateways/{gateway_id}/sightings": {"post"},
        "/api/v1/stores": {"get", "post"},
        "/api/v1/stores/{code}": {"get", "put", "patch", "delete"},
        "/api/v1/zones/{id}": {"get", "put", "patch", "delete"},
        "/api/v1/beacons/{id}": {"get", "put", "patch", "delete"},
        "/api/v1/gateways/{gateway_id}": {"get", "put", "patch", "delete"},
        "/api/v1/campaigns/{id}": {"get", "put", "patch", "delete"},
        "/api/v1/campaigns/{id}/stats": {"get"},
        "/api/v1/campaigns/{id}/dry-run": {"post"},
        "/api/v1/campaigns/{id}/codes": {"post"},
        "/api/v1/redemptions": {"post"},
        "/api/v1/deliveries": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    assert schema["components"]["securitySchemes"]["ApiKey"]["name"] == "Authorization"
    pings = paths["/api/v1/pings"]["post"]
    assert "202" in pings["responses"] and "413" in pings["responses"]


def test_the_schema_generates_without_a_single_warning(tmp_path):
    # Clients are generated from it: a field drf-spectacular cannot type becomes a bare string.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", tmp_path / "s.yml")


def test_the_api_docs_page_is_served_without_a_cdn():
    response = Client().get("/api/docs/")

    assert response.status_code == 200
    assert b"cdn.jsdelivr" not in response.content
    assert b"swagger" in response.content.lower()


def test_load_demo_is_idempotent_and_prints_a_working_login(capsys):
    call_command("load_demo")
    call_command("load_demo")

    out = capsys.readouterr().out
    password = out.strip().split("Login:")[-1].splitlines()[0].split("/")[-1].strip()
    assert Client().login(username="admin", password=password)
    assert Store.objects.count() == 4
    assert Customer.objects.count() == 4
    assert Campaign.objects.filter(status="active").count() == 3
    assert ApiKey.objects.filter(name="demo (make run)").count() == 1
    lea = ProductIntent.objects.get(customer__external_id="C-1001", sku="X200")
    assert len(lea.view_times) == 3


def test_load_demo_refuses_to_run_with_a_real_sms_backend(settings):
    from django.core.management.base import CommandError

    settings.SMS_BACKEND = "twilio"

    with pytest.raises(CommandError, match="real-looking phone numbers"):
        call_command("load_demo")
    assert not Customer.objects.exists()


@pytest.mark.django_db
def test_every_admin_list_opens_for_staff(admin_client):
    from django.contrib import admin

    DeliveryFactory()
    for model in admin.site._registry:
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert admin_client.get(url).status_code == 200, url
