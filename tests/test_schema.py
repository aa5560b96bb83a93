"""/api/schema/ against what the API answers: each operation is provoked into every answer it
can give (its successes, its own errors, and the errors of the machinery: no key, a key
without the scope, a malformed or oversized body, the rate limit, the database down), and
the statuses it answers are exactly the ones documented, each body valid against its
documented schema, required fields included."""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest
from django.db import IntegrityError, OperationalError, connection
from django.test import Client
from django.test.client import FakePayload
from django.urls import resolve
from django.utils import timezone
from rest_framework.test import APIClient

from customers.models import (
    BrowsingEvent,
    CategoryIntent,
    ConsentChange,
    ProductIntent,
    SmsConsent,
    Visitor,
)
from promotions import beacons
from promotions.api.errors import DATABASE_RETRY_AFTER_SECONDS
from promotions.api.parsers import ACCEPTED_ENCODINGS
from promotions.models import (
    DeliveryReason,
    DeliveryStatus,
    DeviceTrack,
    Ping,
    Presence,
    PresenceEvent,
    Redemption,
    Scope,
    Sighting,
    SightingSource,
    TriggerType,
)
from promotions.services import create_api_key
from tests.clock import ago
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

pytestmark = pytest.mark.django_db

# --- The schema, and a response checked against it -----------------------------------------

_SCHEMA: dict[str, Any] = {}


def openapi() -> dict[str, Any]:
    if not _SCHEMA:
        _SCHEMA.update(json.loads(Client().get("/api/schema/?format=json").content))
    return _SCHEMA


def _as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable` as JSON Schema says it."""
    if isinstance(node, dict):
        node = {key: _as_json_schema(value) for key, value in node.items()}
        if node.pop("nullable", False):
            node = {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_as_json_schema(value) for value in node]
    return node


def documented_operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    for template, operations in openapi()["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path.split("?")[0]) and method.lower() in operations:
            return template, operations[method.lower()]
    raise AssertionError(f"{method} {path}: no operation in the schema")


def problems(method: str, path: str, response: Any) -> list[str]:
    """What the schema gets wrong about this response: its status, headers or body."""
    template, operation = documented_operation(method, path)
    status = str(response.status_code)
    documented = operation["responses"].get(status)
    if documented is None:
        return [f"{method} {template}: {status} not documented ({sorted(operation['responses'])})"]
    headers = documented.get("headers", {})
    found = [
        f"{method} {template} {status}: header {name} not documented"
        for name in ("Retry-After", "ETag")
        if response.has_header(name) and name not in headers
    ]
    found += [
        f"{method} {template} {status}: documented header {name} missing"
        for name in ("ETag",)
        if name in headers and not response.has_header(name)
    ]
    schema = documented.get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        if response.content:
            found.append(f"{method} {template} {status}: a body, but no schema for it")
        return found
    full = _as_json_schema({**schema, "components": openapi()["components"]})
    try:
        jsonschema.validate(response.json(), full)
    except jsonschema.ValidationError as error:
        found.append(f"{method} {template} {status}: {error.message} at {list(error.path)}")
    return found


# --- One of everything, in each of the shapes a response can take ---------------------------


# A block around the store's point, [longitude, latitude] as GeoJSON has it.
BLOCK = [[2.3405, 48.8595], [2.3415, 48.8595], [2.3415, 48.8605], [2.3405, 48.8605]]
POLYGON = {"type": "Polygon", "coordinates": [[*BLOCK, BLOCK[0]]]}
NAMESPACE = "edd1ebeac04e5defa017"


@pytest.fixture
def world():
    rivoli = StoreFactory(code="RIVOLI")
    StoreFactory(code="OPERA", radius_m=None, polygon=POLYGON)
    StoreFactory(code="SPARE")
    entrance = ZoneFactory(store=rivoli, code="entrance")
    spare_zone = ZoneFactory(store=rivoli, code="tills")
    ibeacon = BeaconFactory(
        store=rivoli, zone=entrance, identity=beacons.ibeacon_key(BEACON_UUID, 1, 1)
    )
    eddystone = BeaconFactory(
        store=rivoli, zone=None, identity=beacons.eddystone_uid_key(NAMESPACE, "0000000000a1")
    )
    GatewayFactory(gateway_id="gw-1", store=rivoli, zone=entrance)
    GatewayFactory(gateway_id="gw-2", store=rivoli, zone=None)

    walk_by = CampaignFactory(name="walk-by")  # enter, no intent
    walk_by.stores.add(rivoli)
    CampaignFactory(
        name="dwell",
        trigger_type=TriggerType.DWELL,
        trigger_minutes=5,
        intent_skus=["X200"],
        intent_min_views=2,
        quiet_hours_start="21:00",
        quiet_hours_end="08:00",
        total_budget=100,
    )
    CampaignFactory(name="near", trigger_type=TriggerType.NEAR, trigger_distance_m=500)
    CampaignFactory(
        name="zone", trigger_type=TriggerType.BEACON_ZONE, trigger_zone="entrance"
    ).stores.add(rivoli)
    unused = CampaignFactory(name="unused", status="draft")

    lea = CustomerFactory(external_id="C-1")
    phone = DeviceFactory(
        customer=lea, device_id="lea-phone", ble_identity=beacons.ibeacon_key(BEACON_UUID, 9, 9)
    )
    CustomerFactory(external_id="C-2")
    # Opted out by replying STOP: the API cannot opt them back in.
    ConsentChange.objects.create(
        customer=CustomerFactory(external_id="C-4", sms_consent=SmsConsent.OPTED_OUT),
        previous=SmsConsent.OPTED_IN,
        consent=SmsConsent.OPTED_OUT,
        source="sms",
        by_reply=True,
    )
    ConsentChange.objects.create(
        customer=lea, previous=SmsConsent.UNKNOWN, consent=SmsConsent.OPTED_IN
    )
    Visitor.objects.create(visitor_id="v-1", customer=lea, identified_at=timezone.now())
    Visitor.objects.create(visitor_id="v-other", customer=CustomerFactory(external_id="C-3"))
    now = timezone.now()
    BrowsingEvent.objects.create(
        event_id="e-0", customer=lea, type="product_view", sku="X200", occurred_at=now
    )
    at = int(now.timestamp())
    ProductIntent.objects.create(
        customer=lea,
        sku="X200",
        category="audio",
        view_times=[at],
        last_seen_at=now,
        score=1.0,
        score_at=now,
    )
    CategoryIntent.objects.create(customer=lea, category="audio", view_times=[at, at])
    Ping.objects.create(device=phone, latitude=48.86, longitude=2.34, accuracy=8, recorded_at=now)
    DeviceTrack.objects.create(device=phone, latitude=48.86, longitude=2.34, accuracy=8, at=now)
    Presence.objects.create(customer=lea, place_key=f"store:{rivoli.pk}", store=rivoli)
    PresenceEvent.objects.create(
        customer=lea, place_key=f"store:{rivoli.pk}", kind="entered", store=rivoli, occurred_at=now
    )
    Sighting.objects.create(
        source=SightingSource.APP,
        device=phone,
        beacon=eddystone,
        store=rivoli,
        rssi=-60,
        seen_at=now,
    )
    sent = DeliveryFactory(customer=lea, campaign=walk_by, store=rivoli, code="K7Q2-M9XB")
    DeliveryFactory(
        customer=lea, campaign=walk_by, store=rivoli, code="FRESH-CODE", twilio_sid="SM1"
    )
    DeliveryFactory(
        customer=lea,
        campaign=walk_by,
        store=None,
        status=DeliveryStatus.SUPPRESSED,
        reason="quiet_hours",
        code=None,
        body="",
        error_code=None,
    )
    DeliveryFactory(customer=None, campaign=walk_by, store=rivoli, code=None, to="", body="")
    Redemption.objects.create(delivery=sent, store=rivoli, amount="9.99", redeemed_at=now)
    return {
        "spare_zone": spare_zone.pk,
        "entrance": entrance.pk,
        "eddystone": eddystone.pk,
        "ibeacon": ibeacon.pk,
        "walk_by": walk_by.pk,
        "unused": unused.pk,
    }


def store_body(code: str) -> dict[str, Any]:
    return {
        "code": code,
        "name": "Passage",
        "latitude": 48.86,
        "longitude": 2.34,
        "radius_m": 80,
        "timezone": "Europe/Paris",
    }


CAMPAIGN = {
    "name": "X200",
    "stores": ["RIVOLI"],
    "trigger": {"type": "enter"},
    "intent": {
        "skus": ["X200"],
        "categories": [],
        "min_views": 3,
        "within_days": 14,
        "cart_abandoned": False,
    },
    "offer": {"template": "-20% at {store_name}: {code}", "valid_days": 7},
    "limits": {"per_customer_days": 7, "quiet_hours": None, "daily_budget": 1000},
}
# As a PUT gives it: with what a create would default there to something wider.
CAMPAIGN_WHOLE = {**CAMPAIGN, "status": "draft", "starts_at": None, "ends_at": None}


def event() -> dict[str, Any]:
    return {
        "events": [
            {
                "event_id": "e-new",
                "customer_id": "C-1",
                "type": "cart_abandoned",
                "occurred_at": ago(minutes=1),
            }
        ]
    }


def ping() -> dict[str, Any]:
    return {
        "pings": [
            {
                "device_id": "lea-phone",
                "latitude": 48.86,
                "longitude": 2.34,
                "accuracy": 10,
                "recorded_at": ago(seconds=5),
            }
        ]
    }


def sighting() -> dict[str, Any]:
    return {
        "sightings": [
            {
                "device_id": "lea-phone",
                "rssi": -60,
                "seen_at": ago(seconds=5),
                "ibeacon": {"uuid": BEACON_UUID, "major": 1, "minor": 1},
            }
        ]
    }


def gateway_sighting() -> dict[str, Any]:
    return {
        "sightings": [
            {
                "rssi": -60,
                "seen_at": ago(seconds=5),
                "ibeacon": {"uuid": BEACON_UUID, "major": 9, "minor": 9},
            }
        ]
    }


def redemption(code: str) -> Callable[[], dict[str, Any]]:
    # Timed when sent: a redemption before the world's SMS went out is refused.
    return lambda: {"code": code, "store_code": "RIVOLI", "redeemed_at": ago(seconds=5)}


def dry_run() -> dict[str, Any]:
    return {"since": ago(days=7), "until": ago(seconds=1)}


def another_upload_always_commits_first(execute, sql, params, many, context):
    # Each of the upload's attempts loses the race for a code to a concurrent upload.
    if sql.startswith('INSERT INTO "promotions_offercode"'):
        raise IntegrityError("UNIQUE constraint failed: promotions_offercode.code_key")
    return execute(sql, params, many, context)


# --- Each operation, and the requests that draw out each of its own answers ----------------


@dataclass
class Call:
    path: str  # {name} is filled in from the world fixture
    body: Any = None
    status: int = 200
    database: Callable | None = None  # an execute wrapper in place while it is sent
    headers: dict[str, str] | None = None  # sent with it, as the test client takes them


@dataclass
class Operation:
    method: str
    template: str
    calls: list[Call]  # in order; the first is a success the machinery errors reuse

    @property
    def has_body(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH")


def op(method: str, template: str, *calls: Call) -> Operation:
    return Operation(method, template, list(calls))


# A copy of a config resource read before its last change.
STALE = {"HTTP_IF_MATCH": '"a-version-long-gone"'}


OPERATIONS = [
    op(
        "GET",
        "/api/v1/stores",
        Call("/api/v1/stores"),
        Call("/api/v1/stores?code=OPERA", status=400),
        Call("/api/v1/stores?page=9", status=404),
    ),
    op("POST", "/api/v1/stores", Call("/api/v1/stores", store_body("NEW"), 201)),
    op(
        "GET",
        "/api/v1/stores/{code}",
        Call("/api/v1/stores/OPERA"),
        Call("/api/v1/stores/NOPE", status=404),
    ),
    op(
        "PUT",
        "/api/v1/stores/{code}",
        Call("/api/v1/stores/RIVOLI", store_body("RIVOLI")),
        Call("/api/v1/stores/NOPE", store_body("NOPE"), 404),
        Call("/api/v1/stores/RIVOLI", store_body("RIVOLI"), 412, headers=STALE),
    ),
    op(
        "PATCH",
        "/api/v1/stores/{code}",
        Call("/api/v1/stores/RIVOLI", {"name": "Rivoli"}),
        Call("/api/v1/stores/NOPE", {"name": "Nope"}, 404),
        Call("/api/v1/stores/RIVOLI", {"name": "Nope"}, 412, headers=STALE),
    ),
    op(
        "DELETE",
        "/api/v1/stores/{code}",
        Call("/api/v1/stores/SPARE", status=204),
        Call("/api/v1/stores/SPARE", status=404),
        Call("/api/v1/stores/RIVOLI", status=409),
        Call("/api/v1/stores/RIVOLI", status=412, headers=STALE),
    ),
    op(
        "GET",
        "/api/v1/zones",
        Call("/api/v1/zones"),
        Call("/api/v1/zones?store=%00", status=400),
        Call("/api/v1/zones?page=9", status=404),
    ),
    op(
        "POST",
        "/api/v1/zones",
        Call("/api/v1/zones", {"store": "RIVOLI", "code": "audio", "name": "Audio"}, 201),
    ),
    op(
        "GET",
        "/api/v1/zones/{id}",
        Call("/api/v1/zones/{entrance}"),
        Call("/api/v1/zones/{entrance}?store=%00", status=400),
        Call("/api/v1/zones/999999", status=404),
    ),
    op(
        "PUT",
        "/api/v1/zones/{id}",
        Call("/api/v1/zones/{spare_zone}", {"store": "RIVOLI", "code": "tills", "name": "Tills"}),
        Call("/api/v1/zones/999999", {"store": "RIVOLI", "code": "x", "name": "X"}, 404),
        Call(
            "/api/v1/zones/{spare_zone}",
            {"store": "RIVOLI", "code": "x", "name": "X"},
            412,
            headers=STALE,
        ),
    ),
    op(
        "PATCH",
        "/api/v1/zones/{id}",
        Call("/api/v1/zones/{spare_zone}", {"name": "Tills"}),
        Call("/api/v1/zones/999999", {"name": "X"}, 404),
        Call("/api/v1/zones/{spare_zone}", {"name": "X"}, 412, headers=STALE),
    ),
    op(
        "DELETE",
        "/api/v1/zones/{id}",
        Call("/api/v1/zones/{spare_zone}", status=204),
        Call("/api/v1/zones/{spare_zone}", status=404),
        Call("/api/v1/zones/{entrance}?store=%00", status=400),
        Call("/api/v1/zones/{entrance}", status=409),
        Call("/api/v1/zones/{entrance}", status=412, headers=STALE),
    ),
    op(
        "GET",
        "/api/v1/beacons",
        Call("/api/v1/beacons"),
        Call("/api/v1/beacons?store=%00", status=400),
        Call("/api/v1/beacons?page=9", status=404),
    ),
    op(
        "POST",
        "/api/v1/beacons",
        Call(
            "/api/v1/beacons",
            {
                "store": "RIVOLI",
                "zone": "entrance",
                "ibeacon": {"uuid": BEACON_UUID, "major": 5, "minor": 5},
            },
            201,
        ),
    ),
    op(
        "GET",
        "/api/v1/beacons/{id}",
        Call("/api/v1/beacons/{eddystone}"),
        Call("/api/v1/beacons/{eddystone}?zone=%00", status=400),
        Call("/api/v1/beacons/999999", status=404),
    ),
    op(
        "PUT",
        "/api/v1/beacons/{id}",
        Call(
            "/api/v1/beacons/{eddystone}",
            {
                "store": "RIVOLI",
                "zone": None,
                "eddystone_uid": {"namespace": NAMESPACE, "instance": "0000000000a1"},
            },
        ),
        Call("/api/v1/beacons/999999", {"store": "RIVOLI"}, 404),
        Call("/api/v1/beacons/{eddystone}", {"store": "RIVOLI"}, 412, headers=STALE),
    ),
    op(
        "PATCH",
        "/api/v1/beacons/{id}",
        Call("/api/v1/beacons/{eddystone}", {"measured_power": -60}),
        Call("/api/v1/beacons/999999", {"measured_power": -60}, 404),
        Call("/api/v1/beacons/{eddystone}", {"measured_power": -1}, 412, headers=STALE),
    ),
    op(
        "DELETE",
        "/api/v1/beacons/{id}",
        Call("/api/v1/beacons/{eddystone}", status=204),
        Call("/api/v1/beacons/{eddystone}", status=404),
        Call("/api/v1/beacons/{eddystone}?store=%00", status=400),
        Call("/api/v1/beacons/{ibeacon}", status=412, headers=STALE),
    ),
    op(
        "GET",
        "/api/v1/gateways",
        Call("/api/v1/gateways"),
        Call("/api/v1/gateways?store=%00", status=400),
        Call("/api/v1/gateways?page=9", status=404),
    ),
    op(
        "POST",
        "/api/v1/gateways",
        Call("/api/v1/gateways", {"gateway_id": "gw-new", "store": "RIVOLI"}, 201),
    ),
    op(
        "GET",
        "/api/v1/gateways/{gateway_id}",
        Call("/api/v1/gateways/gw-2"),
        Call("/api/v1/gateways/gw-2?store=%00", status=400),
        Call("/api/v1/gateways/nope", status=404),
    ),
    op(
        "PUT",
        "/api/v1/gateways/{gateway_id}",
        Call("/api/v1/gateways/gw-1", {"gateway_id": "gw-1", "store": "RIVOLI", "zone": None}),
        Call("/api/v1/gateways/nope", {"gateway_id": "nope", "store": "RIVOLI"}, 404),
        Call(
            "/api/v1/gateways/gw-1", {"gateway_id": "gw-1", "store": "RIVOLI"}, 412, headers=STALE
        ),
    ),
    op(
        "PATCH",
        "/api/v1/gateways/{gateway_id}",
        Call("/api/v1/gateways/gw-1", {"zone": "tills"}),
        Call("/api/v1/gateways/nope", {"zone": None}, 404),
        Call("/api/v1/gateways/gw-1", {"zone": None}, 412, headers=STALE),
    ),
    op(
        "DELETE",
        "/api/v1/gateways/{gateway_id}",
        Call("/api/v1/gateways/gw-2", status=204),
        Call("/api/v1/gateways/gw-2", status=404),
        Call("/api/v1/gateways/gw-1?store=%00", status=400),
        Call("/api/v1/gateways/gw-1", status=412, headers=STALE),
    ),
    op(
        "GET",
        "/api/v1/campaigns",
        Call("/api/v1/campaigns"),
        Call("/api/v1/campaigns?status=bogus", status=400),
        Call("/api/v1/campaigns?page=9", status=404),
    ),
    op("POST", "/api/v1/campaigns", Call("/api/v1/campaigns", CAMPAIGN, 201)),
    op(
        "GET",
        "/api/v1/campaigns/{id}",
        Call("/api/v1/campaigns/{walk_by}"),
        Call("/api/v1/campaigns/{walk_by}?status=bogus", status=400),
        Call("/api/v1/campaigns/999999", status=404),
    ),
    op(
        "PUT",
        "/api/v1/campaigns/{id}",
        Call("/api/v1/campaigns/{unused}", CAMPAIGN_WHOLE),
        Call("/api/v1/campaigns/999999", CAMPAIGN_WHOLE, 404),
        Call("/api/v1/campaigns/{walk_by}", CAMPAIGN_WHOLE, 412, headers=STALE),
    ),
    op(
        "PATCH",
        "/api/v1/campaigns/{id}",
        Call("/api/v1/campaigns/{walk_by}", {"intent": None, "priority": 3}),
        Call("/api/v1/campaigns/999999", {"priority": 3}, 404),
        Call("/api/v1/campaigns/{walk_by}", {"status": "active"}, 412, headers=STALE),
    ),
    op(
        "DELETE",
        "/api/v1/campaigns/{id}",
        Call("/api/v1/campaigns/{unused}", status=204),
        Call("/api/v1/campaigns/{unused}", status=404),
        Call("/api/v1/campaigns/{walk_by}?status=bogus", status=400),
        Call("/api/v1/campaigns/{walk_by}", status=409),
        Call("/api/v1/campaigns/{walk_by}", status=412, headers=STALE),
    ),
    op(
        "GET",
        "/api/v1/campaigns/{id}/stats",
        Call("/api/v1/campaigns/{walk_by}/stats"),
        Call("/api/v1/campaigns/999999/stats", status=404),
    ),
    op(
        "POST",
        "/api/v1/campaigns/{id}/dry-run",
        Call("/api/v1/campaigns/{walk_by}/dry-run", dry_run),
        Call("/api/v1/campaigns/999999/dry-run", dry_run, 404),
    ),
    op(
        "POST",
        "/api/v1/campaigns/{id}/codes",
        Call("/api/v1/campaigns/{walk_by}/codes", {"codes": ["POOL-1"]}, 201),
        Call("/api/v1/campaigns/999999/codes", {"codes": ["POOL-2"]}, 404),
        Call(
            "/api/v1/campaigns/{walk_by}/codes",
            {"codes": ["POOL-3"]},
            409,
            database=another_upload_always_commits_first,
        ),
    ),
    op(
        "GET",
        "/api/v1/customers/{external_id}",
        Call("/api/v1/customers/C-1"),
        Call("/api/v1/customers/nobody", status=404),
        Call("/api/v1/customers/C%00", status=404),
    ),
    op(
        "PUT",
        "/api/v1/customers/{external_id}",
        Call("/api/v1/customers/C-9", {"phone": "+33612345678"}, 201),
        Call("/api/v1/customers/C-9", {"first_name": "Tom"}, 200),
        Call("/api/v1/customers/C%00", {"first_name": "Tom"}, 400),
        Call("/api/v1/customers/C-4", {"sms_consent": "opted_in"}, 409),
    ),
    op(
        "DELETE",
        "/api/v1/customers/{external_id}",
        Call("/api/v1/customers/C-2", status=204),
        Call("/api/v1/customers/C-2", status=404),
    ),
    op(
        "GET",
        "/api/v1/customers/{external_id}/export",
        Call("/api/v1/customers/C-1/export"),
        Call("/api/v1/customers/nobody/export", status=404),
    ),
    op(
        "GET",
        "/api/v1/deliveries",
        Call("/api/v1/deliveries"),
        Call("/api/v1/deliveries?campaign=x", status=400),
        Call("/api/v1/deliveries?page=9", status=404),
    ),
    op(
        "POST",
        "/api/v1/devices",
        Call("/api/v1/devices", {"device_id": "new", "customer_id": "C-1"}, 201),
        Call("/api/v1/devices", {"device_id": "new", "customer_id": "C-1", "platform": "ios"}),
        Call(
            "/api/v1/devices",
            {
                "device_id": "other",
                "customer_id": "C-1",
                "ibeacon": {"uuid": BEACON_UUID, "major": 9, "minor": 9},
            },
            409,
        ),
    ),
    op(
        "POST",
        "/api/v1/identify",
        Call("/api/v1/identify", {"visitor_id": "v-1", "customer_id": "C-1"}),
        Call("/api/v1/identify", {"visitor_id": "v-other", "customer_id": "C-1"}, 409),
    ),
    op("POST", "/api/v1/events", Call("/api/v1/events", event, 202)),
    op("POST", "/api/v1/pings", Call("/api/v1/pings", ping, 202)),
    op("POST", "/api/v1/sightings", Call("/api/v1/sightings", sighting, 202)),
    op(
        "POST",
        "/api/v1/gateways/{gateway_id}/sightings",
        Call("/api/v1/gateways/gw-1/sightings", gateway_sighting, 202),
    ),
    op(
        "POST",
        "/api/v1/redemptions",
        Call("/api/v1/redemptions", redemption("FRESH-CODE"), 201),
        Call("/api/v1/redemptions", redemption("FRESH-CODE"), 409),
        Call("/api/v1/redemptions", redemption("NOPE"), 404),
    ),
]


def test_every_operation_of_the_schema_is_provoked_here():
    documented = {
        (method.upper(), template)
        for template, operations in openapi()["paths"].items()
        for method in operations
    }

    assert {(o.method, o.template) for o in OPERATIONS} == documented


def pass_through(execute, sql, params, many, context):
    return execute(sql, params, many, context)


def database_down(execute, sql, params, many, context):
    if "SAVEPOINT" in sql:  # the test's own transaction
        return execute(sql, params, many, context)
    raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda o: f"{o.method} {o.template}")
def test_an_operation_answers_exactly_the_statuses_its_schema_documents(world, settings, operation):
    def api(*scopes: str) -> APIClient:
        client = APIClient()
        if scopes:
            _, key = create_api_key(name="schema", scopes=list(scopes))
            client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return client

    answered: dict[int, list[str]] = {}

    def send(client: APIClient, call: Call, raw: bytes | None = None) -> Any:
        path = call.path.format(**world)
        body = call.body() if callable(call.body) else call.body
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        with connection.execute_wrapper(call.database or pass_through):
            response = client.generic(
                operation.method,
                path,
                data=data,
                content_type="application/json",
                **(call.headers or {}),
            )
        answered.setdefault(response.status_code, []).extend(
            problems(operation.method, path, response)
        )
        return response

    first = operation.calls[0]
    view = resolve(first.path.format(**world).split("?")[0]).func
    scope = getattr(view, "cls", view).required_scope
    another_scope = Scope.REPORTS if scope != Scope.REPORTS else Scope.CONFIG
    client = api(scope)

    # The machinery's answers, first: none of them changes anything.
    assert send(api(), first).status_code == 401
    assert send(api(another_scope), first).status_code == 403
    with connection.execute_wrapper(database_down):
        down = send(client, first)
    assert (down.status_code, down["Retry-After"]) == (503, str(DATABASE_RETRY_AFTER_SECONDS))
    if operation.has_body:
        assert send(client, first, raw=b'{"unclosed": ').status_code == 400
        limit, settings.API_MAX_BODY_BYTES = settings.API_MAX_BODY_BYTES, 1024
        assert send(client, first, raw=json.dumps({"pad": "x" * 2000}).encode()).status_code == 413
        settings.API_MAX_BODY_BYTES = limit
        path = first.path.format(**world)
        chunked = client.generic(
            operation.method,
            path,
            CONTENT_TYPE="application/json",
            HTTP_TRANSFER_ENCODING="chunked",
            **{"wsgi.input": FakePayload(b"{}")},
        )
        assert chunked.status_code == 411
        answered.setdefault(411, []).extend(problems(operation.method, path, chunked))
        brotli = client.generic(
            operation.method,
            path,
            data=b"{}",
            content_type="application/json",
            HTTP_CONTENT_ENCODING="br",
        )
        assert (brotli.status_code, brotli["Accept-Encoding"]) == (415, ACCEPTED_ENCODINGS)
        answered.setdefault(415, []).extend(problems(operation.method, path, brotli))
    # The operation's own answers, in order.
    for call in operation.calls:
        assert send(client, call).status_code == call.status, call
    # The rate limit, last: under it, an operation it does not count answers as before.
    settings.INGEST_RATE_LIMIT_PER_MINUTE = 1
    again = [send(client, first).status_code for _ in range(2)]
    assert (again[-1] == 429) == (scope == Scope.INGEST)

    documented = openapi()["paths"][operation.template][operation.method.lower()]["responses"]
    assert {code: found for code, found in answered.items() if found} == {}
    assert sorted(map(str, answered)) == sorted(documented)


# --- Required fields ------------------------------------------------------------------------

ALWAYS_PRESENT = {
    "Store": ["address", "radius_m", "polygon"],
    "Zone": ["rssi_threshold"],
    "Beacon": ["zone", "ibeacon", "eddystone_uid", "measured_power"],
    "Gateway": ["zone"],
    "Campaign": ["status", "starts_at", "ends_at", "stores", "intent", "priority", "limits"],
    "Offer": ["valid_days"],
    "Limits": [
        "per_customer_days",
        "quiet_hours",
        "allowed_days",
        "daily_budget",
        "total_budget",
        "holdout_percent",
    ],
    "Intent": ["skus", "categories", "min_views", "within_days", "cart_abandoned"],
    "Delivery": ["code", "body", "error_code"],
    "Device": ["platform"],
    "PaginatedStoreList": ["next", "previous"],
}


@pytest.mark.parametrize("component", sorted(ALWAYS_PRESENT))
def test_fields_every_response_carries_are_required(component):
    required = openapi()["components"]["schemas"][component].get("required", [])

    assert set(ALWAYS_PRESENT[component]) - set(required) == set()


def test_no_intent_condition_is_a_required_null():
    intent = openapi()["components"]["schemas"]["Campaign"]["properties"]["intent"]

    assert intent["nullable"] is True
    assert "intent" in openapi()["components"]["schemas"]["Campaign"]["required"]


def test_a_trigger_documents_the_details_of_other_types_as_left_out():
    trigger = openapi()["components"]["schemas"]["Trigger"]

    assert trigger["required"] == ["type"]


@pytest.mark.parametrize("component", ["Store", "StoreRequest", "PatchedStoreRequest"])
def test_a_store_s_polygon_is_documented_as_the_outlines_the_api_takes(component):
    # Map editors export an outline wrapped: a client reading the schema learns it may send
    # one as exported, and gets the Polygon back.
    polygon = openapi()["components"]["schemas"][component]["properties"]["polygon"]

    for shape in ("Polygon", "Feature", "FeatureCollection of one", "MultiPolygon of one"):
        assert shape in polygon.get("description", "")


@pytest.mark.parametrize(
    ("component", "required"),
    [
        ("CampaignRequest", ["name", "offer", "trigger"]),
        # A PUT sends what a create's default would widen (every store, every shopper...).
        (
            "CampaignReplaceRequest",
            sorted(
                {"name", "trigger", "offer", "status", "starts_at", "ends_at", "stores"}
                | {"intent", "limits"}
            ),
        ),
        # Coordinates left out: the address is geocoded.
        ("StoreRequest", ["code", "name", "timezone"]),
        ("LimitsRequest", None),
        ("PatchedCampaignRequest", None),
    ],
)
def test_what_a_client_may_leave_out_of_a_request_stays_optional(component, required):
    assert openapi()["components"]["schemas"][component].get("required") == required


def documented_request_body_problem(method: str, path: str, body: Any) -> str | None:
    """Why this request body is not one the schema documents for the operation, if it is not."""
    _, operation = documented_operation(method, path)
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    full = _as_json_schema({**schema, "components": openapi()["components"]})
    try:
        jsonschema.validate(body, full)
    except jsonschema.ValidationError as error:
        return f"{error.message} at {list(error.path)}"
    return None


@pytest.mark.parametrize(
    ("body", "changed"),
    [
        ({"offer": {"valid_days": 3}}, ("offer_valid_days", 3)),
        ({"trigger": {"minutes": 15}}, ("trigger_minutes", 15)),
        ({"limits": {"quiet_hours": {"start": "21:30"}}}, ("quiet_hours_start", "21:30")),
        ({"intent": {"min_views": 2}}, ("intent_min_views", 2)),
    ],
)
def test_a_patch_of_part_of_a_nested_object_is_documented_as_the_api_accepts_it(api, body, changed):
    campaign = CampaignFactory(
        trigger_type=TriggerType.DWELL,
        trigger_minutes=5,
        intent_skus=["SKU-1"],
        quiet_hours_start="21:00",
        quiet_hours_end="08:00",
    )
    path = f"/api/v1/campaigns/{campaign.pk}"

    response = api.patch(path, body, format="json")

    assert response.status_code == 200, response.json()
    name, value = changed
    campaign.refresh_from_db()
    assert str(getattr(campaign, name))[: len(str(value))] == str(value)
    assert documented_request_body_problem("PATCH", path, body) is None


def test_a_patch_gives_a_beacon_s_identity_whole_as_documented(api):
    beacon = BeaconFactory()
    path = f"/api/v1/beacons/{beacon.pk}"
    body = {"ibeacon": {"major": 2}}

    response = api.patch(path, body, format="json")

    assert response.status_code == 400
    assert set(response.json()["ibeacon"]) == {"uuid", "minor"}
    assert documented_request_body_problem("PATCH", path, body) is not None


# --- What a field accepts -------------------------------------------------------------------

HOUR_MINUTE = r"^([01]\d|2[0-3]):[0-5]\d$"
HOUR_MINUTE_READ = r"^([01]\d|2[0-3]):[0-5]\d(:00)?$"
# SPEC: "reasons are `no_consent`, `no_phone`, `quiet_hours`, `campaign_cap`, `global_cap`,
# `budget`, `holdout`".
SPEC_REASONS = {
    "no_consent",
    "no_phone",
    "quiet_hours",
    "campaign_cap",
    "global_cap",
    "budget",
    "holdout",
}


def component(name: str) -> dict[str, Any]:
    return openapi()["components"]["schemas"][name]


def enum_values(node: Any) -> set[Any]:
    """The values an enum allows, through $refs and oneOf."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if ref:
            return enum_values(component(ref.rsplit("/", 1)[1]))
        found = set(node.get("enum", []))
        for part in node.get("oneOf", []) + node.get("allOf", []) + node.get("anyOf", []):
            found |= enum_values(part)
        return found
    return set()


@pytest.mark.parametrize(
    ("name", "pattern", "read_too"),
    [
        ("QuietHours", HOUR_MINUTE, []),
        # A request may add ":00", as clients that write an RFC 3339 time send it.
        ("QuietHoursRequest", HOUR_MINUTE_READ, ["21:00:00"]),
    ],
)
def test_quiet_hours_are_documented_as_the_hours_and_minutes_the_api_reads_and_writes(
    name, pattern, read_too
):
    properties = component(name)["properties"]

    for end in ("start", "end"):
        assert properties[end]["pattern"] == pattern
        assert "format" not in properties[end]
        assert re.match(HOUR_MINUTE, properties[end]["example"])
        for written in ["21:00", *read_too]:
            assert re.match(pattern, written)
        assert not re.match(pattern, "21:00:30")


def test_a_delivery_reason_is_documented_as_one_of_the_spec_s():
    reason = component("Delivery")["properties"]["reason"]

    assert reason["nullable"] is True
    assert enum_values(reason) - {None} == set(DeliveryReason.values)
    assert set(DeliveryReason.values) >= SPEC_REASONS


def test_a_ping_s_accuracy_is_documented_as_above_0_and_within_the_limit(settings):
    accuracy = component("PingRequest")["properties"]["accuracy"]

    assert (accuracy["minimum"], accuracy.get("exclusiveMinimum")) == (0, True)
    assert accuracy["maximum"] == settings.INGEST_MAX_ACCURACY_M


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("RedemptionRequest", "amount"),
        ("RedemptionResult", "amount"),
        ("ExportedRedemption", "amount"),
        ("Group", "revenue"),
        ("CampaignStats", "revenue"),
    ],
)
def test_an_amount_is_documented_as_never_negative(name, field):
    pattern = component(name)["properties"][field]["pattern"]

    assert re.match(pattern, "9.99")
    assert not re.match(pattern, "-9.99")


@pytest.mark.parametrize("name", ["Limits", "LimitsRequest"])
def test_allowed_days_are_documented_as_at_least_one(name):
    assert component(name)["properties"]["allowed_days"]["minItems"] == 1
