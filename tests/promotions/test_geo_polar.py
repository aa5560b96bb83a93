"""A polygon measured from across its ring's seam: near a pole, a fix on the other side of
the pole sees the ring across its own opposite meridian. Wrapping each corner relative to the
fix cut the ring there and joined its pieces the long way round, through the fix: a fix 94 km
away was measured 5.6 km inside. Longitudes are taken in the ring's own frame. (Review 4.)"""

import pytest

from promotions import geo
from promotions.geo_index import BatchFenceIndex
from promotions.models import PresenceEvent, Store
from tests.factories import CustomerFactory, DeviceFactory, StoreFactory
from tests.promotions.test_batch_processing import ping, send

# A research station's outline, 89.4-89.6 N, 10 W-10 E (accepted by the API: every corner is
# within 15 km of the store's point).
RING = [(-10.0, 89.4), (10.0, 89.4), (10.0, 89.6), (-10.0, 89.6), (-10.0, 89.4)]
FENCE = geo.Fence(1, 89.5, 0.0, None, [RING])
# On the other side of the pole: 94 km from the nearest corner, farther from any edge.
ACROSS = (89.55, 175.0)

# A ring round the pole's side, 89.9-89.95 N, from 170 W east to 170 E (340 degrees of
# longitude in its own frame, relative to its first corner at 0): a fix in it at 90 E has its
# opposite meridian, 90 W, inside the ring's span too.
WIDE = [
    (0.0, 89.9),
    (170.0, 89.9),
    (170.0, 89.95),
    (-170.0, 89.95),
    (-170.0, 89.9),
    (0.0, 89.9),
]
WIDE_FENCE = geo.Fence(2, 89.92, 0.0, None, [WIDE])


def test_the_polygons_are_valid_fences():
    for ring, latitude in ((RING, 89.5), (WIDE, 89.92)):
        store = Store(
            code="POLE",
            name="Pole",
            latitude=latitude,
            longitude=0.0,
            timezone="UTC",
            polygon={"type": "Polygon", "coordinates": [list(map(list, ring))]},
        )
        store.clean()  # raises nothing


def test_a_fix_across_the_pole_is_outside_the_polygon():
    nearest_corner = min(geo.ellipsoid_distance_m(*ACROSS, lat, lon) for lon, lat in RING)
    assert nearest_corner > 90_000
    assert geo.signed_distance_m(FENCE, *ACROSS) > 90_000
    assert BatchFenceIndex([FENCE], reach_m=250).nearby(*ACROSS) == []
    assert geo.FenceIndex([FENCE], reach_m=250).nearby(*ACROSS) == []


@pytest.mark.parametrize("longitude", [-179.0, -170.0, 170.0, 179.0, 180.0])
def test_fixes_all_round_the_far_side_of_the_pole_are_outside(longitude):
    assert geo.signed_distance_m(FENCE, 89.5, longitude) > 90_000


@pytest.mark.parametrize(
    ("latitude", "longitude", "inside"),
    [
        (89.5, 0.0, True),
        (89.55, 9.9, True),
        (89.55, -9.9, True),
        (89.55, 10.1, False),
        (89.55, -10.1, False),
        (89.3, 0.0, False),
    ],
)
def test_fixes_on_the_rings_side_are_measured_as_before(latitude, longitude, inside):
    distance = geo.signed_distance_m(FENCE, latitude, longitude)
    assert (distance < 0) is inside
    batch = BatchFenceIndex([FENCE], reach_m=20_000).nearby(latitude, longitude)
    assert batch == [(1, distance)]


@pytest.mark.parametrize(
    ("longitude", "inside"), [(90.0, True), (-90.0, True), (0.0, True), (175.0, False)]
)
def test_a_fix_in_a_ring_spanning_its_opposite_meridian_is_inside(longitude, inside):
    distance = geo.signed_distance_m(WIDE_FENCE, 89.93, longitude)
    assert (distance < 0) is inside
    assert BatchFenceIndex([WIDE_FENCE], reach_m=20_000).nearby(89.93, longitude) == [(2, distance)]


def test_a_ring_across_the_antimeridian_seen_from_its_far_side_is_outside():
    # Fiji's side of ±180, seen from the Greenwich meridian's: the ring straddles the fix's
    # opposite meridian.
    ring = [(179.99, -16.0), (-179.99, -16.0), (-179.99, -15.99), (179.99, -15.99), (179.99, -16.0)]
    fence = geo.Fence(3, -15.995, 180.0, None, [ring])
    # Over the south pole: 148 degrees of arc.
    assert geo.signed_distance_m(fence, -16.0, 0.0) > 16_000_000
    assert geo.signed_distance_m(fence, -15.995, 180.0) < 0
    assert geo.signed_distance_m(fence, -15.995, -179.995) < 0


@pytest.mark.django_db
def test_a_phone_across_the_pole_does_not_enter_the_station(api):
    StoreFactory(
        code="POLE",
        latitude=89.5,
        longitude=0.0,
        radius_m=None,
        polygon={"type": "Polygon", "coordinates": [list(map(list, RING))]},
    )
    DeviceFactory(device_id="explorer", customer=CustomerFactory(external_id="explorer"))
    send(api, ping("explorer", ACROSS, 2), ping("explorer", ACROSS, 1))
    assert not PresenceEvent.objects.exists()
    # A phone in the station enters it.
    DeviceFactory(device_id="guide", customer=CustomerFactory(external_id="guide"))
    send(api, ping("guide", (89.5, 0.0), 1))
    entries = PresenceEvent.objects.values_list("customer__external_id", "kind")
    assert list(entries) == [("guide", "entered")]
