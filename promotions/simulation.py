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
