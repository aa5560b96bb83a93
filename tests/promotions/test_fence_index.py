"""The fence index finds exactly the fences brute force finds, and distances agree with geopy."""

from itertools import pairwise

import numpy as np
import pytest
from geopy.distance import geodesic
from hypothesis import given, settings
from hypothesis import strategies as st

from promotions.geo import (
    Fence,
    FenceIndex,
    GeometryError,
    fence_from_store,
    polygon_rings,
    signed_distance_m,
)
from promotions.geo_index import BatchFenceIndex

RIVOLI = Fence(1, 48.8606, 2.3417, 60.0, None)
# A 100 m x 100 m square around Opéra, with a 20 m x 20 m hole in the middle.
D_LAT, D_LON = 100 / 111_195 / 2, 100 / (111_195 * 0.6574) / 2
H_LAT, H_LON = D_LAT / 5, D_LON / 5
OPERA = fence_from_store(
    2,
    48.8707,
    2.3310,
    None,
    {
        "type": "Polygon",
        "coordinates": [
            [
                [2.3310 - D_LON, 48.8707 - D_LAT],
                [2.3310 + D_LON, 48.8707 - D_LAT],
                [2.3310 + D_LON, 48.8707 + D_LAT],
                [2.3310 - D_LON, 48.8707 + D_LAT],
                [2.3310 - D_LON, 48.8707 - D_LAT],
            ],
            [
                [2.3310 - H_LON, 48.8707 - H_LAT],
                [2.3310 - H_LON, 48.8707 + H_LAT],
                [2.3310 + H_LON, 48.8707 + H_LAT],
                [2.3310 + H_LON, 48.8707 - H_LAT],
                [2.3310 - H_LON, 48.8707 - H_LAT],
            ],
        ],
    },
)
# An L-shaped (concave) store.
L_SHAPE = fence_from_store(
    3,
    45.0,
    5.0,
    None,
    {
        "type": "Polygon",
        "coordinates": [
            [
                [5.0, 45.0],
                [5.002, 45.0],
                [5.002, 45.001],
                [5.001, 45.001],
                [5.001, 45.002],
                [5.0, 45.002],
                [5.0, 45.0],
            ]
        ],
    },
)
# A store on a Fijian island, its fence across the antimeridian.
TAVEUNI = fence_from_store(
    4,
    -16.8,
    180.0,
    None,
    {
        "type": "Polygon",
        "coordinates": [
            [
                [179.999, -16.801],
                [-179.999, -16.801],
                [-179.999, -16.799],
                [179.999, -16.799],
                [179.999, -16.801],
            ]
        ],
    },
)
TROMSO = Fence(5, 69.6492, 18.9553, 80.0, None)
FENCES = [RIVOLI, OPERA, L_SHAPE, TAVEUNI, TROMSO]


@pytest.mark.parametrize(
    ("fence", "latitude", "longitude", "expected", "tolerance"),
    [
        (RIVOLI, 48.8606, 2.3417, -60.0, 0.01),
        (RIVOLI, 48.8606 + 100 / 111_195, 2.3417, 40.0, 0.5),
        (OPERA, 48.8707 + D_LAT / 2, 2.3310, -15.0, 0.5),  # 15 m from the hole, 25 from the edge
        (OPERA, 48.8707, 2.3310, 10.0, 0.5),  # in the hole: outside, 10 m from its edge
        (OPERA, 48.8707 + D_LAT + 30 / 111_195, 2.3310, 30.0, 0.5),
        (L_SHAPE, 45.0015, 5.0015, 39.4, 1.0),  # in the L's notch: outside
        (L_SHAPE, 45.0005, 5.0015, -39.4, 1.0),
        (TAVEUNI, -16.8, 179.9999, -95.8, 1.0),  # west of the antimeridian, inside
        (TAVEUNI, -16.8, -179.9999, -95.8, 1.0),  # east of it, inside too
    ],
)
def test_signed_distance_is_negative_inside_and_positive_outside(
    fence, latitude, longitude, expected, tolerance
):
    assert signed_distance_m(fence, latitude, longitude) == pytest.approx(expected, abs=tolerance)


def opera_with_a_courtyard_at_its_corner():
    """Opéra's square with a courtyard from its south-west corner to its middle, sharing that
    corner, as OpenStreetMap draws one; corners in half-sides (50 m) from the middle."""

    def position(x, y):
        return [2.3310 + x * D_LON, 48.8707 + y * D_LAT]

    outer = [position(-1, -1), position(1, -1), position(1, 1), position(-1, 1)]
    courtyard = [position(-1, -1), position(0, -0.5), position(0, 0), position(-0.5, 0)]
    polygon = {"type": "Polygon", "coordinates": [[*outer, outer[0]], [*courtyard, outer[0]]]}
    return fence_from_store(6, 48.8707, 2.3310, None, polygon)


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        (-0.2, -0.2, 10.0),  # in the courtyard: outside, 10 m from its edges
        (-0.8, -0.75, 3.4),  # in the courtyard by the shared corner: outside too
        (0.5, 0.5, -25.0),  # in the building, 25 m from its outline
        (-0.9, -0.5, -5.0),  # in the building beside the courtyard, 5 m from the outline
        (-1.2, -1.2, 14.1),  # beyond the shared corner: outside, 14 m from it
    ],
)
def test_a_courtyard_touching_the_outline_at_a_corner_is_outside_the_fence(x, y, expected):
    fence = opera_with_a_courtyard_at_its_corner()
    latitude, longitude = 48.8707 + y * D_LAT, 2.3310 + x * D_LON

    assert signed_distance_m(fence, latitude, longitude) == pytest.approx(expected, abs=0.5)
    found = FenceIndex([fence], reach_m=0).nearby(latitude, longitude)
    assert found == ([(fence.key, pytest.approx(expected, abs=0.5))] if expected <= 0 else [])


def test_a_fence_saved_before_its_holes_were_held_apart_is_still_measured():
    """Two overlapping courtyards, refused since, in a store saved before: the engine keeps
    measuring it as it did (a fix in either courtyard outside), not leaving it out."""

    def square(low, high):
        corners = [(low, low), (high, low), (high, high), (low, high), (low, low)]
        return [[2.3310 + x * D_LON, 48.8707 + y * D_LAT] for x, y in corners]

    polygon = {
        "type": "Polygon",
        "coordinates": [square(-1, 1), square(-0.6, 0.2), square(-0.2, 0.6)],
    }
    with pytest.raises(GeometryError, match="hole 2 overlaps hole 1"):
        polygon_rings(polygon)
    fence = fence_from_store(7, 48.8707, 2.3310, None, polygon)

    def distance(x, y):
        return signed_distance_m(fence, 48.8707 + y * D_LAT, 2.3310 + x * D_LON)

    assert distance(0.8, -0.8) == pytest.approx(-10.0, abs=0.5)  # in the building
    assert distance(0.0, 0.0) > 0  # in both courtyards
    assert distance(-0.4, -0.4) > 0  # in the first alone
    assert distance(0.4, 0.4) > 0  # in the second alone


def test_distances_hold_at_high_latitude():
    east = (69.6492, 18.9600)
    expected = geodesic((TROMSO.latitude, TROMSO.longitude), east).meters - 80.0
    assert signed_distance_m(TROMSO, *east) == pytest.approx(expected, rel=0.0005)


@pytest.mark.parametrize(("reach", "found"), [(0.0, []), (500.0, [1])])
def test_a_fence_within_reach_is_found_and_one_beyond_is_not(reach, found):
    index = FenceIndex(FENCES, reach_m=reach)
    street = (48.8606 + 300 / 111_195, 2.3417)  # 240 m from Rivoli's fence
    assert [key for key, _ in index.nearby(*street)] == found


def test_a_point_inside_finds_its_fence_at_any_reach():
    for fence, point in [
        (RIVOLI, (48.8606, 2.3417)),
        (TAVEUNI, (-16.8, -179.9995)),
        (TAVEUNI, (-16.8, 179.9995)),
        (TROMSO, (69.6492, 18.9553)),
    ]:
        assert fence.key in [key for key, _ in FenceIndex(FENCES, reach_m=0).nearby(*point)]


def test_results_come_nearest_first():
    index = FenceIndex([RIVOLI, Fence(9, 48.8616, 2.3417, 60.0, None)], reach_m=1_000)
    found = index.nearby(48.8640, 2.3417)
    assert [key for key, _ in found] == [9, 1]
    assert found[0][1] < found[1][1]


regions = st.sampled_from([(48.85, 2.34), (45.76, 4.85), (-16.8, 179.99), (69.6, 18.9), (0.0, 0.0)])


@st.composite
def fences(draw, key):
    latitude, longitude = draw(regions)
    latitude += draw(st.floats(-0.02, 0.02))
    longitude = (longitude + draw(st.floats(-0.02, 0.02)) + 180) % 360 - 180
    if draw(st.booleans()):
        return Fence(key, latitude, longitude, draw(st.floats(5, 400)), None)
    size = draw(st.floats(0.0003, 0.003))
    corners = [
        [longitude - size, latitude - size],
        [longitude + size, latitude - size],
        [longitude + size, latitude + size],
        [longitude + draw(st.floats(-size, size)), latitude + draw(st.floats(0, size / 2))],
        [longitude - size, latitude + size],
    ]
    polygon = {"type": "Polygon", "coordinates": [[*corners, corners[0]]]}
    try:
        return fence_from_store(key, latitude, longitude, None, polygon)
    except ValueError:
        return Fence(key, latitude, longitude, 50.0, None)


@settings(max_examples=150)
@given(
    st.lists(st.integers(0, 10_000), min_size=1, max_size=30, unique=True).flatmap(
        lambda keys: st.tuples(*(fences(key) for key in keys))
    ),
    st.floats(0, 1_500),
    st.data(),
)
def test_the_index_finds_exactly_what_brute_force_finds(fence_list, reach, data):
    index = FenceIndex(fence_list, reach_m=reach)
    for _ in range(10):
        near = data.draw(st.sampled_from(fence_list))
        latitude = near.latitude + data.draw(st.floats(-0.03, 0.03))
        longitude = (near.longitude + data.draw(st.floats(-0.03, 0.03)) + 180) % 360 - 180
        found = {key for key, _ in index.nearby(latitude, longitude)}
        distances = {f.key: signed_distance_m(f, latitude, longitude) for f in fence_list}
        certain = {key for key, d in distances.items() if d <= reach - 1e-6}
        possible = {key for key, d in distances.items() if d <= reach + 1e-6}
        assert certain <= found <= possible


@given(
    st.floats(-70, 70),
    st.floats(-179, 179),
    st.floats(0, 5_000),
    st.floats(0, 360),
    st.floats(5, 500),
)
def test_circle_distances_agree_with_geopy_within_a_twentieth_of_a_percent(
    lat, lon, metres, bearing, radius
):
    target = geodesic(meters=metres).destination((lat, lon), bearing)
    fence = Fence(1, lat, lon, radius, None)
    ours = signed_distance_m(fence, target.latitude, target.longitude) + radius
    assert ours == pytest.approx(metres, rel=0.0005, abs=0.01)


# --- The batch index agrees with the scalar one -----------------------------------------


@settings(max_examples=150)
@given(
    st.lists(st.integers(0, 10_000), min_size=1, max_size=30, unique=True).flatmap(
        lambda keys: st.tuples(*(fences(key) for key in keys))
    ),
    st.floats(0, 1_500),
    st.data(),
)
def test_the_batch_index_finds_what_the_scalar_index_finds(fence_list, reach, data):
    scalar, batch = FenceIndex(fence_list, reach), BatchFenceIndex(fence_list, reach)
    points = []
    for _ in range(12):
        near = data.draw(st.sampled_from(fence_list))
        latitude = max(-90.0, min(90.0, near.latitude + data.draw(st.floats(-0.03, 0.03))))
        longitude = (near.longitude + data.draw(st.floats(-0.03, 0.03)) + 180) % 360 - 180
        points.append((latitude, longitude))
    index, keys, distances = batch.nearby_batch(*map(np.array, zip(*points, strict=True)))
    for n, (latitude, longitude) in enumerate(points):
        expected = dict(scalar.nearby(latitude, longitude))
        found = {int(k): float(d) for i, k, d in zip(index, keys, distances, strict=True) if i == n}
        # Either index may keep a fence within a micrometre of the reach that the other drops.
        assert {k for k, d in expected.items() if d < reach - 1e-6} <= set(found)
        assert {k for k, d in found.items() if d < reach - 1e-6} <= set(expected)
        for key in set(found) & set(expected):
            assert found[key] == pytest.approx(expected[key], abs=1e-6)


@settings(max_examples=150)
@given(
    st.lists(st.integers(0, 10_000), min_size=1, max_size=30, unique=True).flatmap(
        lambda keys: st.tuples(*(fences(key) for key in keys))
    ),
    st.floats(0, 500),
    st.data(),
)
def test_a_fence_with_a_reach_of_its_own_is_found_within_it_and_others_within_the_base(
    fence_list, reach, data
):
    # An approach ring is one store's: the others are looked at no farther than the base reach.
    beyond = {
        fence.key: data.draw(st.sampled_from([0.0, 800.0, 3_000.0, 60_000.0]))
        for fence in fence_list
    }
    batch = BatchFenceIndex(fence_list, reach, beyond=beyond)
    points = []
    for _ in range(12):
        near = data.draw(st.sampled_from(fence_list))
        latitude = max(-90.0, min(90.0, near.latitude + data.draw(st.floats(-0.05, 0.05))))
        longitude = (near.longitude + data.draw(st.floats(-0.05, 0.05)) + 180) % 360 - 180
        points.append((latitude, longitude))
    index, keys, _ = batch.nearby_batch(*map(np.array, zip(*points, strict=True)))
    for n, (latitude, longitude) in enumerate(points):
        found = {int(k) for i, k in zip(index, keys, strict=True) if i == n}
        distances = {f.key: signed_distance_m(f, latitude, longitude) for f in fence_list}
        certain = {k for k, d in distances.items() if d <= reach + beyond[k] - 1e-6}
        possible = {k for k, d in distances.items() if d <= reach + beyond[k] + 1e-6}
        assert certain <= found <= possible


def test_the_batch_index_handles_the_antimeridian_and_the_poles():
    fences = [
        TAVEUNI,
        TROMSO,
        Fence(8, 89.9, 0.0, 500.0, None),
        Fence(9, -16.8, -179.9995, 30, None),
    ]
    batch = BatchFenceIndex(fences, reach_m=100)
    assert {k for k, _ in batch.nearby(-16.8, 179.9999)} == {4, 9}
    assert [k for k, _ in batch.nearby(89.9, 1.0)] == [8]  # 194 m east, near the pole
    assert batch.nbytes > 0


# --- Distances over the whole range the product uses --------------------------------------
# A fence reaches 50 km, and a near ring or the exit margin 50 km beyond it: up to 100 km.

LATITUDES = [0.0, 15.0, 30.0, 48.8566, 60.0, 70.0, 80.0, 85.0, -45.0]
SPANS_M = [1.0, 100.0, 1_000.0, 4_999.0, 5_001.0, 20_000.0, 36_650.0, 50_000.0, 55_300.0, 100_000.0]


def circle_distances(lat, lon, points):
    """From (lat, lon) to each point, as a circle of no radius measures it: one by one
    (geo) and in one batch (geo_index)."""
    fence = Fence(1, lat, lon, 0.0, None)
    scalar = [signed_distance_m(fence, p_lat, p_lon) for p_lat, p_lon in points]
    index, _, batch = BatchFenceIndex([fence], reach_m=200_000).nearby_batch(
        *map(np.array, zip(*points, strict=True))
    )
    # A batch's pairs come in no particular order.
    assert sorted(index.tolist()) == list(range(len(points)))
    return scalar, batch[np.argsort(index)].tolist()


@pytest.mark.parametrize("latitude", LATITUDES)
def test_circle_distances_agree_with_geopy_up_to_100_km_at_any_latitude(latitude):
    targets = [
        geodesic(meters=metres).destination((latitude, 10.0), bearing)
        for metres in SPANS_M
        for bearing in range(0, 360, 30)
    ]
    points = [(t.latitude, t.longitude) for t in targets]
    expected = [geodesic((latitude, 10.0), point).meters for point in points]
    # Both directions: from the store to the fix and from the fix to the store.
    there_scalar, there_batch = circle_distances(latitude, 10.0, points)
    back = [circle_distances(*point, [(latitude, 10.0)]) for point in points]
    for n, metres in enumerate(expected):
        for ours in (there_scalar[n], there_batch[n], back[n][0][0], back[n][1][0]):
            assert ours == pytest.approx(metres, rel=1e-5, abs=0.01)
        assert there_batch[n] == pytest.approx(there_scalar[n], abs=1e-6)


@pytest.mark.parametrize(
    ("latitude", "bearing", "start_m"),
    [
        (48.8566, 90, 4_900),  # where the local projection hands over to Lambert's formula
        (0.0, 0, 4_900),
        (48.8566, 90, 36_500),  # half a degree of longitude east of Paris
        (0.0, 0, 55_200),  # half a degree of latitude north of the equator
        (85.0, 90, 900),  # a tenth of a degree of longitude, near the pole
        (89.99, 45, 0),
    ],
)
def test_the_distance_has_no_step_along_a_walk_away_from_a_store(latitude, bearing, start_m):
    """Every 2 m over 200 m, the distance grows as geopy's does, to the centimetre."""
    steps = [start_m + 2 * k for k in range(101)]
    targets = [geodesic(meters=m).destination((latitude, 10.0), bearing) for m in steps]
    points = [(t.latitude, t.longitude) for t in targets]
    expected = [geodesic((latitude, 10.0), point).meters for point in points]
    for ours in circle_distances(latitude, 10.0, points):
        strides = np.diff(ours) - np.diff(expected)
        assert np.abs(strides).max() < 0.01


@pytest.mark.parametrize(
    ("latitude", "bearing"), [(48.8566, 90), (48.8566, 45), (60.17, 90), (0.0, 0), (70.0, 270)]
)
@pytest.mark.parametrize("outside_m", [20.0, -20.0])
def test_a_fix_20_m_from_the_edge_of_a_50_km_circle_is_on_the_right_side(
    latitude, bearing, outside_m
):
    target = geodesic(meters=50_000 + outside_m).destination((latitude, 10.0), bearing)
    fence = Fence(1, latitude, 10.0, 50_000.0, None)
    distance = signed_distance_m(fence, target.latitude, target.longitude)
    found = BatchFenceIndex([fence], reach_m=0.0).nearby(target.latitude, target.longitude)
    assert distance == pytest.approx(outside_m, abs=0.5)
    assert [key for key, _ in found] == ([] if outside_m > 0 else [1])


def test_a_fix_inside_the_near_ring_of_a_50_km_circle_is_found():
    store = Fence(1, 0.0, 10.0, 50_000.0, None)
    fix = geodesic(meters=50_000 + 49_900).destination((0.0, 10.0), 0)
    for index in (FenceIndex([store], 50_250.0), BatchFenceIndex([store], 50_250.0)):
        [(key, distance)] = index.nearby(fix.latitude, fix.longitude)
        assert (key, distance) == (1, pytest.approx(49_900, abs=0.5))


# --- Polygons measured on the ellipsoid -----------------------------------------------------


def geodesic_to_edge(point, a, b):
    """geopy's distance from a point to an edge straight in longitude and latitude (as GeoJSON
    draws it), minimised along the edge by golden-section search."""

    def distance(t):
        return geodesic(point, (a[1] + t * (b[1] - a[1]), a[0] + t * (b[0] - a[0]))).meters

    low, high = 0.0, 1.0
    ratio = (5**0.5 - 1) / 2
    for _ in range(40):
        left, right = high - ratio * (high - low), low + ratio * (high - low)
        if distance(left) < distance(right):
            high = right
        else:
            low = left
    return min(distance(0.0), distance(1.0), distance((low + high) / 2))


def square_fence(latitude, longitude, half_m):
    d_lat = half_m / 111_000
    d_lon = half_m / (111_000 * np.cos(np.radians(latitude)))
    corners = [
        [longitude - d_lon, latitude - d_lat],
        [longitude + d_lon, latitude - d_lat],
        [longitude + d_lon, latitude + d_lat],
        [longitude - d_lon, latitude + d_lat],
    ]
    polygon = {"type": "Polygon", "coordinates": [[*corners, corners[0]]]}
    return fence_from_store(1, latitude, longitude, None, polygon)


@pytest.mark.parametrize("latitude", [0.0, 48.86, 60.0, 70.0])
def test_a_35_km_square_measures_as_geopy_does_inside_and_out(latitude):
    fence = square_fence(latitude, 10.0, 35_000)
    outer = fence.rings[0]
    # Inside near each side and corner (a quarter degree from the store), and out past them.
    points = [
        (scale, latitude + north * scale, 10.0 + east * scale / np.cos(np.radians(latitude)))
        for north, east in [(1, 1), (-1, 1), (1, 0), (0, -1), (-1, 0.3)]
        for scale in (0.25, 0.45)
    ]
    batch = BatchFenceIndex([fence], reach_m=100_000)
    for scale, point_latitude, point_longitude in points:
        point = (point_latitude, point_longitude)
        nearest = min(geodesic_to_edge(point, a, b) for a, b in pairwise(outer))
        expected = -nearest if scale < 0.3 else nearest
        ours = signed_distance_m(fence, *point)
        [(_, batched)] = batch.nearby(*point)
        assert ours == pytest.approx(expected, rel=1e-4, abs=0.05)
        assert batched == pytest.approx(ours, abs=1e-6)


# --- Wide fences among small ones ---------------------------------------------------------


def test_a_hundred_50_km_fences_among_2000_stores_stay_off_the_grid_and_are_found():
    """A 50 km circle listed in every cell of a grid sized for 100 m stores would take half a
    million cells; the wide fences are kept aside, and found exactly as brute force finds."""
    rng = np.random.default_rng(7)
    reach = 250.0
    stores = [
        Fence(k, 48.86 + rng.uniform(-1, 1), 2.35 + rng.uniform(-1, 1), 100.0, None)
        for k in range(2_000)
    ]
    wide = [
        Fence(10_000 + k, 48.86 + rng.uniform(-1, 1), 2.35 + rng.uniform(-1, 1), 50_000.0, None)
        for k in range(100)
    ]
    fences = [*stores, *wide]
    # A small store is listed in a few dozen cells; the wide fences in none.
    scalar = FenceIndex(fences, reach)
    assert scalar.cell_entries < 100 * len(stores)
    batch = BatchFenceIndex(fences, reach)
    assert batch.cell_entries < 100 * len(stores)
    # Fixes near small stores, near the edges of wide fences, and anywhere.
    points = []
    for fence in rng.choice(fences, 300):
        metres = (fence.radius_m or 0) + rng.uniform(-300, 600)
        target = geodesic(meters=abs(metres)).destination(
            (fence.latitude, fence.longitude), rng.uniform(0, 360)
        )
        points.append((target.latitude, target.longitude))
    points += [(48.86 + rng.uniform(-1.5, 1.5), 2.35 + rng.uniform(-1.5, 1.5)) for _ in range(100)]
    index, keys, _ = batch.nearby_batch(*map(np.array, zip(*points, strict=True)))
    for n, (latitude, longitude) in enumerate(points):
        distances = {f.key: signed_distance_m(f, latitude, longitude) for f in fences}
        certain = {key for key, d in distances.items() if d <= reach - 1e-6}
        possible = {key for key, d in distances.items() if d <= reach + 1e-6}
        assert certain <= {key for key, _ in scalar.nearby(latitude, longitude)} <= possible
        assert certain <= set(keys[index == n].tolist()) <= possible
