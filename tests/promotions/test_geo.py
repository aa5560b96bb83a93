import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promotions.geo import (
    MAX_RING_VERTICES,
    GeometryError,
    distance_m,
    outline_geometry,
    polygon_rings,
)

# A square block around the Louvre, [longitude, latitude] as GeoJSON has it.
SQUARE = [[2.3400, 48.8600], [2.3420, 48.8600], [2.3420, 48.8620], [2.3400, 48.8620]]
COURTYARD = [[2.3405, 48.8605], [2.3410, 48.8605], [2.3410, 48.8610], [2.3405, 48.8605]]


def closed(*corners):
    return [*corners, corners[0]]


def polygon(*rings):
    return {"type": "Polygon", "coordinates": list(rings)}


# A store's outline across the antimeridian (Taveuni, Fiji), and a courtyard in it, across too.
TAVEUNI = [[179.999, -16.801], [-179.999, -16.801], [-179.999, -16.799], [179.999, -16.799]]
TAVEUNI_COURTYARD = [
    [179.9998, -16.8002],
    [179.9998, -16.7998],
    [-179.9998, -16.7998],
    [-179.9998, -16.8002],
]

# Two wings and a courtyard open to the north, the antimeridian through the courtyard.
TAVEUNI_U = [
    [179.999, -16.801],
    [-179.999, -16.801],
    [-179.999, -16.798],
    [-179.9995, -16.798],
    [-179.9995, -16.800],
    [179.9995, -16.800],
    [179.9995, -16.798],
    [179.999, -16.798],
]


def regular(corners, radius=0.001):
    """A ring of `corners` corners on a circle around the Louvre."""
    points = [
        [
            round(2.341 + radius * math.cos(2 * math.pi * k / corners), 7),
            round(48.861 + radius * math.sin(2 * math.pi * k / corners), 7),
        ]
        for k in range(corners)
    ]
    return closed(*points)


VALID = [
    ("a square", polygon(closed(*SQUARE))),
    ("a triangle", polygon(closed([0, 0], [1, 0], [0, 1]))),
    ("a square, clockwise", polygon(closed(*reversed(SQUARE)))),
    (
        "an L-shaped concave outline",
        polygon(closed([0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2])),
    ),
    ("a square with a courtyard", polygon(closed(*SQUARE), COURTYARD)),
    (
        "a square with two holes",
        polygon(
            closed(*SQUARE),
            COURTYARD,
            closed([2.3412, 48.8612], [2.3418, 48.8612], [2.3418, 48.8618]),
        ),
    ),
    (
        "a kiosk two metres square",
        polygon(
            closed([2.3410, 48.8600], [2.34103, 48.8600], [2.34103, 48.86002], [2.3410, 48.86002])
        ),
    ),
    ("positions with an altitude", polygon(closed([0, 0, 35], [1, 0, 35], [1, 1, 35]))),
    ("a repeated corner", polygon([[0, 0], [1, 0], [1, 0], [1, 1], [0, 1], [0, 0]])),
    ("integers", polygon(closed([0, 0], [1, 0], [1, 1]))),
    # -180 and 180 are one meridian: the corners at the globe's edges, taken as distances
    # take them, are a thin triangle.
    ("the globe's edges", polygon(closed([-180, -90], [180, 90], [179, 0]))),
    (
        "an outline and its hole across the antimeridian",
        polygon(closed(*TAVEUNI), closed(*TAVEUNI_COURTYARD)),
    ),
    # Taken literally, its edges across would go the long way round and cross each other.
    ("a U-shaped outline across the antimeridian", polygon(closed(*TAVEUNI_U))),
    (f"{MAX_RING_VERTICES} corners", polygon(regular(MAX_RING_VERTICES))),
    # OpenStreetMap's courtyards share a node with the building's outline; OGC's Simple
    # Features, which GeoJSON follows, let a hole touch the outer ring at one point.
    (
        "a courtyard touching the outline at its corner",
        polygon(
            closed(*SQUARE),
            closed([2.3400, 48.8600], [2.3410, 48.8605], [2.3410, 48.8610], [2.3405, 48.8610]),
        ),
    ),
    (
        "a courtyard whose corner is on an edge of the outline",
        polygon(closed(*SQUARE), closed([2.3410, 48.8600], [2.3415, 48.8605], [2.3405, 48.8605])),
    ),
    # Holes may touch each other at one point, as they may touch the outline.
    (
        "two courtyards touching at a corner",
        polygon(
            closed(*SQUARE),
            COURTYARD,
            closed([2.3410, 48.8610], [2.3415, 48.8610], [2.3412, 48.8615]),
        ),
    ),
    (
        "an outline whose notch touches an edge of the courtyard",
        polygon(
            closed([0, 0], [4, 0], [4, 4], [2.5, 4], [2, 2], [1.5, 4], [0, 4]),
            closed([1, 1], [3, 1], [3, 2], [1, 2]),
        ),
    ),
]


@pytest.mark.parametrize("geojson", [g for _, g in VALID], ids=[name for name, _ in VALID])
def test_a_valid_polygon_gives_its_rings_outer_first(geojson):
    rings = polygon_rings(geojson)

    assert len(rings) == len(geojson["coordinates"])
    for ring, raw in zip(rings, geojson["coordinates"], strict=True):
        assert ring == [(float(p[0]), float(p[1])) for p in raw]
        assert all(isinstance(v, float) for position in ring for v in position)


INVALID = [
    ("not a dict", [[0, 0], [1, 0], [1, 1], [0, 0]], "Expected a GeoJSON Polygon"),
    ("a string", '{"type": "Polygon"}', "Expected a GeoJSON Polygon"),
    ("a Point", {"type": "Point", "coordinates": [2.34, 48.86]}, "Expected a GeoJSON Polygon"),
    (
        "a MultiPolygon",
        {"type": "MultiPolygon", "coordinates": [[closed(*SQUARE)]]},
        "One outline per store: paste a single Polygon.",
    ),
    ("no coordinates", {"type": "Polygon"}, "a list of rings"),
    ("no rings", polygon(), "a list of rings"),
    ("coordinates not a list", {"type": "Polygon", "coordinates": "0,0"}, "a list of rings"),
    ("a ring that is not a list", polygon("square"), "outer ring needs at least 4 positions"),
    ("a bare ring", {"type": "Polygon", "coordinates": closed(*SQUARE)}, "at least 4 positions"),
    ("three positions", polygon([[0, 0], [1, 0], [0, 0]]), "at least 4 positions"),
    ("an unclosed ring", polygon([[0, 0], [1, 0], [1, 1], [0, 1]]), "not closed"),
    ("two distinct corners", polygon([[0, 0], [1, 0], [1, 0], [0, 0]]), "3 distinct corners"),
    ("one corner repeated", polygon([[1, 1]] * 4), "3 distinct corners"),
    ("collinear corners", polygon(closed([0, 0], [1, 0], [2, 0])), "no area"),
    ("a fold back", polygon(closed([0, 0], [2, 0], [1, 0])), "no area"),
    ("a bow-tie", polygon(closed([0, 0], [1, 1], [1, 0], [0, 1])), "outer ring crosses itself"),
    (
        "a figure of eight touching at a corner",
        polygon(closed([0, 0], [1, 1], [2, 0], [2, 2], [1, 1], [0, 2])),
        "outer ring crosses itself",
    ),
    (
        "a spike along an edge",
        polygon(closed([0, 0], [2, 0], [1, 0], [1, 1])),
        "outer ring crosses itself",
    ),
    (
        "latitude over 90",
        polygon(closed([2.34, 91], [2.35, 48.86], [2.35, 48.87])),
        "off the globe",
    ),
    ("longitude over 180", polygon(closed([181, 0], [1, 0], [1, 1])), "off the globe"),
    (
        "latitude and longitude swapped, off the globe",
        polygon(closed([-33.857, 151.215], [-33.857, 151.216], [-33.858, 151.216])),
        "GeoJSON puts longitude first",
    ),
    ("a position with one number", polygon(closed([0], [1, 0], [1, 1])), "[longitude, latitude]"),
    ("a position with four numbers", polygon(closed([0, 0, 0, 0], [1, 0], [1, 1])), "[longitude"),
    ("a position as a dict", polygon(closed({"lon": 0, "lat": 0}, [1, 0], [1, 1])), "[longitude"),
    ("a position as strings", polygon(closed(["2.34", "48.86"], [1, 0], [1, 1])), "[longitude"),
    ("a position of booleans", polygon(closed([True, False], [1, 0], [1, 1])), "[longitude"),
    ("a null position", polygon(closed(None, [1, 0], [1, 1])), "[longitude"),
    ("NaN", polygon(closed([float("nan"), 0], [1, 0], [1, 1])), "not a finite number"),
    ("infinity", polygon(closed([0, float("inf")], [1, 0], [1, 1])), "not a finite number"),
    ("a huge integer", polygon(closed([10**400, 0], [1, 0], [1, 1])), "off the globe"),
    (
        "a NaN altitude",
        polygon(closed([0, 0, float("nan")], [1, 0, 35], [1, 1, 35])),
        "The outer ring has a position that is not a finite number.",
    ),
    (
        "an infinite altitude",
        polygon(closed([0, 0, 35], [1, 0, float("-inf")], [1, 1, 35])),
        "The outer ring has a position that is not a finite number.",
    ),
    (
        "too many corners",
        polygon(regular(MAX_RING_VERTICES + 1)),
        f"outer ring has over {MAX_RING_VERTICES} corners",
    ),
    (
        "too many corners in all",
        polygon(regular(MAX_RING_VERTICES), regular(4, radius=0.0001)),
        f"over {MAX_RING_VERTICES} corners in all",
    ),
    (
        "an unclosed hole",
        polygon(closed(*SQUARE), [*COURTYARD[:-1], COURTYARD[1]]),
        "hole 1 is not closed",
    ),
    (
        "a bow-tie hole",
        polygon(
            closed(*SQUARE),
            closed([2.3405, 48.8605], [2.3410, 48.8610], [2.3410, 48.8605], [2.3405, 48.8610]),
        ),
        "hole 1 crosses itself",
    ),
    (
        "a hole outside the outline",
        polygon(closed(*SQUARE), closed([2.35, 48.87], [2.36, 48.87], [2.36, 48.88])),
        "hole 1 is not inside the outer ring",
    ),
    (
        "a hole across the outline",
        polygon(closed(*SQUARE), closed([2.3410, 48.8610], [2.3430, 48.8610], [2.3430, 48.8612])),
        "hole 1 is not inside the outer ring",
    ),
    (
        "a hole around the outline",
        polygon(
            closed(*SQUARE), closed([2.33, 48.85], [2.35, 48.85], [2.35, 48.87], [2.33, 48.87])
        ),
        "hole 1 is not inside the outer ring",
    ),
    (
        # Inside the outline's corners taken literally, which would span the globe the long way.
        "a hole half the world away from an outline across the antimeridian",
        polygon(closed(*TAVEUNI), closed([0.0, -16.8002], [0.0, -16.7998], [0.0004, -16.7998])),
        "hole 1 is not inside the outer ring",
    ),
    (
        "a hole sharing an edge with the outline",
        polygon(closed(*SQUARE), closed([2.3400, 48.8600], [2.3410, 48.8600], [2.3410, 48.8605])),
        "hole 1 shares an edge with the outer ring",
    ),
    (
        "a hole sharing part of an edge with the outline",
        polygon(closed(*SQUARE), closed([2.3405, 48.8600], [2.3415, 48.8600], [2.3410, 48.8605])),
        "hole 1 shares an edge with the outer ring",
    ),
    (
        # Its two corners on the outline cut the store in two.
        "a hole touching the outline at two points",
        polygon(
            closed(*SQUARE),
            closed([2.3400, 48.8600], [2.3415, 48.8605], [2.3420, 48.8620], [2.3405, 48.8615]),
        ),
        "hole 1 touches the outer ring at more than one point",
    ),
    (
        "a hole touching the outline at a corner, from outside",
        polygon(closed(*SQUARE), closed([2.3400, 48.8600], [2.3390, 48.8590], [2.3395, 48.8585])),
        "hole 1 is not inside the outer ring",
    ),
    (
        "a hole from a corner of the outline across an edge",
        polygon(closed(*SQUARE), closed([2.3400, 48.8600], [2.3410, 48.8610], [2.3390, 48.8610])),
        "hole 1 is not inside the outer ring",
    ),
    # A corner typed on a diagonal line is on it only to the 15th digit: still no area.
    (
        "collinear corners on a diagonal",
        polygon(closed([2.3410, 48.8600], [2.3420, 48.8610], [2.3430, 48.8620])),
        "outer ring has no area",
    ),
    (
        "a sliver a millimetre wide",
        polygon(closed([2.3410, 48.8600], [2.3430, 48.8620], [2.34200001, 48.8610])),
        "outer ring has no area",
    ),
    (
        "a flat courtyard",
        polygon(closed(*SQUARE), closed([2.3405, 48.8605], [2.3410, 48.8610], [2.3415, 48.8615])),
        "hole 1 has no area",
    ),
    # Holes must be apart: where they overlap, map editors and Leaflet draw by the even-odd
    # rule (a place in two holes filled again), the engine as outside the fence.
    (
        "two courtyards overlapping",
        polygon(
            closed(*SQUARE),
            COURTYARD,
            closed([2.3407, 48.8603], [2.3415, 48.8603], [2.3415, 48.8608], [2.3407, 48.8608]),
        ),
        "The hole 2 overlaps hole 1: draw them as one hole.",
    ),
    (
        "a hole inside a hole",
        polygon(
            closed(*SQUARE),
            COURTYARD,
            closed([2.34085, 48.8606], [2.34095, 48.8606], [2.34095, 48.8607]),
        ),
        "The hole 2 is inside hole 1.",
    ),
    (
        "a hole around an earlier one",
        polygon(
            closed(*SQUARE),
            COURTYARD,
            closed([2.3403, 48.8603], [2.3412, 48.8603], [2.3412, 48.8612], [2.3403, 48.8612]),
        ),
        "The hole 1 is inside hole 2.",
    ),
    (
        "the same hole twice",
        polygon(closed(*SQUARE), COURTYARD, COURTYARD),
        "hole 2 repeats hole 1",
    ),
    (
        "the same hole twice, the other way round",
        polygon(closed(*SQUARE), COURTYARD, list(reversed(COURTYARD))),
        "The hole 2 repeats hole 1.",
    ),
    (
        "two courtyards sharing a wall",
        polygon(
            closed(*SQUARE),
            COURTYARD,
            closed([2.3410, 48.8605], [2.3415, 48.8605], [2.3415, 48.8610], [2.3410, 48.8610]),
        ),
        "The hole 2 shares an edge with hole 1.",
    ),
    (
        # The sliver of building between them is cut off from the rest.
        "two courtyards touching at two points",
        polygon(
            closed(*SQUARE),
            COURTYARD,
            closed([2.3405, 48.8605], [2.34075, 48.86085], [2.3410, 48.8610], [2.3404, 48.8612]),
        ),
        "The hole 2 touches hole 1 at more than one point.",
    ),
    (
        "the second hole outside",
        polygon(closed(*SQUARE), COURTYARD, closed([3, 3], [4, 3], [4, 4])),
        "hole 2 is not inside the outer ring",
    ),
]


@pytest.mark.parametrize(
    ("geojson", "message"),
    [(g, m) for _, g, m in INVALID],
    ids=[name for name, _, _ in INVALID],
)
def test_an_invalid_polygon_is_rejected_with_a_clear_message(geojson, message):
    with pytest.raises(GeometryError, match=re.escape(message)):
        polygon_rings(geojson)


# As geojson.io exports what is drawn on it.
FEATURE = {"type": "Feature", "properties": {"name": "Louvre"}, "geometry": polygon(SQUARE)}


@pytest.mark.parametrize(
    "pasted",
    [FEATURE, {"type": "FeatureCollection", "features": [FEATURE]}, polygon(SQUARE)],
    ids=["a Feature", "a FeatureCollection of one", "a Polygon"],
)
def test_an_outline_is_the_polygon_a_map_editor_wraps(pasted):
    assert outline_geometry(pasted) == polygon(SQUARE)


# As QGIS exports a layer (its default geometry type is MultiPolygon), a store's one outline
# in it.
QGIS_EXPORT = {
    "type": "FeatureCollection",
    "name": "store",
    "features": [
        {
            "type": "Feature",
            "properties": {"id": 1},
            "geometry": {"type": "MultiPolygon", "coordinates": [[closed(*SQUARE)]]},
        }
    ],
}


@pytest.mark.parametrize(
    "pasted",
    [
        {"type": "MultiPolygon", "coordinates": [[closed(*SQUARE)]]},
        {
            "type": "Feature",
            "geometry": {"type": "MultiPolygon", "coordinates": [[closed(*SQUARE)]]},
        },
        QGIS_EXPORT,
    ],
    ids=["a MultiPolygon of one", "a Feature of one", "a QGIS export of one"],
)
def test_a_multipolygon_of_one_polygon_is_that_polygon(pasted):
    assert outline_geometry(pasted) == polygon(closed(*SQUARE))


@pytest.mark.parametrize(
    "pasted",
    [
        {"type": "MultiPolygon", "coordinates": [[closed(*SQUARE)], [closed(*SQUARE)]]},
        {"type": "MultiPolygon", "coordinates": []},
        {"type": "MultiPolygon", "coordinates": "square"},
        {"type": "MultiPolygon"},
        {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [[], []]}},
    ],
    ids=["two polygons", "none", "not a list", "no coordinates", "a Feature of two"],
)
def test_a_multipolygon_of_other_than_one_polygon_is_refused(pasted):
    with pytest.raises(GeometryError) as refused:
        polygon_rings(outline_geometry(pasted))

    assert str(refused.value) == "One outline per store: paste a single Polygon."


@pytest.mark.parametrize(
    "pasted",
    [
        {"type": "FeatureCollection", "features": [FEATURE, FEATURE]},
        {"type": "FeatureCollection", "features": []},
        {"type": "FeatureCollection"},
    ],
    ids=["two features", "no feature", "no features list"],
)
def test_a_collection_of_other_than_one_outline_is_refused(pasted):
    with pytest.raises(GeometryError) as refused:
        outline_geometry(pasted)

    assert str(refused.value) == "One outline per store: paste a single Polygon."


@pytest.mark.parametrize(
    ("pasted", "message"),
    [
        (
            {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": []}},
            "One outline per store",
        ),
        (
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [2.34, 48.86]}},
            "Expected a GeoJSON Polygon",
        ),
        ({"type": "Feature", "geometry": None}, "Expected a GeoJSON Polygon"),
        ({"type": "Feature"}, "Expected a GeoJSON Polygon"),
    ],
    ids=["a MultiPolygon", "a Point", "a null geometry", "no geometry"],
)
def test_a_feature_s_geometry_is_judged_as_a_polygon(pasted, message):
    with pytest.raises(GeometryError, match=re.escape(message)):
        polygon_rings(outline_geometry(pasted))


def test_a_geometry_error_is_a_value_error():
    assert issubclass(GeometryError, ValueError)


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
positions = st.lists(numbers, max_size=4)
rings = st.lists(positions, max_size=8)


@given(
    st.one_of(
        st.builds(lambda r: {"type": "Polygon", "coordinates": r}, st.lists(rings, max_size=3)),
        st.builds(
            lambda r: {"type": "Polygon", "coordinates": [[*r, r[0]] if r else r]},
            st.lists(st.tuples(st.integers(-3, 3), st.integers(-3, 3)).map(list), max_size=7),
        ),
        st.dictionaries(st.text(max_size=12), numbers, max_size=3),
        numbers,
    )
)
def test_any_input_either_gives_rings_or_raises_a_geometry_error(geojson):
    try:
        result = polygon_rings(geojson)
    except GeometryError:
        return
    for ring in result:
        assert len(ring) >= 4
        assert ring[0] == ring[-1]


@pytest.mark.parametrize(
    ("a", "b", "metres", "tolerance"),
    [
        ((2.3417, 48.8606), (2.3417, 48.8606), 0, 0),
        ((0, 0), (0, 1), 111_195, 1),
        ((0, 0), (1, 0), 111_195, 1),
        ((2.3522, 48.8566), (4.8357, 45.7640), 391_500, 500),
        ((0, 0), (180, 0), 20_015_115, 1),
        ((0, 90), (0, -90), 20_015_115, 1),
        ((179.9999, 0), (-179.9999, 0), 22, 1),
        ((2.3417, 48.8606, 35.0), (2.3417, 48.8615), 100, 1),
    ],
    ids=[
        "same place",
        "a degree north",
        "a degree east",
        "Paris-Lyon",
        "antipodes",
        "pole to pole",
        "across the antimeridian",
        "an altitude is ignored",
    ],
)
def test_distance_is_the_great_circle_distance(a, b, metres, tolerance):
    assert distance_m(a, b) == pytest.approx(metres, abs=tolerance)
    assert distance_m(b, a) == pytest.approx(distance_m(a, b))
