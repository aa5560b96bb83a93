"""Synthetic shoppers for `manage.py simulate`, on plain values (no Django).

A shopper starts a few hundred metres from a store and walks towards it at walking pace;
some go in and stay a few minutes, others pass by on the other side of the street. Their
phone reports a fix every 30 s with the noise real phones have: a position off by about half
the accuracy it claims, now and then a vague fix from a cell tower.
"""

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

WALKING_SPEED_MS = 1.3
PING_EVERY_S = 30
METRES_PER_DEGREE = 111_195.0

# Shoppers' phones must reach nobody, even if a server is configured to send real SMS, and
# must still be valid numbers, since the API refuses the others. France's numbers reserved
# for fiction (+33 6 39 98) and the UK's (+44 7700 900) are not valid to phonenumbers; the
# North American plan keeps 555-0100 to 555-0199 for fiction in every area code, and those
# are. These area codes give 100 numbers each.
FICTIONAL_AREA_CODES = (
    201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217, 218, 219, 220,
    223, 224, 225, 227, 228, 229, 231, 234, 235, 239, 240, 248, 251, 252, 253, 254, 256, 260,
    262, 267, 269, 270, 272, 274, 276, 279, 281, 283, 301, 302, 303, 304, 305, 307, 308, 309,
    310, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321, 323, 324, 325, 326, 327, 329, 330,
    331, 332, 334, 336, 337, 339, 341, 346, 347, 350, 351, 352, 353, 360, 361, 363, 364, 369,
    380, 385, 386, 401, 402, 404, 405, 406, 407, 408,
)  # fmt: skip
MAX_SHOPPERS = len(FICTIONAL_AREA_CODES) * 100


def fictional_phone(n: int) -> str:
    """Shopper n's number (0 <= n < MAX_SHOPPERS), in E.164: +1 NPA 555-01XX."""
    if not 0 <= n < MAX_SHOPPERS:
        raise ValueError(f"Only {MAX_SHOPPERS} fictional numbers: no shopper {n}.")
    return f"+1{FICTIONAL_AREA_CODES[n // 100]}55501{n % 100:02d}"


@dataclass(frozen=True)
class Fix:
    at: datetime
    latitude: float
    longitude: float
    accuracy: float
    inside: bool  # where the shopper truly is, for the sightings an in-store beacon gives


def offset(latitude: float, longitude: float, north_m: float, east_m: float) -> tuple[float, float]:
    return (
        latitude + north_m / METRES_PER_DEGREE,
        longitude + east_m / (METRES_PER_DEGREE * math.cos(math.radians(latitude))),
    )


def walk(
    *,
    latitude: float,
    longitude: float,
    radius_m: float,
    enters: bool,
    start: datetime,
    minutes: float,
    rng: random.Random,
) -> list[Fix]:
    """A shopper's fixes over `minutes` from `start`, approaching the store at (latitude,
    longitude); one who `enters` stays inside once there, the others pass it by."""
    bearing = rng.uniform(0, 2 * math.pi)
    # Arrive about two thirds of the way through the walk, so a visit is seen in full.
    approach_m = WALKING_SPEED_MS * minutes * 60 * rng.uniform(0.5, 0.7)
    miss_m = 0.0 if enters else rng.uniform(radius_m + 60, radius_m + 250)
    fixes = []
    steps = int(minutes * 60 // PING_EVERY_S)
    for step in range(steps + 1):
        travelled = step * PING_EVERY_S * WALKING_SPEED_MS
        along = approach_m - travelled
        if enters and along < radius_m * 0.3:
            along = radius_m * rng.uniform(-0.3, 0.3)  # browsing the shelves
        north = along * math.cos(bearing) - miss_m * math.sin(bearing)
        east = along * math.sin(bearing) + miss_m * math.cos(bearing)
        true_distance = math.hypot(north, east)
        accuracy = rng.choice([5.0, 8.0, 12.0, 20.0, 35.0]) if rng.random() > 0.05 else 350.0
        noise = accuracy / 2
        lat, lon = offset(
            latitude, longitude, north + rng.gauss(0, noise), east + rng.gauss(0, noise)
        )
        fixes.append(
            Fix(
                at=start + timedelta(seconds=step * PING_EVERY_S),
                latitude=lat,
                longitude=lon,
                accuracy=accuracy,
                inside=true_distance <= radius_m,
            )
        )
    return fixes
