import asyncio
import json
import time

import pytest
from asgiref.sync import async_to_sync
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import override_settings
from django.test.client import FakePayload

from config import asgi
from promotions.api import throttles
from promotions.models import Ping, PresenceEvent
from promotions.services import create_api_key
from tests.clock import ago, ahead
from tests.factories import CustomerFactory, DeviceFactory, StoreFactory

FLOAT_FOR_TEXT = "Must be a string, not a floating-point number (nor NaN or Infinity)."

pytestmark = pytest.mark.django_db


@pytest.fixture
def phone():
    return DeviceFactory(device_id="lea-phone")


def ping(**fields):
    return {
        "device_id": "lea-phone",
        "latitude": 48.8606,
        "longitude": 2.3417,
        "accuracy": 12.5,
        "recorded_at": ago(minutes=1),
        **fields,
    }


def post(api, *pings, **kwargs):
    return api.post("/api/v1/pings", {"pings": list(pings)}, **kwargs)


def test_valid_pings_are_stored_before_the_202(api, phone):
    response = post(api, ping(ping_id="p1"), ping(recorded_at=ago(minutes=2), speed=1.4))

    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    stored = Ping.objects.order_by("recorded_at")
    assert [(p.device, p.accuracy) for p in stored] == [(phone, 12.5), (phone, 12.5)]
    assert stored[0].speed == 1.4


def test_a_ping_sent_twice_is_stored_once(api, phone):
    first = ping(ping_id="p1")
    post(api, first)

    response = post(api, first, first)

    assert response.json() == {"accepted": 0, "duplicates": 2, "rejected": []}
    assert Ping.objects.count() == 1


def test_a_batch_sent_again_with_new_pings_stores_only_the_new(api, phone):
    sent = [ping(ping_id="p1", recorded_at=ago(minutes=3)), ping(recorded_at=ago(minutes=2))]
    post(api, *sent)

    response = post(api, *sent, ping(ping_id="p3"))

    assert response.json() == {"accepted": 1, "duplicates": 2, "rejected": []}
    assert sorted(Ping.objects.values_list("ping_id", flat=True), key=str) == [None, "p1", "p3"]


def test_the_same_device_and_time_is_a_duplicate_without_a_ping_id(api, phone):
    at = ago(minutes=3)
    post(api, ping(recorded_at=at))

    response = post(api, ping(recorded_at=at, latitude=48.0))

    assert response.json()["duplicates"] == 1
    assert Ping.objects.count() == 1


def test_the_same_ping_id_at_another_time_is_a_duplicate(api, phone):
    post(api, ping(ping_id="p1", recorded_at=ago(minutes=3)))

    response = post(api, ping(ping_id="p1", recorded_at=ago(minutes=2)))

    assert response.json()["duplicates"] == 1


def test_ping_ids_are_scoped_to_their_device(api, phone):
    DeviceFactory(device_id="tom-phone")

    response = post(api, ping(ping_id="1"), ping(ping_id="1", device_id="tom-phone"))

    assert response.json()["accepted"] == 2


def test_a_negative_speed_means_unknown(api, phone):
    post(api, ping(speed=-1))

    assert Ping.objects.get().speed is None


def test_a_mocked_location_is_stored_and_marked(api, phone):
    post(api, ping(mocked=True))

    assert Ping.objects.get().mocked is True


BAD_PINGS = [
    (ping(latitude=91), "latitude"),
    (ping(latitude=-90.0001), "latitude"),
    (ping(longitude=180.5), "longitude"),
    (ping(latitude="north"), "latitude"),
    (ping(latitude=True), "latitude"),
    (ping(latitude=None), "latitude"),
    (ping(accuracy=-1), "accuracy"),
    (ping(accuracy=0), "accuracy"),
    (ping(accuracy=10**6), "accuracy"),
    (ping(recorded_at=ahead(hours=1)), "recorded_at"),
    (ping(recorded_at=ago(days=30)), "recorded_at"),
    (ping(recorded_at="2026-11-22 10:00"), "recorded_at"),
    (ping(recorded_at=1732269600), "recorded_at"),
    (ping(device_id="stranger"), "device_id"),
    (ping(mocked="perhaps"), "mocked"),
    (ping(ping_id="x" * 65), "ping_id"),
    ({"device_id": "lea-phone"}, "latitude"),
    ([1, 2, 3], "non_field_errors"),
]


@pytest.mark.parametrize(("item", "field"), BAD_PINGS)
def test_each_bad_ping_is_rejected_with_its_reason_and_the_rest_stored(api, phone, item, field):
    response = post(api, ping(ping_id="good"), item)

    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 1
    assert len(body["rejected"]) == 1
    assert body["rejected"][0]["index"] == 1
    assert field in body["rejected"][0]["errors"]
    assert list(Ping.objects.values_list("ping_id", flat=True)) == ["good"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_rejected_per_item(api, phone, literal):
    body = (
        f'{{"pings": [{{"device_id": "lea-phone", "latitude": {literal}, "longitude": 2.3,'
        f' "accuracy": 5, "recorded_at": "{ago(minutes=1)}"}}]}}'
    )

    response = api.post("/api/v1/pings", body, content_type="application/json")

    assert response.status_code == 202
    assert "finite" in response.json()["rejected"][0]["errors"]["latitude"][0]
    assert not Ping.objects.exists()


@pytest.mark.parametrize("accuracy", [0, 0.0, -0.0])
def test_a_ping_of_unknown_accuracy_is_refused_and_enters_no_store(api, phone, accuracy):
    # Android's Location.getAccuracy() is 0.0 for a fix without one: read as a perfect
    # fix, a coarse network fix at the store's door would enter it.
    store = StoreFactory()
    at_the_door = ping(latitude=store.latitude, longitude=store.longitude, accuracy=accuracy)

    response = post(api, at_the_door)

    assert response.status_code == 202
    [rejected] = response.json()["rejected"]
    assert rejected["errors"] == {
        "accuracy": [
            "accuracy must be above 0 m: 0 means the phone does not know how accurate the fix is."
        ]
    }
    assert not Ping.objects.exists()
    assert not PresenceEvent.objects.filter(kind="entered").exists()


def test_unknown_devices_are_named_in_the_rejection(api, phone):
    response = post(api, ping(device_id="stranger"))

    assert response.json()["rejected"][0]["errors"] == {"device_id": ["Unknown device 'stranger'."]}


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        ("{", "application/json", 400, "Malformed JSON"),
        ('{"pings": ', "application/json", 400, "Malformed JSON"),
        ("[]", "application/json", 400, "'pings' list"),
        ('{"pings": {"a": 1}}', "application/json", 400, "'pings' list"),
        ('{"other": []}', "application/json", 400, "'pings' list"),
        ("pings=1", "application/x-www-form-urlencoded", 400, "Content-Type"),
        ('{"pings": []}', "text/plain", 400, "Content-Type"),
        (b"\xff\xfe{}", "application/json", 400, "UTF-8"),
        ('{"pings": [{"device_id": "\\ud800"}]}', "application/json", 400, "surrogate"),
        ("[" * 100_000 + "]" * 100_000, "application/json", 400, "Malformed JSON"),
        ('{"pings": [], "n": 1' + "0" * 5000 + "}", "application/json", 400, "Malformed JSON"),
    ],
)
def test_a_malformed_body_is_a_clear_4xx_and_stores_nothing(
    api, phone, body, content_type, status, message
):
    response = api.post("/api/v1/pings", body, content_type=content_type)

    assert response.status_code == status
    assert message in response.json()["detail"]
    assert not Ping.objects.exists()


def test_an_empty_batch_accepts_nothing(api, phone):
    response = post(api)

    assert response.json() == {"accepted": 0, "duplicates": 0, "rejected": []}


def test_a_batch_of_1000_is_accepted_and_1001_is_413(api, phone):
    pings = [ping(recorded_at=ago(seconds=n)) for n in range(1001)]

    too_many = post(api, *pings)
    assert too_many.status_code == 413
    assert not Ping.objects.exists()

    response = post(api, *pings[:1000])
    assert response.json()["accepted"] == 1000
    assert Ping.objects.count() == 1000


def test_a_body_over_the_byte_limit_is_413(api, phone):
    with override_settings(API_MAX_BODY_BYTES=2048):
        response = post(api, *[ping(recorded_at=ago(seconds=n)) for n in range(50)])

    assert response.status_code == 413
    assert not Ping.objects.exists()


def test_a_batch_is_stored_with_a_bounded_number_of_queries(
    api, phone, django_assert_max_num_queries
):
    pings = [ping(recorded_at=ago(seconds=n), ping_id=f"p{n}") for n in range(500)]

    # Authentication, device lookup, duplicate check, savepoints and the insert (which SQLite
    # splits into chunks of 999 parameters), then the eager processing task: presence read
    # and written in bulk. A few dozen queries for the batch, never one per ping.
    with django_assert_max_num_queries(40):
        response = post(api, *pings)

    assert response.json()["accepted"] == 500


def test_a_key_over_its_rate_limit_gets_429_with_retry_after(client_with_scopes, phone, settings):
    settings.INGEST_RATE_LIMIT_PER_MINUTE = 3
    busy, other = client_with_scopes("ingest"), client_with_scopes("ingest")
    statuses = [post(busy, ping(ping_id=f"p{n}")).status_code for n in range(4)]

    refused = post(busy, ping(ping_id="p9"))

    assert statuses == [202, 202, 202, 429]
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert post(other, ping(ping_id="p10")).status_code == 202
    assert Ping.objects.count() == 4


def test_devices_and_identify_are_rate_limited_like_the_batches(client_with_scopes, settings):
    settings.INGEST_RATE_LIMIT_PER_MINUTE = 1
    CustomerFactory(external_id="lea")
    client = client_with_scopes("ingest", "config")
    link = {"device_id": "lea-phone", "customer_id": "lea", "platform": "ios"}
    identify = {"visitor_id": "v1", "customer_id": "lea"}

    devices = [client.post("/api/v1/devices", link) for _ in range(2)]
    identified = [client.post("/api/v1/identify", identify) for _ in range(2)]
    # Only ingest is limited: reading the configuration is not.
    stores = [client.get("/api/v1/stores").status_code for _ in range(2)]

    assert [response.status_code for response in devices] == [201, 429]
    assert [response.status_code for response in identified] == [200, 429]
    assert 1 <= int(devices[1]["Retry-After"]) <= 60
    assert 1 <= int(identified[1]["Retry-After"]) <= 60
    assert stores == [200, 200]


UNREACHABLE_CACHE = {
    "default": {
        "BACKEND": "config.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
    }
}


def test_ingest_goes_on_unlimited_while_the_rate_limit_cache_is_down(
    client_with_scopes, phone, settings, caplog
):
    settings.INGEST_RATE_LIMIT_PER_MINUTE = 1
    settings.CACHES = UNREACHABLE_CACHE
    client = client_with_scopes("ingest")

    statuses = [post(client, ping(ping_id=f"p{n}")).status_code for n in range(2)]
    linked = client.post(
        "/api/v1/devices", {"device_id": "lea-phone", "customer_id": phone.customer.external_id}
    )

    assert statuses == [202, 202]
    assert linked.status_code == 200
    assert Ping.objects.count() == 2
    assert "Ingest rate limit not applied" in caplog.text


def test_a_hung_rate_limit_cache_costs_one_request_its_timeout_not_every_request(
    client_with_scopes, phone, settings, hung_broker, monkeypatch
):
    # A Redis that accepts connections and never answers: each ingest request waited out the
    # socket timeout, which held a sync worker 0.5 s a request (2 workers: 4 requests a second).
    settings.INGEST_RATE_LIMIT_PER_MINUTE = 1
    settings.CACHES = {
        "default": {
            "BACKEND": "config.cache.RedisCache",
            "LOCATION": hung_broker,
            "OPTIONS": {"socket_connect_timeout": 2.0, "socket_timeout": 2.0},
        }
    }
    client = client_with_scopes("ingest")
    post(client, ping(ping_id="p0"))  # finds the cache hung, after its timeout

    started = time.monotonic()
    statuses = [post(client, ping(ping_id=f"p{n}")).status_code for n in range(1, 5)]

    assert statuses == [202] * 4
    assert time.monotonic() - started < 2.0  # four requests, not one timeout (2 s) each
    # Once the pause is over, the limit counts again in a cache that answers.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    monkeypatch.setattr(throttles, "CACHE_RETRY_SECONDS", 0)
    assert [post(client, ping(ping_id=f"q{n}")).status_code for n in range(2)] == [202, 429]


@pytest.mark.parametrize(
    ("literal", "field"),
    [
        ("NaN", "ping_id"),
        ("Infinity", "ping_id"),
        ("-Infinity", "device_id"),
        ("1.5", "ping_id"),
        ("1e3", "device_id"),
    ],
)
def test_a_float_for_a_text_id_is_rejected_not_stored_as_its_spelling(api, phone, literal, field):
    # A bare NaN or Infinity is not JSON, but the parser reads it (see parsers.py).
    body = json.dumps({"pings": [ping(**{"ping_id": "p1", field: "LITERAL"})]})
    body = body.replace('"LITERAL"', literal)

    response = api.post("/api/v1/pings", body, content_type="application/json")

    assert response.status_code == 202
    assert response.json()["rejected"] == [
        {"index": 0, "errors": {field: [FLOAT_FOR_TEXT]}},
    ]
    assert not Ping.objects.exists()


def test_an_integer_ping_id_is_kept_as_its_digits(api, phone):
    response = post(api, ping(ping_id=7))

    assert response.json()["accepted"] == 1
    assert list(Ping.objects.values_list("ping_id", flat=True)) == ["7"]


def test_a_body_in_an_unsupported_coding_is_refused_naming_its_content_encoding(api, phone):
    # Brotli: gzip and deflate are read (tests/promotions/test_compressed_bodies.py).
    body = json.dumps({"pings": [ping()]}).encode()

    response = api.generic(
        "POST",
        "/api/v1/pings",
        body,
        content_type="application/json",
        HTTP_CONTENT_ENCODING="br",
    )

    assert response.status_code == 415
    assert "Content-Encoding 'br' is not supported" in response.json()["detail"]
    assert not Ping.objects.exists()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/pings", {"pings": [ping()]}),
        ("POST", "/api/v1/sightings", {"sightings": []}),
        ("POST", "/api/v1/stores", {"code": "OPERA", "name": "Opéra", "radius_m": 80}),
        # Read as empty, this PATCH would succeed and change nothing.
        ("PATCH", "/api/v1/stores/NOWHERE", {"name": "Opéra"}),
    ],
)
def test_a_chunked_body_is_411_length_required_not_called_malformed(api, phone, method, path, body):
    # gunicorn hands a Transfer-Encoding: chunked body over without CONTENT_LENGTH, and
    # Django reads it as empty: the body was never looked at.
    response = api.generic(
        method,
        path,
        CONTENT_TYPE="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": FakePayload(json.dumps(body).encode())},
    )

    assert response.status_code == 411
    assert response.json()["detail"].startswith("Length Required: send Content-Length.")
    assert not Ping.objects.exists()


def test_a_chunked_body_under_an_asgi_server_is_411_not_read_as_empty(phone):
    # Django's ASGI handler has the body, but DRF reads no more of it than CONTENT_LENGTH.
    _, key = create_api_key(name="app", scopes=["ingest"])
    body = json.dumps({"pings": [ping()]}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/pings",
        "raw_path": b"/api/v1/pings",
        "query_string": b"",
        "root_path": "",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Api-Key {key}".encode()),
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
        ],
    }
    sent: list[dict] = []
    bodies = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        if bodies:
            return bodies.pop()
        await asyncio.Event().wait()  # the client stays connected until the answer
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        sent.append(message)

    # As Django's test clients do: the handler's end of request closes the connection, and
    # with it this test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        async_to_sync(asgi.application)(scope, receive, send)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)

    [start] = [m for m in sent if m["type"] == "http.response.start"]
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 411, answer
    assert not Ping.objects.exists()


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
def test_a_request_without_a_body_is_answered_whatever_its_transfer_encoding(api, method):
    # Some clients and proxies send the header with an empty chunked body on any request.
    response = api.generic(method, "/api/v1/stores", HTTP_TRANSFER_ENCODING="chunked")

    assert response.status_code != 411


def test_an_identity_content_encoding_is_read_as_is(api, phone):
    response = api.post("/api/v1/pings", {"pings": [ping()]}, HTTP_CONTENT_ENCODING="identity")

    assert response.json()["accepted"] == 1


def test_an_item_that_is_not_an_object_is_rejected_with_its_reason(api, phone):
    response = api.post("/api/v1/pings", {"pings": [None, 7, ping()]})

    assert response.status_code == 202
    assert response.json()["accepted"] == 1
    assert response.json()["rejected"] == [
        {"index": 0, "errors": {"non_field_errors": ["No data provided"]}},
        {
            "index": 1,
            "errors": {"non_field_errors": ["Invalid data. Expected a dictionary, but got int."]},
        },
    ]
