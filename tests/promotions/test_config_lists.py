"""The configuration lists and lookups as an integrator's code reads them: each filter named
and valued as the field it filters in the resource, the same on every list that has that
field, and a key or value of the wrong kind answered with what to send instead."""

import pytest
from django.test import Client

from promotions import beacons
from tests.factories import (
    BEACON_UUID,
    BeaconFactory,
    GatewayFactory,
    StoreFactory,
    ZoneFactory,
)
from tests.test_site import campaign_form, form_errors

pytestmark = pytest.mark.django_db

EDDYSTONE_NAMESPACE = "edd1ebeac04e5defa017"


@pytest.fixture
def rivoli():
    return StoreFactory(code="RIVOLI", name="Passage Rivoli")


@pytest.fixture
def opera():
    return StoreFactory(code="OPERA", name="Passage Opéra")


@pytest.fixture
def entrance(rivoli):
    return ZoneFactory(store=rivoli, code="entrance", name="Entrance")


def openapi():
    return Client().get("/api/schema/?format=json").json()


def listed(api, path):
    response = api.get(path)
    assert response.status_code == 200, response.json()
    return response.json()["results"]


# --- Filters --------------------------------------------------------------------------------


def test_gateways_are_filtered_by_zone_as_beacons_are(api, entrance, opera):
    hifi = ZoneFactory(store=entrance.store, code="hifi")
    GatewayFactory(gateway_id="gw-door", zone=entrance)
    GatewayFactory(gateway_id="gw-hifi", zone=hifi)
    GatewayFactory(gateway_id="gw-opera-door", zone=ZoneFactory(store=opera, code="entrance"))

    def ids(query):
        return [g["gateway_id"] for g in listed(api, f"/api/v1/gateways?{query}")]

    assert ids("zone=entrance") == ["gw-door", "gw-opera-door"]
    assert ids("store=RIVOLI&zone=entrance") == ["gw-door"]
    assert ids("zone=tills") == []


@pytest.mark.parametrize("resource", ["beacons", "gateways"])
def test_the_zone_filter_is_documented_alike_on_beacons_and_gateways(resource):
    parameters = openapi()["paths"][f"/api/v1/{resource}"]["get"]["parameters"]

    zone = next(p for p in parameters if p["name"] == "zone")
    assert zone["schema"]["type"] == "string"
    assert "zone code" in zone["description"].lower()


# --- A zone named by its id where its code is asked for -------------------------------------
# /zones lists each zone with an `id` (its key there) and a `code`; beacons, gateways, a
# beacon-zone trigger and the lists' `zone` filter name a zone by its code.


@pytest.mark.parametrize("given", [int, str])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/gateways", {"gateway_id": "gw-door", "store": "RIVOLI"}),
        (
            "/api/v1/beacons",
            {"store": "RIVOLI", "ibeacon": {"uuid": BEACON_UUID, "major": 1, "minor": 2}},
        ),
    ],
)
def test_a_zone_given_by_its_id_is_refused_naming_its_code(api, entrance, path, body, given):
    response = api.post(path, {**body, "zone": given(entrance.id)})

    assert response.status_code == 400
    assert response.json() == {
        "zone": [
            f"Store RIVOLI has no zone '{entrance.id}'. A zone is named here by its code: "
            f"zone {entrance.id} is 'entrance', of store RIVOLI."
        ]
    }


def test_a_beacon_zone_trigger_given_a_zone_s_id_is_refused_naming_its_code(api, entrance):
    body = {
        "name": "Door",
        "stores": ["RIVOLI"],
        "trigger": {"type": "beacon_zone", "zone": str(entrance.id)},
        "offer": {"template": "Bonjour {first_name}: {code}"},
    }

    response = api.post("/api/v1/campaigns", body)

    assert response.status_code == 400
    assert response.json() == {
        "trigger": {
            "zone": [
                f"No zone '{entrance.id}' in the campaign's stores. A zone is named here by its "
                f"code: zone {entrance.id} is 'entrance', of store RIVOLI."
            ]
        }
    }


def test_a_zone_whose_code_is_digits_is_still_found_by_its_code(api, rivoli, entrance):
    numbered = ZoneFactory(store=rivoli, code=str(entrance.id + 100))

    response = api.post(
        "/api/v1/gateways", {"gateway_id": "gw-1", "store": "RIVOLI", "zone": numbered.code}
    )

    assert response.status_code == 201
    assert response.json()["zone"] == numbered.code


@pytest.mark.parametrize("resource", ["beacons", "gateways"])
def test_a_zone_filter_given_a_zone_s_id_is_400_not_an_empty_list(api, entrance, resource):
    BeaconFactory(zone=entrance)
    GatewayFactory(zone=entrance)

    response = api.get(f"/api/v1/{resource}?zone={entrance.id}")

    assert response.status_code == 400
    assert response.json() == {
        "zone": [
            f"No zone has the code '{entrance.id}'. A zone is named here by its code: "
            f"zone {entrance.id} is 'entrance', of store RIVOLI."
        ]
    }
    assert listed(api, f"/api/v1/{resource}?zone=entrance") != []


# --- Keys of the wrong kind -----------------------------------------------------------------


def test_a_zone_is_found_by_its_store_and_code(api, entrance, opera):
    ZoneFactory(store=entrance.store, code="hifi")
    ZoneFactory(store=opera, code="entrance")

    found = listed(api, "/api/v1/zones?store=RIVOLI&code=entrance")

    assert found == [
        {
            "id": entrance.id,
            "store": "RIVOLI",
            "code": "entrance",
            "name": "Entrance",
            "rssi_threshold": -80,
        }
    ]
    assert [z["store"] for z in listed(api, "/api/v1/zones?code=entrance")] == ["OPERA", "RIVOLI"]
    code = next(
        p for p in openapi()["paths"]["/api/v1/zones"]["get"]["parameters"] if p["name"] == "code"
    )
    assert code["schema"]["type"] == "string"


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_a_zone_addressed_by_its_code_is_404_saying_how_to_find_its_id(api, entrance, method):
    response = getattr(api, method)("/api/v1/zones/entrance", {})

    assert response.status_code == 404
    assert response.json() == {
        "detail": "A zone is addressed by its id, a whole number (the `id` the zones list "
        "gives), not by its code: /api/v1/zones?code=entrance lists the zones of that code, "
        "with their ids."
    }
    assert api.get("/api/v1/zones?code=entrance").json()["results"][0]["id"] == entrance.id


@pytest.mark.parametrize(
    ("path", "noun", "resource"),
    [
        ("/api/v1/beacons/f7826da6-4fa2-4e98-8024-bc5b71e0893e", "beacon", "beacons"),
        ("/api/v1/campaigns/X200-walk-by", "campaign", "campaigns"),
        ("/api/v1/zones/a%20b", "zone", "zones"),
    ],
)
def test_a_key_that_is_no_id_is_404_saying_what_the_key_is(api, path, noun, resource):
    response = api.get(path)

    assert response.status_code == 404
    assert response.json() == {
        "detail": f"A {noun} is addressed by its id, a whole number (the `id` the {resource} "
        "list gives)."
    }


# --- Pages ----------------------------------------------------------------------------------

LISTS = ["stores", "zones", "beacons", "gateways", "campaigns", "deliveries"]


@pytest.mark.parametrize("resource", LISTS)
def test_a_list_s_page_is_documented_as_the_numbers_it_takes(api, resource):
    page = next(
        p
        for p in openapi()["paths"][f"/api/v1/{resource}"]["get"]["parameters"]
        if p["name"] == "page"
    )

    assert page["schema"] == {"type": "integer", "minimum": 1}
    assert "100 a page" in page["description"]
    assert api.get(f"/api/v1/{resource}?page=0").status_code == 400
    assert api.get(f"/api/v1/{resource}?page=1").status_code == 200


# --- Filter values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "choices"),
    [
        ("/api/v1/campaigns?status=ACTIVE", "draft, active, paused, ended"),
        (
            "/api/v1/deliveries?status=SENT",
            "suppressed, holdout, queued, sent, delivered, undelivered, failed",
        ),
    ],
)
def test_a_status_filter_that_is_no_status_is_400_naming_the_statuses(api, path, choices):
    response = api.get(path)

    assert response.status_code == 400
    value = path.rsplit("=", 1)[1]
    assert response.json() == {"status": [f"{value} is no status: give one of {choices}."]}


# --- Beacons by identity ----------------------------------------------------------------


@pytest.fixture
def fleet(entrance):
    """Beacons of two iBeacon UUIDs and an Eddystone-UID, ids by name."""
    other_uuid = "e2c56db5-dffb-48d2-b060-d0f5a71096e0"
    made = {
        "door": beacons.ibeacon_key(BEACON_UUID, 1, 2),
        "till": beacons.ibeacon_key(BEACON_UUID, 1, 12),
        "hifi": beacons.ibeacon_key(BEACON_UUID, 12, 1),
        "other": beacons.ibeacon_key(other_uuid, 1, 2),
        "eddy": beacons.eddystone_uid_key(EDDYSTONE_NAMESPACE, "0000000000a1"),
    }
    return {name: BeaconFactory(zone=entrance, identity=key).id for name, key in made.items()}


@pytest.mark.parametrize(
    ("query", "found"),
    [
        (f"ibeacon_uuid={BEACON_UUID}", ["door", "till", "hifi"]),
        # As the body takes it: any case, hyphens or not.
        (f"ibeacon_uuid={BEACON_UUID.upper().replace('-', '')}", ["door", "till", "hifi"]),
        (f"ibeacon_uuid={BEACON_UUID}&ibeacon_major=1&ibeacon_minor=2", ["door"]),
        ("ibeacon_major=1", ["door", "till", "other"]),
        ("ibeacon_minor=2", ["door", "other"]),
        ("ibeacon_major=12", ["hifi"]),
        (f"eddystone_uid_namespace=0x{EDDYSTONE_NAMESPACE.upper()}", ["eddy"]),
        ("eddystone_uid_instance=0000000000A1", ["eddy"]),
        ("eddystone_uid_instance=0000000000a2", []),
    ],
)
def test_beacons_are_found_by_their_identity(api, fleet, query, found):
    ids = [b["id"] for b in listed(api, f"/api/v1/beacons?{query}")]

    assert sorted(ids) == sorted(fleet[name] for name in found)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("ibeacon_uuid=f7826da6", "'f7826da6' is not a UUID"),
        ("ibeacon_major=70000", "The iBeacon major must be from 0 to 65535; got 70000."),
        ("ibeacon_minor=1.0", "The iBeacon minor must be a whole number from 0 to 65535."),
        ("eddystone_uid_instance=a1", "The Eddystone-UID instance is 12 hex digits"),
    ],
)
def test_a_beacon_identity_filter_that_names_none_is_400_saying_why(api, fleet, query, message):
    response = api.get(f"/api/v1/beacons?{query}")

    assert response.status_code == 400
    name = query.split("=")[0]
    assert list(response.json()) == [name]
    assert response.json()[name][0].startswith(message)


def test_the_beacon_identity_filters_are_documented():
    parameters = openapi()["paths"]["/api/v1/beacons"]["get"]["parameters"]

    documented = {p["name"]: p["schema"] for p in parameters}
    assert documented["ibeacon_uuid"]["type"] == "string"
    assert documented["ibeacon_major"] == {"type": "integer", "minimum": 0, "maximum": 65535}
    assert documented["ibeacon_minor"] == {"type": "integer", "minimum": 0, "maximum": 65535}
    assert documented["eddystone_uid_namespace"]["type"] == "string"
    assert documented["eddystone_uid_instance"]["type"] == "string"


@pytest.mark.parametrize("resource", LISTS)
def test_every_filter_of_a_list_is_documented_with_what_it_takes(resource):
    parameters = openapi()["paths"][f"/api/v1/{resource}"]["get"]["parameters"]

    assert {
        p["name"]: p.get("description", "") for p in parameters if not p.get("description")
    } == {}


# --- Store codes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/zones", {"code": "tills", "name": "Tills"}),
        ("/api/v1/gateways", {"gateway_id": "gw-1"}),
        (
            "/api/v1/beacons",
            {"ibeacon": {"uuid": BEACON_UUID, "major": 1, "minor": 2}},
        ),
    ],
)
def test_a_store_named_in_another_case_is_refused_naming_the_one_there_is(api, rivoli, path, body):
    typed = api.post(path, {**body, "store": "rivoli"})
    unknown = api.post(path, {**body, "store": "NOWHERE"})

    assert typed.status_code == unknown.status_code == 400
    assert typed.json() == {
        "store": [
            "No store has the code 'rivoli'. Codes are case-sensitive: did you mean 'RIVOLI'?"
        ]
    }
    assert unknown.json() == {"store": ["No store has the code 'NOWHERE'."]}


def test_a_campaign_s_store_in_another_case_is_refused_naming_the_one_there_is(api, rivoli):
    body = {
        "name": "Walk-by",
        "stores": ["RIVOLI", "Rivoli"],
        "trigger": {"type": "enter"},
        "offer": {"template": "Bonjour {first_name}: {code}"},
    }

    response = api.post("/api/v1/campaigns", body)

    assert response.status_code == 400
    assert response.json() == {
        "stores": [
            "No store has the code 'Rivoli'. Codes are case-sensitive: did you mean 'RIVOLI'?"
        ]
    }


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_a_store_addressed_in_another_case_is_404_naming_the_one_there_is(api, rivoli, method):
    response = getattr(api, method)("/api/v1/stores/rivoli", {})

    assert response.status_code == 404
    assert response.json() == {
        "detail": "No store has the code 'rivoli'. Codes are case-sensitive: did you mean 'RIVOLI'?"
    }
    assert api.get("/api/v1/stores/NOWHERE").json() == {
        "detail": "No store has the code 'NOWHERE'."
    }


def test_a_gateway_addressed_in_another_case_is_404_naming_the_one_there_is(api, entrance):
    GatewayFactory(gateway_id="gw-rivoli-1", zone=entrance)

    response = api.get("/api/v1/gateways/GW-RIVOLI-1")

    assert response.status_code == 404
    assert response.json() == {
        "detail": "No gateway has the id 'GW-RIVOLI-1'. Ids are case-sensitive: "
        "did you mean 'gw-rivoli-1'?"
    }
    # One there, but not in the store the filter names: the filter's answer, as before.
    assert api.get("/api/v1/gateways/gw-rivoli-1?store=OPERA").status_code == 404
    assert api.get("/api/v1/gateways/gw-rivoli-1?store=OPERA").json()["detail"] != (
        "No gateway has the id 'gw-rivoli-1'."
    )


# --- Zone codes in another case ---------------------------------------------------------


def test_a_zone_named_in_another_case_is_refused_naming_the_one_there_is(api, entrance):
    response = api.post(
        "/api/v1/gateways", {"gateway_id": "gw-1", "store": "RIVOLI", "zone": "Entrance"}
    )

    assert response.status_code == 400
    assert response.json() == {
        "zone": [
            "Store RIVOLI has no zone 'Entrance'. Codes are case-sensitive: "
            "did you mean 'entrance'?"
        ]
    }


def test_a_beacon_zone_trigger_in_another_case_is_refused_naming_the_one_there_is(
    api, entrance, opera
):
    ZoneFactory(store=opera, code="ENTRANCE")
    body = {
        "name": "Door",
        "stores": ["RIVOLI"],
        "trigger": {"type": "beacon_zone", "zone": "Entrance"},
        "offer": {"template": "Bonjour {first_name}: {code}"},
    }

    response = api.post("/api/v1/campaigns", body)

    assert response.status_code == 400
    # OPERA's is not among the campaign's stores: not offered.
    assert response.json() == {
        "trigger": {
            "zone": [
                "No zone 'Entrance' in the campaign's stores. Codes are case-sensitive: "
                "did you mean 'entrance'?"
            ]
        }
    }


def test_the_admin_s_campaign_page_names_the_zone_code_in_another_case(admin_client, entrance):
    form = campaign_form(
        trigger_type="beacon_zone", trigger_zone="ENTRANCE", stores=[entrance.store.pk]
    )

    response = admin_client.post("/admin/promotions/campaign/add/", form)

    assert form_errors(response)["trigger_zone"] == [
        "No zone 'ENTRANCE' in the campaign's stores. Codes are case-sensitive: "
        "did you mean 'entrance'?"
    ]


@pytest.mark.parametrize("path", ["/api/v1/stores", "/api/v1/stores/RIVOLI", "/api/v1/deliveries"])
def test_a_list_asked_in_a_format_it_is_not_served_in_says_so(api, rivoli, path):
    """`?format=csv` read as a bare 404 "Not found.", as if the list did not exist."""
    response = api.get(path, {"format": "csv"})

    assert response.status_code == 406
    assert response.json() == {"detail": "Answered as json only: format 'csv' is not served."}


def test_a_list_asked_in_json_by_format_is_answered(api, rivoli):
    response = api.get("/api/v1/stores", {"format": "json"})

    assert response.status_code == 200
    assert [store["code"] for store in response.json()["results"]] == ["RIVOLI"]


@pytest.mark.parametrize(
    "path, query, field",
    [
        ("/api/v1/beacons", {"eddystone_uid_instance": "10%"}, "eddystone_uid_instance"),
        ("/api/v1/beacons", {"ibeacon_uuid": "%s%d"}, "ibeacon_uuid"),
        ("/api/v1/beacons", {"eddystone_uid_namespace": "%(x)s"}, "eddystone_uid_namespace"),
    ],
)
def test_a_filter_refusing_a_value_with_a_percent_sign_quotes_it(api, rivoli, path, query, field):
    """django-filter formats each message with `%`: one quoting a value that holds a `%`
    was a server error."""
    response = api.get(path, query)

    assert response.status_code == 400
    assert query[field] in response.json()[field][0]
