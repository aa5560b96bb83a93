"""The admin keeps a store's places together as the API does: a beacon or gateway in its own
store's zones, a zone with beacons or gateways in its store, a fence stored as the engine
reads it."""

import json

import pytest
from django.utils import timezone

from promotions.models import (
    Beacon,
    Campaign,
    CampaignStatus,
    Gateway,
    Ping,
    PresenceEvent,
    Sighting,
    Store,
    TriggerType,
    Zone,
)
from tests.factories import (
    BeaconFactory,
    DeviceFactory,
    GatewayFactory,
    StoreFactory,
    ZoneFactory,
)
from tests.test_site import form_errors, store_form

pytestmark = pytest.mark.django_db

IBEACON = "ibeacon:f7826da6-4fa2-4e98-8024-bc5b71e0893e:1:1"


@pytest.fixture
def rivoli() -> Store:
    return StoreFactory(code="RIVOLI")


@pytest.fixture
def opera_entrance() -> Zone:
    return ZoneFactory(store=StoreFactory(code="OPERA"), code="entrance")


def beacon_form(store: Store, zone: Zone | None) -> dict:
    zone_pk = zone.pk if zone else ""
    return {"store": store.pk, "zone": zone_pk, "identity": IBEACON, "measured_power": -59}


def gateway_form(store: Store, zone: Zone | None) -> dict:
    return {"store": store.pk, "zone": zone.pk if zone else "", "gateway_id": "gw-1"}


PLACES = {
    "beacon": (beacon_form, Beacon),
    "gateway": (gateway_form, Gateway),
}


@pytest.mark.parametrize("kind", PLACES)
def test_a_beacon_or_gateway_cannot_take_a_zone_of_another_store(
    admin_client, rivoli, opera_entrance, kind
):
    form, model = PLACES[kind]

    response = admin_client.post(f"/admin/promotions/{kind}/add/", form(rivoli, opera_entrance))

    assert form_errors(response)["zone"] == [
        "Zone OPERA/entrance is in store OPERA: choose a zone of store RIVOLI, or none."
    ]
    assert not model.objects.exists()


@pytest.mark.parametrize("kind", PLACES)
@pytest.mark.parametrize("in_zone", [True, False], ids=["in-a-zone", "store-wide"])
def test_a_beacon_or_gateway_takes_a_zone_of_its_store_or_none(
    admin_client, rivoli, opera_entrance, kind, in_zone
):
    form, model = PLACES[kind]
    zone = ZoneFactory(store=rivoli, code="entrance") if in_zone else None

    response = admin_client.post(f"/admin/promotions/{kind}/add/", form(rivoli, zone))

    assert response.status_code == 302
    saved = model.objects.get()
    assert (saved.store, saved.zone) == (rivoli, zone)


def test_a_beacon_moved_to_another_store_cannot_keep_its_zone(admin_client, opera_entrance):
    beacon = BeaconFactory(zone=opera_entrance, store=opera_entrance.store)
    rivoli = StoreFactory(code="RIVOLI")

    response = admin_client.post(
        f"/admin/promotions/beacon/{beacon.pk}/change/", beacon_form(rivoli, opera_entrance)
    )

    assert "zone" in form_errors(response)
    beacon.refresh_from_db()
    assert beacon.store == opera_entrance.store


@pytest.mark.parametrize("factory", [BeaconFactory, GatewayFactory], ids=["beacon", "gateway"])
def test_a_zone_with_beacons_or_gateways_cannot_move_to_another_store(admin_client, factory):
    zone = factory().zone
    other = StoreFactory(code="OTHER")

    response = admin_client.post(
        f"/admin/promotions/zone/{zone.pk}/change/",
        {"store": other.pk, "code": zone.code, "name": zone.name, "rssi_threshold": -80},
    )

    assert form_errors(response)["store"] == [
        f"Zone {zone.code} has beacons or gateways in store {zone.store.code}; "
        "move or delete them first."
    ]
    zone.refresh_from_db()
    assert zone.store.code != "OTHER"


def test_an_empty_zone_can_move_to_another_store(admin_client, opera_entrance, rivoli):
    response = admin_client.post(
        f"/admin/promotions/zone/{opera_entrance.pk}/change/",
        {"store": rivoli.pk, "code": "entrance", "name": "Entrance", "rssi_threshold": -80},
    )

    assert response.status_code == 302
    opera_entrance.refresh_from_db()
    assert opera_entrance.store == rivoli


SQUARE = [[2.341, 48.860], [2.342, 48.860], [2.342, 48.861], [2.341, 48.860]]


@pytest.mark.parametrize(
    "extra",
    [
        # PostgreSQL's jsonb holds neither a NUL nor a lone surrogate: each was a 500.
        {"name": "a\u0000"},
        {"properties": {"a\u0000": 1}},
        {"name": "\ud800"},
        {"bbox": [2.341, 48.860, 2.342, 48.861]},
    ],
    ids=["nul-in-a-value", "nul-in-a-key", "lone-surrogate", "bbox"],
)
def test_a_polygon_is_stored_as_its_type_and_coordinates(admin_client, extra):
    polygon = {"type": "Polygon", "coordinates": [SQUARE], **extra}

    response = admin_client.post(
        "/admin/promotions/store/add/", store_form(radius_m="", polygon=json.dumps(polygon))
    )

    assert response.status_code == 302
    assert Store.objects.get().polygon == {"type": "Polygon", "coordinates": [SQUARE]}


@pytest.mark.parametrize("character", ["\u0000", "\ud800"], ids=["nul", "lone-surrogate"])
def test_a_polygon_type_postgresql_cannot_store_is_a_message(admin_client, character):
    # Shown again with its message, the page writes the surrogate back escaped, not raw.
    polygon = {"type": f"Polygon{character}", "coordinates": [SQUARE]}

    response = admin_client.post(
        "/admin/promotions/store/add/", store_form(radius_m="", polygon=json.dumps(polygon))
    )

    assert "Expected a GeoJSON Polygon" in form_errors(response)["polygon"][0]
    assert not Store.objects.exists()


@pytest.mark.parametrize(
    "typed",
    ["[" * 5000 + "]" * 5000, "[" + "1" * 5000 + "]"],
    ids=["nested-too-deep", "integer-of-5000-digits"],
)
def test_a_polygon_the_admin_cannot_read_is_a_message(admin_client, typed):
    # The API answers the same text with a 400; the page answered it with a 500.
    response = admin_client.post(
        "/admin/promotions/store/add/", store_form(radius_m="", polygon=typed)
    )

    assert form_errors(response)["polygon"] == [
        "Not readable JSON: a number is too long or nesting too deep."
    ]
    assert not Store.objects.exists()


@pytest.mark.parametrize("altitude", ["NaN", "-Infinity", "1e400"])
def test_a_polygon_with_an_altitude_that_is_no_number_is_a_message(admin_client, altitude):
    # JSON has no NaN: the database refused the row (a 500), as the API refuses the body.
    corner = f"[2.341, 48.860, {altitude}]"
    typed = (
        f'{{"type": "Polygon", "coordinates": [[{corner}, [2.342, 48.860, 35],'
        f" [2.342, 48.861, 35], {corner}]]}}"
    )

    response = admin_client.post(
        "/admin/promotions/store/add/", store_form(radius_m="", polygon=typed)
    )

    assert response.status_code == 200
    assert form_errors(response)["polygon"] == [
        "The outer ring has a position that is not a finite number."
    ]
    assert not Store.objects.exists()


STORE_FIELDS = ("code", "name", "address", "latitude", "longitude", "radius_m", "timezone")


def watch_entrance(*stores: Store) -> Campaign:
    campaign = Campaign.objects.create(
        name="Welcome at the door",
        status=CampaignStatus.ACTIVE,
        trigger_type=TriggerType.BEACON_ZONE,
        trigger_zone="entrance",
        offer_template="Welcome {code}",
    )
    campaign.stores.set(stores)
    return campaign


def test_a_watched_zone_cannot_be_deleted_from_the_store_page_after_editing_its_code(
    admin_client,
):
    form = store_form()
    rivoli = StoreFactory(**{name: form[name] for name in STORE_FIELDS})
    entrance = ZoneFactory(store=rivoli, code="entrance", name="Entrance")
    watch_entrance(rivoli)
    # Refused a new code for the zone, the page shows the code typed; "Delete" is ticked next.
    form.update(
        {
            "zones-TOTAL_FORMS": 1,
            "zones-INITIAL_FORMS": 1,
            "zones-0-id": entrance.pk,
            "zones-0-store": rivoli.pk,
            "zones-0-code": "door",
            "zones-0-name": "Entrance",
            "zones-0-rssi_threshold": -80,
            "zones-0-DELETE": "on",
        }
    )

    response = admin_client.post(f"/admin/promotions/store/{rivoli.pk}/change/", form)

    assert response.status_code == 200
    assert (
        "Deleting zone &#x27;entrance&#x27; would leave campaign Welcome at the door with no "
        "zone &#x27;entrance&#x27; in its store RIVOLI." in response.content.decode()
    )
    assert Zone.objects.get(pk=entrance.pk).code == "entrance"


def test_closing_stores_keeps_the_last_entrance_a_campaign_for_every_store_watches(
    admin_client, rivoli, opera_entrance
):
    rivoli_entrance = ZoneFactory(store=rivoli, code="entrance")
    opera = opera_entrance.store
    watch_entrance()  # every store

    both = admin_client.post(
        "/admin/promotions/store/",
        {"action": "delete_selected", "_selected_action": [rivoli.pk, opera.pk], "post": "yes"},
    )
    one = admin_client.post(f"/admin/promotions/store/{opera.pk}/delete/", {"post": "yes"})

    # Either store may close, its entrance with it, as long as the other keeps its own.
    assert "Campaign Welcome at the door" in both.content.decode()
    assert one.status_code == 302
    assert list(Zone.objects.all()) == [rivoli_entrance]


def test_the_admin_keeps_the_code_and_store_of_a_zone_a_live_campaign_would_lose(
    admin_client, rivoli, opera_entrance
):
    rivoli_entrance = ZoneFactory(store=rivoli, code="entrance", name="Entrance")
    watch_entrance(rivoli)
    for_every_store = watch_entrance()
    for_every_store.name = "Every entrance"
    for_every_store.save()

    def changed(zone: Zone, **fields):
        form = {"store": zone.store_id, "code": zone.code, "name": "Entrance"}
        return admin_client.post(
            f"/admin/promotions/zone/{zone.pk}/change/",
            {**form, "rssi_threshold": -80, **fields},
        )

    # Moved, RIVOLI's entrance would leave RIVOLI's campaign without one; renamed once
    # OPERA's is, it would leave the campaign for every store without any.
    moved = changed(rivoli_entrance, store=StoreFactory(code="LOUVRE").pk)
    opera_renamed = changed(opera_entrance, code="way-in")
    last_renamed = changed(rivoli_entrance, code="door")

    assert "Welcome at the door" in form_errors(moved)["code"][0]
    assert opera_renamed.status_code == 302  # saved: RIVOLI keeps an entrance
    assert "Every entrance" in form_errors(last_renamed)["code"][0]
    assert sorted(Zone.objects.values_list("store__code", "code")) == [
        ("OPERA", "way-in"),
        ("RIVOLI", "entrance"),
    ]


@pytest.mark.parametrize("page", ["ping", "sighting"])
def test_location_data_is_read_and_deleted_in_the_admin_not_added_or_changed(admin_client, page):
    # A row added here would be in no location batch: no worker would ever process it.
    rivoli = StoreFactory(code="RIVOLI")
    device = DeviceFactory()
    now = timezone.now()
    row = (
        Ping.objects.create(
            device=device, latitude=48.86, longitude=2.34, accuracy=10, recorded_at=now
        )
        if page == "ping"
        else Sighting.objects.create(
            source="gateway", device=device, store=rivoli, rssi=-60, seen_at=now
        )
    )

    add = admin_client.get(f"/admin/promotions/{page}/add/")
    change = admin_client.post(f"/admin/promotions/{page}/{row.pk}/change/", {})
    read = admin_client.get(f"/admin/promotions/{page}/{row.pk}/change/")
    delete = admin_client.post(f"/admin/promotions/{page}/{row.pk}/delete/", {"post": "yes"})

    assert add.status_code == change.status_code == 403
    assert read.status_code == 200
    assert delete.status_code == 302
    assert not type(row).objects.exists()


def test_a_store_is_deleted_in_the_admin_with_its_presence_events(admin_client, rivoli):
    # Presence events cannot be deleted one by one; they go with their store, as through
    # the API.
    PresenceEvent.objects.create(
        customer=DeviceFactory().customer,
        place_key=f"store:{rivoli.pk}",
        kind="entered",
        store=rivoli,
        occurred_at=timezone.now(),
    )

    response = admin_client.post(f"/admin/promotions/store/{rivoli.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Store.objects.exists() and not PresenceEvent.objects.exists()


def zone_changed(admin_client, zone: Zone, **fields):
    """The zone's change page posted with `fields` changed."""
    form = {"store": zone.store_id, "code": zone.code, "name": "Entrance", "rssi_threshold": -80}
    return admin_client.post(f"/admin/promotions/zone/{zone.pk}/change/", {**form, **fields})


def test_the_last_zone_of_a_code_a_campaign_for_every_store_watches_can_move_store(
    admin_client, rivoli, opera_entrance
):
    watch_entrance()  # every store

    moved = zone_changed(admin_client, opera_entrance, store=rivoli.pk)
    renamed = zone_changed(admin_client, opera_entrance, store=rivoli.pk, code="door")

    assert moved.status_code == 302  # the campaign's entrance is RIVOLI's now
    assert form_errors(renamed)["code"] == [
        "Renaming this zone would leave campaign Welcome at the door with no zone 'entrance' "
        "in any store. Change its trigger or end it first."
    ]
    assert list(Zone.objects.values_list("store__code", "code")) == [("RIVOLI", "entrance")]


def test_the_admin_changes_a_zone_another_of_the_campaign_s_stores_keeps_the_code_of(
    admin_client, rivoli, opera_entrance
):
    rivoli_entrance = ZoneFactory(store=rivoli, code="entrance", name="Entrance")
    watch_entrance(rivoli, opera_entrance.store)
    louvre = StoreFactory(code="LOUVRE")

    renamed = zone_changed(admin_client, rivoli_entrance, code="door")
    last_moved = zone_changed(admin_client, opera_entrance, store=louvre.pk)

    assert renamed.status_code == 302  # OPERA keeps an entrance
    assert form_errors(last_moved)["code"] == [
        "Moving this zone to store LOUVRE would leave campaign Welcome at the door with no "
        "zone 'entrance' in its stores OPERA and RIVOLI. Change its trigger or end it first."
    ]
    assert sorted(Zone.objects.values_list("store__code", "code")) == [
        ("OPERA", "entrance"),
        ("RIVOLI", "door"),
    ]


def test_the_admin_deletes_a_zone_another_of_the_campaign_s_stores_keeps_the_code_of(
    admin_client, opera_entrance
):
    form = store_form()
    rivoli = StoreFactory(**{name: form[name] for name in STORE_FIELDS})
    rivoli_entrance = ZoneFactory(store=rivoli, code="entrance", name="Entrance")
    watch_entrance(rivoli, opera_entrance.store)
    form.update(
        {
            "zones-TOTAL_FORMS": 1,
            "zones-INITIAL_FORMS": 1,
            "zones-0-id": rivoli_entrance.pk,
            "zones-0-store": rivoli.pk,
            "zones-0-code": "entrance",
            "zones-0-name": "Entrance",
            "zones-0-rssi_threshold": -80,
            "zones-0-DELETE": "on",
        }
    )

    from_store_page = admin_client.post(f"/admin/promotions/store/{rivoli.pk}/change/", form)
    last_deleted = admin_client.post(
        f"/admin/promotions/zone/{opera_entrance.pk}/delete/", {"post": "yes"}
    )

    assert from_store_page.status_code == 302  # OPERA keeps an entrance
    assert (
        "Campaign Welcome at the door: no zone &#x27;entrance&#x27; would be left in its "
        "stores OPERA and RIVOLI" in last_deleted.content.decode()
    )
    assert list(Zone.objects.all()) == [opera_entrance]
