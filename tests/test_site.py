"""What an operator sees: health, the schema and its docs, the demo."""

import json
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.contrib.messages.storage.cookie import MessageSerializer
from django.core import signing
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_script_prefix
from django.utils import timezone

from customers.models import Customer, Device, Product, ProductIntent
from promotions.models import (
    ApiKey,
    Beacon,
    Campaign,
    Delivery,
    LocationBatch,
    OfferCode,
    Ping,
    PresenceEvent,
    Redemption,
    Store,
    Zone,
)
from promotions.services import create_api_key
from tests.factories import (
    BEACON_UUID,
    BeaconFactory,
    CampaignFactory,
    CustomerFactory,
    DeliveryFactory,
    DeviceFactory,
    StoreFactory,
)

pytestmark = pytest.mark.django_db


def test_healthz_reports_the_database_and_the_broker():
    response = Client().get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["broker"].startswith("none")


def _wsgi(method: str, path: str, host: str) -> tuple[str, dict[str, str], bytes]:
    """A request as gunicorn hands it over: no test client smoothing anything."""
    from wsgiref.util import setup_testing_defaults

    from django.core import signals
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import close_old_connections

    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "HTTP_HOST": host}
    setup_testing_defaults(environ)
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer.update(status=status, headers=dict(headers))

    # As Django's test client does: the test's transaction must outlive the request.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        body = b"".join(WSGIHandler()(environ, start_response))
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    return answer["status"], answer["headers"], body


@pytest.fixture
def behind_a_load_balancer(settings):
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["passage.example.com"]
    settings.SECURE_SSL_REDIRECT = True


def test_a_load_balancer_probing_by_address_gets_the_health_report(behind_a_load_balancer, caplog):
    status, headers, body = _wsgi("GET", "/healthz", host="10.0.0.5")

    assert status == "200 OK"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "status": "ok",
        "database": "ok",
        "broker": "none (tasks run in the web process)",
    }
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_a_head_probe_gets_the_status_without_a_body(behind_a_load_balancer):
    status, _, body = _wsgi("HEAD", "/healthz", host="10.0.0.5")

    assert (status, body) == ("200 OK", b"")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_healthz_refuses_other_methods_in_json(behind_a_load_balancer, method):
    status, headers, body = _wsgi(method, "/healthz", host="10.0.0.5")

    assert status == "405 Method Not Allowed"
    assert headers["Allow"] == "GET, HEAD"
    assert json.loads(body) == {"detail": f'Method "{method}" not allowed.'}


def test_other_paths_still_refuse_a_host_they_do_not_serve(behind_a_load_balancer):
    status, _, _ = _wsgi("GET", "/api/v1/stores", host="10.0.0.5")

    assert status.startswith("400")


def test_an_api_client_sent_to_a_host_the_server_does_not_serve_is_told_so(
    behind_a_load_balancer,
):
    # A gateway, an app build or the simulator given the instance's address instead of the
    # public name: "Bad request." alone left its engineer guessing at the body.
    status, _, body = _wsgi("GET", "/api/v1/stores", host="10.0.0.5:8000")

    assert status.startswith("400")
    assert json.loads(body) == {
        "detail": "This server does not answer for the host '10.0.0.5:8000': send requests "
        "to the address it serves (its ALLOWED_HOSTS)."
    }


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


def test_the_schema_is_generated_once_not_on_every_anonymous_request(monkeypatch):
    # Anyone may read it without a key, and generating it takes a fifth of a second or more
    # of CPU: a client asking ten times a second held two sync workers, and every API call.
    from drf_spectacular.generators import SchemaGenerator

    generated = []
    generate = SchemaGenerator.get_schema

    def counted(self, *args, **kwargs):
        generated.append(1)
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(SchemaGenerator, "get_schema", counted)
    accepts = ["application/json", "application/vnd.oai.openapi", "application/yaml"]
    first = {accept: Client().get("/api/schema/", HTTP_ACCEPT=accept) for accept in accepts}
    again = {accept: Client().get("/api/schema/", HTTP_ACCEPT=accept) for accept in accepts}

    assert len(generated) <= 1  # none when an earlier test had it generated
    for accept in accepts:
        assert again[accept].status_code == 200
        assert again[accept].content == first[accept].content
        assert again[accept]["Content-Type"].startswith(accept)
    assert json.loads(again["application/json"].content)["info"]["title"] == "Passage API"
    assert again["application/yaml"].content.startswith(b"openapi: 3")
    assert again["application/yaml"]["Content-Disposition"] == 'inline; filename="Passage API.yaml"'
    assert "Accept" in again["application/json"]["Vary"]


def test_the_schema_generates_without_a_single_warning(tmp_path):
    # Clients are generated from it: a field drf-spectacular cannot type becomes a bare string.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", tmp_path / "s.yml")


def test_the_api_docs_page_is_served_without_a_cdn():
    response = Client().get("/api/docs/")

    assert response.status_code == 200
    assert b"cdn.jsdelivr" not in response.content
    assert b"swagger" in response.content.lower()


@pytest.mark.django_db
def test_load_demo_runs_again_after_a_demo_shopper_replied_stop(capsys):
    # Running `make run` again refreshes the demo in place: a shopper who replied STOP to a
    # demo SMS meanwhile stays opted out, and the rest still loads.
    from customers.models import SmsConsent
    from promotions.feedback import handle_inbound_sms

    call_command("load_demo")
    lea = Customer.objects.get(external_id="C-1001")
    handle_inbound_sms(from_number=lea.phone, body="STOP", now=timezone.now())

    call_command("load_demo")

    assert "Demo data loaded" in capsys.readouterr().out
    lea.refresh_from_db()
    assert lea.sms_consent == SmsConsent.OPTED_OUT


def test_load_demo_is_idempotent_and_prints_a_working_login(capsys):
    call_command("load_demo")
    call_command("load_demo")

    out = capsys.readouterr().out
    password = out.strip().split("Login:")[-1].splitlines()[0].split("/")[-1].strip()
    assert Client().login(username="admin", password=password)
    validate_password(password, User.objects.get(username="admin"))  # what the admin asks
    assert Store.objects.count() == 4
    assert Customer.objects.count() == 4
    assert Campaign.objects.filter(status="active").count() == 4
    assert ApiKey.objects.filter(name="demo (make run)").count() == 1
    lea = ProductIntent.objects.get(customer__external_id="C-1001", sku="X200")
    assert len(lea.view_times) == 3


def test_load_demo_runs_again_when_a_campaign_shares_a_demo_campaign_s_name(capsys):
    call_command("load_demo")
    demo = Campaign.objects.get(name="X200 walk-by")
    copy = CampaignFactory(name="X200 walk-by", status="paused", priority=1)
    demo.status = "paused"
    demo.save()

    call_command("load_demo")

    assert "Demo data loaded" in capsys.readouterr().out
    demo.refresh_from_db()
    copy.refresh_from_db()
    assert (demo.status, demo.priority) == ("active", 10)
    assert (copy.status, copy.priority) == ("paused", 1)
    assert Campaign.objects.filter(name="X200 walk-by").count() == 2


def test_load_demo_refreshes_a_demo_campaign_a_newcomer_edited(capsys):
    # README: "Running it again refreshes the demo data in place." Else a holdout, allowed
    # days or end date tried in the admin stays, and the README's walk-through sends nothing.
    call_command("load_demo")
    campaign = Campaign.objects.get(name="X200 walk-by")
    campaign.holdout_percent = 100
    campaign.allowed_days = ["sun"]
    campaign.ends_at = timezone.now() - timedelta(days=1)
    campaign.total_budget = 1
    campaign.full_clean()  # each edit is one the admin's form accepts
    campaign.save()

    call_command("load_demo")

    campaign.refresh_from_db()
    assert (campaign.holdout_percent, campaign.ends_at, campaign.total_budget) == (0, None, None)
    assert campaign.allowed_days == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    assert (campaign.status, campaign.priority, campaign.daily_budget) == ("active", 10, 1000)


def test_load_demo_says_which_demo_campaign_the_settings_refuse_and_loads_nothing(settings):
    from django.core.management.base import CommandError

    settings.INTENT_WINDOW_DAYS = 7  # shorter than the demo campaigns' browsing windows

    with pytest.raises(CommandError) as error:
        call_command("load_demo")

    assert str(error.value) == (
        "The demo campaign 'X200 walk-by' breaks a rule: intent_within_days: Browsing is "
        "remembered for 7 days at most."
    )
    assert not Store.objects.exists()
    assert not ApiKey.objects.exists()


def test_load_demo_counts_the_demo_s_shoppers_not_every_customer(capsys):
    CustomerFactory.create_batch(3)  # the simulator's shoppers, say

    call_command("load_demo")

    assert "Demo data loaded: 4 stores, 8 beacons, 4 shoppers, 4 active campaigns." in (
        capsys.readouterr().out
    )


def test_the_demo_shoppers_numbers_are_valid_but_reserved_for_fiction():
    from customers.phones import normalise_phone
    from promotions.demo import SHOPPERS

    for shopper in SHOPPERS:
        # North America keeps 555-0100 to 555-0199 for fiction in every area code.
        assert re.fullmatch(r"\+1\d{3}55501\d\d", shopper.phone)
        assert normalise_phone(shopper.phone) == shopper.phone


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

    live = admin_client.post(
        "/admin/promotions/campaign/preview/", {"template": "It\u2019s {nope}", "valid_days": "7"}
    ).json()
    assert "Unknown placeholder {nope}" in live["error"]
    live = admin_client.post(
        "/admin/promotions/campaign/preview/", {"template": "It\u2019s {code}"}
    )
    assert live.json()["encoding"] == "UCS-2"


@pytest.mark.django_db
def test_the_live_preview_names_the_store_and_product_the_page_holds(admin_client):
    paris = {"latitude": 48.86, "radius_m": 60, "timezone": "Europe/Paris"}
    Store.objects.create(code="A", name="Passage Alma", longitude=2.30, **paris)
    opera = Store.objects.create(code="O", name="Passage Op\u00e9ra", longitude=2.33, **paris)
    Product.objects.create(sku="K5", name="K5 keyboard")
    template = "{first_name}: {product_name} at {store_name}, {code}"

    live = admin_client.post(
        "/admin/promotions/campaign/preview/",
        {"template": template, "store": [str(opera.pk), "x", "9" * 40], "skus": '["K5"]'},
    ).json()
    half_typed = admin_client.post(
        "/admin/promotions/campaign/preview/",
        {"template": template, "skus": '["K5', "categories": '["keyboards"]'},
    ).json()

    assert live["body"].startswith("L\u00e9a: K5 keyboard at Passage Op\u00e9ra, ")
    assert half_typed["body"].startswith("L\u00e9a: keyboards (the customer's favourite) at ")


@pytest.mark.django_db
def test_the_results_page_shows_the_funnel_and_the_chart(admin_client):
    delivery = DeliveryFactory(sent_at=None)
    response = admin_client.get(f"/admin/promotions/campaign/{delivery.campaign_id}/results/")
    content = response.content.decode()
    assert response.status_code == 200
    assert '<td id="sent">1</td>' in content
    assert "<svg" in content and "1 sent" in content
    # The per-day table: a row for the day the delivery was recorded on, in the budget's zone
    # (UTC here; still within the page's 30 days if midnight passed since).
    day = timezone.localdate(delivery.created_at).isoformat()
    assert re.search(rf"<tr><td><a href=[^>]+>{day}</a></td><td>1</td><td>1</td>", content)


def test_the_results_page_counts_per_store_the_redemptions_its_totals_count(admin_client):
    # A holdout customer's purchase is the control group's: neither the totals nor the
    # store's row count it as the SMS's.
    sent = DeliveryFactory(sent_at=None)
    holdout = DeliveryFactory(
        campaign=sent.campaign, store=sent.store, status="holdout", reason="holdout", code=""
    )
    for delivery in (sent, holdout):
        Redemption.objects.create(delivery=delivery, store=sent.store, redeemed_at=timezone.now())

    response = admin_client.get(f"/admin/promotions/campaign/{sent.campaign_id}/results/")

    [row] = response.context["by_store"]
    assert (row["decisions"], row["sent"], row["redeemed"]) == (2, 1, 1)
    assert response.context["stats"]["redeemed"] == 1


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


def admin_row(page: str, header: str) -> str:
    """A row of the decision trace on a delivery's admin page."""
    return re.search(rf"<th>{header}</th><td>(.*?)</td>", page).group(1)


def readonly_field(page: str, label: str) -> str:
    return re.search(rf"{re.escape(label)}:</label>\s*<div class=\"readonly\">(.*?)</div>", page)[1]


@pytest.mark.django_db
def test_a_delivery_s_trace_names_its_campaigns_and_reads_its_times_as_the_admin_does(
    admin_client,
):
    winner, runner_up = CampaignFactory(name="X200 walk-by"), CampaignFactory(name="Soldes")
    trace = {
        "event": {"kind": "entered", "store": "RIVOLI", "at": "2026-11-24T14:00:00.123456+00:00"},
        "rank": 1,
        "ranked": [winner.pk, runner_up.pk],
        "limits": "all passed",
    }
    delivery = DeliveryFactory(campaign=winner, trace=trace)

    page = admin_client.get(f"/admin/promotions/delivery/{delivery.pk}/change/").content.decode()

    assert admin_row(page, "Rank") == "1 of 2: X200 walk-by, Soldes"
    assert admin_row(page, "Presence") == "entered at RIVOLI, Nov. 24, 2026, 2 p.m. UTC"
    # The trace is shown formatted, not also as its stored JSON.
    assert "&quot;ranked&quot;" not in page and '"ranked"' not in page
    # The decision's times are UTC, and say so.
    assert ">Times (UTC)</h2>" in page


@pytest.mark.django_db
def test_a_delivery_s_trace_says_in_words_which_limit_held_it(admin_client):
    trace = {"limits": "global_cap", "limit": "another SMS within the last 60 minutes"}
    delivery = DeliveryFactory(status="suppressed", reason="global_cap", trace=trace)

    page = admin_client.get(f"/admin/promotions/delivery/{delivery.pk}/change/").content.decode()

    assert admin_row(page, "Limits") == (
        "Global frequency cap: another SMS within the last 60 minutes"
    )


@pytest.mark.django_db
def test_a_delivery_names_its_presence_event_by_store_and_time(admin_client):
    rivoli = StoreFactory(code="RIVOLI", name="Passage Rivoli")
    delivery = DeliveryFactory(store=rivoli)
    delivery.presence_event = PresenceEvent.objects.create(
        customer=delivery.customer,
        place_key=f"store:{rivoli.pk}",
        kind="entered",
        store=rivoli,
        occurred_at=datetime(2026, 11, 24, 14, 5, tzinfo=ZoneInfo("UTC")),
    )
    delivery.save()

    page = admin_client.get(f"/admin/promotions/delivery/{delivery.pk}/change/").content.decode()

    assert ">Entered Passage Rivoli (RIVOLI), Nov. 24, 2026, 2:05 p.m. UTC</a>" in page


@pytest.mark.django_db
def test_a_delivery_s_expiry_reads_as_the_day_its_sms_gave(admin_client):
    # The SMS told a Los Angeles customer their code is valid until 12/06: in UTC the
    # offer's last moment is on the 7th.
    los_angeles = ZoneInfo("America/Los_Angeles")
    last_moment = datetime(2026, 12, 6, 23, 59, 59, tzinfo=los_angeles)
    delivery = DeliveryFactory(
        customer=CustomerFactory(timezone="America/Los_Angeles"), expires_at=last_moment
    )

    page = admin_client.get(f"/admin/promotions/delivery/{delivery.pk}/change/").content.decode()

    assert readonly_field(page, "Valid until, as its SMS says") == (
        "Dec. 6, 2026, 11:59 p.m. (America/Los_Angeles)"
    )
    assert readonly_field(page, "Expires at") == "Dec. 7, 2026, 7:59 a.m."  # under "Times (UTC)"


def count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured.captured_queries)


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["delivery", "redemption"])
def test_the_deliveries_and_redemptions_lists_read_their_rows_in_a_fixed_number_of_queries(
    admin_client, page
):
    def add(count):
        for delivery in DeliveryFactory.create_batch(count):
            Redemption.objects.create(
                delivery=delivery, store=delivery.store, redeemed_at=timezone.now()
            )

    url = f"/admin/promotions/{page}/"
    add(2)
    count_queries(admin_client, url)  # caches filled on a first view are not counted
    few = count_queries(admin_client, url)
    add(20)

    assert count_queries(admin_client, url) == few


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["delivery", "redemption", "presenceevent"])
def test_what_the_engine_recorded_cannot_be_deleted_in_the_admin(admin_client, page):
    delivery = DeliveryFactory()
    row = {
        "delivery": delivery,
        "redemption": Redemption.objects.create(delivery=delivery, redeemed_at=timezone.now()),
        "presenceevent": PresenceEvent.objects.create(
            customer=delivery.customer,
            place_key=f"store:{delivery.store_id}",
            kind="entered",
            store=delivery.store,
            occurred_at=timezone.now(),
        ),
    }[page]

    one = admin_client.post(f"/admin/promotions/{page}/{row.pk}/delete/", {"post": "yes"})
    listed = admin_client.post(
        f"/admin/promotions/{page}/",
        {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"},
    )

    assert one.status_code == 403
    assert listed.status_code in (200, 302)
    assert type(row).objects.filter(pk=row.pk).exists()


@pytest.mark.django_db
def test_deleting_a_delivery_in_the_admin_cannot_hand_its_pool_code_to_another_customer(
    admin_client,
):
    # A code already in a customer's SMS would go back to the pool, for the next customer.
    delivery = DeliveryFactory(code="POS-1")
    OfferCode.objects.create(campaign=delivery.campaign, code="POS-1", delivery=delivery)

    admin_client.post(
        "/admin/promotions/delivery/",
        {"action": "delete_selected", "_selected_action": [delivery.pk], "post": "yes"},
    )

    assert Delivery.objects.filter(pk=delivery.pk, code="POS-1").exists()
    assert OfferCode.objects.get().delivery_id == delivery.pk


@pytest.mark.django_db
def test_marketers_run_campaigns_but_cannot_see_keys_or_export_or_erase_customers(marketer):
    DeliveryFactory()
    assert marketer.get("/admin/promotions/campaign/").status_code == 200
    assert marketer.get("/admin/promotions/campaign/add/").status_code == 200
    assert marketer.get("/admin/promotions/apikey/").status_code == 403
    page = marketer.get("/admin/customers/customer/").content.decode()
    assert "Export everything" not in page and "Erase them" not in page


@pytest.mark.django_db
def test_a_grant_an_administrator_gives_the_marketers_outlives_the_next_migrate(marketer):
    from django.contrib.auth.models import Group, Permission

    CustomerFactory()
    marketers = Group.objects.get(name="Marketers")
    marketers.permissions.add(Permission.objects.get(codename="erase_customer"))
    marketers.permissions.remove(Permission.objects.get(codename="add_campaign"))
    call_command("migrate", verbosity=0)

    # The grant stays; a grant the group must have comes back.
    page = marketer.get("/admin/customers/customer/").content.decode()
    assert "Erase them" in page
    assert marketer.get("/admin/promotions/campaign/add/").status_code == 200


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


@pytest.mark.django_db
def test_a_new_api_key_never_travels_in_a_cookie(admin_client):
    created = admin_client.post(
        "/admin/promotions/apikey/add/", {"name": "pos", "scopes": ["redemptions"]}
    )
    shown = admin_client.get(created["Location"])

    [message] = [str(m) for m in shown.context["messages"] if "shown this once" in str(m)]
    key = message.rsplit(": ", 1)[1]
    cookies = [*created.cookies.values(), *shown.cookies.values(), *admin_client.cookies.values()]
    # Signed and compressed, not encrypted: whoever holds the cookie reads it.
    assert all(key not in readable(cookie.value) for cookie in cookies)


def readable(cookie_value: str) -> str:
    """A cookie's value as Django's message cookie encodes it, or as it is."""
    signer = signing.get_cookie_signer(salt="django.contrib.messages")
    try:
        return str(signer.unsign_object(cookie_value, serializer=MessageSerializer))
    except signing.BadSignature:
        return cookie_value


@pytest.mark.django_db
def test_the_key_list_cannot_be_filtered_by_the_hash(admin_client):
    api_key, _ = create_api_key(name="pos", scopes=["redemptions"])

    # Each answer would tell whether the hash starts so: the hash, a character at a time.
    response = admin_client.get(
        f"/admin/promotions/apikey/?key_hash__startswith={api_key.key_hash[:1]}"
    )

    assert response.status_code == 400  # Django's answer to a lookup it does not allow


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


@pytest.fixture
def staff_without_permissions():
    client = Client()
    client.force_login(User.objects.create_user("paul", is_staff=True))
    return client


@pytest.mark.django_db
def test_a_staff_account_without_permissions_can_neither_preview_nor_geocode(
    staff_without_permissions, settings, nominatim
):
    settings.GEOCODER, settings.GEOCODER_URL = "nominatim", nominatim
    store = StoreFactory(name="Rivoli")
    preview = staff_without_permissions.post(
        "/admin/promotions/campaign/preview/", {"template": "{store_name}", "store": store.pk}
    )

    assert preview.status_code == 403
    geocoded = staff_without_permissions.get(
        "/admin/promotions/store/geocode/", {"address": "Rue de Rivoli"}
    )
    assert geocoded.status_code == 403


@pytest.mark.django_db
def test_a_marketer_previews_a_campaign_and_geocodes_a_store(marketer, settings, nominatim):
    settings.GEOCODER, settings.GEOCODER_URL = "nominatim", nominatim
    store = StoreFactory(name="Rivoli")
    previewed = marketer.post(
        "/admin/promotions/campaign/preview/", {"template": "{store_name}", "store": store.pk}
    )
    geocoded = marketer.get("/admin/promotions/store/geocode/", {"address": "Rue de Rivoli"})

    assert previewed.status_code == 200 and "Rivoli" in previewed.json()["html"]
    assert geocoded.json() == {"latitude": 48.8606, "longitude": 2.3417}


@pytest.mark.django_db
def test_a_dry_run_from_the_campaign_list_reports_its_reach(admin_client):
    campaign = Campaign.objects.create(name="Welcome", offer_template="Hi {code}")
    response = admin_client.post(
        "/admin/promotions/campaign/",
        {"action": "dry_run_last_month", "_selected_action": [campaign.pk]},
        follow=True,
    )
    assert "Welcome, last 30 days: 0 SMS to 0 customers" in response.content.decode()


@pytest.mark.django_db
def test_a_dry_run_from_the_campaign_list_says_what_it_did_not_decide_or_count(admin_client):
    rivoli = StoreFactory(code="RIVOLI")
    welcome = CampaignFactory(name="Welcome", status="draft")
    walk_by = CampaignFactory(
        name="Walk-by", status="draft", trigger_type="near", trigger_distance_m=250
    )
    for campaign in (welcome, walk_by):
        campaign.stores.add(rivoli)
    at = timezone.now() - timedelta(hours=2)

    def entered(customer, *, minutes: int, late_by: timedelta = timedelta(0)) -> PresenceEvent:
        occurred_at = at + timedelta(minutes=minutes)
        return PresenceEvent.objects.create(
            customer=customer,
            store=rivoli,
            kind="entered",
            place_key=f"store:{rivoli.id}",
            occurred_at=occurred_at,
            created_at=occurred_at + late_by,
        )

    # Uploaded 20 minutes late (the phone was offline): live, it was never decided.
    entered(CustomerFactory(), minutes=0, late_by=timedelta(minutes=20))
    # Texted by a campaign that ranks above Welcome.
    texted = CustomerFactory()
    DeliveryFactory(
        customer=texted,
        campaign=CampaignFactory(priority=10),
        store=rivoli,
        presence_event=entered(texted, minutes=30),
        status="delivered",
    )
    entered(CustomerFactory(sms_consent="opted_out"), minutes=60)

    shown = run_action(admin_client, "dry_run_last_week", welcome, walk_by)

    [welcome_run] = [message for message in shown if message.startswith("Welcome")]
    [walk_by_run] = [message for message in shown if message.startswith("Walk-by")]
    assert welcome_run == (
        "Welcome, last 7 days: 0 SMS to 0 customers from 3 presence events; held back: "
        "no SMS consent 1. 1 visit reached Passage over 10 minutes after the fact, too late to "
        "text: skipped, as they are when the campaign is live. 1 visit went to a campaign that "
        "ranks above this one (by priority, then by how strongly the customer showed "
        "interest): a visit gets one SMS at most."
    )
    assert walk_by_run.startswith(
        "Walk-by, last 7 days: 0 SMS to 0 customers from 3 presence events; held back: none. "
        "Approaches within 250 m of RIVOLI were not recorded: "
    )
    assert "visit" not in walk_by_run.split("Approaches")[0]


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

    assert (
        "Renaming this zone would leave campaign Entrance hello with no zone "
        "&#x27;entrance&#x27; in its store R. Change its trigger or end it first."
    ) in renamed.content.decode()
    assert (
        "Deleting zone &#x27;entrance&#x27; would leave campaign Entrance hello with no zone "
        "&#x27;entrance&#x27; in its store R. Change its trigger or end it first."
    ) in deleted.content.decode()
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


@pytest.mark.django_db
def test_the_admin_stores_a_beacon_identity_typed_in_any_case_as_its_key(admin_client):
    store = Store.objects.create(code="R", name="R", latitude=48.86, longitude=2.34, radius_m=60)

    typed = admin_client.post(
        "/admin/promotions/beacon/add/",
        {
            "store": store.pk,
            "identity": f" IBEACON:{BEACON_UUID.upper()}:07:7",
            "measured_power": -59,
        },
    )
    malformed = admin_client.post(
        "/admin/promotions/beacon/add/",
        {"store": store.pk, "identity": "ibeacon:+f7826da6:7:7", "measured_power": -59},
    )

    assert typed.status_code == 302
    assert Beacon.objects.get().identity == f"ibeacon:{BEACON_UUID}:7:7"
    assert "identity" in malformed.context["adminform"].form.errors
    assert Beacon.objects.count() == 1


# --- The admin applies the API's limits -------------------------------------------------


def form_errors(response) -> dict[str, list[str]]:
    """The messages the change page shows, by field: what the marketer reads."""
    assert response.status_code == 200, "saved instead of showing a message"
    form = response.context["adminform"].form
    errors = {name: list(messages) for name, messages in form.errors.items()}
    for inline in response.context["inline_admin_formsets"]:
        for number, inline_errors in enumerate(inline.formset.errors):
            for name, messages in inline_errors.items():
                errors[f"{inline.formset.prefix}-{number}-{name}"] = list(messages)
    return errors


def store_form(**changes) -> dict:
    """The store add page's form, as the browser posts it."""
    return {
        "code": "RIVOLI",
        "name": "Passage Rivoli",
        "address": "142 Rue de Rivoli, Paris",
        "latitude": 48.8606,
        "longitude": 2.3417,
        "radius_m": 60,
        "polygon": "",
        "timezone": "Europe/Paris",
        "zones-TOTAL_FORMS": 0,
        "zones-INITIAL_FORMS": 0,
        **changes,
    }


BOW_TIE = {
    "type": "Polygon",
    "coordinates": [
        [[2.341, 48.860], [2.342, 48.861], [2.342, 48.860], [2.341, 48.861], [2.341, 48.860]]
    ],
}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"radius_m": "", "polygon": json.dumps(BOW_TIE)}, "polygon", "crosses itself"),
        ({"radius_m": "", "polygon": '"foo"'}, "polygon", "Expected a GeoJSON Polygon"),
        ({"radius_m": "0"}, "radius_m", "greater than or equal to 1"),
        ({"radius_m": "1e12"}, "radius_m", "less than or equal to 50000"),
        ({"timezone": "Mars/Olympus"}, "timezone", "Unknown time zone 'Mars/Olympus'"),
        (
            {"latitude": "north", "radius_m": "", "polygon": json.dumps(BOW_TIE)},
            "latitude",
            "Enter a number",
        ),
    ],
)
def test_the_store_admin_refuses_a_fence_or_time_zone_the_engine_cannot_use(
    admin_client, changes, field, message
):
    response = admin_client.post("/admin/promotions/store/add/", store_form(**changes))

    assert message in " ".join(form_errors(response)[field])
    # Each fault is said once, on its field.
    assert all(len(set(errors)) == len(errors) for errors in form_errors(response).values())
    assert not Store.objects.exists()


def test_the_store_admin_saves_a_good_store(admin_client):
    response = admin_client.post("/admin/promotions/store/add/", store_form())

    assert response.status_code == 302
    store = Store.objects.get()
    assert (store.code, store.radius_m, store.polygon, store.timezone) == (
        "RIVOLI",
        60,
        None,
        "Europe/Paris",
    )


def campaign_form(**changes) -> dict:
    """The campaign add page's form, as the browser posts it."""
    return {
        "name": "Welcome",
        "status": "draft",
        "priority": 0,
        "trigger_type": "enter",
        "intent_skus": "[]",
        "intent_categories": "[]",
        "intent_min_views": 1,
        "intent_within_days": 30,
        "offer_template": "Hi {code}",
        "offer_valid_days": 7,
        "allowed_days": '["mon", "tue", "wed", "thu", "fri", "sat", "sun"]',
        "holdout_percent": 0,
        **changes,
    }


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        # A cap of a million days overflows the dates every batch computes: nothing sends.
        ({"limit_per_customer_days": "1000000"}, "limit_per_customer_days"),
        ({"limit_per_customer_days": "0"}, "limit_per_customer_days"),
        ({"trigger_type": "near", "trigger_distance_m": "1e300"}, "trigger_distance_m"),
        ({"trigger_type": "near", "trigger_distance_m": "-5"}, "trigger_distance_m"),
        ({"trigger_type": "dwell", "trigger_minutes": "99999999999"}, "trigger_minutes"),
        # An expiry date past the year 9999: the page's SMS preview cannot compute it.
        ({"offer_valid_days": "10000000000"}, "offer_valid_days"),
        ({"offer_valid_days": "0"}, "offer_valid_days"),
        ({"priority": "1001"}, "priority"),
        ({"intent_min_views": "101"}, "intent_min_views"),
        ({"intent_within_days": "0"}, "intent_within_days"),
        ({"holdout_percent": "101"}, "holdout_percent"),
    ],
)
def test_the_campaign_admin_keeps_numbers_within_the_api_s_bounds(admin_client, changes, field):
    response = admin_client.post("/admin/promotions/campaign/add/", campaign_form(**changes))

    assert field in form_errors(response)
    assert not Campaign.objects.exists()


@pytest.mark.parametrize(
    ("field", "typed"),
    [
        ("intent_skus", '{"X200": 1}'),
        ("intent_skus", "5"),
        ("intent_skus", "true"),
        ("intent_skus", "[5]"),
        ("intent_categories", '{"audio": 1}'),
        ("intent_categories", "3"),
    ],
)
def test_a_mistyped_intent_list_is_a_message_on_its_field(admin_client, field, typed):
    # The page is shown again with the message, its SMS preview reading what was typed.
    response = admin_client.post("/admin/promotions/campaign/add/", campaign_form(**{field: typed}))

    assert field in form_errors(response)
    assert "sms-preview" in response.content.decode()
    assert not Campaign.objects.exists()


def test_the_campaign_admin_accepts_numbers_at_the_api_s_bounds(admin_client):
    response = admin_client.post(
        "/admin/promotions/campaign/add/",
        campaign_form(
            trigger_type="near",
            trigger_distance_m="50000",
            priority="-1000",
            limit_per_customer_days="3650",
            offer_valid_days="365",
            intent_skus='["X200"]',
            intent_min_views="100",
            intent_within_days="30",
        ),
    )

    assert response.status_code == 302
    campaign = Campaign.objects.get()
    assert (campaign.limit_per_customer_days, campaign.offer_valid_days) == (3650, 365)
    page = admin_client.get(f"/admin/promotions/campaign/{campaign.pk}/change/")
    assert page.status_code == 200


@pytest.mark.parametrize("allowed_days", ['[["mon"]]', "[{}]", '"mon"', '["monday"]', "[]"])
def test_the_campaign_admin_says_how_to_write_the_allowed_days(admin_client, allowed_days):
    response = admin_client.post(
        "/admin/promotions/campaign/add/", campaign_form(allowed_days=allowed_days)
    )

    assert form_errors(response)["allowed_days"]
    assert not Campaign.objects.exists()


def run_action(admin_client, action: str, *campaigns: Campaign) -> list[str]:
    response = admin_client.post(
        "/admin/promotions/campaign/",
        {"action": action, "_selected_action": [campaign.pk for campaign in campaigns]},
        follow=True,
    )
    return [str(message) for message in response.context["messages"]]


@pytest.mark.parametrize(("action", "status"), [("pause", "paused"), ("activate", "active")])
def test_pausing_or_activating_leaves_ended_campaigns_ended_and_says_so(
    admin_client, action, status
):
    ended = Campaign.objects.create(name="Summer sale", offer_template="Hi {code}", status="ended")
    draft = Campaign.objects.create(name="Welcome", offer_template="Hi {code}", status="draft")

    shown = run_action(admin_client, action, ended, draft)

    ended.refresh_from_db()
    draft.refresh_from_db()
    assert (ended.status, draft.status) == ("ended", status)
    assert any("Summer sale" in message and "ended" in message for message in shown)
    assert any(message.startswith("1 campaign(s)") for message in shown)


def customer_form(admin_client, customer: Customer, **changes) -> dict:
    """The customer change page's form, as the browser posts it, with `changes`."""
    page = admin_client.get(f"/admin/customers/customer/{customer.pk}/change/")
    form = {
        "external_id": customer.external_id,
        "phone": customer.phone,
        "first_name": customer.first_name,
        "timezone": customer.timezone,
        "locale": customer.locale,
    }
    for inline in page.context["inline_admin_formsets"]:
        form[f"{inline.formset.prefix}-TOTAL_FORMS"] = 0
        form[f"{inline.formset.prefix}-INITIAL_FORMS"] = 0
    return {**form, **changes}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"phone": "hello"}, "phone", "Not a phone number"),
        ({"phone": "+33199001234"}, "phone", "cannot receive SMS"),
        ({"timezone": "Nowhere/Land"}, "timezone", "Unknown time zone 'Nowhere/Land'"),
        ({"locale": "French please"}, "locale", "Expected a BCP 47 locale"),
    ],
)
def test_the_customer_admin_refuses_what_the_api_refuses(admin_client, changes, field, message):
    customer = CustomerFactory(phone="+33612345678", timezone="Europe/Paris")

    response = admin_client.post(
        f"/admin/customers/customer/{customer.pk}/change/",
        customer_form(admin_client, customer, **changes),
    )

    assert message in " ".join(form_errors(response)[field])
    customer.refresh_from_db()
    assert (customer.phone, customer.timezone) == ("+33612345678", "Europe/Paris")


def test_the_customer_admin_stores_a_national_number_in_e164(admin_client):
    customer = CustomerFactory(phone="", locale="fr-FR")

    response = admin_client.post(
        f"/admin/customers/customer/{customer.pk}/change/",
        customer_form(admin_client, customer, phone="06 12 34 56 78"),
    )

    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.phone == "+33612345678"


def test_a_phone_changed_in_the_admin_needs_consent_again(admin_client):
    customer = CustomerFactory(phone="+33612345678", sms_consent="opted_in")

    response = admin_client.post(
        f"/admin/customers/customer/{customer.pk}/change/",
        customer_form(admin_client, customer, phone="+33698765432"),
    )

    assert response.status_code == 302
    customer.refresh_from_db()
    assert (customer.phone, customer.sms_consent) == ("+33698765432", "unknown")
    change = customer.consent_log.get()
    assert (change.previous, change.consent, change.source) == ("opted_in", "unknown", "admin")


def test_the_customer_admin_refuses_a_device_with_a_store_beacon_s_identity(admin_client):
    customer = CustomerFactory()
    beacon = BeaconFactory()
    form = customer_form(admin_client, customer)
    form.update(
        {
            "devices-TOTAL_FORMS": 1,
            "devices-0-device_id": "lea-phone",
            "devices-0-platform": "ios",
            "devices-0-ble_identity": beacon.identity,
        }
    )

    response = admin_client.post(f"/admin/customers/customer/{customer.pk}/change/", form)

    assert (
        "A store beacon advertises this identity."
        in form_errors(response)["devices-0-ble_identity"]
    )
    assert not Device.objects.exists()


def test_load_demo_starts_a_demo_campaign_again_when_a_newcomer_ended_it(capsys):
    # An ended campaign stays ended: the next make run starts the demo one anew beside it.
    call_command("load_demo")
    ended = Campaign.objects.get(name="X200 walk-by")
    ended.status = "ended"
    ended.save()

    call_command("load_demo")
    call_command("load_demo")

    assert "Demo data loaded" in capsys.readouterr().out
    ended.refresh_from_db()
    assert ended.status == "ended"
    assert list(
        Campaign.objects.filter(name="X200 walk-by").exclude(pk=ended.pk).values_list("status")
    ) == [("active",)]


def test_load_demo_giving_a_demo_phone_back_leaves_its_other_owner_s_history_behind(api):
    # A newcomer tries README's change of hands on a demo phone (Léa's, registered to Tom),
    # then runs make run again: the phone goes back to Léa without Tom's pings, as any
    # change of hands leaves the previous owner's location history behind.
    from tests.clock import ago

    call_command("load_demo")
    api.post("/api/v1/devices", {"device_id": "lea-iphone", "customer_id": "C-1002"})
    tom_at_home = {"device_id": "lea-iphone", "latitude": 45.5, "longitude": 4.5, "accuracy": 10}
    api.post("/api/v1/pings", {"pings": [{**tom_at_home, "recorded_at": ago(seconds=0)}]})
    assert Ping.objects.count() == 1

    call_command("load_demo")

    assert Device.objects.get(device_id="lea-iphone").customer.external_id == "C-1001"
    assert api.get("/api/v1/customers/C-1001/export").json()["pings"] == []


def test_load_demo_names_the_device_that_took_a_demo_phone_s_identity(api):
    # A newcomer moves Léa's advertised identity to a tag of their own, then runs make run.
    from django.core.management.base import CommandError

    from promotions.demo import DEMO_BEACON_UUID

    call_command("load_demo")
    identity = {"uuid": DEMO_BEACON_UUID, "major": 1000, "minor": 1}
    lea_phone = {"device_id": "lea-iphone", "customer_id": "C-1001", "ibeacon": None}
    assert api.post("/api/v1/devices", lea_phone).status_code == 200
    tag = {"device_id": "my-tag", "customer_id": "C-1002", "ibeacon": identity}
    assert api.post("/api/v1/devices", tag).status_code == 201

    with pytest.raises(CommandError) as error:
        call_command("load_demo")

    assert str(error.value) == (
        "Device 'my-tag' advertises the BLE identity of the demo shopper C-1001's phone "
        "(lea-iphone): remove its identity, or the device, and run again."
    )


@pytest.mark.django_db
def test_the_deliveries_list_filters_what_the_results_page_counts_as_sent(admin_client):
    campaign = CampaignFactory()
    for status in ("sent", "delivered", "undelivered", "failed", "suppressed", "queued"):
        DeliveryFactory(campaign=campaign, status=status)

    def listed(query):
        page = admin_client.get(f"/admin/promotions/delivery/?{query}").content.decode()
        return int(re.search(r"(\d+) deliver(?:y|ies)", page).group(1))

    # As "SMS sent" on the results page: sent, then delivered or not.
    assert (listed("sent=yes"), listed("sent=no")) == (3, 3)


def test_the_site_root_leads_to_the_admin_under_any_path_prefix(client):
    # gunicorn's SCRIPT_NAME: the admin is below the prefix, not at the host's /admin/.
    assert client.get("/").headers["Location"] == "/admin/"
    # Django's WSGI handler sets the prefix from SCRIPT_NAME; its test client does not.
    with override_script_prefix("/passage/"):
        assert client.get("/").headers["Location"] == "/passage/admin/"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("password", "created"),
    [
        ("password", False),
        ("20261130", False),
        ("marie-marie", False),
        ("a-long-pass-phrase", True),
    ],
)
def test_an_admin_account_needs_a_password_that_is_long_and_not_guessable(
    admin_client, password, created
):
    admin_client.post(
        "/admin/auth/user/add/",
        {
            "username": "marie",
            "password1": password,
            "password2": password,
            "usable_password": "true",
        },
    )

    assert User.objects.filter(username="marie").exists() is created


@pytest.mark.django_db
def test_marketers_see_the_whole_cart_intent_as_they_see_a_product_s():
    from django.contrib.auth.models import Group

    granted = set(
        Group.objects.get(name="Marketers").permissions.values_list("codename", flat=True)
    )
    assert {"view_productintent", "view_categoryintent", "view_cartintent"} <= granted
