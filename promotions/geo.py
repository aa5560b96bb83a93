"""Geometry of store fences on plain values: no Django.

Positions are GeoJSON's (longitude, latitude) in degrees.
"""

import math
from itertools import pairwise
from typing import Any

Position = tuple[float, float]
Ring = list[Position]

# A store outline needs a few dozen corners; the cap bounds the O(n^2) simplicity checks.
# It holds for all rings together, or a body of thousands of small holes could keep a worker
# busy for a minute.
MAX_RING_VERTICES = 200


# The mean Earth radius (IUGG); a sphere is within 0.5% of the ellipsoid, plenty for fences.
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


def polygon_rings(geojson: Any) -> list[Ring]:
    """The rings of a GeoJSON Polygon (outer boundary first, then holes), validated: closed,
    at least three distinct corners, on the globe, enclosing an area, not crossing itself,
    and each hole inside the outer ring."""
    if not isinstance(geojson, dict) or geojson.get("type") != "Polygon":
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
    for ring, name in zip(rings, names, strict=True):
        if _crosses_itself(ring):
            raise GeometryError(f"The {name} crosses itself.")
        # A bow-tie's halves cancel out, so only a ring that does not cross itself can be
        # judged flat by its area.
        if _twice_area(ring) == 0:
            raise GeometryError(f"The {name} has no area: its corners are on one line.")
    outer = rings[0]
    for ring, name in zip(rings[1:], names[1:], strict=True):
        if _rings_meet(ring, outer) or not _inside(ring[0], outer):
            raise GeometryError(f"The {name} is not inside the outer ring.")
    return rings


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
        longitude, latitude = float(raw[0]), float(raw[1])
    except OverflowError:  # an integer of hundreds of digits is valid JSON
        raise GeometryError(f"The {name} has a position off the globe.") from None
    if not (math.isfinite(longitude) and math.isfinite(latitude)):
        raise GeometryError(f"The {name} has a position that is not a finite number.")
    if not (-180 <= longitude <= 180 and -90 <= latitude <= 90):
        raise GeometryError(
            f"The {name} has a position off the globe: [{longitude}, {latitude}] "
            "(GeoJSON puts longitude first)."
        )
    return longitude, latitude


def _twice_area(ring: Ring) -> float:
    """The shoelace sum: twice the signed area, in square degrees; zero for a flat ring."""
    return sum(a[0] * b[1] - b[0] * a[1] for a, b in pairwise(ring))


def _inside(point: Position, ring: Ring) -> bool:
    """Whether a point is inside a ring, by the even-odd rule (a ray cast towards +x)."""
    x, y = point
    inside = False
    for (x1, y1), (x2, y2) in pairwise(ring):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _rings_meet(ring: Ring, other: Ring) -> bool:
    return any(
        _segments_intersect(*edge, *other_edge)
        for edge in pairwise(ring)
        for other_edge in pairwise(other)
    )


def _crosses_itself(ring: Ring) -> bool:
    # A corner given twice in a row is an edge of no length, not a crossing: drawing tools
    # leave them on a double click.
    ring = [position for i, position in enumerate(ring) if i == 0 or position != ring[i - 1]]
    edges = list(pairwise(ring))
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
