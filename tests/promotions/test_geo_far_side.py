"""A polygon measured from the far side of the globe: the crossings that say "inside" are
counted in degrees from the fix, and a ring seen from its antipode can seem to surround it."""

import pytest

from promotions import geo

# The Rivoli shop's outline, a few dozen metres across.
RIVOLI = geo.Fence(
    key=1,
    latitude=48.8606,
    longitude=2.3417,
    radius_m=None,
    rings=[
        [
            (2.3410, 48.8600),
            (2.3425, 48.8600),
            (2.3425, 48.8612),
            (2.3410, 48.8612),
            (2.3410, 48.8600),
        ]
    ],
)


@pytest.mark.parametrize(
    ("latitude", "longitude"),
    [(-48.8606, -177.6583), (48.8606, -177.6583), (0.0, -177.6583), (75.0, -170.0)],
)
def test_a_fix_on_the_far_side_of_the_globe_is_outside_a_polygon(latitude, longitude):
    assert geo.signed_distance_m(RIVOLI, latitude, longitude) > 5_000_000


def test_a_fix_in_the_shop_is_still_inside():
    assert geo.signed_distance_m(RIVOLI, 48.8606, 2.3417) < 0
