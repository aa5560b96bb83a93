"""The presence state machine, rule by rule, and its invariants under noise and disorder."""

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promotions import presence
from promotions.presence import (
    DWELLED,
    ENTERED,
    EXITED,
    NEAR,
    BeaconReading,
    Fix,
    Hold,
    Place,
    PlaceState,
    Rules,
    Track,
)

T0 = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
STORE = 7
RADIUS = 60.0
CENTRE = (48.8606, 2.3417)
METRES_PER_DEGREE = 111_195.0
RULES = Rules()  # the SPEC defaults: 200 m, share 0.5, margin 50 m, 15 min, 300 km/h, 2 in 30 s
ZONE = Place(STORE, zone=3)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def point(metres_from_fence: float) -> tuple[float, float]:
    """A position due north of the centre, this far outside the fence (negative: inside)."""
    return CENTRE[0] + (RADIUS + metres_from_fence) / METRES_PER_DEGREE, CENTRE[1]


def measure(store: int, latitude: float, longitude: float) -> float:
    # Flat-earth metres: these tests are about the state machine, not geometry.
    dy = (latitude - CENTRE[0]) * METRES_PER_DEGREE
    dx = (longitude - CENTRE[1]) * METRES_PER_DEGREE * math.cos(math.radians(CENTRE[0]))
    return math.hypot(dx, dy) - RADIUS


def locate(latitude: float, longitude: float) -> list[tuple[int, float]]:
    distance = measure(STORE, latitude, longitude)
    return [(STORE, distance)] if distance <= 2_000 else []


def fix(seconds: float, metres: float, accuracy: float = 10.0, device=1, ping=None, **kw) -> Fix:
    latitude, longitude = point(metres)
    return Fix(device, latitude, longitude, accuracy, at(seconds), ping=ping, **kw)


def reading(seconds, rssi, zone=3, threshold=-80):
    return BeaconReading(1, STORE, zone, rssi, threshold, at(seconds), sighting=int(seconds))


def near_only(latitude: float, longitude: float) -> list[tuple[int, float]]:
    """A `locate` that looks 350 m out, as the worker's index does: beyond, nothing."""
    return [(s, d) for s, d in locate(latitude, longitude) if d <= 350]


def run(observations, states=None, tracks=None, now=None, **kw):
    return presence.advance(
        states=states or {},
        tracks=tracks or {},
        observations=observations,
        locate=locate,
        rules=kw.pop("rules", RULES),
        now=now or at(3600),
        **kw,
    )


def kinds(outcome, place=None):
    place = place or Place(STORE)
    return [e.kind for e in outcome.events if e.place == place]


# --- GPS entry and exit -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("metres", "accuracy", "entered"),
    [
        (-30, 10, True),  # well inside
        (-6, 10, True),  # -6 + 0.5 * 10 < 0: fits
        (-4, 10, False),  # -4 + 5 > 0: the accuracy circle spills out
        (-100, 199, False),  # inside, but -100 + 99.5 > 0
        (-60, 100, True),
        (-59, 201, False),  # accuracy over the 200 m bound cannot cause an entry
        (20, 5, False),  # outside
    ],
)
def test_a_fix_enters_when_its_distance_plus_half_its_accuracy_fits(metres, accuracy, entered):
    outcome = run([fix(0, metres, accuracy)])
    assert kinds(outcome) == ([ENTERED] if entered else [])


@pytest.mark.parametrize(
    ("metres", "accuracy", "exits"),
    [
        (40, 10, False),  # 40 - 10 = 30 m beyond: within the 50 m margin
        (60, 10, False),  # 60 - 10 = 50: on the margin
        (61, 10, True),
        (300, 300, False),  # a vague fix far out proves nothing: its circle reaches the store
        (5_000, 10, True),  # no fence nearby at all
    ],
)
def test_a_fix_beyond_the_margin_exits(metres, accuracy, exits):
    outcome = run([fix(0, -30), fix(600, metres, accuracy)])
    assert kinds(outcome) == ([ENTERED, EXITED] if exits else [ENTERED])


def beyond_the_index(observations, states=None, tracks=None, measure=measure, **kw):
    """`advance` as the worker runs it: an index looking 350 m out, the stores the customer
    is in measured where it finds nothing."""
    return presence.advance(
        states=states or {},
        tracks=tracks or {},
        observations=observations,
        locate=near_only,
        locate_reach_m=350,
        measure=measure,
        now=kw.pop("now", at(3600)),
        **kw,
    )


def test_a_vague_fix_beyond_the_index_reach_does_not_exit():
    # The index looks 350 m out; a fix 1 km away with a 1.5 km accuracy circle proves nothing.
    inside = beyond_the_index([fix(0, -30)])
    vague = beyond_the_index([fix(60, 1_000, accuracy=1_500)], inside.states, inside.tracks)
    assert vague.events == []


@pytest.mark.parametrize("accuracy", [10, 500, 1_500])
def test_a_fix_whose_circle_clears_the_store_by_kilometres_exits_however_vague(accuracy):
    # Beyond the index's reach, the store is measured, not taken to be at the reach: a cell
    # position 5 km away, its circle kilometres clear of the store, is a shopper who left.
    inside = beyond_the_index([fix(0, -30)])
    far = beyond_the_index([fix(600, 5_000, accuracy=accuracy)], inside.states, inside.tracks)
    assert [(e.kind, e.at, e.reason) for e in far.events] == [
        (EXITED, at(600), "fix 5000 m out"),
    ]


def test_a_store_with_no_fence_any_more_is_taken_to_be_at_the_index_reach():
    # Deleted since the visit began: nothing to measure, so a vague fix proves nothing and a
    # precise one beyond the reach is out.
    inside = beyond_the_index([fix(0, -30)])

    def gone(store, latitude, longitude):
        return None

    vague = beyond_the_index(
        [fix(600, 5_000, accuracy=500)], inside.states, inside.tracks, measure=gone
    )
    assert vague.events == []
    precise = beyond_the_index(
        [fix(600, 5_000, accuracy=10)], inside.states, inside.tracks, measure=gone
    )
    assert [(e.kind, e.reason) for e in precise.events] == [(EXITED, "no fence nearby")]


def test_a_vague_fix_does_not_reset_an_approach():
    near = {STORE: {500.0}}
    outcome = run([fix(0, 400), fix(30, 900, accuracy=450), fix(60, 300)], near_distances=near)
    assert [e.kind for e in outcome.events] == [NEAR]


def test_an_exit_takes_the_zones_of_the_store_with_it():
    zone = Place(STORE, zone=3)
    readings = [BeaconReading(1, STORE, 3, -60, -80, at(s)) for s in (0, 5)]
    outcome = run([*readings, fix(60, 500)])
    assert [(e.kind, e.place) for e in outcome.events] == [
        (ENTERED, zone),
        (ENTERED, Place(STORE)),
        (EXITED, zone),
        (EXITED, Place(STORE)),
    ]


# --- Timelines, duplicates, late pings --------------------------------------------------


def test_processing_the_same_fixes_twice_changes_nothing():
    fixes = [fix(0, 300, ping=1), fix(60, -30, ping=2), fix(120, -25, ping=3)]
    first = run(fixes)
    again = run(fixes, states=first.states, tracks=first.tracks)
    assert kinds(first) == [ENTERED]
    assert again.events == []
    assert sorted(again.stale) == [1, 2, 3]


def test_a_late_fix_never_moves_state_back():
    inside = run([fix(0, 300), fix(60, -30)])
    # A fix from before the entry, out in the street, arrives late.
    late = run([fix(30, 300, ping=9)], states=inside.states, tracks=inside.tracks)
    assert late.events == [] and late.stale == [9]
    assert late.states == {}


def test_fixes_out_of_order_in_one_batch_are_applied_in_time_order():
    outcome = run([fix(120, 500), fix(0, 300), fix(60, -30)])
    assert kinds(outcome) == [ENTERED, EXITED]
    assert [e.at for e in outcome.events] == [at(60), at(120)]


def test_each_device_keeps_its_own_timeline_but_not_a_place_watermark():
    entered = run([fix(60, -30, device=1)])
    # Another device's older fix is not stale for its own timeline, but the place has seen
    # newer evidence: it does not exit the store.
    other = run([fix(30, 800, device=2)], states=entered.states, tracks=entered.tracks)
    assert other.events == []


def test_a_second_device_elsewhere_neither_ends_the_visit_nor_restarts_its_dwell():
    # The phone is in the store; the tablet at home reports every five minutes.
    phone = [fix(minute * 60, -30, device=1) for minute in range(0, 13, 2)]
    tablet = [fix(minute * 60 + 30, 5_000, device=2) for minute in range(0, 13, 5)]
    visit = run(phone + tablet, dwell_minutes={10})
    assert [(e.kind, e.at) for e in visit.events] == [(ENTERED, at(0)), (DWELLED, at(600))]
    # The phone walking out ends the visit.
    out = run([fix(14 * 60, 800, device=1)], states=visit.states, tracks=visit.tracks)
    assert kinds(out) == [EXITED]


def test_a_silent_device_in_the_store_leaves_it_by_timeout_whatever_another_reports():
    visit = run([fix(0, -30, device=1), fix(60, 5_000, device=2), fix(600, 5_000, device=2)])
    assert kinds(visit) == [ENTERED]
    later = run([fix(20 * 60, 5_000, device=2)], states=visit.states, tracks=visit.tracks)
    assert [(e.kind, e.at) for e in later.events] == [(EXITED, at(15 * 60))]


def test_a_device_in_the_exit_margin_does_not_keep_its_owner_in_the_store():
    # Léa lives 120 m from the store: her tablet at home reports every 10 minutes on wifi
    # (80 m: within the margin once its accuracy is taken off). The phone that put her in
    # the store walks out after 5 minutes: she is out, and dwells neither 30 nor 60 minutes.
    phone = [fix(0, -30, device=1), fix(120, -30, device=1), fix(300, 900, device=1)]
    tablet = [fix(minute * 60 + 60, 120, accuracy=80, device=2) for minute in range(0, 120, 10)]

    outcome = run(phone + tablet, dwell_minutes={30, 60}, now=at(2 * 3600))

    assert [(e.kind, e.at) for e in outcome.events] == [(ENTERED, at(0)), (EXITED, at(300))]


def test_a_shopper_by_the_window_whose_fixes_reach_past_the_wall_stays_in():
    # The fix's centre is 2 m inside, its circle 20 m: the margin band, but the customer is
    # in the store. Reporting every minute, never beyond the margin: no exit, no re-entry.
    fixes = [fix(0, -30)]
    fixes += [fix(minute * 60, -2, accuracy=20) for minute in range(1, 18)]
    fixes += [fix(18 * 60, -30)]
    assert kinds(run(fixes, now=at(18 * 60))) == [ENTERED]


def test_a_shopper_by_the_window_dwells():
    fixes = [fix(0, -30)]
    fixes += [fix(minute * 60, -2, accuracy=20) for minute in range(1, 17)]
    fixes += [fix(minute * 60, -30) for minute in range(17, 31)]
    outcome = run(fixes, dwell_minutes={20}, now=at(31 * 60))
    assert [(e.kind, e.at) for e in outcome.events] == [(ENTERED, at(0)), (DWELLED, at(20 * 60))]


@pytest.mark.parametrize("device", [1, 2], ids=["the phone that entered", "another device"])
def test_fixes_in_the_exit_margin_keep_no_visit_alive_nor_make_it_dwell(device):
    # Out of the store after 5 minutes, into the shop next door, 40 m past the fence (in the
    # margin): 45 minutes there are no stay in this one. The visit times out 15 minutes after
    # the last fix that was inside, once, with no dwell and no flapping.
    next_door = [fix(minute * 60, 40, device=device) for minute in range(5, 50, 3)]

    outcome = run([fix(0, -30), fix(120, -30), *next_door], dwell_minutes={20, 30})

    assert [(e.kind, e.at, e.reason) for e in outcome.events] == [
        (ENTERED, at(0), "fix 30 m inside (accuracy 10 m)"),
        (EXITED, at(120 + 15 * 60), "timeout"),
    ]


def test_both_devices_in_the_store_leave_it_when_the_last_one_does():
    visit = run([fix(0, -30, device=1), fix(30, -20, device=2), fix(60, 800, device=1)])
    assert kinds(visit) == [ENTERED]
    out = run([fix(90, 800, device=2)], states=visit.states, tracks=visit.tracks)
    assert [(e.kind, e.at) for e in out.events] == [(EXITED, at(90))]


def test_the_last_device_out_ends_the_visit_even_when_its_fix_arrives_late():
    # Both phones were in; the first one's exit came in first, the second's, recorded
    # earlier, in a later batch: the visit ends when both are out, not at the timeout (which
    # would announce a dwell the customer never made).
    visit = run([fix(0, -30, device=1), fix(30, -20, device=2)])
    first = run([fix(100, 800, device=1)], states=visit.states, tracks=visit.tracks)
    assert first.events == []
    states, tracks = visit.states | first.states, visit.tracks | first.tracks

    second = run([fix(90, 800, device=2)], states=states, tracks=tracks, dwell_minutes={10})

    assert [(e.kind, e.at) for e in second.events] == [(EXITED, at(100))]
    later = run([fix(2000, 800, device=1)], states=states | second.states, dwell_minutes={10})
    assert later.events == []


def test_an_approach_ends_with_the_last_device_out_of_the_ring_even_when_it_reports_late():
    near = {STORE: {500.0}}
    approach = run([fix(0, 400, device=1), fix(30, 300, device=2)], near_distances=near)
    assert [e.kind for e in approach.events] == [NEAR]
    first = run([fix(100, 1_500, device=1)], approach.states, approach.tracks, near_distances=near)
    states, tracks = approach.states | first.states, approach.tracks | first.tracks
    second = run([fix(90, 1_500, device=2)], states, tracks, near_distances=near)

    again = run([fix(200, 400, device=1)], states | second.states, near_distances=near)

    assert [e.kind for e in again.events] == [NEAR]


def test_an_approach_is_announced_once_while_another_device_is_far_away():
    walk = [fix(seconds, metres, device=1) for seconds, metres in [(0, 400), (60, 300), (120, 350)]]
    home = [fix(seconds, 5_000, device=2) for seconds in (30, 90)]
    outcome = run(walk + home, near_distances={STORE: {500.0}})
    assert [e.kind for e in outcome.events] == [NEAR]


@pytest.mark.parametrize(
    "late",
    [
        [fix(10 * 60, -30)],  # recorded 5 minutes before the timeout exit
        [fix(15 * 60, -30)],  # at the exit itself
        [reading(10 * 60, -60), reading(10 * 60 + 5, -60)],
    ],
)
def test_a_late_observation_never_enters_before_a_timeout_exit(late):
    entered = run([fix(0, -30)])
    timed_out = presence.tick(states=entered.states, now=at(30 * 60))
    assert [(e.kind, e.at) for e in timed_out.events] == [(EXITED, at(15 * 60))]
    assert timed_out.states[Place(STORE)].last_at == at(15 * 60)  # stored with the exit
    outcome = run(late, states=timed_out.states, tracks=entered.tracks)
    assert kinds(outcome) == []


def test_a_late_fix_in_a_later_batch_never_enters_before_a_timeout_exit():
    first = run([fix(0, -30, device=1)])
    # Another device's fix an hour later, far off: the visit had ended by timeout at 15 minutes.
    second = run([fix(3600, 5_000, device=2)], states=first.states, tracks=first.tracks)
    assert [(e.kind, e.at) for e in second.events] == [(EXITED, at(15 * 60))]
    late = run([fix(10 * 60, -30, device=1)], states=second.states, tracks=second.tracks)
    assert late.events == []


@pytest.mark.parametrize(
    ("visit", "late"),
    [
        # Entered, then timed out at 15 minutes, in one batch; device 1's fix from before.
        ([fix(0, -30, device=1), fix(3600, 5_000, device=2)], [fix(600, -30, device=1)]),
        # Entered by beacons and walked out in one batch; readings have no device timeline.
        ([reading(0, -60), reading(5, -60), fix(60, 500)], [reading(30, -60), reading(35, -60)]),
    ],
)
def test_a_visit_entered_and_left_in_one_batch_keeps_its_watermark(visit, late):
    first = run(visit)
    assert kinds(first) == [ENTERED, EXITED]
    assert kinds(run(late, states=first.states, tracks=first.tracks)) == []


def test_late_beacon_readings_never_enter_the_store_before_its_timeout_exit():
    # The zone timed out at 15:05 while GPS kept the store until 31:40; readings from
    # 16:40, received after the store's exit, must not open a visit that began before it.
    fixes = [fix(s, -30) for s in (60, 600, 1000)]
    visit = run([reading(0, -60), reading(5, -60), *fixes], now=at(1000))
    timed_out = presence.tick(states=visit.states, now=at(2000))
    assert [(e.kind, e.place, e.at) for e in timed_out.events] == [(EXITED, Place(STORE), at(1900))]
    late = run(
        [reading(1000, -60), reading(1005, -60)],
        states=visit.states | timed_out.states,
        tracks=visit.tracks,
    )
    assert kinds(late) == []


# --- Pings and sightings in separate requests -------------------------------------------
# The app posts its pings and its beacon sightings of the same minutes in two requests, and a
# gateway its own: two batches, processed in either order. What one holds must not make the
# other's evidence stale.


def returning():
    """A customer who was in the store two hours ago: the store's row exists, with its exit."""
    earlier = run([fix(-7200, -30), fix(-7000, 5_000)])
    assert kinds(earlier) == [ENTERED, EXITED]
    return earlier


def in_batches(batches, states=None, tracks=None, **kw):
    """Each batch run on what the batches before it wrote, as the worker runs them: all
    their events, and the states in the end."""
    states, tracks, events = dict(states or {}), dict(tracks or {}), []
    for batch in batches:
        outcome = run(batch, states=states, tracks=tracks, **kw)
        states |= outcome.states
        tracks |= outcome.tracks
        events += outcome.events
    return events, states


def requests(periods, pings_first):
    """Each period's pings and sightings, as two batches in the order given."""
    batches = []
    for pings, sightings in periods:
        batches += [pings, sightings] if pings_first else [sightings, pings]
    return batches


def tag(seconds, rssi=-60):
    """A loyalty card's tag (device 2, BLE only), seen by the entrance gateway."""
    return BeaconReading(2, STORE, 3, rssi, -80, at(seconds), sighting=1_000 + int(seconds))


@pytest.mark.parametrize("pings_first", [True, False], ids=["pings first", "sightings first"])
def test_beacons_enter_whichever_request_of_the_same_minutes_is_processed_first(pings_first):
    # Indoors, GPS is vague (250 m: no entry) and the zone's beacon strong.
    periods = [
        (
            [fix(start + s, -20, accuracy=250) for s in (1, 11, 21, 29)],
            [reading(start + s, -55) for s in (0, 10, 20)],
        )
        for start in range(0, 180, 30)
    ]
    earlier = returning()

    events, _ = in_batches(requests(periods, pings_first), earlier.states, earlier.tracks)

    assert [(e.kind, e.place, e.at) for e in events] == [
        (ENTERED, ZONE, at(10)),
        (ENTERED, Place(STORE), at(10)),
    ]


@pytest.mark.parametrize("pings_first", [True, False], ids=["pings first", "sightings first"])
def test_a_visit_the_beacons_hold_lasts_while_they_are_read_whichever_request_comes_first(
    pings_first,
):
    # Entered by beacons, then 25 minutes in the zone: a vague indoor ping and three
    # readings every 30 s. Its dwell is announced, and no timeout ends it.
    periods = [([], [reading(0, -55), reading(5, -55)])]
    periods += [
        ([fix(start + 29, -20, accuracy=250)], [reading(start + s, -55) for s in (0, 10, 20)])
        for start in range(30, 1500, 30)
    ]

    events, states = in_batches(requests(periods, pings_first), dwell_minutes={20})

    assert [(e.kind, e.place, e.at) for e in events] == [
        (ENTERED, ZONE, at(5)),
        (ENTERED, Place(STORE), at(5)),
        (DWELLED, ZONE, at(1205)),
        (DWELLED, Place(STORE), at(1205)),
    ]
    assert states[Place(STORE)].inside and states[ZONE].inside


@pytest.mark.parametrize(
    "other",
    [
        fix(60, 100, accuracy=300, device=2),  # vague, out in the street
        fix(60, -30, accuracy=250, device=2),  # vague, its centre inside
        fix(60, 30, device=2),  # precise, just out, within the exit margin
    ],
    ids=["vague outside", "vague inside", "in the margin"],
)
def test_a_fix_that_changes_nothing_does_not_block_another_devices_entry_before_it(other):
    # The watch's fix at 60 s is processed first; the phone's, from 0 to 50 s, in the next
    # batch: none is stale on the phone's own timeline.
    earlier = returning()
    watch = run([other], states=earlier.states, tracks=earlier.tracks)
    phone = run(
        [fix(s, -30, ping=s) for s in range(0, 60, 10)],
        states=earlier.states | watch.states,
        tracks=earlier.tracks | watch.tracks,
    )
    assert watch.events == []
    assert [(e.kind, e.at, e.ping) for e in phone.events] == [(ENTERED, at(0), 0)]


@pytest.mark.parametrize("phone_first", [True, False], ids=["phone first", "gateway first"])
def test_readings_of_two_devices_posted_apart_enter_as_they_would_together(phone_first):
    # The gateway saw the card's tag at 5 s, the phone ranged the beacon at 10 s: together,
    # two readings within the window.
    phone, card = [reading(10, -60)], [tag(5)]

    events, _ = in_batches([phone, card] if phone_first else [card, phone])

    assert [(e.kind, e.place, e.at) for e in events] == [
        (ENTERED, ZONE, at(10)),
        (ENTERED, Place(STORE), at(10)),
    ]


@pytest.mark.parametrize(
    "order",
    ["together", "card, phone, fix", "phone, card, fix", "both readings, fix"],
)
def test_an_entry_is_held_by_every_device_read_in_its_window_whichever_request_comes_first(
    order,
):
    # The phone ranged the beacon at 5 s, the gateway saw the card at 10 s: the entry is both
    # devices', each by its own reading. The phone 800 m out at 60 s ends its hold, and the
    # card, unread for 50 s, holds nothing any more: the customer left with the phone.
    phone, card, far = [reading(5, -60)], [tag(10)], [fix(60, 800)]
    batches = {
        "together": [phone + card + far],
        "card, phone, fix": [card, phone, far],
        "phone, card, fix": [phone, card, far],
        "both readings, fix": [card + phone, far],
    }[order]

    events, states = in_batches(batches)

    assert [(e.kind, e.at) for e in events if e.place == Place(STORE)] == [
        (ENTERED, at(10)),
        (EXITED, at(60)),
    ]
    assert not states[ZONE].inside


def test_the_holds_of_an_entry_keep_each_devices_own_reading_time():
    # The card's reading, processed first, completes the window of the phone's late one:
    # the phone holds by its reading at 5 s, not by the card's at 10 s.
    _, states = in_batches([[tag(10)], [reading(5, -60)]])
    assert states[Place(STORE)].holders == (Hold(1, reading_at=at(5)), Hold(2, reading_at=at(10)))


@pytest.mark.parametrize("pings_first", [True, False], ids=["pings first", "sightings first"])
def test_readings_processed_before_an_earlier_entry_keep_the_visit_alive(pings_first):
    # The phone ranges the beacon once a minute (one reading a window: no entry alone); its
    # one precise fix, inside at 0 s, enters the store. Processed before that entry, the
    # readings still keep the visit alive: no timeout at 15 min, no second entry after it.
    sightings = [reading(s, -70) for s in range(60, 601, 60)]
    pings = [fix(0, -30)]
    batches = [pings, sightings] if pings_first else [sightings, pings]
    events, states = in_batches(batches, dwell_minutes={5}, now=at(700))
    ticked = presence.tick(states=states, dwell_minutes={5}, now=at(960))
    more, _ = in_batches(
        [[reading(s, -60) for s in (960, 965)]], states | ticked.states, now=at(970)
    )

    assert [(e.kind, e.at) for e in events + ticked.events + more if e.place == Place(STORE)] == [
        (ENTERED, at(0)),
        (DWELLED, at(5 * 60)),
    ]


@pytest.mark.parametrize(
    "observations",
    [
        [reading(s, -60) for s in (0, 5, 10)],
        [reading(0, -60), tag(3), fix(4, -30, accuracy=250), reading(8, -90), tag(9)],
    ],
    ids=["readings", "two devices, a fix among them"],
)
def test_processing_the_same_readings_twice_changes_nothing(observations):
    first = run(observations)
    again = run(observations, states=first.states, tracks=first.tracks)
    assert kinds(first, ZONE) == [ENTERED]
    assert again.events == [] and again.states == {}


@pytest.mark.parametrize(
    ("batches", "entry"),
    [
        ([[reading(10, -60)], [reading(5, -62)]], 10),
        # The queue's two readings make the window at 5 s, as in time order.
        ([[reading(10, -60)], [reading(2, -62), reading(5, -61)]], 5),
        ([[tag(10)], [tag(5)]], 10),
    ],
    ids=["a second gateway's reading", "the app's queue", "the card's tag"],
)
def test_a_devices_reading_posted_after_a_later_one_of_its_own_still_enters(batches, entry):
    # Two gateways upload the same tag on their own schedules; the app flushes what it
    # queued after its live ranging. The window is whole once the late ones are in.
    events, _ = in_batches(batches)
    assert [(e.kind, e.place, e.at) for e in events] == [
        (ENTERED, ZONE, at(entry)),
        (ENTERED, Place(STORE), at(entry)),
    ]
    together = run([o for batch in batches for o in batch])
    assert [(e.kind, e.place, e.at) for e in together.events] == [
        (e.kind, e.place, e.at) for e in events
    ]


def test_a_late_buffer_holding_a_reading_already_in_still_completes_the_window():
    # gw-1 heard the tag at 20 s; gw-2's buffer holds 5 s and the same 20 s reading (same
    # instant, same strength): with the one at 5 s, two readings within 30 s, as in time order.
    def heard(seconds, sighting):
        return BeaconReading(1, STORE, 3, -70, -80, at(seconds), sighting=sighting)

    events, _ = in_batches([[heard(20, 1)], [heard(5, 2), heard(20, 3)]])

    assert [(e.kind, e.place, e.at) for e in events] == [
        (ENTERED, ZONE, at(20)),
        (ENTERED, Place(STORE), at(20)),
    ]


def test_a_late_reading_of_the_devices_own_processed_twice_counts_once():
    # Three readings needed: the live one and one late one, the late one processed twice
    # (a batch the sweep picks up again), are two.
    rules = Rules(beacon_min_sightings=3)
    late = [reading(5, -60)]
    events, states = in_batches([[reading(10, -60)], late, late], rules=rules)
    assert events == []
    assert [item[0] for item in states[ZONE].rssi] == [at(5), at(10)]
    again = run(late, states=states, rules=rules)
    assert again.events == [] and again.states == {}


def test_as_many_sightings_needed_as_a_store_s_window_holds_still_enter():
    # The most BEACON_MIN_SIGHTINGS allows (config/settings.py): a gateway reading the tag
    # four times a second fills the window within the 30 s.
    rules = Rules(beacon_min_sightings=presence._WINDOW_CAP)
    stream = [
        BeaconReading(1, STORE, 3, -60, -80, at(n / 4), sighting=n)
        for n in range(presence._WINDOW_CAP)
    ]

    assert kinds(run(stream, rules=rules)) == [ENTERED]


def test_a_late_reading_of_the_devices_own_never_enters_before_an_exit():
    # In by beacons at 5 s, out on the phone's far fix at 100 s: a gateway's buffer from
    # 80 s and 90 s, uploaded after, opens no visit that began before the exit.
    visit = run([reading(0, -55), reading(5, -55), reading(40, -55), fix(100, 800)])
    assert kinds(visit) == [ENTERED, EXITED]
    late = run([reading(80, -55), reading(90, -55)], states=visit.states, tracks=visit.tracks)
    assert late.events == []


# --- Devices that fall silent, and GPS against beacons -----------------------------------


@pytest.mark.parametrize(
    ("other", "phone_out", "expected"),
    [
        # A watch whose app stops after its first fix: an hour later it says nothing.
        (
            [fix(30, -20, device=2)],
            61,
            [(ENTERED, at(0)), (DWELLED, at(20 * 60)), (EXITED, at(61 * 60))],
        ),
        # A card's tag seen at the entrance, which can send no far fix: unread for more than
        # the beacon window, it does not outlast the phone's.
        ([tag(0), tag(5)], 11, [(ENTERED, at(0)), (EXITED, at(11 * 60))]),
        # The watch's fix is within the timeout when the phone leaves: the customer is held
        # until it runs out, counted from the watch's fix, not the phone's (no 20 minutes).
        ([fix(30, -20, device=2)], 11, [(ENTERED, at(0)), (EXITED, at(30 + 15 * 60))]),
    ],
    ids=["silent watch", "card tag", "watch within the timeout"],
)
def test_a_device_fallen_silent_does_not_hold_the_customer_in_after_the_live_one_left(
    other, phone_out, expected
):
    phone = [fix(minute * 60, -30) for minute in range(phone_out)]
    phone.append(fix(phone_out * 60, 800))
    dwell = {20, 65}
    visit = run(other + phone, dwell_minutes=dwell, now=at(phone_out * 60))
    later = presence.tick(states=visit.states, dwell_minutes=dwell, now=at(90 * 60))
    events = visit.events + later.events
    assert [(e.kind, e.at) for e in events if e.place == Place(STORE)] == expected


@pytest.mark.parametrize(
    ("last_reading", "fix_at", "exits"),
    [
        (120, 62, False),  # an indoor outlier between two readings
        (60, 90, False),  # read exactly the window before
        (60, 91, True),  # the beacons went quiet: the customer left
    ],
)
def test_a_far_fix_ends_a_beacon_visit_only_once_the_beacon_window_has_passed(
    last_reading, fix_at, exits
):
    # The phone ranges the zone's beacon every 5 s; one fix, with a claimed 20 m accuracy,
    # lands 100 m outside the fence.
    readings = [reading(s, -55) for s in range(0, last_reading + 1, 5)]
    outcome = run([*readings, fix(fix_at, 100, accuracy=20)])
    assert [(e.kind, e.at) for e in outcome.events if e.place == Place(STORE)] == (
        [(ENTERED, at(5)), (EXITED, at(fix_at))] if exits else [(ENTERED, at(5))]
    )


@pytest.mark.parametrize(
    ("phone_out", "now"),
    [
        (range(315, 1_200, 60), 1_300),  # the phone reports 800 m out every minute
        ((315,), 1_300),  # one far fix, then nothing: the tick ends it
        ((315,), 319),  # a tick within the card's window changes nothing yet
    ],
    ids=["far fixes go on", "the phone falls silent", "within the window"],
)
def test_once_the_live_device_left_a_beacon_holds_the_customer_for_its_window_only(phone_out, now):
    # Phone and card come in together; the gateway reads the card every 10 s until 290 s.
    # The phone's far fix at 315 s finds the card read 25 s before: it still holds. Unread
    # for the window since, it holds no more: the customer left at 320 s, when its window
    # ran out, not 15 minutes after, and dwelled no 10 minutes.
    phone_in = [fix(s, -30) for s in range(0, 300, 20)]
    card = [tag(s) for s in range(0, 291, 10)]
    phone_far = [fix(s, 800) for s in phone_out]
    visit = run(phone_in + card + phone_far, dwell_minutes={10}, now=at(phone_out[-1]))
    later = presence.tick(states=visit.states, dwell_minutes={10}, now=at(now))

    events = visit.events + later.events

    left = [(EXITED, at(320))] if now > 320 else []
    assert [(e.kind, e.at) for e in events if e.place == Place(STORE)] == [(ENTERED, at(0)), *left]
    assert [(e.kind, e.at) for e in events if e.place == ZONE] == [(ENTERED, at(10)), *left]
    assert all(e.reason == "timeout" for e in events if e.kind == EXITED)


def test_a_visit_keeps_no_reading_watermark_its_exit_made_redundant():
    # A new app install (device id) each month: each visit's readings are behind its exit.
    states, tracks = {}, {}
    for visit in range(12):
        device, start = 100 + visit, visit * 30 * 86_400
        readings = [
            BeaconReading(device, STORE, 3, -55, -80, at(start + s), sighting=start + s)
            for s in (0, 5)
        ]
        outcome = run(
            [*readings, fix(start + 120, 800, device=device)],
            states=states,
            tracks=tracks,
            now=at(start + 3_600),
        )
        assert kinds(outcome) == [ENTERED, EXITED]
        states |= outcome.states
        tracks |= outcome.tracks

    assert states[Place(STORE)].read_at == () and states[ZONE].read_at == ()


# --- Suspicious fixes -------------------------------------------------------------------


def test_a_mocked_fix_is_suspicious_and_triggers_nothing():
    outcome = run([fix(0, -30, ping=4, mocked=True)])
    assert outcome.events == [] and outcome.suspicious == [4]
    assert outcome.tracks == {}


def test_a_mocked_fix_uploaded_late_is_suspicious_too():
    # An app's offline queue flushed after a live fix: the mocked location is still one.
    track = Track(*point(-30), 10.0, at(600))
    outcome = run([fix(0, -30, ping=4, mocked=True)], tracks={1: track})
    assert outcome.events == [] and outcome.suspicious == [4]
    assert outcome.tracks == {}


def test_a_teleport_is_suspicious_and_a_real_journey_is_not():
    paris = Track(48.8566, 2.3522, 10.0, at(0))
    # Lyon is 392 km away: an hour later is 392 km/h, three hours later 131 km/h.
    lyon = (45.7640, 4.8357)
    quick = Fix(1, *lyon, 10.0, at(3600), ping=5)
    slow = Fix(1, *lyon, 10.0, at(3 * 3600), ping=6)
    assert run([quick], tracks={1: paris}).suspicious == [5]
    assert run([slow], tracks={1: paris}).suspicious == []


def test_a_wild_fix_is_left_behind_and_the_genuine_fix_after_it_enters_the_store():
    start = Track(*point(300), 10.0, at(0))
    wild = (point(-30)[0] + 1.0, point(-30)[1])  # 111 km north, ten seconds later
    outcome = run([Fix(1, *wild, 10.0, at(10), ping=1), fix(40, -30, ping=2)], tracks={1: start})
    assert outcome.suspicious == [1]
    # 330 m in 40 s from the track is a walk: the wild fix changed nothing.
    assert [(e.kind, e.ping) for e in outcome.events] == [(ENTERED, 2)]
    assert outcome.tracks[1] == Track(*point(-30), 10.0, at(40), ping=2)


def test_a_journey_too_fast_for_a_shopper_is_confirmed_by_its_second_fix():
    inside = run([fix(0, -30, ping=0)])
    # A flight: 111 km north an hour later is 111 km/h, but 10 minutes later is a teleport.
    away = point(-30)[0] + 1.0, point(-30)[1]
    landed = [Fix(1, *away, 10.0, at(600), ping=1), Fix(1, *away, 10.0, at(660), ping=2)]
    outcome = run(landed, states=inside.states, tracks=inside.tracks)
    assert outcome.suspicious == [1]
    assert outcome.tracks[1] == Track(*away, 10.0, at(660), ping=2)
    # The store was left by the confirmed fix, not the teleport.
    assert [(e.kind, e.ping) for e in outcome.events] == [(EXITED, 2)]


def test_a_jump_is_held_across_runs_and_a_fix_before_it_is_stale():
    start = Track(*point(-30), 10.0, at(0))
    away = point(-30)[0] + 1.0, point(-30)[1]
    first = run([Fix(1, *away, 10.0, at(600), ping=1)], tracks={1: start})
    assert first.tracks[1] == start._replace(jump=Track(*away, 10.0, at(600), ping=1))
    late = run([fix(500, -30, ping=2)], tracks=first.tracks)
    assert late.stale == [2] and late.tracks == {}
    again = run([Fix(1, *away, 10.0, at(700), ping=3)], tracks=first.tracks)
    assert again.suspicious == [] and again.tracks[1] == Track(*away, 10.0, at(700), ping=3)


def test_two_vague_fixes_far_apart_are_no_teleport():
    track = Track(*point(0), 1_500.0, at(0))
    assert run([fix(5, 2_000, accuracy=1_500.0, ping=3)], tracks={1: track}).suspicious == []


# --- Timeout and dwell ------------------------------------------------------------------


def test_no_signal_for_the_timeout_is_an_exit_at_the_moment_it_expired():
    entered = run([fix(0, -30)])
    outcome = presence.tick(states=entered.states, now=at(15 * 60))
    [event] = outcome.events
    assert (event.kind, event.at, event.reason) == (EXITED, at(15 * 60), "timeout")


def test_a_tick_before_the_timeout_changes_nothing():
    entered = run([fix(0, -30)])
    assert presence.tick(states=entered.states, now=at(14 * 60)).events == []


def test_a_fix_after_a_long_gap_starts_a_new_visit():
    first = run([fix(0, -30)])
    second = run([fix(3600, -30)], states=first.states, tracks=first.tracks)
    assert kinds(second) == [EXITED, ENTERED]
    assert second.events[0].at == at(15 * 60)


def test_a_dwell_is_announced_on_a_fix_once_per_visit():
    outcome = run([fix(0, -30), fix(200, -30), fix(301, -28), fix(400, -30)], dwell_minutes={5})
    dwells = [e for e in outcome.events if e.kind == DWELLED]
    assert [(e.minutes, e.at) for e in dwells] == [(5, at(300))]


def test_a_dwell_reached_in_silence_is_announced_by_the_tick():
    entered = run([fix(0, -30)], dwell_minutes={5, 20})
    outcome = presence.tick(states=entered.states, dwell_minutes={5, 20}, now=at(6 * 60))
    assert [(e.kind, e.minutes) for e in outcome.events] == [(DWELLED, 5)]
    # 20 minutes would be past the 15-minute timeout: the customer left before.
    later = presence.tick(
        states=entered.states | outcome.states, dwell_minutes={5, 20}, now=at(25 * 60)
    )
    assert [e.kind for e in later.events] == [EXITED]


@pytest.mark.parametrize("by", ["fix", "tick"])
def test_a_dwell_watched_only_after_the_visit_passed_it_is_announced_when_first_evaluated(by):
    # Inside for 30 minutes while no campaign watched 5 minutes; then one does. Announced
    # at 5 minutes, it would be history (older than the SMS validity) before it was made.
    visit = run([fix(minute * 60, -30) for minute in range(0, 31, 5)], now=at(30 * 60))
    if by == "fix":
        later = run([fix(31 * 60, -30)], visit.states, visit.tracks, dwell_minutes={5, 40})
    else:
        later = presence.tick(states=visit.states, dwell_minutes={5, 40}, now=at(31 * 60))
    assert [(e.kind, e.minutes, e.at) for e in later.events] == [(DWELLED, 5, at(31 * 60))]

    # 40 minutes, watched before the visit reached it, is announced when it was reached.
    states = visit.states | later.states
    reached = presence.tick(states=states, dwell_minutes={5, 40}, now=at(40 * 60 + 30))
    assert [(e.kind, e.minutes, e.at) for e in reached.events] == [(DWELLED, 40, at(40 * 60))]


def test_a_visit_stored_before_watched_dwells_were_recorded_announces_them_when_reached():
    stored = {
        "inside": True,
        "entered_at": at(0).isoformat(),
        "last_evidence_at": at(600).isoformat(),
        "last_at": at(0).isoformat(),
        "dwelled": [],
        "rssi": [],
        "holders": [[1, at(600).isoformat(), None]],
    }
    states = {Place(STORE): PlaceState.from_json(stored)}

    outcome = presence.tick(states=states, dwell_minutes={5}, now=at(660))

    assert [(e.kind, e.at) for e in outcome.events] == [(DWELLED, at(5 * 60))]


@pytest.mark.parametrize(
    ("metres", "accuracy"),
    [
        (2_000, 3_000),  # beyond the index's reach, but its circle reaches the store
        (300, 400),  # within reach, its circle covers the store
        (-30, 250),  # its centre is inside, but it could not have caused an entry
    ],
)
def test_vague_fixes_neither_keep_a_presence_alive_nor_make_it_dwell(metres, accuracy):
    vague = [fix(minutes * 60, metres, accuracy) for minutes in range(5, 61, 5)]
    outcome = beyond_the_index([fix(0, -30), *vague], dwell_minutes={10, 30})
    assert [(e.kind, e.at, e.reason) for e in outcome.events] == [
        (ENTERED, at(0), "fix 30 m inside (accuracy 10 m)"),
        (DWELLED, at(10 * 60), "inside 10 min"),  # reached while the first fix still held
        (EXITED, at(15 * 60), "timeout"),
    ]


def test_a_beacon_keeps_alive_a_presence_that_vague_fixes_cannot():
    # Two readings to enter, then one every 5 minutes, as a phone in the zone ranges it.
    readings = [reading(0, -60), reading(5, -60)]
    readings += [reading(minutes * 60, -60) for minutes in range(5, 41, 5)]
    vague = [fix(minutes * 60 + 1, 300, accuracy=400) for minutes in range(0, 41, 5)]
    outcome = run([*readings, *vague], dwell_minutes={30}, now=at(41 * 60))
    assert [(e.kind, e.minutes) for e in outcome.events if e.place == Place(STORE)] == [
        (ENTERED, None),
        (DWELLED, 30),
    ]


# --- Approach rings ---------------------------------------------------------------------


def test_coming_near_is_announced_once_per_approach():
    near = {STORE: {500.0}}
    outcome = run(
        [fix(0, 900), fix(60, 400), fix(120, 300), fix(180, 600), fix(240, 450)],
        near_distances=near,
    )
    ring = Place(STORE, near_m=500.0)
    assert [(e.kind, e.distance_m) for e in outcome.events if e.place == ring] == [
        (NEAR, 500.0),
        (NEAR, 500.0),  # it went beyond 500 + 50 m at 600 m, then came back
    ]


@pytest.mark.parametrize("accuracy", [10, 500])
def test_driving_off_beyond_the_index_reach_ends_an_approach(accuracy):
    # The index looks 750 m out, as the worker's does for a 500 m ring: 5 km away is beyond
    # it and beyond the ring, so coming back ten minutes on (before the ring would have
    # timed out) is an approach again, as it is after a fix 600 m out.
    def within_750_m(latitude, longitude):
        return [(s, d) for s, d in locate(latitude, longitude) if d <= 750]

    outcome = presence.advance(
        states={},
        tracks={},
        observations=[fix(0, 400), fix(60, 5_000, accuracy), fix(10 * 60, 400)],
        locate=within_750_m,
        locate_reach_m=750,
        measure=measure,
        near_distances={STORE: {500.0}},
        now=at(3600),
    )
    ring = Place(STORE, near_m=500.0)
    assert [(e.kind, e.at) for e in outcome.events if e.place == ring] == [
        (NEAR, at(0)),
        (NEAR, at(10 * 60)),
    ]


def test_walking_out_of_the_store_is_not_an_approach():
    outcome = run([fix(0, -30), fix(60, 100), fix(120, 300)], near_distances={STORE: {500.0}})
    assert [e.kind for e in outcome.events] == [ENTERED, EXITED]


@pytest.mark.parametrize(
    ("metres", "accuracy"),
    [
        (-10, 40),  # in the fence, but its circle spills over: the store stays entered
        (30, 10),  # just out, within the exit margin: still in the store
        (100, 10),  # walking out: the store is left, and the ring is not approached
        (300, 10),
    ],
)
def test_a_customer_in_the_store_by_beacons_is_never_near(metres, accuracy):
    # No fix before: the store was entered by beacons, so the ring was never entered by GPS.
    outcome = run(
        [reading(0, -60), reading(5, -60), fix(60, metres, accuracy), fix(120, 400)],
        near_distances={STORE: {500.0}},
    )
    assert NEAR not in [e.kind for e in outcome.events]
    assert outcome.states[Place(STORE, near_m=500.0)].inside


def test_leaving_the_store_beyond_the_ring_leaves_a_later_approach_to_announce():
    outcome = run(
        [reading(0, -60), reading(5, -60), fix(60, 1_500), fix(600, 400)],
        near_distances={STORE: {500.0}},
    )
    ring = Place(STORE, near_m=500.0)
    assert [(e.kind, e.at) for e in outcome.events if e.place == ring] == [(NEAR, at(600))]


def test_a_tablets_vague_fix_at_home_while_she_shops_does_not_hold_the_ring():
    # In the store by beacons; her tablet at home, a kilometre off, reports a vague fix (its
    # 95 % circle reaching the ring's margin). Her phone leaves, 800 m out at 10 minutes, and
    # comes back within the ring at 20: an approach, as without the tablet. The tablet's fix
    # is no evidence of being within the ring, and the phone, which left it, could not end
    # the hold the tablet would have had on it.
    tablet = fix(30, 1_000, accuracy=226, device=2)
    phone = [reading(0, -60), reading(5, -60), fix(10 * 60, 800), fix(20 * 60, 100)]
    ring = Place(STORE, near_m=500.0)

    outcome = run([*phone, tablet], near_distances={STORE: {500.0}})

    assert [(e.kind, e.at) for e in outcome.events if e.place == ring] == [(NEAR, at(20 * 60))]


def test_a_tablet_at_home_beyond_the_ring_does_not_make_walking_out_an_approach():
    # In the store by her phone's rangings, then the phone says nothing while she shops: the
    # visit times out. Her tablet at home, a kilometre off, reports just after, and then her
    # phone on the pavement: walking out, no approach. The tablet never had her in the store,
    # and its fix says nothing of where she went from it.
    phone = [reading(0, -60), reading(5, -60), fix(17 * 60, 100)]
    tablet = fix(16 * 60, 1_000, accuracy=20, device=2)

    outcome = run([*phone, tablet], near_distances={STORE: {500.0}})

    assert NEAR not in [e.kind for e in outcome.events]
    assert outcome.states[Place(STORE, near_m=500.0)].inside


def test_walking_out_after_a_quiet_visit_is_no_approach():
    # In the store at minute 0 and 2, then the phone says nothing while she shops (standing
    # still in a pocket): the visit times out at minute 17, and at 18 she is on the pavement.
    phone = [fix(-120, 900), fix(0, -30), fix(120, -30), fix(18 * 60, 80), fix(19 * 60, 300)]

    outcome = run(phone, near_distances={STORE: {500.0}}, now=at(20 * 60))

    assert [(e.kind, e.at) for e in outcome.events] == [(ENTERED, at(0)), (EXITED, at(17 * 60))]


@pytest.mark.parametrize("cut", [4, 5, 6], ids=["before the exit", "after it", "after beyond"])
def test_after_a_quiet_visit_going_beyond_the_ring_makes_coming_back_an_approach(cut):
    # As above, but from the pavement she walks 1.5 km away, and comes back 5 minutes on:
    # that is an approach, in however many batches the phone's fixes arrive.
    phone = [fix(-120, 900), fix(0, -30), fix(120, -30), fix(18 * 60, 80), fix(19 * 60, 1_500)]
    phone.append(fix(24 * 60, 300))

    events, _ = in_batches([phone[:cut], phone[cut:]], near_distances={STORE: {500.0}})

    assert [(e.kind, e.at) for e in events] == [
        (ENTERED, at(0)),
        (EXITED, at(17 * 60)),
        (NEAR, at(24 * 60)),
    ]


def test_a_quiet_visit_left_longer_than_the_timeout_ago_is_no_longer_just_left():
    phone = [fix(-120, 900), fix(0, -30), fix(120, -30), fix(33 * 60, 300)]
    outcome = run(phone, near_distances={STORE: {500.0}})
    assert [(e.kind, e.at) for e in outcome.events] == [
        (ENTERED, at(0)),
        (EXITED, at(17 * 60)),
        (NEAR, at(33 * 60)),
    ]


def test_vague_fixes_do_not_keep_an_approach_alive():
    # The approach ends by timeout at 15 minutes, so coming back within 500 m is a new one.
    vague = [fix(minutes * 60, 450, accuracy=300) for minutes in range(5, 20, 5)]
    outcome = run([fix(0, 400), *vague, fix(20 * 60, 400)], near_distances={STORE: {500.0}})
    assert [(e.kind, e.at) for e in outcome.events] == [(NEAR, at(0)), (NEAR, at(20 * 60))]


def test_a_near_ring_needs_an_accurate_fix():
    outcome = run([fix(0, 100, accuracy=250)], near_distances={STORE: {500.0}})
    assert outcome.events == []


@pytest.mark.parametrize(
    ("metres", "accuracy", "near"),
    [
        (490, 10, True),  # 490 + 0.5 * 10 = 495: fits the 500 m ring
        (440, 100, True),
        (480, 50, False),  # 480 + 25 > 500
        (590, 10, False),
        (590, 200, False),  # a vague fix is no closer than an accurate one at the same spot
    ],
)
def test_a_fix_is_near_when_its_distance_plus_half_its_accuracy_fits_the_ring(
    metres, accuracy, near
):
    outcome = run([fix(0, metres, accuracy)], near_distances={STORE: {500.0}})
    assert kinds(outcome, Place(STORE, near_m=500.0)) == ([NEAR] if near else [])


# --- Beacons ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("readings", "entered"),
    [
        ([(0, -60)], False),  # one reading is not enough
        ([(0, -80), (5, -80)], True),  # a median at the threshold is
        ([(0, -81), (5, -79)], True),  # median -80
        ([(0, -90), (5, -85), (10, -70)], False),  # medians -87.5, then -85
        ([(0, -60), (31, -60)], False),  # the first fell out of the 30 s window
        ([(0, -60), (30, -60)], True),  # exactly 30 s apart is "within 30 s"
        ([(0, -60), (29, -60)], True),
    ],
)
def test_a_zone_entry_needs_two_readings_whose_median_reaches_the_threshold(readings, entered):
    outcome = run([reading(s, r) for s, r in readings])
    assert kinds(outcome, Place(STORE, zone=3)) == ([ENTERED] if entered else [])


def test_a_beacon_zone_entry_is_also_a_store_entry():
    outcome = run([reading(0, -60), reading(5, -62)])
    assert [(e.kind, e.place, e.sighting) for e in outcome.events] == [
        (ENTERED, Place(STORE, zone=3), 5),
        (ENTERED, Place(STORE), 5),
    ]


def test_a_store_entered_by_gps_is_not_entered_again_by_a_beacon():
    outcome = run([fix(0, -30), reading(10, -60), reading(15, -60)])
    assert kinds(outcome) == [ENTERED]
    assert kinds(outcome, Place(STORE, zone=3)) == [ENTERED]


def test_a_gateway_without_a_zone_gives_store_evidence():
    outcome = run([reading(0, -70, zone=None), reading(3, -70, zone=None)])
    assert [(e.kind, e.place) for e in outcome.events] == [(ENTERED, Place(STORE))]


# --- State storage ----------------------------------------------------------------------


def test_a_state_survives_its_json_round_trip():
    state = PlaceState(True, at(0), at(60), at(61), (5,), ((at(55), -70), (at(60), -65)))
    assert PlaceState.from_json(state.to_json()) == state


def test_a_state_with_its_holders_survives_its_json_round_trip():
    state = PlaceState(
        True,
        at(0),
        at(60),
        at(0),
        rssi=((at(55), -70),),
        holders=(Hold(1, fix_at=at(40), reading_at=at(55)), Hold(2, fix_at=at(60))),
        released_at=at(50),
        read_at=((1, at(55)), (3, at(20))),
        watched=(5, 30),
        beyond_at=at(45),
        left_by=(1, 2),
    )
    assert PlaceState.from_json(state.to_json()) == state


def test_a_state_whose_window_names_its_devices_survives_its_json_round_trip():
    # Entries stored before the window named devices still read, beside those that do.
    state = PlaceState(rssi=((at(50), -72), (at(55), -70, 2), (at(60), -65, 1)))
    assert PlaceState.from_json(state.to_json()) == state


@pytest.mark.parametrize(
    ("holders", "fixes", "exit_at"),
    [
        # Holders stored as bare device ids: each leaves by a far fix of its own.
        ([1, 2], [fix(700, 800, device=1), fix(720, 800, device=2)], 720),
        # No holders stored (before they were recorded): any device's far fix ends the visit.
        (None, [fix(700, 800, device=3)], 700),
    ],
    ids=["holders without times", "no holders"],
)
def test_a_state_stored_in_an_older_shape_still_reads_and_ends_as_it_did(holders, fixes, exit_at):
    stored = {
        "inside": True,
        "entered_at": at(0).isoformat(),
        "last_evidence_at": at(600).isoformat(),
        "last_at": at(610).isoformat(),  # then, any evidence moved it
        "dwelled": [],
        "rssi": [],
    }
    if holders is not None:
        stored["holders"] = holders
    states = {Place(STORE): PlaceState.from_json(stored)}
    tracks = {device: Track(*point(-30), 10.0, at(600)) for device in (1, 2, 3)}

    events, _ = in_batches([[f] for f in fixes], states, tracks)

    assert [(e.kind, e.at) for e in events] == [(EXITED, at(exit_at))]


def test_a_device_given_to_another_customer_holds_its_old_owner_nowhere():
    # The phone put Léa in the store and its ring; handed over at 3 minutes, it holds her in
    # neither: she is out then, with no dwell announced.
    near = {STORE: {500.0}}
    visit = run([fix(-60, 300), fix(0, -30), fix(120, -30)], near_distances=near)

    released = presence.release_device(states=visit.states, device=1, now=at(180))

    assert [(e.kind, e.place, e.at) for e in released.events] == [(EXITED, Place(STORE), at(180))]
    assert not any(state.inside for state in released.states.values())
    ticked = presence.tick(states=visit.states | released.states, dwell_minutes={5}, now=at(600))
    assert ticked.events == []


def test_a_device_given_away_leaves_its_old_owner_held_by_their_other_devices():
    visit = run([fix(0, -30, device=1), fix(60, -30, device=2), fix(300, -30, device=1)])

    released = presence.release_device(states=visit.states, device=1, now=at(360))
    assert released.events == []
    # The watch's fix at 1 minute holds her in, until its timeout (not the phone's).
    ticked = presence.tick(states=visit.states | released.states, now=at(20 * 60))
    assert [(e.kind, e.at) for e in ticked.events] == [(EXITED, at(60 + 15 * 60))]


@pytest.mark.parametrize(
    "place", [Place(1), Place(1, zone=4), Place(12, near_m=500.0), Place(3, near_m=12.5)]
)
def test_a_place_survives_its_key(place):
    assert Place.from_key(place.key()) == place
    assert len(place.key()) <= 40


# --- Invariants -------------------------------------------------------------------------

edge_fixes = st.lists(
    st.tuples(
        st.floats(min_value=-RADIUS, max_value=RULES.exit_margin_m),
        st.floats(min_value=1.0, max_value=400.0),
    ),
    min_size=1,
    max_size=40,
)


@given(edge_fixes)
def test_gps_jitter_at_the_edge_within_the_margin_never_flaps(jitter):
    fixes = [fix(0, -30)]
    for n, (metres, accuracy) in enumerate(jitter, start=1):
        # Keep the fix within the margin once its accuracy is taken off.
        fixes.append(fix(n * 20, min(metres, RULES.exit_margin_m + 0.5 * accuracy), accuracy))
    outcome = run(fixes)
    assert kinds(outcome) == [ENTERED]


random_fixes = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3_000),
        st.floats(min_value=-60, max_value=800),
        st.floats(min_value=3, max_value=300),
    ),
    min_size=1,
    max_size=25,
    unique_by=lambda f: f[0],
)


@settings(max_examples=60)
@given(random_fixes, st.randoms(use_true_random=False))
def test_any_permutation_of_the_same_fixes_ends_in_the_same_state(raw, random):
    fixes = [fix(s, m, a, ping=s) for s, m, a in raw]
    shuffled = fixes[:]
    random.shuffle(shuffled)
    kw = {"dwell_minutes": {5}, "near_distances": {STORE: {500.0}}}
    assert run(fixes, **kw) == run(shuffled, **kw)


@settings(max_examples=60)
@given(random_fixes, st.integers(min_value=1, max_value=24))
def test_splitting_a_timeline_into_batches_gives_the_same_events(raw, cut):
    fixes = sorted((fix(s, m, a, ping=s) for s, m, a in raw), key=lambda f: f.at)
    kw = {"dwell_minutes": {5}, "near_distances": {STORE: {500.0}}}
    whole = run(fixes, **kw)
    first = run(fixes[:cut], **kw)
    second = run(fixes[cut:], states=first.states, tracks=first.tracks, **kw)
    assert first.events + second.events == whole.events


@given(
    st.lists(
        st.tuples(st.integers(min_value=30, max_value=14 * 60), st.floats(-60, -10)),
        min_size=1,
        max_size=60,
    )
)
def test_one_visit_yields_one_entry(steps):
    # Fixes inside, 30 s to 14 minutes apart: one continuous visit, however long.
    fixes, seconds = [], 0
    for n, (gap, depth) in enumerate(steps):
        seconds += gap
        fixes.append(fix(seconds, depth, ping=n))
    outcome = run(fixes, now=at(seconds + 60))
    assert kinds(outcome) == [ENTERED]


# A device's last fix, maybe a jump after it, and its new one: positions within a few km
# (or 100 km for the jump), seconds apart or hours.
moves = st.tuples(
    st.one_of(
        st.none(), st.tuples(st.floats(-3_000, 3_000), st.floats(1, 300), st.integers(0, 7_200))
    ),
    st.one_of(
        st.none(),
        st.tuples(st.floats(-100_000, 100_000), st.floats(1, 300), st.integers(0, 7_200)),
    ),
    st.tuples(st.floats(-3_000, 3_000), st.floats(1, 300), st.integers(0, 7_200), st.booleans()),
)


@settings(max_examples=300)
@given(st.lists(moves, min_size=1, max_size=30))
def test_following_many_devices_at_once_agrees_with_the_state_machine(devices):
    # The worker's fast path for customers no fix can move: tracks, jumps, teleports, mocked
    # and stale fixes must come out as the state machine has them, device by device.
    fixes, tracks, expected = [], [], []
    for device, (last, jump, (north, accuracy, seconds, mocked)) in enumerate(devices):
        new = Fix(device, *point(north), accuracy, at(seconds), mocked, ping=device)
        old = None
        if last is not None:
            held = None if jump is None else Track(*point(jump[0]), jump[1], at(jump[2]))
            old = Track(*point(last[0]), last[1], at(last[2]), jump=held)
        outcome = presence.advance(
            states={},
            tracks={} if old is None else {device: old},
            observations=[new],
            locate=lambda latitude, longitude: [],
            rules=RULES,
            now=at(7_200),
        )
        track = outcome.tracks.get(device)
        expected.append(
            (
                track is not None and track.ping == device,
                track is not None and track.jump is not None and track.jump.ping == device,
                device in outcome.suspicious,
            )
        )
        fixes.append([new.latitude, new.longitude, accuracy, new.at.timestamp(), mocked])
        row = [math.nan] * 8
        if old is not None:
            row[:4] = [*old[:3], old.at.timestamp()]
        if old is not None and old.jump is not None:
            row[4:] = [*old.jump[:3], old.jump.at.timestamp()]
        tracks.append(row)

    moved, jumped, suspicious = presence.follow_devices(np.array(fixes), np.array(tracks), RULES)

    assert list(zip(moved.tolist(), jumped.tolist(), suspicious.tolist(), strict=True)) == expected


# Fixes and beacon readings of two devices over an hour: (kind, seconds, metres or rssi,
# accuracy, device).
mixed_observations = st.lists(
    st.one_of(
        st.tuples(
            st.just("fix"),
            st.integers(0, 3_000),
            st.floats(-60, 800),
            st.floats(3, 300),
            st.integers(1, 2),
        ),
        st.tuples(
            st.just("reading"),
            st.integers(0, 3_000),
            st.integers(-95, -50),
            st.just(0.0),
            st.integers(1, 2),
        ),
    ),
    min_size=1,
    max_size=30,
    unique_by=lambda o: (o[0], o[1], o[4]),
)


def observed(raw):
    return [
        fix(s, value, accuracy, device=device, ping=n)
        if kind == "fix"
        else BeaconReading(device, STORE, 3, value, -80, at(s), sighting=n)
        for n, (kind, s, value, accuracy, device) in enumerate(raw, start=1)
    ]


MIXED = {"dwell_minutes": {5}, "near_distances": {STORE: {500.0}}}


@settings(max_examples=100)
@given(mixed_observations, st.randoms(use_true_random=False))
def test_any_permutation_of_fixes_and_readings_ends_in_the_same_state(raw, random):
    observations = observed(raw)
    shuffled = observations[:]
    random.shuffle(shuffled)
    assert run(observations, **MIXED) == run(shuffled, **MIXED)


@settings(max_examples=100)
@given(mixed_observations, st.integers(0, 3_000))
def test_splitting_fixes_and_readings_at_a_moment_gives_the_same_events(raw, cut):
    observations = sorted(observed(raw), key=lambda o: o.at)
    whole = run(observations, **MIXED)
    first = run([o for o in observations if o.at < at(cut)], **MIXED)
    second = run(
        [o for o in observations if o.at >= at(cut)],
        states=first.states,
        tracks=first.tracks,
        **MIXED,
    )
    assert first.events + second.events == whole.events


@settings(max_examples=100)
@given(mixed_observations)
def test_processing_fixes_and_readings_twice_changes_nothing(raw):
    observations = observed(raw)
    first = run(observations, **MIXED)
    again = run(observations, states=first.states, tracks=first.tracks, **MIXED)
    assert again.events == [] and again.states == {}


# Minutes in and around a store as the app reports them: every 30 s, or after 20 minutes
# (past the timeout), a request of pings and one of beacon sightings for the same period.
# The pings are those that cannot move a store on their own: too vague to enter or to leave
# (devices 1 and 2), or a tablet's at home (3).
periods = st.lists(
    st.tuples(
        st.sampled_from([30, 20 * 60]),
        st.lists(
            st.tuples(st.integers(1, 2), st.integers(0, 29), st.integers(-95, -50)),
            min_size=1,
            max_size=4,
            unique_by=lambda r: r[:2],
        ),
        st.lists(
            st.tuples(
                st.integers(1, 3), st.integers(0, 29), st.floats(-60, 300), st.floats(201, 400)
            ),
            max_size=4,
            unique_by=lambda f: f[:2],
        ),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200)
@given(periods, st.booleans())
def test_pings_and_sightings_posted_apart_end_as_they_would_together(raw, pings_first):
    batches, start = [], 0
    for gap, seen, located in raw:
        start += gap
        sightings = [
            BeaconReading(device, STORE, 3, rssi, -80, at(start + s), sighting=start + s)
            for device, s, rssi in seen
        ]
        pings = [
            fix(start + s, 5_000, device=3, ping=start + s)
            if device == 3
            else fix(start + s, min(metres, accuracy + 49), accuracy, device, ping=start + s)
            for device, s, metres, accuracy in located
        ]
        batches += [pings, sightings] if pings_first else [sightings, pings]
    kw = {"dwell_minutes": {1, 5}, "now": at(start + 30)}
    together = run([o for batch in batches for o in batch], **kw)

    events, states = in_batches(batches, **kw)

    def facts(events):
        return sorted((e.at, e.place, e.kind, e.minutes, e.sighting, e.reason) for e in events)

    assert facts(events) == facts(together.events)
    assert states == together.states


# A phone (device 1) ranging a zone's beacon and a gateway reading the card (device 2), each
# posting its readings of a moment in a request of its own, in either order: a reading each
# at most, a minute apart or more, so that neither request enters alone (one that did could
# not be entered before by the other's late reading: the watermark). At the end, maybe the
# phone's fix far out.
reading_pairs = st.lists(
    st.tuples(
        st.sampled_from([60, 20 * 60]),
        st.one_of(st.none(), st.tuples(st.integers(0, 29), st.integers(-95, -50))),
        st.one_of(st.none(), st.tuples(st.integers(0, 29), st.integers(-95, -50))),
        st.booleans(),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=200)
@given(reading_pairs, st.one_of(st.none(), st.integers(0, 120)))
def test_two_devices_readings_posted_apart_end_as_they_would_together(raw, leaves_after):
    posted_apart_against_together(raw, leaves_after, devices=(1, 2))


@settings(max_examples=200)
@given(reading_pairs, st.one_of(st.none(), st.integers(0, 120)))
def test_one_devices_readings_posted_apart_out_of_order_end_as_they_would_together(
    raw, leaves_after
):
    # The phone's tag heard by two gateways, each uploading its reading of a moment on its
    # own schedule: the later reading is often processed first.
    posted_apart_against_together(raw, leaves_after, devices=(1, 1))


def posted_apart_against_together(raw, leaves_after, devices):
    batches, start = [], 0
    for gap, phone, card, card_first in raw:
        start += gap
        requests = [
            [BeaconReading(device, STORE, 3, seen[1], -80, at(start + seen[0]))] if seen else []
            for device, seen in zip(devices, (phone, card), strict=True)
        ]
        batches += requests[::-1] if card_first else requests
    if leaves_after is not None:
        start += 30 + leaves_after
        batches.append([fix(start, 800, ping=start)])
    kw = {"dwell_minutes": {1, 5}, "now": at(start + 30)}
    together = run([o for batch in batches for o in batch], **kw)
    then = {"dwell_minutes": {1, 5}, "now": at(start + 2_000)}
    together_later = presence.tick(states=together.states, **then)

    events, states = in_batches(batches, **kw)
    later = presence.tick(states=states, **then)

    def facts(events):
        return sorted((e.at, e.place, e.kind, e.minutes, e.reason) for e in events)

    assert facts(events + later.events) == facts(together.events + together_later.events)
    assert states == together.states


# One device's readings, some uploaded late in a request of their own (a second gateway's
# buffer): those up to two windows older than the first request's latest reading are held
# and counted, so an entry whose window ends a window before that latest reading, or later,
# is found, as it is with all the readings in time order.
late_uploads = st.lists(
    st.tuples(st.integers(0, 150), st.integers(-100, -60), st.booleans()),
    min_size=2,
    max_size=12,
    unique_by=lambda r: r[0],
)


@settings(max_examples=300)
@given(late_uploads)
def test_a_late_upload_finds_the_entry_in_time_order_when_its_window_is_held(raw):
    observations = [reading(s, rssi) for s, rssi, _ in raw]
    first = [o for o, (_, _, late) in zip(observations, raw, strict=True) if not late]
    late = [o for o, (_, _, is_late) in zip(observations, raw, strict=True) if is_late]
    if not first or not late:
        return
    latest = max(o.at for o in first)
    together = run(observations)
    entries = [e.at for e in together.events if e.kind == ENTERED]
    held = all(o.at >= latest - 2 * RULES.beacon_window for o in late)
    if run(first).events or not held or any(m < latest - RULES.beacon_window for m in entries):
        return  # an entry of the first request's own, or windows no longer held whole

    events, _ = in_batches([first, late])

    # (The late request's own readings are applied one by one: its first may complete a
    # window a second later than its next would have.)
    assert [(e.kind, e.place) for e in events] == [(e.kind, e.place) for e in together.events]
