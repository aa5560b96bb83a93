"""What an operator sees: health, the schema and its docs, the demo."""

import json
import re

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from customers.models import Customer, ProductIntent
from promotions.models import ApiKey, Beacon, Campaign, LocationBatch, Store, Zone
from tests.factories import BEACON_UUID, DeliveryFactory, DeviceFactory

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


@pytest.mark.django_db
def test_the_workers_backlog_is_the_unprocessed_location_batches(admin_client):
    LocationBatch.objects.create(ping_ids=[1, 2, 3], processed_at=timezone.now())
    LocationBatch.objects.create(ping_ids=[4, 5])
    url = "/admin/promotions/locationbatch/?processed_at__isempty=1"
    content = admin_client.get(url).content.decode()
    assert '<td class="field-pings">2</td>' in content
    assert '<td class="field-pings">3</td>' not in content
    assert admin_client.get("/admin/promotions/locationbatch/add/").status_code == 403


@pytest.mark.django_db
def test_the_campaign_page_previews_the_sms_and_links_its_results(admin_client):
    campaign = Campaign.objects.create(
        name="X200", offer_template="Bonjour {first_name}, -20%: {code}", status="active"
    )
    page = admin_client.get(f"/admin/promotions/campaign/{campaign.pk}/change/")
    assert page.status_code == 200
    assert "Bonjour Léa, -20%: " in page.content.decode()
    assert "GSM-7 · 1 segment" in page.content.decode()

    live = admin_client.get(
        "/admin/promotions/campaign/preview/", {"template": "It\u2019s {nope}", "valid_days": "7"}
    ).json()
    assert "Unknown placeholder {nope}" in live["error"]
    live = admin_client.get("/admin/promotions/campaign/preview/", {"template": "It\u2019s {code}"})
    assert live.json()["encoding"] == "UCS-2"


@pytest.mark.django_db
def test_the_results_page_shows_the_funnel_and_the_chart(admin_client):
    delivery = DeliveryFactory(sent_at=None)
    response = admin_client.get(f"/admin/promotions/campaign/{delivery.campaign_id}/results/")
    content = response.content.decode()
    assert response.status_code == 200
    assert '<td id="sent">1</td>' in content
    assert "<svg" in content and "1 sent" in content
    today = timezone.now().date().isoformat()
    assert f"<tr><td>{today}</td><td>1</td><td>1</td>" in content  # the per-day table


@pytest.mark.django_db
def test_activating_a_campaign_that_breaks_its_rules_says_why(admin_client):
    campaign = Campaign.objects.create(
        name="Dwell", trigger_type="dwell", offer_template="Hi {code}", status="draft"
    )
    response = admin_client.post(
        "/admin/promotions/campaign/",
        {"action": "activate", "_selected_action": [campaign.pk]},
        follow=True,
    )
    assert "A dwell trigger needs the minutes" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == "draft"


@pytest.mark.django_db
def test_a_delivery_shows_its_decision_trace(admin_client):
    trace = {
        "event": {
            "kind": "entered",
            "store": "RIVOLI",
            "at": "2026-11-24T14:00:00Z",
            "why": "fix 12 m inside (accuracy 8 m)",
            "ping": 7,
        },
        "intent": "SKU X200: 3 views in 14 days, score 2.50",
        "rank": 1,
        "ranked": [3],
        "limits": "all passed",
    }
    delivery = DeliveryFactory(trace=trace)
    page = admin_client.get(f"/admin/promotions/delivery/{delivery.pk}/change/").content.decode()
    assert "fix 12 m inside (accuracy 8 m) (ping 7)" in page
    assert "SKU X200: 3 views in 14 days" in page


@pytest.fixture
def marketer(client):
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user("marie", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketers"))
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_marketers_run_campaigns_but_cannot_see_keys_or_erase_customers(marketer):
    DeliveryFactory()
    assert marketer.get("/admin/promotions/campaign/").status_code == 200
    assert marketer.get("/admin/promotions/campaign/add/").status_code == 200
    assert marketer.get("/admin/promotions/apikey/").status_code == 403
    page = marketer.get("/admin/customers/customer/").content.decode()
    assert "Export everything" in page and "Erase them" not in page


@pytest.mark.django_db
def test_erasing_a_customer_from_the_admin_asks_first_and_anonymises(admin_client):
    delivery = DeliveryFactory()
    customer = delivery.customer
    form = {"action": "erase", "_selected_action": [customer.pk]}

    confirm = admin_client.post("/admin/customers/customer/", form)
    assert "cannot be undone" in confirm.content.decode()
    assert Customer.objects.filter(pk=customer.pk).exists()

    admin_client.post("/admin/customers/customer/", {**form, "confirmed": "yes"})
    assert not Customer.objects.filter(pk=customer.pk).exists()
    delivery.refresh_from_db()
    assert (delivery.customer, delivery.to, delivery.body) == (None, "", "")


@pytest.mark.django_db
def test_exporting_a_customer_from_the_admin_downloads_json(admin_client):
    customer = DeliveryFactory().customer
    response = admin_client.post(
        "/admin/customers/customer/", {"action": "export", "_selected_action": [customer.pk]}
    )
    assert response["Content-Disposition"].startswith("attachment")
    exported = json.loads(response.content)[customer.external_id]
    assert exported["customer"]["phone"] == customer.phone
    assert len(exported["deliveries"]) == 1


@pytest.mark.django_db
def test_an_api_key_created_in_the_admin_is_shown_once_and_works(admin_client, client):
    response = admin_client.post(
        "/admin/promotions/apikey/add/", {"name": "pos", "scopes": ["redemptions"]}, follow=True
    )
    [message] = [str(m) for m in response.context["messages"] if "shown this once" in str(m)]
    key = message.rsplit(": ", 1)[1]
    api_key = ApiKey.objects.get(name="pos")
    assert api_key.key_hash == ApiKey.hash(key) and api_key.scopes == ["redemptions"]
    assert (
        key
        not in admin_client.get(f"/admin/promotions/apikey/{api_key.pk}/change/").content.decode()
    )
    denied = client.get("/api/v1/deliveries", HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert denied.status_code == 403  # the key works, and holds only its scope


@pytest.fixture
def nominatim():
    """A local stand-in for a Nominatim server: the one address it knows."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            known = "rivoli" in query.get("q", [""])[0].lower()
            places = [{"lat": "48.8606", "lon": "2.3417", "display_name": "Rivoli"}]
            body = json.dumps(places if known else []).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def geocode(admin_client, address):
    return admin_client.get("/admin/promotions/store/geocode/", {"address": address}).json()


@pytest.mark.django_db
def test_the_store_page_draws_its_map_from_packaged_leaflet(admin_client):
    store = Store.objects.create(
        code="R", name="R", latitude=48.86, longitude=2.34, radius_m=60, timezone="Europe/Paris"
    )
    page = admin_client.get(f"/admin/promotions/store/{store.pk}/change/").content.decode()
    assert 'id="store-map"' in page and "/static/leaflet/leaflet.js" in page
    # Scripts and stylesheets come from this server, none from a CDN.
    loaded = re.findall(r'<script[^>]*\ssrc="([^"]*)"', page)
    loaded += re.findall(r'<link[^>]*\shref="([^"]*)"', page)
    assert "/static/leaflet/leaflet.css" in loaded
    assert not [url for url in loaded if url.startswith(("http:", "https:", "//"))]
    assert admin_client.get("/static/leaflet/leaflet.js").status_code == 200


@pytest.mark.django_db
def test_geocoding_without_a_geocoder_says_so(admin_client, settings):
    settings.GEOCODER = "none"
    assert "No geocoder is configured" in geocode(admin_client, "142 Rue de Rivoli")["error"]


@pytest.mark.django_db
def test_geocoding_finds_an_address_through_the_configured_geocoder(
    admin_client, settings, nominatim
):
    settings.GEOCODER, settings.GEOCODER_URL = "nominatim", nominatim
    assert geocode(admin_client, "142 Rue de Rivoli, Paris") == {
        "latitude": 48.8606,
        "longitude": 2.3417,
    }
    assert "found no place" in geocode(admin_client, "Nowhere street")["error"]


@pytest.mark.django_db
def test_an_unreachable_geocoder_gets_a_clear_message(admin_client, settings):
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings.GEOCODER, settings.GEOCODER_URL = "nominatim", f"http://127.0.0.1:{port}"
    assert "could not be reached" in geocode(admin_client, "142 Rue de Rivoli")["error"]


@pytest.mark.django_db
def test_a_dry_run_from_the_campaign_list_reports_its_reach(admin_client):
    campaign = Campaign.objects.create(name="Welcome", offer_template="Hi {code}")
    response = admin_client.post(
        "/admin/promotions/campaign/",
        {"action": "dry_run_last_month", "_selected_action": [campaign.pk]},
        follow=True,
    )
    assert "Welcome, last 30 days: 0 SMS to 0 customers" in response.content.decode()


def watched_entrance() -> tuple[Store, Zone]:
    store = Store.objects.create(code="R", name="R", latitude=48.86, longitude=2.34, radius_m=60)
    zone = Zone.objects.create(store=store, code="entrance", name="Entrance")
    campaign = Campaign.objects.create(
        name="Entrance hello",
        offer_template="Hi {code}",
        trigger_type="beacon_zone",
        trigger_zone="entrance",
        status="paused",
    )
    campaign.stores.add(store)
    return store, zone


@pytest.mark.django_db
def test_the_admin_refuses_to_delete_a_store_or_zone_a_live_campaign_uses(admin_client):
    store, zone = watched_entrance()

    for url in (
        f"/admin/promotions/store/{store.pk}/delete/",
        f"/admin/promotions/zone/{zone.pk}/delete/",
    ):
        page = admin_client.post(url, {"post": "yes"}).content.decode()
        assert "Campaign Entrance hello" in page

    assert Zone.objects.filter(pk=zone.pk, store=store).exists()


@pytest.mark.django_db
def test_the_admin_refuses_to_delete_a_store_whose_zone_an_every_store_campaign_watches(
    admin_client,
):
    store, zone = watched_entrance()
    Campaign.objects.get().stores.clear()  # every store: it does not name this one

    page = admin_client.post(f"/admin/promotions/store/{store.pk}/delete/", {"post": "yes"})

    assert "Campaign Entrance hello" in page.content.decode()
    assert Zone.objects.filter(pk=zone.pk, store=store).exists()


@pytest.mark.django_db
def test_the_admin_keeps_a_watched_zone_s_code_and_its_place_on_the_store_page(admin_client):
    store, zone = watched_entrance()
    renamed = admin_client.post(
        f"/admin/promotions/zone/{zone.pk}/change/",
        {"store": store.pk, "code": "door", "name": "Door", "rssi_threshold": -80},
    )
    store_page = {
        **{f: getattr(store, f) for f in ("code", "name", "latitude", "longitude", "radius_m")},
        "address": "",
        "polygon": "null",
        "timezone": store.timezone,
        "zones-TOTAL_FORMS": 1,
        "zones-INITIAL_FORMS": 1,
        "zones-0-id": zone.pk,
        "zones-0-store": store.pk,
        "zones-0-code": "entrance",
        "zones-0-name": "Entrance",
        "zones-0-rssi_threshold": -80,
        "zones-0-DELETE": "on",
    }
    deleted = admin_client.post(f"/admin/promotions/store/{store.pk}/change/", store_page)

    assert "Change their trigger or end them first" in renamed.content.decode()
    assert "Change their trigger or end them before deleting it" in deleted.content.decode()
    zone.refresh_from_db()
    assert zone.code == "entrance"


@pytest.mark.django_db
def test_the_admin_refuses_a_beacon_with_the_identity_of_a_customer_s_device(admin_client):
    store = Store.objects.create(code="R", name="R", latitude=48.86, longitude=2.34, radius_m=60)
    identity = f"ibeacon:{BEACON_UUID}:7:7"
    DeviceFactory(ble_identity=identity)

    page = admin_client.post(
        "/admin/promotions/beacon/add/",
        {"store": store.pk, "identity": identity, "measured_power": -59},
    )

    assert "A customer&#x27;s device advertises this identity." in page.content.decode()
    assert not Beacon.objects.exists()
