"""The configuration lists and lookups as an integrator's code reads them: each filter named
and valued as the field it filters in the resource, the same on every list that has that
field, and a key or value of the wrong kind answered with what to send instead."""

import pytest
from django.test import Client

from tests.factories import GatewayFactory, StoreFactory, ZoneFactory

pytestmark = pytest.mark.django_db


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
