"""A store's places stay together when two writes meet (a zone moving to another store while a
beacon or gateway joins it, through the API or the admin), and a marketer who may delete a
beacon or gateway can delete one that has heard phones."""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.db.models.signals import pre_save
from django.utils import timezone

from promotions.models import Beacon, Gateway, Sighting, Store, Zone
from tests.factories import (
    BEACON_UUID,
    BeaconFactory,
    DeviceFactory,
    GatewayFactory,
    StoreFactory,
    ZoneFactory,
)
from tests.test_site import form_errors

ZONE_ADDED = {
    "beacon": (
        Beacon,
        "post",
        "/api/v1/beacons",
        {
            "store": "RIVOLI",
            "zone": "entrance",
            "ibeacon": {"uuid": BEACON_UUID, "major": 1, "minor": 2},
        },
    ),
    "gateway": (
        Gateway,
        "post",
        "/api/v1/gateways",
        {"gateway_id": "gw-1", "store": "RIVOLI", "zone": "entrance"},
    ),
    "store-wide gateway": (
        Gateway,
        "patch",
        "/api/v1/gateways/gw-store-wide",
        {"zone": "entrance"},
    ),
}

on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
)


def race(first: Callable[[], Any], second: Callable[[], Any], held: type) -> dict[str, Any]:
    """Each write's response when `first` is held just before it saves a `held` row (its
    checks done, its locks taken) while `second` runs."""
    saving, may_save, answers = threading.Event(), threading.Event(), {}

    def hold(sender, instance, **kwargs):
        if threading.current_thread().name == "first":
            saving.set()
            may_save.wait(10)

    def run(name: str, write: Callable[[], Any]) -> None:
        try:
            answers[name] = write()
        finally:
            connection.close()

    pre_save.connect(hold, sender=held, dispatch_uid="hold-the-first-write")
    threads = [
        threading.Thread(target=run, args=(name, write), name=name)
        for name, write in (("first", first), ("second", second))
    ]
    try:
        threads[0].start()
        assert saving.wait(10)
        threads[1].start()
        threads[1].join(1)  # it waits for the first write's transaction, or answers meanwhile
    finally:
        pre_save.disconnect(sender=held, dispatch_uid="hold-the-first-write")
        may_save.set()
        for thread in threads:
            thread.join(10)
    return answers


def statuses(answers: dict[str, Any]) -> dict[str, int]:
    return {name: response.status_code for name, response in answers.items()}


def places_in_another_stores_zone() -> list[tuple[str, str]]:
    """(store, zone's store) of each beacon or gateway in a zone of another store."""
    return [
        (place.store.code, place.zone.store.code)
        for model in (Beacon, Gateway)
        for place in model.objects.select_related("store", "zone__store")
        if place.zone_id and place.zone.store_id != place.store_id
    ]


@pytest.fixture
def rivoli_entrance() -> Zone:
    StoreFactory(code="OPERA")
    zone = ZoneFactory(store=StoreFactory(code="RIVOLI"), code="entrance")
    GatewayFactory(gateway_id="gw-store-wide", store=zone.store, zone=None)
    return zone


def move_to_opera(client, zone: Zone) -> Callable[[], Any]:
    return lambda: client.patch(f"/api/v1/zones/{zone.id}", {"store": "OPERA"})


@on_postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("added", ZONE_ADDED)
def test_a_beacon_or_gateway_joining_a_zone_that_is_moving_store_is_refused(
    client_with_scopes, rivoli_entrance, added
):
    _, method, path, body = ZONE_ADDED[added]
    adding = client_with_scopes()

    answers = race(
        move_to_opera(client_with_scopes(), rivoli_entrance),
        lambda: getattr(adding, method)(path, body),
        held=Zone,
    )

    assert statuses(answers) == {"first": 200, "second": 400}
    assert places_in_another_stores_zone() == []
    assert answers["second"].json()["zone"] == [
        "Zone OPERA/entrance is in store OPERA: choose a zone of store RIVOLI, or none."
    ]


@on_postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("added", ZONE_ADDED)
def test_a_zone_cannot_move_store_while_a_beacon_or_gateway_joins_it(
    client_with_scopes, rivoli_entrance, added
):
    model, method, path, body = ZONE_ADDED[added]
    moving = client_with_scopes()

    answers = race(
        lambda: getattr(client_with_scopes(), method)(path, body),
        move_to_opera(moving, rivoli_entrance),
        held=model,
    )

    assert statuses(answers) == {"first": 201 if method == "post" else 200, "second": 400}
    assert answers["second"].json()["store"] == [
        "Zone entrance has beacons or gateways in store RIVOLI; move or delete them first."
    ]
    assert places_in_another_stores_zone() == []
    rivoli_entrance.refresh_from_db()
    assert rivoli_entrance.store.code == "RIVOLI"


@on_postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["beacon", "gateway"])
def test_a_beacon_or_gateway_added_in_the_admin_to_a_zone_moving_store_is_refused(
    client_with_scopes, admin_client, rivoli_entrance, kind
):
    form = {"store": rivoli_entrance.store.pk, "zone": rivoli_entrance.pk}
    if kind == "beacon":
        form |= {"identity": f"ibeacon:{BEACON_UUID}:1:2", "measured_power": -59}
    else:
        form |= {"gateway_id": "gw-1"}

    answers = race(
        move_to_opera(client_with_scopes(), rivoli_entrance),
        lambda: admin_client.post(f"/admin/promotions/{kind}/add/", form),
        held=Zone,
    )

    assert statuses(answers) == {"first": 200, "second": 200}  # the add page again
    assert form_errors(answers["second"])["zone"] == [
        "Zone OPERA/entrance is in store OPERA: choose a zone of store RIVOLI, or none."
    ]
    assert places_in_another_stores_zone() == []
    rivoli_entrance.refresh_from_db()
    assert not rivoli_entrance.beacons.exists() and not rivoli_entrance.gateways.exists()


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_zone_moved_in_the_admin_while_a_beacon_joins_it_stays_in_its_store(
    client_with_scopes, admin_client, rivoli_entrance
):
    _, _, path, body = ZONE_ADDED["beacon"]
    opera = Store.objects.get(code="OPERA")
    form = {"store": opera.pk, "code": "entrance", "name": "Entrance", "rssi_threshold": -80}

    answers = race(
        lambda: client_with_scopes().post(path, body),
        lambda: admin_client.post(f"/admin/promotions/zone/{rivoli_entrance.pk}/change/", form),
        held=Beacon,
    )

    assert statuses(answers) == {"first": 201, "second": 200}  # the change page again
    assert form_errors(answers["second"])["store"] == [
        "Zone entrance has beacons or gateways in store RIVOLI; move or delete them first."
    ]
    assert places_in_another_stores_zone() == []
    rivoli_entrance.refresh_from_db()
    assert rivoli_entrance.store.code == "RIVOLI"


def heard_a_phone(place: Beacon | Gateway) -> None:
    Sighting.objects.create(
        source="app" if isinstance(place, Beacon) else "gateway",
        device=DeviceFactory(),
        beacon=place if isinstance(place, Beacon) else None,
        gateway=place if isinstance(place, Gateway) else None,
        store=place.store,
        zone=place.zone,
        rssi=-60,
        seen_at=timezone.now(),
    )


@pytest.mark.django_db
@pytest.mark.parametrize("kind, factory", [("beacon", BeaconFactory), ("gateway", GatewayFactory)])
def test_a_marketer_deletes_a_beacon_or_gateway_that_heard_phones_with_its_sightings(
    marketer,
    kind,
    factory,
):
    place = factory()
    heard_a_phone(place)
    page = f"/admin/promotions/{kind}/{place.pk}/delete/"

    assert "permission to delete" not in marketer.get(page).content.decode()
    assert marketer.post(page, {"post": "yes"}).status_code == 302
    assert not type(place).objects.filter(pk=place.pk).exists()
    assert not Sighting.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("kind, factory", [("beacon", BeaconFactory), ("gateway", GatewayFactory)])
def test_a_marketer_deletes_beacons_or_gateways_that_heard_phones_from_the_list(
    marketer,
    kind,
    factory,
):
    places = [factory(), factory()]
    for place in places:
        heard_a_phone(place)
    chosen = {"action": "delete_selected", "_selected_action": [p.pk for p in places]}

    confirm = marketer.post(f"/admin/promotions/{kind}/", chosen).content.decode()
    assert "permission to delete" not in confirm
    marketer.post(f"/admin/promotions/{kind}/", {**chosen, "post": "yes"})
    assert not type(places[0]).objects.exists()
    assert not Sighting.objects.exists()
