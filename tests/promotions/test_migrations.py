"""Upgrading a live database: what was waiting for a worker is still processed after."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from customers.models import Device
from promotions.models import Beacon, OfferCode, Zone
from tests.clock import ago

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("promotions", "0007_fence_version"), ("customers", "0002_erase_permission")]
AFTER = [("promotions", "0008_location_batch")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_pings_and_sightings_no_worker_processed_become_batches_for_the_sweep():
    old = migrate(BEFORE)
    try:
        customer = old.get_model("customers", "Customer").objects.create(
            external_id="c1", phone="+33612345678"
        )
        device = old.get_model("customers", "Device").objects.create(
            device_id="d1", customer=customer
        )
        store = old.get_model("promotions", "Store").objects.create(
            code="S1", name="Store", latitude=48.86, longitude=2.34, radius_m=80
        )
        pings = old.get_model("promotions", "Ping").objects
        start = datetime(2026, 11, 1, tzinfo=UTC)
        for n in range(1500):
            at = start + timedelta(seconds=n)
            pings.create(
                device=device,
                latitude=48.86,
                longitude=2.34,
                accuracy=10,
                recorded_at=at,
                received_at=at,
                processed_at=at if n < 200 else None,  # the first 200 were processed
            )
        old.get_model("promotions", "Sighting").objects.create(
            source="gateway", device=device, store=store, rssi=-60, seen_at=start, received_at=start
        )
        unprocessed = set(pings.filter(processed_at=None).values_list("id", flat=True))

        new = migrate(AFTER)

        batches = new.get_model("promotions", "LocationBatch").objects.order_by("received_at")
        assert [len(b.ping_ids) for b in batches if b.ping_ids] == [1000, 300]
        assert {pk for b in batches for pk in b.ping_ids} == unprocessed
        assert [len(b.sighting_ids) for b in batches if b.sighting_ids] == [1]
        assert all(b.processed_at is None for b in batches)
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


# 0015 and 0016 were edited after they reached main; a database that had applied the first
# version never ran the edit. What each first version left is written at its state here.


@pytest.mark.parametrize(
    "applied",
    [
        # Sightings at or above 0 dBm are refused since 0016 (0 is a phone saying it could
        # not measure): a zone whose threshold was 0 or above would otherwise never fire.
        "0015_code_keys",
        # 0016 as first released (2026-11-30, 10:05 to 10:15) refused those readings without
        # bringing such thresholds below 0: 0023 does.
        "0016_zone_rssi_threshold_below_zero",
    ],
)
def test_a_zone_no_reading_could_enter_gets_the_strongest_threshold_a_reading_has(applied):
    old = migrate([("promotions", applied)])
    try:
        store = old.get_model("promotions", "Store").objects.create(
            code="S1", name="Store", latitude=48.86, longitude=2.34, radius_m=80
        )
        zones = old.get_model("promotions", "Zone").objects
        for code, threshold in [("hifi", 0), ("door", 20), ("entrance", -75)]:
            zones.create(store=store, code=code, name=code, rssi_threshold=threshold)

        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

        thresholds = Zone.objects.values_list("code", "rssi_threshold")
        assert dict(thresholds) == {"hifi": -1, "door": -1, "entrance": -75}
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


@pytest.mark.parametrize("drawn", [False, True])
def test_a_code_0015_as_first_released_keyed_empty_is_never_drawn(drawn):
    # 0015 as first released (2026-11-30, 07:33 to 08:07) gave a code the till cannot read at
    # all ("--", which the older upload took) the empty key, where a key makes it drawable:
    # its customer would get a code the till answers 404 to.
    old = migrate([("promotions", "0015_code_keys")])
    try:
        campaign = old.get_model("promotions", "Campaign").objects.create(
            name="Pool", offer_template="Code {code}"
        )
        delivery = None
        if drawn:
            delivery = old.get_model("promotions", "Delivery").objects.create(
                campaign=campaign, status="sent", code="--", code_key=""
            )
        old.get_model("promotions", "OfferCode").objects.create(
            campaign=campaign, code="--", code_key="", delivery=delivery
        )
        old.get_model("promotions", "OfferCode").objects.create(
            campaign=campaign, code="SAVE-10", code_key="SAVE10"
        )

        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

        assert list(OfferCode.objects.drawable().values_list("code", flat=True)) == ["SAVE-10"]
        kept = OfferCode.objects.filter(code="--").values_list("code_key", "delivery__code")
        assert list(kept) == ([(None, "--")] if drawn else [])
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


# The release of 2026-11-24 stored a BLE identity typed in the admin as typed; since
# 2026-11-30 both the admin and the API store the canonical key, which sightings are matched
# against and the API reads back.
BEFORE_CANONICAL_IDENTITIES = [
    ("promotions", "0025_campaign_holdout_share_help_text"),
    ("customers", "0016_browsing_event_admin_indexes"),
]
UUID_TYPED = "{F7826DA6-4FA2-4E98-8024-BC5B71E0893E}"
UUID_KEY = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"


def test_identities_typed_in_the_first_release_s_admin_are_found_and_read_after_upgrade(
    client_with_scopes,
):
    old = migrate(BEFORE_CANONICAL_IDENTITIES)
    try:
        store = old.get_model("promotions", "Store").objects.create(
            code="S1", name="Store", latitude=48.86, longitude=2.34, radius_m=80
        )
        beacons = old.get_model("promotions", "Beacon").objects
        beacons.create(store=store, identity=f"IBEACON:{UUID_TYPED}:1:2")
        beacons.create(store=store, identity="eddystone:0xEDD1EBEAC04E5DEFA017:0000000000AB")
        customer = old.get_model("customers", "Customer").objects.create(
            external_id="c1", phone="+33612345678"
        )
        devices = old.get_model("customers", "Device").objects
        devices.create(device_id="d1", customer=customer, ble_identity=f"ibeacon:{UUID_TYPED}:7:42")

        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

        assert sorted(Beacon.objects.values_list("identity", flat=True)) == [
            "eddystone:edd1ebeac04e5defa017:0000000000ab",
            f"ibeacon:{UUID_KEY}:1:2",
        ]
        assert Device.objects.get().ble_identity == f"ibeacon:{UUID_KEY}:7:42"
        api = client_with_scopes()
        response = api.get("/api/v1/beacons")
        assert response.status_code == 200
        ibeacon = {"uuid": UUID_KEY, "major": 1, "minor": 2}
        assert ibeacon in [beacon["ibeacon"] for beacon in response.json()["results"]]
        assert api.get("/api/v1/customers/c1/export").status_code == 200
        sighting = {"device_id": "d1", "ibeacon": ibeacon, "rssi": -60, "seen_at": ago(seconds=5)}
        response = api.post("/api/v1/sightings", {"sightings": [sighting]})
        assert response.json()["accepted"] == 1
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


def test_an_identity_typed_twice_or_unreadable_is_left_as_typed_and_named(capsys):
    old = migrate(BEFORE_CANONICAL_IDENTITIES)
    try:
        store = old.get_model("promotions", "Store").objects.create(
            code="S1", name="Store", latitude=48.86, longitude=2.34, radius_m=80
        )
        beacons = old.get_model("promotions", "Beacon").objects
        beacons.create(store=store, identity=f"ibeacon:{UUID_KEY}:1:2")
        beacons.create(store=store, identity=f"ibeacon:{UUID_TYPED}:1:2")
        beacons.create(store=store, identity="entrance beacon")
        # The release let a device take a store beacon's identity: a gateway hearing the
        # beacon would place the device's customer in its zone all day.
        customer = old.get_model("customers", "Customer").objects.create(
            external_id="c1", phone="+33612345678"
        )
        old.get_model("customers", "Device").objects.create(
            device_id="d1", customer=customer, ble_identity=f"IBEACON:{UUID_TYPED}:1:2"
        )
        old.get_model("customers", "Device").objects.create(
            device_id="d2", customer=customer, ble_identity="ibeacon:" + UUID_KEY + ":3:4"
        )
        beacons.create(store=store, identity="ibeacon:" + UUID_KEY + ":3:4")

        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

        assert sorted(Beacon.objects.values_list("identity", flat=True)) == [
            "entrance beacon",
            f"ibeacon:{UUID_KEY}:1:2",
            f"ibeacon:{UUID_KEY}:3:4",
            f"ibeacon:{UUID_TYPED}:1:2",
        ]
        printed = capsys.readouterr().out
        assert f"ibeacon:{UUID_TYPED}:1:2" in printed
        assert "entrance beacon" in printed
        assert f"IBEACON:{UUID_TYPED}:1:2" in printed
        assert f"both advertise 'ibeacon:{UUID_KEY}:3:4'" in printed
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
