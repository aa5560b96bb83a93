"""What marketers can and cannot do to customers' data in the admin."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.formats import date_format

from customers.models import (
    BrowsingEvent,
    CartIntent,
    CategoryIntent,
    Customer,
    Device,
    ProductIntent,
    Visitor,
)
from promotions import beacons
from promotions.models import DeviceTrack, Ping
from tests.clock import ago
from tests.factories import BEACON_UUID, CustomerFactory, DeliveryFactory, DeviceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def lea():
    return CustomerFactory(external_id="C-1")


def view(event_id, **fields):
    return {
        "event_id": event_id,
        "customer_id": "C-1",
        "type": "product_view",
        "sku": "X200",
        "category": "audio",
        "occurred_at": ago(hours=1),
        **fields,
    }


def device_form(device_id, customer, **fields):
    return {
        "device_id": device_id,
        "customer": customer.pk,
        "platform": "other",
        "ble_identity": "",
        **fields,
    }


def test_giving_a_device_to_another_customer_deletes_its_location_history(admin_client, api, lea):
    tom = CustomerFactory(external_id="C-2")
    device = DeviceFactory(device_id="shared", customer=lea)
    fix = {"device_id": "shared", "latitude": 48.86, "longitude": 2.34, "accuracy": 10}
    api.post("/api/v1/pings", {"pings": [{**fix, "recorded_at": ago(minutes=5)}]}, format="json")
    assert DeviceTrack.objects.filter(device=device).exists()  # the worker followed it

    response = admin_client.post(
        f"/admin/customers/device/{device.pk}/change/", device_form("shared", tom)
    )

    assert response.status_code == 302
    assert Device.objects.get().customer == tom
    export = api.get("/api/v1/customers/C-2/export").json()
    assert (export["pings"], export["device_tracks"]) == ([], [])
    assert not Ping.objects.exists()


def test_editing_a_device_for_the_same_customer_keeps_its_history(admin_client, api, lea):
    device = DeviceFactory(device_id="lea-phone", customer=lea)
    fix = {"device_id": "lea-phone", "latitude": 48.86, "longitude": 2.34, "accuracy": 10}
    api.post("/api/v1/pings", {"pings": [{**fix, "recorded_at": ago(minutes=5)}]}, format="json")

    response = admin_client.post(
        f"/admin/customers/device/{device.pk}/change/",
        device_form("lea-phone", lea, platform="ios"),
    )

    assert response.status_code == 302
    assert Ping.objects.count() == 1


def test_a_ble_identity_typed_in_upper_case_is_stored_as_its_key(admin_client, api, lea):
    typed = f"IBEACON:{BEACON_UUID.upper()}:007:9"

    response = admin_client.post(
        "/admin/customers/device/add/", device_form("lea-tag", lea, ble_identity=typed)
    )

    assert response.status_code == 302
    assert Device.objects.get().ble_identity == beacons.ibeacon_key(BEACON_UUID, 7, 9)
    export = api.get("/api/v1/customers/C-1/export")
    assert export.status_code == 200
    identity = {"ibeacon": {"uuid": BEACON_UUID, "major": 7, "minor": 9}}
    assert export.json()["devices"][0]["ble_identity"] == identity
    again = api.post("/api/v1/devices", {"device_id": "lea-tag", "customer_id": "C-1"})
    assert again.status_code == 200
    assert again.json()["ibeacon"] == identity["ibeacon"]


def test_a_typed_identity_that_another_device_holds_is_refused(admin_client, lea):
    DeviceFactory(ble_identity=beacons.ibeacon_key(BEACON_UUID, 7, 9))

    response = admin_client.post(
        "/admin/customers/device/add/",
        device_form("lea-tag", lea, ble_identity=f"ibeacon:{BEACON_UUID.upper()}:7:9"),
    )

    assert response.status_code == 200
    assert "ble_identity" in response.context["adminform"].form.errors
    assert not Device.objects.filter(device_id="lea-tag").exists()


@pytest.mark.parametrize(
    "typed",
    [
        "ibeacon:not-a-uuid:7:9",
        f"ibeacon:{BEACON_UUID}:70000:9",
        f"ibeacon:{BEACON_UUID}:-1:9",
        "eddystone:0011:22",
        "altbeacon:whatever",
    ],
)
def test_a_malformed_ble_identity_is_refused_with_a_message_on_its_field(admin_client, lea, typed):
    response = admin_client.post(
        "/admin/customers/device/add/", device_form("lea-tag", lea, ble_identity=typed)
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["ble_identity"]
    assert not Device.objects.exists()


@pytest.mark.parametrize("model", [ProductIntent, CategoryIntent])
def test_intent_can_be_viewed_but_not_edited_added_or_deleted(admin_client, api, lea, model):
    api.post("/api/v1/events", {"events": [view("e1")]}, format="json")
    row = model.objects.get()
    url = f"/admin/customers/{model._meta.model_name}/"
    form = {"customer": lea.pk, "sku": "X200", "category": "audio", "view_times": '["yesterday"]'}

    assert admin_client.get(f"{url}{row.pk}/change/").status_code == 200
    assert admin_client.post(f"{url}{row.pk}/change/", form).status_code == 403
    assert admin_client.get(f"{url}add/").status_code == 403
    assert admin_client.post(f"{url}{row.pk}/delete/", {"post": "yes"}).status_code == 403

    assert len(model.objects.get().view_times) == 1
    response = api.post("/api/v1/events", {"events": [view("e2")]}, format="json")
    assert response.status_code == 202
    assert len(model.objects.get().view_times) == 2


def test_a_customer_s_page_shows_each_intent_as_it_scores_now(admin_client, api, lea, settings):
    settings.INTENT_HALF_LIFE_DAYS = 7
    events = [
        view("e1", occurred_at=ago(days=7)),
        view("e2", type="cart_abandoned", sku=None, category=None, occurred_at=ago(days=7)),
    ]
    assert api.post("/api/v1/events", {"events": events}, format="json").status_code == 202
    stored = {
        "product": ProductIntent.objects.get().score,
        "category": CategoryIntent.objects.get().score,
        "cart": CartIntent.objects.get().score,
    }

    page = admin_client.get(f"/admin/customers/customer/{lea.pk}/change/").content.decode()

    # A week on, half what each scored on the day: matching reads them so.
    for heading in ("Intent per product", "Intent per category", "Whole cart"):
        assert heading.lower() in page.lower()
    shown = re.findall(r'field-score_now">\s*<p>([\d.]+)</p>', page)
    assert shown == [f"{score / 2:.2f}" for score in stored.values()]


def test_a_customer_s_page_shows_the_views_and_cart_times_campaigns_count(
    admin_client, api, lea, settings
):
    """A marketer asking why a campaign (3 views in 14 days, or a cart abandoned within
    them) passed a customer by reads what matching counted: their views in its window, and
    when their cart was abandoned."""
    settings.INTENT_WINDOW_DAYS = 90
    events = [
        view("e1", occurred_at=ago(hours=1)),
        view("e2", occurred_at=ago(days=10)),
        view("e3", occurred_at=ago(days=20)),
        view("e4", type="cart_abandoned", occurred_at=ago(days=20)),
    ]
    assert api.post("/api/v1/events", {"events": events}, format="json").status_code == 202
    abandoned_at = ProductIntent.objects.get().cart_updated_at

    page = admin_client.get(f"/admin/customers/customer/{lea.pk}/change/").content.decode()

    shown = re.findall(r'field-views_now">\s*<p>([^<]*)</p>', page)
    expected = "1 in 7 days, 2 in 14 days, 3 in 30 days, 3 in 90 days"
    assert shown == [expected, expected]  # X200, and its category
    when = re.findall(r'field-cart_updated_at">\s*<p>([^<]*)</p>', page)
    assert when == [date_format(abandoned_at, "DATETIME_FORMAT")] * 2


def test_a_visitors_customer_cannot_be_changed(admin_client, api, lea):
    tom = CustomerFactory(external_id="C-2")
    api.post("/api/v1/events", {"events": [view("e1", customer_id=None, visitor_id="v-1")]})
    api.post("/api/v1/identify", {"visitor_id": "v-1", "customer_id": "C-1"})
    visitor = Visitor.objects.get()

    admin_client.post(
        f"/admin/customers/visitor/{visitor.pk}/change/", {"visitor_id": "v-1", "customer": tom.pk}
    )

    assert Visitor.objects.get().customer == lea
    assert BrowsingEvent.objects.get().customer == lea
    assert list(ProductIntent.objects.values_list("customer__external_id", flat=True)) == ["C-1"]


def test_a_visitor_cannot_be_deleted_from_under_its_counted_events(admin_client, api, lea):
    api.post("/api/v1/events", {"events": [view("e1", customer_id=None, visitor_id="v-1")]})
    api.post("/api/v1/identify", {"visitor_id": "v-1", "customer_id": "C-1"})
    visitor = Visitor.objects.get()

    response = admin_client.post(f"/admin/customers/visitor/{visitor.pk}/delete/", {"post": "yes"})

    assert response.status_code == 403
    assert BrowsingEvent.objects.count() == 1


def test_browsing_events_can_be_viewed_but_not_edited_added_or_deleted(admin_client, api, lea):
    api.post("/api/v1/events", {"events": [view("e1")]}, format="json")
    event = BrowsingEvent.objects.get()
    url = "/admin/customers/browsingevent/"
    form = {"event_id": "e1", "type": "product_view", "sku": "Z1", "customer": lea.pk}

    assert admin_client.get(f"{url}{event.pk}/change/").status_code == 200
    assert admin_client.post(f"{url}{event.pk}/change/", form).status_code == 403
    assert admin_client.get(f"{url}add/").status_code == 403
    assert admin_client.post(f"{url}{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert BrowsingEvent.objects.get().sku == "X200"


def test_erasing_every_customer_a_filter_selects_erases_those_and_no_other(admin_client):
    # More customers than a form should carry as fields: the filter is posted, not their ids.
    Customer.objects.bulk_create(
        [Customer(external_id=f"X-{n}", sms_consent="opted_out") for n in range(1_001)]
    )
    keep = CustomerFactory(sms_consent="opted_in")
    url = "/admin/customers/customer/?sms_consent__exact=opted_out"
    chosen = {"action": "erase", "select_across": "1", "index": "0"}
    chosen["_selected_action"] = [Customer.objects.filter(sms_consent="opted_out").first().pk]

    confirmation = admin_client.post(url, chosen).content.decode()
    assert "and 901 more" in confirmation
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', confirmation)
    answer: dict[str, list[str]] = {}
    for name, value in fields:
        answer.setdefault(name, []).append(value)
    response = admin_client.post(url, answer)

    assert response.status_code == 302
    assert list(Customer.objects.all()) == [keep]


def test_a_customer_id_the_api_could_not_address_is_refused_in_the_admin(admin_client):
    page = admin_client.get("/admin/customers/customer/add/")
    posted = {
        f"{inline.formset.prefix}-{key}": value
        for inline in page.context["inline_admin_formsets"]
        for key, value in inline.formset.management_form.initial.items()
    }
    posted.update({"external_id": "C-1\tbis", "timezone": "UTC", "sms_consent": "unknown"})

    response = admin_client.post("/admin/customers/customer/add/", posted)

    errors = response.context["adminform"].form.errors
    assert "control character" in " ".join(errors["external_id"])
    assert not Customer.objects.exists()


def test_a_customer_page_shows_their_latest_deliveries_in_a_fixed_number_of_queries(
    admin_client, lea
):
    # A regular who walks past stores every day for months has hundreds of decisions.
    url = f"/admin/customers/customer/{lea.pk}/change/"

    def page_and_queries():
        with CaptureQueriesContext(connection) as captured:
            page = admin_client.get(url).content.decode()
        return page, len(captured.captured_queries)

    DeliveryFactory.create_batch(2, customer=lea)
    page_and_queries()  # caches filled on a first view (content types) are not counted
    _, few = page_and_queries()
    deliveries = DeliveryFactory.create_batch(58, customer=lea)
    page, many = page_and_queries()

    assert many == few
    shown = re.findall(r'href="/admin/promotions/delivery/(\d+)/change/"', page)
    assert len(shown) == 50
    assert shown[0] == str(deliveries[-1].pk)  # the latest first
    assert (
        f'<a id="all-deliveries" href="/admin/promotions/delivery/?customer__id__exact={lea.pk}">'
        "All 60 of them, in the deliveries list</a>" in page
    )
    listed = admin_client.get(f"/admin/promotions/delivery/?customer__id__exact={lea.pk}")
    assert listed.context["cl"].result_count == 60


def test_a_marketer_cannot_read_a_customer_s_location_history_through_the_export(
    marketer, api, lea
):
    DeviceFactory(device_id="lea-phone", customer=lea)
    home = {"device_id": "lea-phone", "latitude": 48.812345, "longitude": 2.398765}
    pings = [{**home, "accuracy": 10, "recorded_at": ago(hours=9)}]
    api.post("/api/v1/pings", {"pings": pings}, format="json")
    assert marketer.get("/admin/promotions/ping/").status_code == 403

    response = marketer.post(
        "/admin/customers/customer/",
        {"action": "export", "select_across": "1", "index": "0", "_selected_action": [lea.pk]},
    )

    assert "48.812345" not in response.content.decode()
    page = marketer.get(f"/admin/customers/customer/?q={lea.external_id}").content.decode()
    assert "Export everything" not in page


def test_an_administrator_exports_a_customer_s_location_history(admin_client, api, lea):
    DeviceFactory(device_id="lea-phone", customer=lea)
    home = {"device_id": "lea-phone", "latitude": 48.812345, "longitude": 2.398765}
    pings = [{**home, "accuracy": 10, "recorded_at": ago(hours=9)}]
    api.post("/api/v1/pings", {"pings": pings}, format="json")

    response = admin_client.post(
        "/admin/customers/customer/", {"action": "export", "_selected_action": [lea.pk]}
    )

    assert response["Content-Disposition"].startswith("attachment")
    assert "48.812345" in response.content.decode()


def test_exporting_more_customers_than_one_download_holds_is_refused_with_a_message(
    admin_client,
):
    Customer.objects.bulk_create([Customer(external_id=f"X-{n}") for n in range(101)])
    chosen = {"action": "export", "select_across": "1", "index": "0"}
    chosen["_selected_action"] = [Customer.objects.first().pk]

    response = admin_client.post("/admin/customers/customer/", chosen, follow=True)

    assert "Content-Disposition" not in response
    [message] = [str(m) for m in response.context["messages"]]
    assert "101 customers selected" in message and "at most 100" in message


def _identified_visitors_browsing(count: int, start: int) -> None:
    """`count` shoppers, each identified from their own browser with one event in it."""
    for n in range(start, start + count):
        customer = CustomerFactory(external_id=f"W-{n}")
        visitor = Visitor.objects.create(visitor_id=f"v-{n}", customer=customer)
        BrowsingEvent.objects.create(
            event_id=f"e-{n}",
            customer=customer,
            visitor=visitor,
            type="product_view",
            sku="X200",
            occurred_at=ago(minutes=n),
        )


@pytest.mark.parametrize("page", ["visitor", "browsingevent"])
def test_the_visitors_and_browsing_lists_read_their_rows_in_a_fixed_number_of_queries(
    admin_client, page
):
    # Both name each row's customer (and an event its visitor), links that may be empty:
    # Django joins only the links that cannot be, so each row cost a query for each.
    url = f"/admin/customers/{page}/"

    def page_and_queries():
        with CaptureQueriesContext(connection) as captured:
            shown = admin_client.get(url).content.decode()
        return shown, len(captured.captured_queries)

    _identified_visitors_browsing(2, start=0)
    page_and_queries()  # caches filled on a first view (content types) are not counted
    _, few = page_and_queries()
    _identified_visitors_browsing(40, start=2)
    shown, many = page_and_queries()

    assert many == few
    assert "W-0" in shown and "W-41" in shown
