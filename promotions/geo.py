"""Geometry of store fences on plain values: no Django.

Positions are GeoJSON's (longitude, latitude) in degrees.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

Position = tuple[float, float]
Ring = list[Position]

# A store outline needs a few dozen corners; the cap bounds the O(n^2) simplicity checks.
# It holds for all rings together, or a body of thousands of small holes could keep a worker
# busy for a minute.
MAX_RING_VERTICES = 200


# The mean Earth radius (IUGG); a sphere is within 0.5% of the ellipsoid, plenty to bound a
# fence's size. Distances to fences are measured on the ellipsoid (ellipsoid_distance_m).
EARTH_RADIUS_M = 6_371_008.8


class GeometryError(ValueError):
    pass


def distance_m(a: Position, b: Position) -> float:
    """The great-circle (haversine) distance between two positions, in metres."""
    (lon1, lat1), (lon2, lat2) = (map(math.radians, p[:2]) for p in (a, b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


# A fence is one outline: the engine measures a store by its distance to one ring.
ONE_OUTLINE = "One outline per store: paste a single Polygon."


def outline_geometry(geojson: Any) -> Any:
    """The geometry of an outline as map editors export it: geojson.io and most others wrap
    the Polygon drawn in a Feature, and that in a FeatureCollection; QGIS writes a layer's
    polygons as MultiPolygons, a store's one outline as a MultiPolygon of one polygon, taken
    as that Polygon. Anything else is given back as it is, for polygon_rings to judge.
    Raises GeometryError for a collection of other than one feature, or a MultiPolygon of
    other than one polygon. store_map.js unwraps the same on the store's page."""
    if _is_a(geojson, "FeatureCollection"):
        features = geojson.get("features")
        if not isinstance(features, list) or len(features) != 1:
            raise GeometryError(ONE_OUTLINE)
        geojson = features[0]
    if _is_a(geojson, "Feature"):
        geojson = geojson.get("geometry")
    if _is_a(geojson, "MultiPolygon"):
        polygons = geojson.get("coordinates")
        if not isinstance(polygons, list) or len(polygons) != 1:
            raise GeometryError(ONE_OUTLINE)
        return {"type": "Polygon", "coordinates": polygons[0]}
    return geojson


def _is_a(geojson: Any, kind: str) -> bool:
    return isinstance(geojson, dict) and geojson.get("type") == kind


def polygon_rings(geojson: Any, *, stored: bool = False) -> list[Ring]:
    """The rings of a GeoJSON Polygon (outer boundary first, then holes), validated: closed,
    at least three distinct corners, on the globe, enclosing an area, not crossing itself,
    each hole inside the outer ring and apart from the other holes (touching each at one
    point at most).

    `stored` is for a fence read back to be measured: one saved before a rule was added
    (holes apart, an area of a square metre) is judged as it was then, so the store keeps
    being measured as it was (a point in any hole outside) rather than left out of presence;
    its page asks for the outline to be fixed on its next save."""
    if _is_a(geojson, "MultiPolygon"):
        raise GeometryError(ONE_OUTLINE)
    if not _is_a(geojson, "Polygon"):
        raise GeometryError(
            'Expected a GeoJSON Polygon: {"type": "Polygon", "coordinates": [...]}.'
        )
    coordinates = geojson.get("coordinates")
    if not isinstance(coordinates, list) or not coordinates:
        raise GeometryError("A Polygon's coordinates are a list of rings, the outer one first.")
    names = ["outer ring", *(f"hole {number}" for number in range(1, len(coordinates)))]
    rings = [_ring(raw, name) for raw, name in zip(coordinates, names, strict=True)]
    if sum(len(ring) - 1 for ring in rings) > MAX_RING_VERTICES:
        raise GeometryError(f"The polygon has over {MAX_RING_VERTICES} corners in all.")
    # Distances wrap longitudes across ±180, so the rings are judged the same way: each
    # longitude taken relative to the outer ring's first corner. An outline across the
    # antimeridian is then the shape drawn, not edges the long way round the globe (which
    # would cross each other at a concave corner), a hole across it is inside its outline,
    # and one half the world away is not.
    origin = rings[0][0][0]
    wrapped = [[(origin + _wrap(lon - origin), lat) for lon, lat in ring] for ring in rings]
    for ring, name in zip(wrapped, names, strict=True):
        if _crosses_itself(ring):
            raise GeometryError(f"The {name} crosses itself.")
        # A bow-tie's halves cancel out, so only a ring that does not cross itself can be
        # judged flat by its area.
        flat = _twice_area(ring) == 0 if stored else _area_m2(ring) < MIN_RING_AREA_M2
        if flat:
            raise GeometryError(f"The {name} has no area: its corners are on one line.")
    outer, *holes = wrapped
    for hole, name in zip(holes, names[1:], strict=True):
        _check_hole(hole, outer, name)
    if not stored:
        for j, later in enumerate(holes):
            for i, earlier in enumerate(holes[:j]):
                _check_holes_apart(earlier, later, names[i + 1], names[j + 1])
    return rings


def _check_hole(hole: Ring, outer: Ring, name: str) -> None:
    """Raises GeometryError unless the hole is inside the outer ring. Under the Simple Features
    rules GeoJSON follows, a hole may touch the outer ring at one point (OpenStreetMap draws a
    courtyard sharing a node with its building's outline); it may not cross it, share a stretch
    of edge with it, or touch it at two points, which would cut the polygon in two."""
    hole, outer = _without_repeats(hole), _without_repeats(outer)
    crossing = f"The {name} is not inside the outer ring."
    touches = _touching_points(hole, outer, name, "the outer ring", crossing)
    # The hole's corners off the outer ring are all on one side of it: outside for a hole
    # beyond it, or one crossing it at a corner (and back at another).
    if not all(_inside(corner, outer) for corner in hole if corner not in touches):
        raise GeometryError(crossing)
    if len(touches) > 1:
        raise GeometryError(f"The {name} touches the outer ring at more than one point.")


def _check_holes_apart(earlier: Ring, later: Ring, earlier_name: str, later_name: str) -> None:
    """Raises GeometryError unless two holes are apart, touching at one point at most (Simple
    Features again). Holes that overlap, nest or repeat have no one meaning: map editors and
    the admin's map (Leaflet) fill by the even-odd rule, so a place in two holes is drawn
    inside the fence, where the engine takes it as outside; and the edges hidden inside the
    other hole are not the fence's boundary, yet distances would be measured to them."""
    earlier, later = _without_repeats(earlier), _without_repeats(later)
    if _same_ring(earlier, later):
        raise GeometryError(f"The {later_name} repeats {earlier_name}.")
    overlap = f"The {later_name} overlaps {earlier_name}: draw them as one hole."
    touches = _touching_points(later, earlier, later_name, earlier_name, overlap)
    # With no crossing and no stretch shared, each ring's corners off the other are all on
    # one side of it; one partly inside crosses it at a point they touch.
    for ring, other, name, other_name in (
        (later, earlier, later_name, earlier_name),
        (earlier, later, earlier_name, later_name),
    ):
        inside = [_inside(corner, other) for corner in ring if corner not in touches]
        if inside and all(inside):
            raise GeometryError(f"The {name} is inside {other_name}.")
        if any(inside):
            raise GeometryError(overlap)
    if len(touches) > 1:
        raise GeometryError(f"The {later_name} touches {earlier_name} at more than one point.")


def _same_ring(a: Ring, b: Ring) -> bool:
    """Whether two closed rings have the same corners in the same cycle, from any corner and
    either way round."""
    corners, others = a[:-1], b[:-1]
    if len(corners) != len(others):
        return False
    doubled = corners + corners
    return any(
        doubled[start : start + len(seq)] == seq
        for seq in (others, others[::-1])
        for start in range(len(corners))
    )


def _touching_points(
    ring: Ring, other: Ring, name: str, other_name: str, crossing: str
) -> set[Position]:
    """Where a ring meets another without crossing it: corners of one on the other. Raises
    GeometryError(crossing) when edges cross between their corners, and says so when they
    share a stretch of line."""
    return {
        _touching_point(a, b, c, d, name, other_name, crossing)
        for a, b in pairwise(ring)
        for c, d in pairwise(other)
        if _segments_intersect(a, b, c, d)
    }


def _touching_point(
    a: Position,
    b: Position,
    c: Position,
    d: Position,
    name: str,
    other_name: str,
    crossing: str,
) -> Position:
    """Where a ring's edge a-b meets another ring's edge c-d: a corner of one on the other.
    Raises GeometryError when they cross between their corners or share a stretch of line."""
    o1, o2 = _orientation(a, b, c), _orientation(a, b, d)
    o3, o4 = _orientation(c, d, a), _orientation(c, d, b)
    if o1 == 0 and o2 == 0:
        # On one line: compare positions along it, by the coordinate that varies along a-b.
        axis = 0 if a[0] != b[0] else 1
        low = max(min(a[axis], b[axis]), min(c[axis], d[axis]))
        high = min(max(a[axis], b[axis]), max(c[axis], d[axis]))
        if low < high:
            raise GeometryError(f"The {name} shares an edge with {other_name}.")
        return a if a[axis] == low else b
    if 0 not in (o1, o2, o3, o4):
        raise GeometryError(crossing)
    if o1 == 0 and _on_segment(a, b, c):
        return c
    if o2 == 0 and _on_segment(a, b, d):
        return d
    return a if o3 == 0 and _on_segment(c, d, a) else b


def _ring(raw: Any, name: str) -> Ring:
    if not isinstance(raw, list) or len(raw) < 4:
        raise GeometryError(f"The {name} needs at least 4 positions, the last equal to the first.")
    if len(raw) > MAX_RING_VERTICES + 1:
        raise GeometryError(f"The {name} has over {MAX_RING_VERTICES} corners.")
    ring = [_position(position, name) for position in raw]
    if ring[0] != ring[-1]:
        raise GeometryError(f"The {name} is not closed: its last position must equal its first.")
    if len(set(ring)) < 3:
        raise GeometryError(f"The {name} needs at least 3 distinct corners.")
    return ring


def _position(raw: Any, name: str) -> Position:
    if (
        not isinstance(raw, list)
        or len(raw) not in (2, 3)
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
    ):
        raise GeometryError(f"Each position of the {name} is [longitude, latitude].")
    try:
        values = [float(v) for v in raw]
    except OverflowError:  # an integer of hundreds of digits is valid JSON
        raise GeometryError(f"The {name} has a position off the globe.") from None
    # The altitude too: it is never read, but it is stored, and JSON has no NaN or Infinity
    # (the database refuses the row).
    if not all(math.isfinite(v) for v in values):
        raise GeometryError(f"The {name} has a position that is not a finite number.")
    longitude, latitude = values[0], values[1]
    if not (-180 <= longitude <= 180 and -90 <= latitude <= 90):
        raise GeometryError(
            f"The {name} has a position off the globe: [{longitude}, {latitude}] "
            "(GeoJSON puts longitude first)."
        )
    return longitude, latitude


def _twice_area(ring: Ring) -> float:
    """The shoelace sum: twice the signed area, in square degrees; zero for a flat ring."""
    return sum(a[0] * b[1] - b[0] * a[1] for a, b in pairwise(ring))


# Corners on one line are seldom exactly so in floating point (2.342 is not 2.341 + 0.001), so
# a flat ring's shoelace sum is rarely zero: a ring is flat below this area. A store, or a
# courtyard, is tens of square metres at least; a fix is never inside a line.
MIN_RING_AREA_M2 = 1.0


def _area_m2(ring: Ring) -> float:
    """A ring's area in square metres, in a flat projection at its mean latitude: plenty to
    tell a line from a shop. Corners are taken relative to the first, or the products of
    coordinates (a hundred in Paris) would lose the sliver's area to rounding."""
    x0, y0 = ring[0]
    twice = sum((a[0] - x0) * (b[1] - y0) - (b[0] - x0) * (a[1] - y0) for a, b in pairwise(ring))
    north, east = metres_per_degree(sum(lat for _, lat in ring) / len(ring))
    return abs(twice) / 2 * north * east


def _inside(point: Position, ring: Ring) -> bool:
    """Whether a point is inside a ring, by the even-odd rule (a ray cast towards +x)."""
    x, y = point
    inside = False
    for (x1, y1), (x2, y2) in pairwise(ring):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _without_repeats(ring: Ring) -> Ring:
    """The ring without corners given twice in a row: drawing tools leave them on a double
    click, and an edge of no length is neither a crossing nor a stretch shared."""
    return [position for i, position in enumerate(ring) if i == 0 or position != ring[i - 1]]


def _crosses_itself(ring: Ring) -> bool:
    edges = list(pairwise(_without_repeats(ring)))
    count = len(edges)
    for i in range(count):
        for j in range(i + 1, count):
            adjacent = j == i + 1 or (i == 0 and j == count - 1)
            if adjacent:
                continue
            if _segments_intersect(*edges[i], *edges[j]):
                return True
    return False


def _orientation(a: Position, b: Position, c: Position) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _on_segment(a: Position, b: Position, p: Position) -> bool:
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def _segments_intersect(a: Position, b: Position, c: Position, d: Position) -> bool:
    o1, o2 = _orientation(a, b, c), _orientation(a, b, d)
    o3, o4 = _orientation(c, d, a), _orientation(c, d, b)
    if (o1 > 0) != (o2 > 0) and (o3 > 0) != (o4 > 0) and 0 not in (o1, o2, o3, o4):
        return True
    return (
        (o1 == 0 and _on_segment(a, b, c))
        or (o2 == 0 and _on_segment(a, b, d))
        or (o3 == 0 and _on_segment(c, d, a))
        or (o4 == 0 and _on_segment(c, d, b))
    )


# --- Fences and their index -------------------------------------------------------------

# Bounds for cells: a degree of latitude is 110.57 km at the equator to 111.69 km at the
# poles; dividing by the smaller figure never makes a cell's margin too small.
METRES_PER_DEGREE = 110_000.0
# The WGS 84 ellipsoid: what GPS positions are on, and what geopy's geodesic measures on.
WGS84_A = 6_378_137.0
WGS84_F = 1 / 298.257223563
WGS84_E2 = WGS84_F * (2 - WGS84_F)
# Up to this distance, and this difference of longitude, the local projection is within 2 mm
# of the geodesic, and Lambert's formula within 7 mm, at any latitude: switching from one to
# the other is no step in the distance. The longitude bound is for the poles, where a few
# kilometres can span many degrees of longitude and no flat projection holds.
LOCAL_DISTANCE_M = 5_000.0
LOCAL_LONGITUDE_SPAN = 0.1


def metres_per_degree(latitude: float) -> tuple[float, float]:
    """Metres in a degree (north, east) at a latitude, on the WGS 84 ellipsoid."""
    sine = math.sin(math.radians(latitude))
    w = 1 - WGS84_E2 * sine * sine
    meridian = WGS84_A * (1 - WGS84_E2) / w**1.5
    normal = WGS84_A / math.sqrt(w)
    radians_per_degree = math.pi / 180
    return meridian * radians_per_degree, normal * math.cos(math.radians(latitude)) * (
        radians_per_degree
    )


def ellipsoid_distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The distance between two points on the WGS 84 ellipsoid, in metres: within 2 parts in a
    million of geopy's geodesic up to a thousand kilometres, at any latitude, and a thousand
    times faster. Nearby points (every fence a ping is measured against, nearly) get a local
    projection; farther ones Lambert's formula."""
    d_lon = _wrap(lon2 - lon1)
    north, east = metres_per_degree((lat1 + lat2) / 2)
    local = math.hypot((lat2 - lat1) * north, d_lon * east)
    if local <= LOCAL_DISTANCE_M and abs(d_lon) <= LOCAL_LONGITUDE_SPAN:
        return local
    return _lambert_distance_m(lat1, lat2, d_lon)


def _lambert_distance_m(lat1: float, lat2: float, d_lon: float) -> float:
    """Lambert's formula: the great-circle angle between the reduced latitudes, corrected to
    the first order of the flattening (errors of its square: metres over thousands of km)."""
    beta1, beta2 = (
        math.atan2((1 - WGS84_F) * math.sin(math.radians(lat)), math.cos(math.radians(lat)))
        for lat in (lat1, lat2)
    )
    sin_q = math.sin((beta2 - beta1) / 2)
    sin_half_lon = math.sin(math.radians(d_lon) / 2)
    # The haversine of the central angle sigma: sin²(sigma/2); 1 - h is cos²(sigma/2).
    h = min(1.0, sin_q * sin_q + math.cos(beta1) * math.cos(beta2) * sin_half_lon * sin_half_lon)
    sigma = 2 * math.asin(math.sqrt(h))
    sin_p = math.sin((beta1 + beta2) / 2)
    # The floors only keep 0/0 away (the same point, or antipodes): a numerator is as small
    # as its denominator there.
    x = (sigma - math.sin(sigma)) * sin_p * sin_p * (1 - sin_q * sin_q) / max(1 - h, 1e-15)
    y = (sigma + math.sin(sigma)) * (1 - sin_p * sin_p) * sin_q * sin_q / max(h, 1e-300)
    return WGS84_A * (sigma - WGS84_F / 2 * (x + y))


# Beyond this latitude a longitude band is too narrow to bound; fences there cover every
# longitude of their latitude band (correct, just less selective: no stores are there).
POLAR_LATITUDE = 85.0


@dataclass(frozen=True)
class Fence:
    key: int
    latitude: float
    longitude: float
    radius_m: float | None
    rings: list[Ring] | None


def fence_from_store(
    key: int,
    latitude: float,
    longitude: float,
    radius_m: float | None,
    polygon: dict | None,
) -> Fence:
    """A store's fence from its stored values: a circle, or the rings of its GeoJSON polygon."""
    if polygon is not None:
        return Fence(key, latitude, longitude, None, polygon_rings(polygon, stored=True))
    return Fence(key, latitude, longitude, float(radius_m or 0.0), None)


def signed_distance_m(fence: Fence, latitude: float, longitude: float) -> float:
    """Metres from the fence's boundary: negative inside, positive outside."""
    if fence.rings is None:
        centre = ellipsoid_distance_m(fence.latitude, fence.longitude, latitude, longitude)
        return centre - (fence.radius_m or 0.0)
    return _polygon_signed_distance(fence.rings, latitude, longitude)


def _polygon_signed_distance(rings: list[Ring], latitude: float, longitude: float) -> float:
    """Each edge's point nearest the fix is found in a local equirectangular projection
    centred on the fix, then measured on the ellipsoid. The projection's scale, the fix's
    latitude's, is off by hundreds of metres at the far end of a 50 km fence; the nearest point
    it picks is off too, but a distance hardly changes near its minimum.

    Longitudes are taken in the ring's own frame, relative to its first corner, as
    `polygon_rings` judged the shape, and the fix placed in that frame: wrapping each corner
    relative to the fix instead would cut a ring lying across the fix's opposite meridian
    (one near a pole, or on the far side of the globe) and join its pieces the long way round,
    through the fix, measuring it inside."""
    scale_y, scale_x = metres_per_degree(latitude)
    origin = rings[0][0][0]
    # The fix's longitude in the ring's frame: offsets are this far from the fix, unwrapped.
    fix_offset = _wrap(longitude - origin)
    nearest = math.inf
    inside_outer = False
    inside_hole = False
    for number, ring in enumerate(rings):
        offsets = [(_wrap(lon - origin) - fix_offset, lat - latitude) for lon, lat in ring]
        crossings = False
        for (u1, v1), (u2, v2) in pairwise(offsets):
            x1, y1, x2, y2 = u1 * scale_x, v1 * scale_y, u2 * scale_x, v2 * scale_y
            t = _nearest_fraction(x1, y1, x2, y2)
            distance = ellipsoid_distance_m(
                latitude, longitude, latitude + v1 + t * (v2 - v1), longitude + u1 + t * (u2 - u1)
            )
            nearest = min(nearest, distance)
            if (y1 > 0) != (y2 > 0) and x1 - y1 * (x2 - x1) / (y2 - y1) > 0:
                crossings = not crossings
        if number == 0:
            inside_outer = crossings
        elif crossings:
            inside_hole = True
    return -nearest if inside_outer and not inside_hole else nearest


def _wrap(degrees: float) -> float:
    """A longitude difference brought into [-180, 180): across the antimeridian too."""
    return (degrees + 180.0) % 360.0 - 180.0


def _nearest_fraction(x1: float, y1: float, x2: float, y2: float) -> float:
    """Where the point of the segment (x1, y1)-(x2, y2) nearest the origin is: 0 at its start,
    1 at its end."""
    dx, dy = x2 - x1, y2 - y1
    length = dx * dx + dy * dy
    return 0.0 if length == 0 else max(0.0, min(1.0, -(x1 * dx + y1 * dy) / length))


def _extent(fence: Fence) -> tuple[float, float, float, float]:
    """The fence's bounding box in degrees: (south, north, west, east), east < west when it
    crosses the antimeridian."""
    if fence.rings is None:
        # A circle's radius is added with the reach by the caller.
        return fence.latitude, fence.latitude, fence.longitude, fence.longitude
    outer = fence.rings[0]
    lats = [lat for _, lat in outer]
    # Longitudes relative to the store's point, so a ring across ±180 stays contiguous.
    offsets = [_wrap(lon - fence.longitude) for lon, _ in outer]
    return (
        min(lats),
        max(lats),
        fence.longitude + min(offsets),
        fence.longitude + max(offsets),
    )


# A fence whose box spans more rows of cells than this is kept off the grid, on a short list
# of wide fences checked at every query: one 50 km circle among 100 m stores would otherwise
# be listed in half a million cells. Rows, not cells: columns narrow towards the poles, so an
# ordinary fence in Tromsø touches three times the cells one in Paris does.
WIDE_FENCE_ROWS = 16

_EVERY_LONGITUDE = [(-180.0, 180.0)]


class FenceIndex:
    """Which fences contain, or are within `reach_m` of, a point, without scanning every fence.

    A grid of cells in degrees: each fence is listed in every cell its bounding box, grown by
    its radius and `reach_m`, touches; a query reads the point's cell and measures exactly
    only the fences listed there, and the wide fences (see WIDE_FENCE_ROWS) whose box holds
    the point.
    """

    def __init__(self, fences: Iterable[Fence], reach_m: float) -> None:
        self.reach_m = float(reach_m)
        self._fences = list(fences)
        sizes = sorted(f.radius_m or 0.0 for f in self._fences if f.rings is None)
        typical = sizes[len(sizes) // 2] if sizes else 100.0
        # Cells about the size of what a query must see: few candidates per cell, few
        # cells per fence.
        self._cell = min(1.0, max(0.0005, 2 * (self.reach_m + typical) / METRES_PER_DEGREE))
        self._cells: dict[tuple[int, int], list[Fence]] = {}
        self._wide: list[tuple[Fence, float, float, list[tuple[float, float]]]] = []
        for fence in self._fences:
            south, north, lon_ranges = self._box(fence)
            rows = range(self._row(south), self._row(north) + 1)
            if len(rows) > WIDE_FENCE_ROWS or lon_ranges == _EVERY_LONGITUDE:
                self._wide.append((fence, south, north, lon_ranges))
                continue
            for low, high in lon_ranges:
                for row in rows:
                    for column in range(self._column(low), self._column(high) + 1):
                        self._cells.setdefault((row, column), []).append(fence)

    def __len__(self) -> int:
        return len(self._fences)

    @property
    def cell_entries(self) -> int:
        """How many times the grid lists a fence: what the index's size grows with."""
        return sum(len(fences) for fences in self._cells.values())

    def _box(self, fence: Fence) -> tuple[float, float, list[tuple[float, float]]]:
        """Where a point within reach of the fence can be: (south, north, longitude ranges
        within [-180, 180])."""
        south, north, west, east = _extent(fence)
        grow = (self.reach_m + (fence.radius_m or 0.0)) / METRES_PER_DEGREE
        # A margin of a metre for the sphere's curvature between the box and the cell edges.
        grow += 1.0 / METRES_PER_DEGREE
        south, north = max(-90.0, south - grow), min(90.0, north + grow)
        widest = max(abs(south), abs(north))
        if widest >= POLAR_LATITUDE:
            return south, north, _EVERY_LONGITUDE
        grow_lon = grow / math.cos(math.radians(widest))
        west, east = west - grow_lon, east + grow_lon
        if east - west >= 360.0:
            return south, north, _EVERY_LONGITUDE
        return south, north, _split_at_antimeridian(west, east)

    def _row(self, latitude: float) -> int:
        return math.floor(latitude / self._cell)

    def _column(self, longitude: float) -> int:
        return math.floor(longitude / self._cell)

    def nearby(self, latitude: float, longitude: float) -> list[tuple[int, float]]:
        """[(fence key, signed distance)] for every fence within reach_m, nearest first."""
        wrapped = _wrap(longitude)
        candidates = self._cells.get((self._row(latitude), self._column(wrapped)), [])
        wide = [
            fence
            for fence, south, north, lon_ranges in self._wide
            if south <= latitude <= north
            and any(low <= wrapped <= high for low, high in lon_ranges)
        ]
        found = []
        for fence in [*candidates, *wide]:
            distance = signed_distance_m(fence, latitude, longitude)
            if distance <= self.reach_m:
                found.append((fence.key, distance))
        found.sort(key=lambda item: item[1])
        return found


def _split_at_antimeridian(west: float, east: float) -> list[tuple[float, float]]:
    """A longitude range, possibly past ±180, as ranges within [-180, 180]."""
    ranges = []
    if west < -180.0:
        ranges.append((west + 360.0, 180.0))
        west = -180.0
    if east > 180.0:
        ranges.append((-180.0, east - 360.0))
        east = 180.0
    ranges.append((west, east))
    return ranges
