"""Deleting a store or zone at a national retailer's scale: the admin's delete page counts
what goes with it (Django listed every presence event and sighting, 197 s for 300,000, past
gunicorn's timeout), and the deletion removes presence events and sightings a statement
each, where Django's collector read every row. What goes and what stays is what the
collector left, through the API, the admin's pages and its list."""

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.apps import apps
from django.db import connection, models, transaction
from django.db.models.deletion import get_candidate_relations_to_delete
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from promotions.models import (
    ApiKey,
    Beacon,
    CampaignStatus,
    Delivery,
    FenceVersion,
    Gateway,
    Presence,
    PresenceEvent,
    Redemption,
    Sighting,
    Store,
    Zone,
)
from promotions.services import going_with_stores, going_with_zones
from tests.factories import (
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


def add_presence_events(store: Store, zone: Zone | None, count: int) -> None:
    customer = CustomerFactory()
    start = timezone.now() - timedelta(days=30)
    PresenceEvent.objects.bulk_create(
        PresenceEvent(
            customer=customer,
            place_key=f"zone:{zone.pk}" if zone else f"store:{store.pk}",
            kind="entered",
            store=store,
            zone=zone,
            occurred_at=start + timedelta(seconds=n),
        )
        for n in range(count)
    )


def add_sightings(store: Store, zone: Zone, count: int) -> None:
    device = DeviceFactory()
    gateway = GatewayFactory(zone=zone)
    start = timezone.now() - timedelta(days=1)
    Sighting.objects.bulk_create(
        Sighting(
            source="gateway",
            device=device,
            gateway=gateway,
            store=store,
            zone=zone,
            rssi=-60,
            seen_at=start + timedelta(seconds=n),
        )
        for n in range(count)
    )


def served(client, url: str) -> tuple[str, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        page = client.get(url)
    assert page.status_code == 200
    return page.content.decode(), [query["sql"] for query in captured.captured_queries]


def rows_read(queries: list[str], table: str) -> list[str]:
    """The queries that read rows of `table` (a count reads none)."""
    return [
        sql
        for sql in queries
        if sql.startswith("SELECT") and f'FROM "{table}"' in sql and "COUNT(" not in sql
    ]


@pytest.mark.parametrize("page", ["store", "zone"])
def test_the_delete_page_of_a_visited_place_counts_what_goes_and_reads_none_of_it(
    admin_client, page
):
    rivoli = StoreFactory(code="RIVOLI")
    entrance = ZoneFactory(store=rivoli, code="entrance")
    add_presence_events(rivoli, entrance, 30)
    add_sightings(rivoli, entrance, 20)
    url = f"/admin/promotions/{page}/{(rivoli if page == 'store' else entrance).pk}/delete/"
    _, few = served(admin_client, url)

    add_presence_events(rivoli, entrance, 2_970)
    add_presence_events(rivoli, None, 1_000)
    text, many = served(admin_client, url)

    assert len(many) == len(few)
    assert rows_read(many, "promotions_presenceevent") == []
    assert rows_read(many, "promotions_sighting") == []
    if page == "store":
        assert "Presence events: 4,000" in text and "Sightings: 20" in text
        assert "Zones: 1" in text and "Gateways: 1" in text
    else:
        # A zone's sightings stay, without their zone: the page does not count them.
        assert "Presence events: 3,000" in text and "Sightings:" not in text
    assert 'name="post" value="yes"' in text


def test_a_store_chosen_in_the_list_is_counted_too(admin_client):
    rivoli, opera = StoreFactory(code="RIVOLI"), StoreFactory(code="OPERA")
    add_presence_events(rivoli, None, 1_200)
    add_presence_events(opera, None, 300)
    chosen = {"action": "delete_selected", "_selected_action": [rivoli.pk, opera.pk]}

    with CaptureQueriesContext(connection) as captured:
        page = admin_client.post("/admin/promotions/store/", chosen).content.decode()
    admin_client.post("/admin/promotions/store/", {**chosen, "post": "yes"})

    queries = [query["sql"] for query in captured.captured_queries]
    assert rows_read(queries, "promotions_presenceevent") == []
    assert "Stores: 2" in page and "Presence events: 1,500" in page
    assert not Store.objects.exists() and not PresenceEvent.objects.exists()


# --- What goes and what stays ------------------------------------------------------------


def a_store_with_everything() -> tuple[Store, Zone]:
    """RIVOLI with its zone, beacon, gateway, sightings, presence and events, an ended
    campaign's delivery and redemption there, and OPERA beside it, some of whose rows point
    at RIVOLI's."""
    rivoli, opera = StoreFactory(code="RIVOLI"), StoreFactory(code="OPERA")
    entrance = ZoneFactory(store=rivoli, code="entrance")
    opera_hifi = ZoneFactory(store=opera, code="hifi")
    beacon = BeaconFactory(zone=entrance)
    gateway = GatewayFactory(zone=entrance)
    opera_beacon = BeaconFactory(zone=opera_hifi)
    lea = CustomerFactory()
    device = DeviceFactory(customer=lea)
    now = timezone.now()

    def sighting(store: Store, zone: Zone | None, **place) -> Sighting:
        source = "app" if "beacon" in place else "gateway"
        at = now - timedelta(minutes=Sighting.objects.count())
        return Sighting.objects.create(
            source=source, device=device, store=store, zone=zone, rssi=-60, seen_at=at, **place
        )

    heard_here = sighting(rivoli, entrance, beacon=beacon)
    sighting(rivoli, None, gateway=gateway)
    # Rows of OPERA that name a place of RIVOLI (a beacon or zone moved since).
    heard_elsewhere = sighting(opera, None, beacon=beacon)
    sighting(opera, entrance, gateway=GatewayFactory(zone=opera_hifi))
    heard_at_opera = sighting(opera, opera_hifi, beacon=opera_beacon)

    def event(store: Store, zone: Zone | None, seen: Sighting | None) -> PresenceEvent:
        place = f"zone:{zone.pk}" if zone else f"store:{store.pk}"
        at = now - timedelta(minutes=PresenceEvent.objects.count())
        return PresenceEvent.objects.create(
            customer=lea, place_key=place, kind="entered", store=store, zone=zone,
            occurred_at=at, sighting=seen,
        )  # fmt: skip

    entered_rivoli = event(rivoli, None, heard_here)
    event(rivoli, entrance, heard_here)
    event(opera, None, heard_elsewhere)
    event(opera, entrance, None)
    entered_opera = event(opera, opera_hifi, heard_at_opera)
    for store, zone in ((rivoli, None), (rivoli, entrance), (opera, None), (opera, entrance)):
        Presence.objects.create(
            customer=lea, place_key=f"{store.pk}:{zone and zone.pk}", store=store, zone=zone
        )

    campaign = CampaignFactory(status=CampaignStatus.ENDED)
    campaign.stores.set([rivoli, opera])
    texted = DeliveryFactory(
        customer=lea, campaign=campaign, store=rivoli, presence_event=entered_rivoli
    )
    Redemption.objects.create(delivery=texted, store=rivoli, redeemed_at=now)
    DeliveryFactory(customer=lea, campaign=campaign, store=opera, presence_event=entered_opera)
    return rivoli, entrance


def every_row() -> dict[str, list[tuple]]:
    """Every row of the project's tables, as values; the fence token (each deletion draws a
    new one) and the API's key (the time it was last used) aside."""
    return {
        model._meta.label: sorted(model.objects.order_by().values_list())
        for app in ("customers", "promotions")
        for model in apps.get_app_config(app).get_models(include_auto_created=True)
        if model not in (FenceVersion, ApiKey)
    }


def outcome(delete: Callable[[], object]) -> dict[str, list[tuple]]:
    """The rows left after `delete`, which is then undone."""
    before = transaction.savepoint()
    delete()
    rows = every_row()
    transaction.savepoint_rollback(before)
    return rows


def test_a_store_deleted_leaves_the_rows_django_s_collector_left(admin_client, api):
    rivoli, _ = a_store_with_everything()
    store_page = f"/admin/promotions/store/{rivoli.pk}/delete/"
    chosen = {"action": "delete_selected", "_selected_action": [rivoli.pk], "post": "yes"}

    # The way it went before: Django's collector, row by row.
    collected = outcome(lambda: Store.objects.get(pk=rivoli.pk).delete())
    through_api = outcome(lambda: api.delete("/api/v1/stores/RIVOLI"))
    on_its_page = outcome(lambda: admin_client.post(store_page, {"post": "yes"}))
    from_the_list = outcome(lambda: admin_client.post("/admin/promotions/store/", chosen))

    assert collected != every_row()
    assert len(collected["promotions.Redemption"]) == 1  # kept, without its store
    assert through_api == collected
    assert on_its_page == collected
    assert from_the_list == collected


def test_a_zone_deleted_leaves_the_rows_django_s_collector_left(admin_client, api):
    rivoli, entrance = a_store_with_everything()
    chosen = {"action": "delete_selected", "_selected_action": [entrance.pk], "post": "yes"}
    store_page = {
        **{f: getattr(rivoli, f) for f in ("code", "name", "address", "timezone")},
        **{f: getattr(rivoli, f) for f in ("latitude", "longitude", "radius_m")},
        "polygon": "",
        "zones-TOTAL_FORMS": 1,
        "zones-INITIAL_FORMS": 1,
        "zones-0-id": entrance.pk,
        "zones-0-store": rivoli.pk,
        "zones-0-code": entrance.code,
        "zones-0-name": entrance.name,
        "zones-0-rssi_threshold": entrance.rssi_threshold,
        "zones-0-DELETE": "on",
    }

    collected = outcome(lambda: Zone.objects.get(pk=entrance.pk).delete())
    through_api = outcome(lambda: api.delete(f"/api/v1/zones/{entrance.pk}"))
    on_its_page = outcome(
        lambda: admin_client.post(f"/admin/promotions/zone/{entrance.pk}/delete/", {"post": "yes"})
    )
    from_the_list = outcome(lambda: admin_client.post("/admin/promotions/zone/", chosen))
    on_the_store_page = outcome(
        lambda: admin_client.post(f"/admin/promotions/store/{rivoli.pk}/change/", store_page)
    )

    assert len(collected["promotions.Zone"]) == 1
    assert through_api == collected
    assert on_its_page == collected
    assert from_the_list == collected
    assert on_the_store_page["promotions.Zone"] == collected["promotions.Zone"]
    assert on_the_store_page["promotions.PresenceEvent"] == collected["promotions.PresenceEvent"]


@pytest.mark.parametrize("place", ["store", "zone"])
def test_deleting_a_visited_place_takes_as_many_queries_however_long_its_history(api, place):
    rivoli = StoreFactory(code="RIVOLI")
    entrance = ZoneFactory(store=rivoli, code="entrance")
    url = "/api/v1/stores/RIVOLI" if place == "store" else f"/api/v1/zones/{entrance.pk}"

    def deletion_queries(events: int) -> int:
        add_presence_events(rivoli, entrance, events)
        add_sightings(rivoli, entrance, events // 10)
        with CaptureQueriesContext(connection) as captured:
            before = transaction.savepoint()
            assert api.delete(url).status_code == 204
            transaction.savepoint_rollback(before)
        return len(captured.captured_queries)

    assert deletion_queries(2_000) == deletion_queries(20)


def cascade_from(model: type[models.Model]) -> set[type[models.Model]]:
    """The model and every one its deletion cascades to, as Django's collector follows them."""
    reached = {model}
    for relation in get_candidate_relations_to_delete(model._meta):
        if relation.on_delete is models.CASCADE and relation.related_model not in reached:
            reached |= cascade_from(relation.related_model)
    return reached


def test_what_goes_with_a_store_or_zone_is_every_model_its_deletion_cascades_to():
    # A model added with a foreign key to a store, zone, presence event or sighting must be
    # known here: deleted along (CASCADE), or its link cleared before the statement that
    # deletes what it points at (SET_NULL).
    assert set(going_with_stores([])) == cascade_from(Store)
    assert set(going_with_zones([])) == cascade_from(Zone)
    assert {
        (relation.related_model, relation.field.name)
        for model in (PresenceEvent, Sighting)
        for relation in get_candidate_relations_to_delete(model._meta)
    } == {(Delivery, "presence_event"), (PresenceEvent, "sighting")}


def add_heard_sightings(place: Beacon | Gateway, count: int) -> None:
    """`count` sightings of one phone, heard by the beacon (the app ranged it) or gateway,
    the first of them the one a presence event names."""
    device = DeviceFactory()
    start = timezone.now() - timedelta(days=1)
    heard_by = {"beacon": place} if isinstance(place, Beacon) else {"gateway": place}
    Sighting.objects.bulk_create(
        Sighting(
            source="app" if isinstance(place, Beacon) else "gateway",
            device=device,
            store=place.store,
            zone=place.zone,
            rssi=-60,
            seen_at=start + timedelta(seconds=n),
            **heard_by,
        )
        for n in range(count)
    )
    add_presence_events(place.store, place.zone, 1)
    PresenceEvent.objects.filter(sighting=None).update(
        sighting=Sighting.objects.filter(**heard_by).order_by("pk").first()
    )


HEARD_PLACES = {"beacon": BeaconFactory, "gateway": GatewayFactory}


def heard_place_url(place: Beacon | Gateway) -> str:
    if isinstance(place, Beacon):
        return f"/api/v1/beacons/{place.pk}"
    return f"/api/v1/gateways/{place.gateway_id}"


@pytest.mark.parametrize("kind", ["beacon", "gateway"])
def test_deleting_a_busy_beacon_or_gateway_takes_as_many_queries_however_much_it_heard(api, kind):
    # A gateway at a busy entrance hears thousands of phones a day, kept for the retention
    # period: Django's collector read every sighting, and cleared and deleted them a hundred
    # at a time (a million sightings: 20,000 statements, past gunicorn's timeout).
    entrance = ZoneFactory(store=StoreFactory(code="RIVOLI"), code="entrance")
    api.get("/api/v1/stores")  # the key's first use of the minute records it, once

    def deletion_queries(sightings: int) -> int:
        place = HEARD_PLACES[kind](zone=entrance)
        add_heard_sightings(place, sightings)
        with CaptureQueriesContext(connection) as captured:
            assert api.delete(heard_place_url(place)).status_code == 204
        return len(captured.captured_queries)

    assert deletion_queries(2_000) == deletion_queries(20)
    assert not Sighting.objects.exists()
    # The presence events the sightings made stay, without their sighting.
    assert list(PresenceEvent.objects.values_list("sighting", flat=True)) == [None, None]


@pytest.mark.parametrize("kind", ["beacon", "gateway"])
def test_the_delete_page_of_a_busy_beacon_or_gateway_counts_its_sightings(admin_client, kind):
    entrance = ZoneFactory(store=StoreFactory(code="RIVOLI"), code="entrance")
    quiet, busy = HEARD_PLACES[kind](zone=entrance), HEARD_PLACES[kind](zone=entrance)
    add_heard_sightings(quiet, 20)
    add_heard_sightings(busy, 2_020)

    def url(place: Beacon | Gateway) -> str:
        return f"/admin/promotions/{kind}/{place.pk}/delete/"

    _, few = served(admin_client, url(quiet))
    text, many = served(admin_client, url(busy))

    assert len(many) == len(few)
    assert rows_read(many, "promotions_sighting") == []
    assert "Sightings: 2,020" in text
    assert 'name="post" value="yes"' in text

    def deletion_queries(place: Beacon | Gateway) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.post(url(place), {"post": "yes"}).status_code == 302
        return len(captured.captured_queries)

    deletion_queries(HEARD_PLACES[kind](zone=entrance))  # a first deletion's one-off lookups
    assert deletion_queries(busy) == deletion_queries(quiet)
    assert not Sighting.objects.exists()
    # The presence events the sightings made stay, without their sighting.
    assert list(PresenceEvent.objects.values_list("sighting", flat=True)) == [None, None]


@pytest.mark.parametrize("kind", ["beacon", "gateway"])
def test_a_marketer_deletes_a_beacon_or_gateway_with_what_it_heard(client, kind):
    # Marketers may not delete sightings one by one; those of a place they delete go with it.
    from django.contrib.auth.models import Group, User

    marketer = User.objects.create_user("marie", password="x", is_staff=True)
    marketer.groups.add(Group.objects.get(name="Marketers"))
    client.force_login(marketer)
    place = HEARD_PLACES[kind](zone=ZoneFactory(store=StoreFactory(code="RIVOLI")))
    add_heard_sightings(place, 3)
    url = f"/admin/promotions/{kind}/{place.pk}/delete/"

    assert 'name="post" value="yes"' in client.get(url).content.decode()
    assert client.post(url, {"post": "yes"}).status_code == 302
    assert not Sighting.objects.exists()
    assert not type(place).objects.exists()
