"""The fence index finds exactly the fences brute force finds, and distances agree with geopy."""

import numpy as np
import pytest
from geopy.distance import geodesic
from hypothesis import given, settings
from hypothesis import strategies as st

from promotions.geo import Fence, FenceIndex, fence_from_store, signed_distance_m
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


@settings(max_examples=150, deadline=None)
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


@settings(max_examples=150, deadline=None)
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
