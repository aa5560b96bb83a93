"""No input yields a 500. Every operation of the API, fed arbitrary JSON, raw bytes, wrong
content types, odd path segments and nearly valid items, answers below 500; a 4xx is JSON
with a message and stores nothing; a 202 accounts for every item of its batch, and stores
exactly the items it accepted."""

import json
from collections.abc import Callable
from contextlib import suppress
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest
from django.apps import apps
from django.db import DataError, connection
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from customers.models import BrowsingEvent, Customer
from promotions import beacons
from promotions.models import ApiKey, Ping, Sighting
from tests.factories import (
    BEACON_UUID,
    BeaconFactory,
    CampaignFactory,
    CustomerFactory,
    DeliveryFactory,
    DeviceFactory,
    GatewayFactory,
    StoreFactory,
    ZoneFactory,
)
from tests.test_serializers_properties import (
    fresh_id,
    fresh_number,
    json_values,
    nearly_valid,
    texts,
    valid_customer,
    valid_device,
    valid_event,
    valid_gateway_sighting,
    valid_ping,
    valid_sighting,
)

pytestmark = pytest.mark.django_db

# Each example is a few requests and queries on SQLite; a 2-core machine runs the file in
# well under a minute.
FUZZ = settings(
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def world():
    """One of everything, under the ids the valid items use."""
    customer = CustomerFactory(external_id="C-world")
    device = DeviceFactory(
        device_id="world-phone",
        customer=customer,
        ble_identity=beacons.ibeacon_key(BEACON_UUID, 7, 7),
    )
    store = StoreFactory(code="WORLD")
    zone = ZoneFactory(store=store, code="entrance")
    beacon = BeaconFactory(store=store, zone=zone, identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))
    gateway = GatewayFactory(gateway_id="gw-world", store=store, zone=zone)
    campaign = CampaignFactory()
    campaign.stores.add(store)
    return SimpleNamespace(
        customer=customer,
        device=device,
        store=store,
        zone=zone,
        beacon=beacon,
        gateway=gateway,
        campaign=campaign,
    )


def refuse_what_postgresql_refuses(execute, sql, params, many, context):
    """SQLite stores what PostgreSQL refuses with an error: make it refuse it the same way
    (psycopg raises DataError), so that these tests see the answers production gives."""
    writes = sql.lstrip().startswith(("INSERT", "UPDATE"))
    for param in params or ():
        for value in param if many else (param,):
            if isinstance(value, str):
                if "\x00" in value:
                    raise DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
                value.encode("utf-8")  # a lone surrogate: psycopg fails to encode it
                if writes and value[:1] in ("{", "[") and "\\u0000" in value:
                    with suppress(ValueError):
                        json.loads(value)
                        raise DataError("unsupported Unicode escape sequence \\u0000 in jsonb")
            elif isinstance(value, int) and writes and 2**31 <= abs(value + 0.5) < 2**63:
                # Only ids are bigint; every other integer column is a 32-bit integer.
                # Beyond 64 bits SQLite fails by itself.
                raise DataError("integer out of range")
    return execute(sql, params, many, context)


@pytest.fixture(autouse=True)
def like_postgresql(db):
    with connection.execute_wrapper(refuse_what_postgresql_refuses):
        yield


# --- Requests and what every answer must satisfy ------------------------------------------


def row_counts() -> dict[str, int]:
    return {
        model._meta.label: model.objects.count()
        for app in ("customers", "promotions")
        for model in apps.get_app_config(app).get_models()
        if model is not ApiKey  # authentication notes when a key was last used
    }


def encode(value: Any) -> bytes:
    """JSON as a client sends it: lone surrogates escaped as \\ud800, NaN and Infinity bare."""
    return json.dumps(value).encode()


def send(api, method: str, path: str, body: bytes = b"", content_type: str = "application/json"):
    return api.generic(method, path, data=body, content_type=content_type)


def assert_no_server_error(response, before: dict[str, int]) -> None:
    assert response.status_code < 500, response.content[:2000]
    if response.status_code >= 400:
        assert row_counts() == before, f"a {response.status_code} stored something"
        try:
            resolve(response.wsgi_request.path_info)
        except Resolver404:
            return  # no API view answered: Django's own 404 for a path that names nothing
        assert response["Content-Type"].startswith("application/json"), response.content[:500]
        body = response.json()
        assert body and isinstance(body, dict | list), body
        if isinstance(body, dict) and "detail" in body:
            assert isinstance(body["detail"], str) and body["detail"].strip()


def assert_batch_accounted(response, before: dict[str, int], items: Any, model) -> None:
    """A 202 lists each item once: accepted, duplicate or rejected by its index."""
    assert_no_server_error(response, before)
    if response.status_code != 202:
        return
    body = response.json()
    indexes = [rejected["index"] for rejected in body["rejected"]]
    assert len(indexes) == len(set(indexes)), body
    assert all(0 <= index < len(items) for index in indexes), body
    assert all(rejected["errors"] for rejected in body["rejected"]), body
    assert body["accepted"] + body["duplicates"] + len(indexes) == len(items), body
    assert model.objects.count() - before[model._meta.label] == body["accepted"], body


BATCHES = {
    "/api/v1/events": ("events", valid_event, ("visitor_id",), BrowsingEvent),
    "/api/v1/pings": ("pings", valid_ping, (), Ping),
    "/api/v1/sightings": ("sightings", valid_sighting, ("raw", "eddystone_uid"), Sighting),
    "/api/v1/gateways/gw-world/sightings": (
        "sightings",
        valid_gateway_sighting,
        ("raw", "eddystone_uid"),
        Sighting,
    ),
}


def operations(world) -> list[tuple[str, str]]:
    """Every operation of the API that takes input, on objects that exist."""
    customer = "/api/v1/customers/C-world"
    return [
        ("PUT", customer),
        ("GET", customer),
        ("GET", f"{customer}/export"),
        ("DELETE", "/api/v1/customers/C-nobody"),
        ("POST", "/api/v1/devices"),
        ("POST", "/api/v1/identify"),
        *(("POST", path) for path in BATCHES),
        ("POST", "/api/v1/gateways/gw-unknown/sightings"),
        ("POST", "/api/v1/stores"),
        ("PUT", f"/api/v1/stores/{world.store.code}"),
        ("PATCH", f"/api/v1/stores/{world.store.code}"),
        ("POST", "/api/v1/zones"),
        ("PUT", f"/api/v1/zones/{world.zone.pk}"),
        ("PATCH", f"/api/v1/zones/{world.zone.pk}"),
        ("POST", "/api/v1/beacons"),
        ("PUT", f"/api/v1/beacons/{world.beacon.pk}"),
        ("PATCH", f"/api/v1/beacons/{world.beacon.pk}"),
        ("POST", "/api/v1/gateways"),
        ("PUT", f"/api/v1/gateways/{world.gateway.gateway_id}"),
        ("PATCH", f"/api/v1/gateways/{world.gateway.gateway_id}"),
        ("POST", "/api/v1/campaigns"),
        ("PUT", f"/api/v1/campaigns/{world.campaign.pk}"),
        ("PATCH", f"/api/v1/campaigns/{world.campaign.pk}"),
    ]


# --- Arbitrary bodies ---------------------------------------------------------------------


@FUZZ
@given(data=st.data(), value=json_values)
def test_any_json_body_gets_an_answer_below_500(api, world, data, value):
    method, path = data.draw(st.sampled_from(operations(world)))
    before = row_counts()

    response = send(api, method, path, encode(value))

    assert_no_server_error(response, before)


@FUZZ
@given(data=st.data(), value=json_values)
def test_any_json_under_the_items_key_gets_an_answer_below_500(api, world, data, value):
    path = data.draw(st.sampled_from(sorted(BATCHES)))
    key, _, _, model = BATCHES[path]
    items = data.draw(st.one_of(st.just(value), st.lists(json_values, max_size=5)))
    before = row_counts()

    response = send(api, "POST", path, encode({key: items}))

    assert_batch_accounted(response, before, items, model)


CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "application/json; charset=nonsense",
    "application/json;",
    "application/vnd.api+json",
    "text/plain",
    "text/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=xyz",
    "application/xml",
    "*/*",
    "",
    "json",
    "application/",
    ";;;",
]
# Bodies that are nearly JSON: what a broken client or a proxy could send.
ODD_BODIES = [
    b"",
    b"null",
    b"[]",
    b"{}",
    b"\xef\xbb\xbf{}",
    b'{"a": "\\ud800"}',
    b'{"events": [], "events": null}',
    b'{"pings": [' + b"1," * 1200 + b"1]}",
    b'{"pings": [' + b'{"latitude": 1e999}' + b"]}",
    b'{"pings": [' + b"1" * 5000 + b"]}",
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b'{"pings": ' + b"[" * 900 + b"]" * 900 + b"}",
    b'{"sightings": [{"rssi": ' + b"[" * 900 + b"]" * 900 + b"}]}",
    b'{"events": [{"type": ' + b"[" * 900 + b"]" * 900 + b"}]}",
    b'{"events": [{"type": "' + b"\\ud800" * 10 + b'"}]}',
    b"\xed\xa0\x80",
    b'"\\udfff"',
    b"\x00",
    b"NaN",
    b"-Infinity",
]
bodies = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(ODD_BODIES),
    json_values.map(lambda value: encode(value)[:-1]),  # cut short
    json_values.map(lambda value: json.dumps(value).encode("utf-16")),
    json_values.map(lambda value: encode(value).decode().encode("latin-1", "replace")),
)


@FUZZ
@given(data=st.data(), body=bodies, content_type=st.one_of(st.sampled_from(CONTENT_TYPES), texts))
def test_raw_bytes_and_wrong_content_types_get_an_answer_below_500(
    api, world, data, body, content_type
):
    method, path = data.draw(st.sampled_from(operations(world)))
    before = row_counts()

    try:
        response = send(api, method, path, body, content_type)
    except UnicodeEncodeError:
        return  # a header no HTTP client can send: WSGI headers are latin-1

    assert_no_server_error(response, before)


@FUZZ
@given(data=st.data(), body=bodies, content_type=st.sampled_from(CONTENT_TYPES))
def test_a_malformed_batch_is_refused_whole(api, world, data, body, content_type):
    path = data.draw(st.sampled_from(sorted(BATCHES)))
    before = row_counts()

    response = send(api, "POST", path, body, content_type)

    if response.status_code != 202:
        assert 400 <= response.status_code < 500, response.content[:2000]
    assert_no_server_error(response, before)


# --- Odd path segments ---------------------------------------------------------------------

PERCENT_SEQUENCES = [
    "%00",
    "%ZZ",
    "%",
    "%2",
    "%ED%A0%80",
    "%C0%AF",
    "%FF",
    "%2F",
    "a%2Fb",
    "%2e%2e",
    "..",
    ".",
    "%u0041",
    "%25",
    "%3F",
    "%23",
    "%20",
    "%0A",
    "C-world%00",
    "gw-world%0A",
    "1%00",
    "99999999999999999999999",
    "-1",
    "0",
    "1e3",
    "1.0",
]
segments = st.one_of(
    # Text as a client would percent-encode it, lone surrogates as their UTF-8 bytes.
    texts.filter(bool).map(lambda text: quote(text.encode("utf-8", "surrogatepass"), safe="")),
    st.sampled_from(PERCENT_SEQUENCES),
)
PATHS_WITH_A_SEGMENT = [
    ("PUT", "/api/v1/customers/{}", valid_customer),
    ("GET", "/api/v1/customers/{}", None),
    ("DELETE", "/api/v1/customers/{}", None),
    ("GET", "/api/v1/customers/{}/export", None),
    ("POST", "/api/v1/gateways/{}/sightings", lambda: {"sightings": [valid_gateway_sighting()]}),
    ("GET", "/api/v1/stores/{}", None),
    ("PATCH", "/api/v1/stores/{}", lambda: {"name": "Renamed"}),
    ("DELETE", "/api/v1/stores/{}", None),
    ("GET", "/api/v1/gateways/{}", None),
    ("PATCH", "/api/v1/gateways/{}", lambda: {"zone": None}),
    ("DELETE", "/api/v1/gateways/{}", None),
    ("GET", "/api/v1/zones/{}", None),
    ("PATCH", "/api/v1/zones/{}", lambda: {"name": "Renamed"}),
    ("GET", "/api/v1/beacons/{}", None),
    ("PATCH", "/api/v1/beacons/{}", lambda: {"measured_power": -60}),
    ("GET", "/api/v1/campaigns/{}", None),
    ("PATCH", "/api/v1/campaigns/{}", lambda: {"priority": 3}),
    ("DELETE", "/api/v1/campaigns/{}", None),
]


@FUZZ
@given(data=st.data(), segment=segments)
def test_odd_path_segments_get_an_answer_below_500(api, world, data, segment):
    method, template, make_body = data.draw(st.sampled_from(PATHS_WITH_A_SEGMENT))
    body = encode(make_body()) if make_body else b""
    before = row_counts()

    response = send(api, method, template.format(segment), body)

    assert_no_server_error(response, before)
    if response.status_code == 202:
        assert response.json()["accepted"] == 0  # no gateway has that id


@FUZZ
@given(segment=segments)
def test_a_customer_created_under_an_odd_id_can_be_stored_anywhere(api, world, segment):
    response = send(api, "PUT", f"/api/v1/customers/{segment}", encode(valid_customer()))

    assert response.status_code < 500
    if response.status_code in (200, 201):
        external_id = response.json()["external_id"]
        assert "\x00" not in external_id, "PostgreSQL refuses NUL in text"
        assert Customer.objects.filter(external_id=external_id).exists()


# --- Nearly valid items ---------------------------------------------------------------------


@st.composite
def batches(draw: st.DrawFn, path: str) -> list[Any]:
    """A few valid items and nearly valid ones, some sent twice."""
    _, make_valid, extra_keys, _ = BATCHES[path]
    items = draw(
        st.lists(
            st.one_of(nearly_valid(make_valid, extra_keys), st.builds(make_valid)),
            min_size=1,
            max_size=6,
        )
    )
    repeats = draw(st.lists(st.sampled_from(items), max_size=2))
    return [*items, *repeats]


@FUZZ
@given(data=st.data())
def test_a_batch_of_nearly_valid_items_accounts_for_every_item(api, world, data):
    path = data.draw(st.sampled_from(sorted(BATCHES)))
    key, _, _, model = BATCHES[path]
    items = data.draw(batches(path))
    before = row_counts()

    response = send(api, "POST", path, encode({key: items}))

    # An unpaired surrogate escape is not I-JSON (RFC 7493): the parser refuses the body.
    expected = 400 if has_lone_surrogate(items) else 202
    assert response.status_code == expected, response.content[:2000]
    assert_batch_accounted(response, before, items, model)


def has_lone_surrogate(value: Any) -> bool:
    """Whether the JSON of `value` holds a surrogate escape that is not half of a pair."""
    try:
        json.dumps(json.loads(encode(value)), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False


def valid_store() -> dict[str, Any]:
    return {
        "code": fresh_id("S"),
        "name": "Passage Rivoli",
        "address": "142 Rue de Rivoli, 75001 Paris",
        "latitude": 48.859,
        "longitude": 2.347,
        "radius_m": 100,
        "polygon": None,
        "timezone": "Europe/Paris",
    }


def valid_polygon_store() -> dict[str, Any]:
    square = [[2.34, 48.85], [2.35, 48.85], [2.35, 48.86], [2.34, 48.86], [2.34, 48.85]]
    return {
        **valid_store(),
        "radius_m": None,
        "polygon": {"type": "Polygon", "coordinates": [square]},
    }


def valid_zone() -> dict[str, Any]:
    return {"store": "WORLD", "code": fresh_id("z"), "name": "Entrance", "rssi_threshold": -80}


def valid_beacon() -> dict[str, Any]:
    return {
        "store": "WORLD",
        "zone": "entrance",
        "ibeacon": {"uuid": BEACON_UUID, "major": 3, "minor": fresh_number() % 65536},
        "measured_power": -59,
    }


def valid_gateway() -> dict[str, Any]:
    return {"gateway_id": fresh_id("gw"), "store": "WORLD", "zone": "entrance"}


def valid_campaign() -> dict[str, Any]:
    return {
        "name": "X200 walk-by",
        "status": "active",
        "starts_at": None,
        "ends_at": None,
        "stores": ["WORLD"],
        "trigger": {"type": "dwell", "minutes": 5},
        "intent": {
            "skus": ["X200"],
            "categories": ["audio"],
            "min_views": 3,
            "within_days": 14,
            "cart_abandoned": False,
        },
        "priority": 10,
        "offer": {
            "template": "Bonjour {first_name}, -20% on {product_name} at {store_name}: {code}",
            "valid_days": 7,
        },
        "limits": {
            "per_customer_days": 7,
            "quiet_hours": {"start": "21:00", "end": "08:00"},
            "allowed_days": ["mon", "sat"],
            "daily_budget": 1000,
            "total_budget": None,
            "holdout_percent": 0,
        },
    }


def valid_beacon_zone_campaign() -> dict[str, Any]:
    return {**valid_campaign(), "trigger": {"type": "beacon_zone", "zone": "entrance"}}


def valid_identify() -> dict[str, Any]:
    return {"visitor_id": fresh_id("v"), "customer_id": "C-world"}


# Where each resource is created, how a fresh one is made for an update, and its path then.
RESOURCES: dict[str, tuple[str, list[Callable[[], dict]], Callable[[Any], str] | None]] = {
    "store": ("/api/v1/stores", [valid_store, valid_polygon_store], lambda w: _store_path()),
    "zone": (
        "/api/v1/zones",
        [valid_zone],
        lambda w: f"/api/v1/zones/{ZoneFactory(store=w.store, code=fresh_id('z')).pk}",
    ),
    "beacon": ("/api/v1/beacons", [valid_beacon], lambda w: f"/api/v1/beacons/{_beacon(w).pk}"),
    "gateway": (
        "/api/v1/gateways",
        [valid_gateway],
        lambda w: f"/api/v1/gateways/{GatewayFactory(store=w.store, zone=w.zone).gateway_id}",
    ),
    "campaign": (
        "/api/v1/campaigns",
        [valid_campaign, valid_beacon_zone_campaign],
        lambda w: f"/api/v1/campaigns/{_campaign(w).pk}",
    ),
    "device": ("/api/v1/devices", [valid_device], None),
    "identify": ("/api/v1/identify", [valid_identify], None),
}


def _store_path() -> str:
    return f"/api/v1/stores/{StoreFactory(code=fresh_id('S')).code}"


def _beacon(world):
    return BeaconFactory(
        store=world.store,
        zone=world.zone,
        identity=beacons.ibeacon_key(BEACON_UUID, 4, fresh_number() % 65536),
    )


def _campaign(world):
    campaign = CampaignFactory()
    campaign.stores.add(world.store)
    return campaign


@pytest.mark.parametrize("name", sorted(RESOURCES))
@FUZZ
@given(data=st.data())
def test_nearly_valid_config_and_links_get_an_answer_below_500(api, world, name, data):
    collection, makers, make_target = RESOURCES[name]
    body = data.draw(nearly_valid(data.draw(st.sampled_from(makers))))
    method, path = "POST", collection
    if make_target is not None:
        method = data.draw(st.sampled_from(["POST", "PUT", "PATCH"]))
        if method != "POST":
            path = make_target(world)
    before = row_counts()

    response = send(api, method, path, encode(body))

    assert_no_server_error(response, before)


@FUZZ
@given(body=nearly_valid(valid_customer), new=st.booleans())
def test_nearly_valid_customers_get_an_answer_below_500(api, world, body, new):
    external_id = fresh_id("C") if new else "C-world"
    before = row_counts()

    response = send(api, "PUT", f"/api/v1/customers/{external_id}", encode(body))

    assert_no_server_error(response, before)
    if response.status_code < 300:
        stored = Customer.objects.get(external_id=external_id)
        for field in ("phone", "first_name", "timezone", "locale", "consent_source"):
            max_length = Customer._meta.get_field(field).max_length
            assert len(getattr(stored, field)) <= max_length, field


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/devices", {"device_id": "d-1", "customer_id": "C-world"}, "device_id"),
        ("/api/v1/devices", {"device_id": "d-1", "customer_id": "C-world"}, "customer_id"),
        ("/api/v1/identify", {"visitor_id": "v-1", "customer_id": "C-world"}, "visitor_id"),
        ("/api/v1/identify", {"visitor_id": "v-1", "customer_id": "C-world"}, "customer_id"),
    ],
)
@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf"), 1.5])
def test_a_float_for_a_device_or_visitor_id_is_a_400_naming_the_field(
    api, world, path, body, field, number
):
    before = row_counts()

    # encode() writes NaN and Infinity bare, as a client's encoder does.
    response = send(api, "POST", path, encode({**body, field: number}))

    assert response.status_code == 400
    assert response.json() == {
        field: ["Must be a string, not a floating-point number (nor NaN or Infinity)."]
    }
    assert row_counts() == before


# --- Query strings of the lists --------------------------------------------------------------

LIST_FILTERS = {
    "/api/v1/deliveries": ["customer_id", "campaign", "status", "page"],
    "/api/v1/stores": ["page"],
    "/api/v1/zones": ["store", "page"],
    "/api/v1/beacons": ["store", "zone", "page"],
    "/api/v1/gateways": ["store", "page"],
    "/api/v1/campaigns": ["status", "page"],
}
# Numbers at the edges of what a database column holds, and what a number parser may read
# as one: an id filter must refuse them with a 400, never send them to the database.
ODD_NUMBERS = [
    "0",
    "-1",
    "1.5",
    "1.0",
    "1e3",
    "1e19",
    "1e400",
    "-1e10",
    "NaN",
    "inf",
    "0x10",
    "%EF%BC%91",
    "%C2%B2",
    "1%00",
    "%00",
    "",
    str(2**31),
    str(2**63 - 1),
    str(2**63),
    str(2**64),
    "9" * 30,
    "-" + "9" * 30,
]
query_values = st.one_of(
    st.integers().map(str),
    st.floats().map(str),
    texts.map(lambda text: quote(text.encode("utf-8", "surrogatepass"), safe="")),
)
FILTERS = [(path, name) for path, names in LIST_FILTERS.items() for name in names]


@pytest.mark.parametrize(("path", "name"), FILTERS)
def test_odd_numbers_in_any_list_filter_get_an_answer_below_500(api, world, path, name):
    DeliveryFactory(campaign=world.campaign, store=world.store, customer=world.customer)
    before = row_counts()

    for value in ODD_NUMBERS:
        response = send(api, "GET", f"{path}?{name}={value}")

        assert_no_server_error(response, before)


@FUZZ
@given(data=st.data(), value=query_values)
def test_any_query_value_of_a_list_filter_gets_an_answer_below_500(api, world, data, value):
    DeliveryFactory(campaign=world.campaign, store=world.store, customer=world.customer)
    path, name = data.draw(st.sampled_from(FILTERS))
    before = row_counts()

    response = send(api, "GET", f"{path}?{name}={value}")

    assert_no_server_error(response, before)


# --- Errors no API view answers --------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nope",
        "/api/v1/stores/WORLD/",
        "/api/v1/stores/",
        "/api/v2/stores",
        "/api/",
        "/api/v1/customers/C-world/export/",
        "/webhooks/twilio/nope",
        "/webhooks/",
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_a_path_no_api_view_answers_is_a_json_404(api, world, path, method):
    response = send(api, method, path, encode({}))

    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["detail"].startswith("Not found")


def test_a_trailing_slash_is_named_as_the_reason_for_a_404(api, world):
    response = api.get("/api/v1/stores/WORLD/")

    assert "no trailing slash" in response.json()["detail"]


def test_pages_outside_the_api_keep_djangos_html_404(api):
    response = api.get("/nope")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.urls("tests.crashing_urls")
def test_a_crash_under_the_api_is_a_json_500(api):
    api.raise_request_exception = False

    response = api.get("/api/v1/crash")

    assert response.status_code == 500
    assert response.json() == {"detail": "Server error."}


def test_a_host_this_server_does_not_serve_is_a_json_400_under_the_api(api):
    response = api.get("/api/v1/stores", HTTP_HOST="passage.evil.example")

    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["detail"]
