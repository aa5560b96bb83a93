"""Upgrading a live database: what was waiting for a worker is still processed after."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from promotions.models import OfferCode, Zone

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
