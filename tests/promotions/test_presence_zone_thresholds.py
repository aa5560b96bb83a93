"""A store's beacon entry pools the readings of all its zones in one smoothing window: each
reading is judged against its own zone's threshold (the median of how far each is above it),
not all against the threshold of whichever zone was read last. (Review 4.)"""

from datetime import UTC, datetime, timedelta

import pytest

from promotions import beacons, presence
from promotions.models import PresenceEvent
from promotions.presence import ENTERED, BeaconReading, Place, PlaceState
from tests.clock import ago
from tests.factories import (
    BEACON_UUID,
    BeaconFactory,
    CustomerFactory,
    DeviceFactory,
    StoreFactory,
    ZoneFactory,
)

T0 = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
STORE = 7
ENTRANCE, ELECTRONICS = 1, 2  # zones: strict -70 at the door, lenient -90 deep inside
THRESHOLD = {ENTRANCE: -70, ELECTRONICS: -90}


def reading(seconds, zone, rssi, sighting, threshold=None):
    threshold = THRESHOLD[zone] if threshold is None else threshold
    return BeaconReading(
        1, STORE, zone, rssi, threshold, T0 + timedelta(seconds=seconds), sighting=sighting
    )


def advance(observations, states=None):
    return presence.advance(
        states=states or {},
        tracks={},
        observations=observations,
        locate=lambda *_: [],
        now=T0 + timedelta(minutes=5),
    )


def entered(outcome):
    return {e.place for e in outcome.events if e.kind == ENTERED}


@pytest.mark.parametrize("order", ["electronics last", "entrance last"])
def test_readings_too_weak_for_their_own_zone_do_not_enter_the_store(order):
    # A passer-by on the pavement: the door's beacon twice at -75 (too weak for the
    # entrance's -70), and one faint reading of the electronics beacon at -88 (one reading:
    # no zone entry). Neither zone is entered; the store is not either.
    door = [reading(0, ENTRANCE, -75, 1), reading(10, ENTRANCE, -75, 2)]
    faint = reading(5 if order == "entrance last" else 20, ELECTRONICS, -88, 3)
    assert entered(advance([*door, faint])) == set()


@pytest.mark.parametrize("order", ["electronics last", "entrance last"])
def test_readings_each_strong_enough_for_their_own_zone_enter_the_store(order):
    # The door's beacon once at -65 (5 dB above -70), the electronics beacon once at -88
    # (2 dB above -90): no zone has two readings, but the store does, both above their own.
    door = reading(0, ENTRANCE, -65, 1)
    inside = reading(10 if order == "electronics last" else -10, ELECTRONICS, -88, 2)
    assert entered(advance([door, inside])) == {Place(STORE)}


def test_the_readings_are_judged_the_same_in_any_order_and_any_batches():
    readings = [
        reading(0, ENTRANCE, -75, 1),
        reading(5, ELECTRONICS, -88, 2),
        reading(10, ENTRANCE, -75, 3),
        reading(15, ENTRANCE, -71, 4),
    ]
    # Margins -5, +2, -5, -1: the median (-3) is below its zones' thresholds.
    for split in range(len(readings) + 1):
        for batches in (readings[:split], readings[split:]), (readings[split:], readings[:split]):
            first = advance(batches[0])
            second = advance(batches[1], first.states)
            assert entered(first) | entered(second) == set()
    # Two strong readings at the door: margins -5, -5, -1, +2, +10, +10, median +0.5. The
    # entrance's own median (-71) is still below its -70: the store is entered, not the zone.
    strong = [reading(20, ENTRANCE, -60, 5), reading(25, ENTRANCE, -60, 6)]
    assert entered(advance([*strong, *readings])) == {Place(STORE)}


@pytest.mark.parametrize("item", [(T0, -75, 1), (T0, -75)])
def test_a_window_stored_before_readings_kept_their_threshold_is_judged_by_the_new_ones(item):
    # Stored as (at, rssi, device) or (at, rssi): judged by the applied reading's threshold.
    states = {
        Place(STORE): PlaceState(rssi=(item,)),
        Place(STORE, zone=ENTRANCE): PlaceState(rssi=(item,)),
    }
    round_trip = {place: PlaceState.from_json(state.to_json()) for place, state in states.items()}
    strict = advance([reading(10, ENTRANCE, -75, 2)], round_trip)
    assert entered(strict) == set()
    lenient = advance([reading(10, ENTRANCE, -75, 2, threshold=-80)], round_trip)
    assert entered(lenient) == {Place(STORE), Place(STORE, zone=ENTRANCE)}


def test_the_window_keeps_each_readings_threshold_across_batches():
    first = advance([reading(0, ENTRANCE, -75, 1)])
    stored = {place: PlaceState.from_json(state.to_json()) for place, state in first.states.items()}
    assert stored[Place(STORE)].rssi == ((T0, -75, 1, -70),)
    # The next reading, of the lenient zone, does not make the stored one pass by its -90.
    second = advance([reading(10, ELECTRONICS, -88, 2)], stored)
    third = advance([reading(20, ELECTRONICS, -95, 3)], second.states)
    assert entered(second) | entered(third) == set()


# --- through the HTTP API -----------------------------------------------------------------

DOOR_BEACON = {"uuid": BEACON_UUID, "major": 1, "minor": 1}
ELECTRONICS_BEACON = {"uuid": BEACON_UUID, "major": 1, "minor": 2}


@pytest.fixture
def rivoli_zones():
    rivoli = StoreFactory(code="RIVOLI")
    entrance = ZoneFactory(store=rivoli, code="entrance", rssi_threshold=-70)
    electronics = ZoneFactory(store=rivoli, code="electronics", rssi_threshold=-90)
    BeaconFactory(zone=entrance, identity=beacons.ibeacon_key(BEACON_UUID, 1, 1))
    BeaconFactory(zone=electronics, identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))
    customer = CustomerFactory(external_id="passer-by")
    DeviceFactory(device_id="phone", customer=customer)
    return customer


def ranged(api, *readings):
    """The app's post: (beacon, rssi, seconds ago)."""
    sightings = [
        {"device_id": "phone", "ibeacon": beacon, "rssi": rssi, "seen_at": ago(seconds=s)}
        for beacon, rssi, s in readings
    ]
    response = api.post("/api/v1/sightings", {"sightings": sightings})
    assert response.status_code == 202, response.json()
    return response


@pytest.mark.django_db
@pytest.mark.parametrize("faint_first", [True, False])
def test_a_passer_by_hearing_the_door_beacon_weakly_does_not_enter_the_store(
    api, rivoli_zones, faint_first
):
    door = [(DOOR_BEACON, -75, 20), (DOOR_BEACON, -75, 10)]
    faint = (ELECTRONICS_BEACON, -88, 25 if faint_first else 5)
    ranged(api, *door)
    ranged(api, faint)
    assert not PresenceEvent.objects.filter(customer=rivoli_zones, kind="entered").exists()


@pytest.mark.django_db
def test_a_shopper_heard_above_each_zones_threshold_enters_the_store(api, rivoli_zones):
    ranged(api, (DOOR_BEACON, -65, 20), (ELECTRONICS_BEACON, -88, 10))
    entries = PresenceEvent.objects.filter(customer=rivoli_zones, kind="entered")
    assert list(entries.values_list("zone", flat=True)) == [None]
