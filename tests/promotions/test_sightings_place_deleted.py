"""Sightings stored while a place they name is being deleted (a marketer removing a beacon,
a zone, a gateway or a store during opening hours): the batch is still answered 202, the
sightings of the place gone are rejected by their index and the others are stored.

A sighting's place is a foreign key checked when its transaction commits; a place deleted
meanwhile made that commit fail, and the whole batch was answered 409, which a client
following the contract (202, 400, 413) drops. These tests run two real transactions at once,
so they need PostgreSQL."""

import json

import pytest
from django.db import connection

from promotions import beacons
from promotions.models import Beacon, Gateway, Sighting, Zone
from tests.clock import ago
from tests.factories import BEACON_UUID, BeaconFactory, DeviceFactory, GatewayFactory, ZoneFactory
from tests.processes import in_thread, started

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
    ),
]


def ranged(minor: int, seconds: int) -> dict:
    return {
        "device_id": "lea-phone",
        "ibeacon": {"uuid": BEACON_UUID, "major": 1, "minor": minor},
        "rssi": -60,
        "seen_at": ago(seconds=seconds),
    }


def post_while(deletion, api, path: str, sightings: list[dict]) -> dict:
    """Post the sightings while `deletion` runs in a transaction held open, released once
    the request is under way."""
    deleter = started(deletion)
    answers = []
    request = in_thread(
        lambda: answers.append(
            api.post(path, json.dumps({"sightings": sightings}), content_type="application/json")
        )
    )
    request.join(0.5)
    deleter.release.set()
    deleter.join(10)
    request.join(10)
    assert deleter.error is None
    [response] = answers
    assert response.status_code == 202, response.content
    return response.json()


def test_a_beacon_deleted_meanwhile_rejects_its_own_sightings_only(api):
    DeviceFactory(device_id="lea-phone")
    zone = ZoneFactory()
    going = BeaconFactory(zone=zone, identity=beacons.ibeacon_key(BEACON_UUID, 1, 1))
    staying = BeaconFactory(zone=zone, identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))

    answer = post_while(
        lambda: Beacon.objects.filter(pk=going.pk).delete(),
        api,
        "/api/v1/sightings",
        [ranged(1, 5), ranged(2, 5)],
    )

    assert answer == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": [
            {
                "index": 0,
                "errors": {
                    "non_field_errors": ["No store beacon is registered with this identity."]
                },
            }
        ],
    }
    assert list(Sighting.objects.values_list("beacon", flat=True)) == [staying.pk]


def test_a_zone_deleted_meanwhile_leaves_its_beacons_sightings_in_the_store(api):
    DeviceFactory(device_id="lea-phone")
    beacon = BeaconFactory(identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))

    answer = post_while(
        lambda: Zone.objects.filter(pk=beacon.zone_id).delete(),
        api,
        "/api/v1/sightings",
        [ranged(2, 5)],
    )

    assert answer == {"accepted": 1, "duplicates": 0, "rejected": []}
    stored = Sighting.objects.get()
    assert (stored.beacon_id, stored.store_id, stored.zone_id) == (beacon.pk, beacon.store_id, None)


def test_a_gateway_deleted_meanwhile_rejects_its_sightings_by_their_index(api):
    DeviceFactory(device_id="lea-tag", ble_identity=beacons.ibeacon_key(BEACON_UUID, 7, 7))
    gateway = GatewayFactory(gateway_id="gw-door")
    seen = {
        "ibeacon": {"uuid": BEACON_UUID, "major": 7, "minor": 7},
        "rssi": -60,
        "seen_at": ago(seconds=5),
    }

    answer = post_while(
        lambda: Gateway.objects.filter(pk=gateway.pk).delete(),
        api,
        "/api/v1/gateways/gw-door/sightings",
        [seen],
    )

    assert answer == {
        "accepted": 0,
        "duplicates": 0,
        "rejected": [{"index": 0, "errors": {"gateway_id": ["Unknown gateway 'gw-door'."]}}],
    }
    assert not Sighting.objects.exists()
