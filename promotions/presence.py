"""Where a customer is: the presence state machine, on plain values (no Django, `now` passed in).

One customer's observations (GPS fixes and beacon readings, from any of their devices) move
the state of places: a store, a beacon zone of a store, or an approach ring around a store.
The rules that real location data needs:

- A fix counts as inside a store (or an approach ring) when its distance plus a share of its
  accuracy fits the fence (or the ring), and only a fix accurate enough can cause an entry.
  Leaving needs the fix's whole accuracy circle beyond the fence by a margin, so GPS jitter
  at the edge does not flap between entered and exited. A fix between the two (in the
  margin band) whose centre is inside the fence keeps the visit (a shopper by the window);
  one whose centre is outside holds off the exit and no more: it is no evidence of being
  inside, so it keeps no visit alive, counts toward no dwell, and makes no device a holder
  (a tablet at home next to the store, the shop next door).
- A fix too vague to cause an entry cannot prove the customer is still there either: short
  of an exit, it changes nothing, and a presence only vague fixes follow ends by timeout.
  Its stated accuracy is a 68 % radius, so it exits only when twice that clears the fence
  by the margin: one cell position indoors does not split a visit in two.
- Being in a store (by any evidence), or having just left it, is no approach: its rings are
  entered without a `near`. A visit ended (by a fix or by timeout) the timeout ago or less
  is just left, until a fix of a device that held them in it has them beyond the ring: a
  phone quiet in a pocket while its owner shops, timed out, then walking out, is not
  approaching, whatever a tablet at home reports meanwhile.
- Each device has its own timeline: a fix at or before the device's last applied fix is
  stale and changes nothing. Its beacon readings are not one timeline (two gateways upload
  the tag's buffers on their own schedules, the app flushes its queue after a live ranging):
  one older than its last one here still joins the smoothing window, unless the window holds
  it already. So processing the same observations twice changes nothing. A place's watermark
  is its last entry or exit: nothing from at or before it moves the place, so a late
  observation never re-enters before an exit. Evidence that changes nothing leaves no mark:
  pings and sightings of the same minutes arrive in separate requests, processed in either
  order, and one must not make the other stale. Readings applied before an entry that comes
  earlier (its fix, or another device's reading, processed after them) keep the visit alive
  as they would have, applied after it.
- A mocked location, or a fix implying a speed no shopper reaches (a teleport), is
  suspicious: stored by the caller, but it moves no presence. A teleport is held as the
  device's jump: the next fix that agrees with the jump and not with the track confirms it
  (the phone did travel), one that agrees with the track leaves it behind as a wild fix.
- Beacon RSSI is smoothed: an entry needs several readings within a short window whose
  median reaches the zone's threshold, each reading judged against its own zone's (a store's
  window pools all its zones: the median of how far each is above its threshold); every
  device read in that window is in, by its own latest reading. A beacon zone entry is also
  an entry into its store.
- A presence with no evidence for the timeout has exited; dwells are announced while inside.
  A dwell threshold is announced when the visit reached it, unless no campaign watched it
  then (one started while the customer was already inside past it): then it is news at the
  moment it is first evaluated, not an old fact a decision would drop as history.
- A customer's devices are one customer: a place is left when the last device that put
  them there leaves it (or by timeout), not when a tablet at home reports in. Each device
  holds the customer in a place by its own latest evidence: when one leaves, a device
  silent for the timeout holds them no longer, nor a beacon unread for the beacon window
  (a card tag can send no far fix); and a far fix does not end the hold of a beacon read
  within that window (a GPS outlier indoors does not split a visit in two). Once one has
  left so, a hold by beacon readings alone lasts the beacon window and no more: the visit
  ends when it runs out, whether a far fix, another observation or the tick finds it.
"""

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from statistics import median
from typing import NamedTuple

import numpy as np

from promotions.geo import EARTH_RADIUS_M, distance_m

ENTERED, DWELLED, EXITED, NEAR = "entered", "dwelled", "exited", "near"

# The most readings a place's smoothing window holds, however many come in its two windows.
_WINDOW_CAP = 64

# How many times its accuracy a fix too vague to cause an entry must clear a fence (or ring)
# by, beyond the margin, to end a presence. A stated accuracy is a 68 % radius (Android) or
# one sigma (iOS): a cell position indoors lands outside its circle one time in three, so
# its circle clearing a small store proves nothing, and ending the visit on it would start a
# second one at the next GPS fix. Twice the radius is about the 95 % circle.
_VAGUE_EXIT_RADII = 2.0


@dataclass(frozen=True)
class Rules:
    max_entry_accuracy_m: float = 200.0
    accuracy_share: float = 0.5
    exit_margin_m: float = 50.0
    timeout: timedelta = timedelta(minutes=15)
    teleport_speed_kmh: float = 300.0
    beacon_min_sightings: int = 2
    beacon_window: timedelta = timedelta(seconds=30)


@dataclass(frozen=True)
class Place:
    """What a presence is about: a store, a beacon zone of a store, or an approach ring."""

    store: int
    zone: int | None = None
    near_m: float | None = None

    def __lt__(self, other: "Place") -> bool:
        return self._order() < other._order()

    def _order(self) -> tuple[int, int, float]:
        return (self.store, -1 if self.zone is None else self.zone, self.near_m or -1.0)

    def key(self) -> str:
        if self.zone is not None:
            return f"zone:{self.store}:{self.zone}"
        if self.near_m is not None:
            return f"near:{self.store}:{_number(self.near_m)}"
        return f"store:{self.store}"

    @classmethod
    def from_key(cls, key: str) -> "Place":
        kind, store, *rest = key.split(":")
        if kind == "zone":
            return cls(int(store), zone=int(rest[0]))
        if kind == "near":
            return cls(int(store), near_m=float(rest[0]))
        return cls(int(store))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Hold(NamedTuple):
    """What a device last said that has the customer in a place, by kind of evidence: its
    last fix there, its last beacon reading there (None: none that still counts). A far fix
    ends a GPS hold; a beacon hold outlasts it within the beacon window, so one GPS outlier
    indoors does not end a visit the beacons hold."""

    device: int
    fix_at: datetime | None = None
    reading_at: datetime | None = None

    @property
    def at(self) -> datetime:
        if self.reading_at is None or (self.fix_at is not None and self.fix_at >= self.reading_at):
            return self.fix_at
        return self.reading_at

    def merged(self, other: "Hold") -> "Hold":
        return Hold(
            self.device,
            _latest(self.fix_at, other.fix_at),
            _latest(self.reading_at, other.reading_at),
        )


def _latest(*moments: datetime | None) -> datetime | None:
    latest = None
    for at in moments:
        if at is not None and (latest is None or at > latest):
            latest = at
    return latest


@dataclass
class PlaceState:
    inside: bool = False
    entered_at: datetime | None = None
    # The newest evidence of a device still holding the customer here: the timeout runs
    # from it.
    last_evidence_at: datetime | None = None
    # The place's last transition (its entry or exit): nothing from at or before it moves
    # the place, so a late observation never re-enters before an exit. Only transitions
    # move it: evidence that changes nothing must not block other devices' evidence of the
    # same moments, arriving in another batch. (States stored before held the newest
    # evidence of any kind here: a later time, so only stricter.)
    last_at: datetime | None = None
    dwelled: tuple[int, ...] = ()
    # The smoothing window's readings: (at, rssi, device, threshold), oldest first. The device
    # says who an entry's readings put in; the threshold is the reading's zone's, as a store's
    # window holds readings of all its zones (states stored before held (at, rssi) alone, or
    # (at, rssi, device)).
    rssi: tuple[
        tuple[datetime, int] | tuple[datetime, int, int] | tuple[datetime, int, int, int], ...
    ] = ()
    # The devices whose latest evidence has the customer here, each with its own times:
    # one of them leaving is not the customer leaving while another still says they are
    # in, but one silent for the timeout says nothing any more.
    holders: tuple[Hold, ...] = ()
    # When a holder last left while others still held: the moment the last one out leaves
    # is no earlier, even if its fix arrives after that holder's.
    released_at: datetime | None = None
    # Each device's last beacon reading applied here, after the place's last entry or exit
    # (one at or before it is stale anyway): inside, an older reading of the device adds
    # nothing to its hold; outside, one older still joins the window unless it holds it.
    read_at: tuple[tuple[int, datetime], ...] = ()
    # The dwell thresholds watched when the visit was last evaluated: one not among them was
    # not watched when the visit passed it. None: stored before this was recorded (taken as
    # all watched, as they were then).
    watched: tuple[int, ...] | None = None
    # An approach ring's: the last time a fix had the customer beyond it while nothing held
    # them in it. After it, leaving the store is an approach again.
    beyond_at: datetime | None = None
    # A store's: the devices that held the customer in it when they last left it. Only their
    # fixes tell where the customer went from it (a tablet at home held nothing). Empty:
    # not recorded (stored before this was), any device's tell.
    left_by: tuple[int, ...] = ()

    def mark(self, at: datetime) -> None:
        """Move the watermark to a transition at `at`. The readings noted at or before it say
        nothing any more (the watermark refuses them already): they go, so a place visited by
        a new device id every month does not keep them all."""
        self.last_at = _latest(self.last_at, at)
        self.read_at = tuple(entry for entry in self.read_at if entry[1] > self.last_at)

    def reading_watermark(self, device: int) -> datetime | None:
        for reader, at in self.read_at:
            if reader == device:
                return at
        return None

    def note_reading(self, device: int, at: datetime) -> None:
        for n, (reader, noted) in enumerate(self.read_at):
            if reader == device:
                latest = (device, max(noted, at))
                self.read_at = (*self.read_at[:n], latest, *self.read_at[n + 1 :])
                return
        self.read_at = tuple(sorted((*self.read_at, (device, at))))

    def to_json(self) -> dict:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "inside": self.inside,
            "entered_at": iso(self.entered_at),
            "last_evidence_at": iso(self.last_evidence_at),
            "last_at": iso(self.last_at),
            "dwelled": list(self.dwelled),
            "rssi": [[at.isoformat(), *rest] for at, *rest in self.rssi],
            "holders": [[h.device, iso(h.fix_at), iso(h.reading_at)] for h in self.holders],
            "released_at": iso(self.released_at),
            "read_at": [[device, at.isoformat()] for device, at in self.read_at],
            "watched": None if self.watched is None else list(self.watched),
            "beyond_at": iso(self.beyond_at),
            "left_by": list(self.left_by),
        }

    @classmethod
    def from_json(cls, data: Mapping) -> "PlaceState":
        def when(value: str | None) -> datetime | None:
            return datetime.fromisoformat(value) if value else None

        last_evidence_at = when(data.get("last_evidence_at"))
        entered_at = when(data.get("entered_at"))
        watched = data.get("watched")
        holders = []
        for holder in data.get("holders", ()):
            if isinstance(holder, int):
                # Stored as a bare device id, before holders had times: its evidence is at
                # most the place's newest, and a far fix of its own ends it.
                holders.append(Hold(holder, fix_at=last_evidence_at or entered_at))
            else:
                device, fix_at, reading_at = holder
                holders.append(Hold(int(device), when(fix_at), when(reading_at)))
        return cls(
            inside=bool(data.get("inside", False)),
            entered_at=entered_at,
            last_evidence_at=last_evidence_at,
            last_at=when(data.get("last_at")),
            dwelled=tuple(data.get("dwelled", ())),
            rssi=tuple(
                (datetime.fromisoformat(at), *map(int, rest)) for at, *rest in data.get("rssi", ())
            ),
            holders=tuple(holders),
            released_at=when(data.get("released_at")),
            read_at=tuple(
                (int(device), datetime.fromisoformat(at)) for device, at in data.get("read_at", ())
            ),
            watched=None if watched is None else tuple(map(int, watched)),
            beyond_at=when(data.get("beyond_at")),
            left_by=tuple(map(int, data.get("left_by", ()))),
        )


# Fixes and tracks are NamedTuples: a worker builds thousands a batch, at half what a frozen
# dataclass costs to build.
class Track(NamedTuple):
    """A device's last trusted GPS fix, the teleport check's origin, and the teleport that
    followed it, if any, held until a fix confirms or refutes it."""

    latitude: float
    longitude: float
    accuracy: float
    at: datetime
    ping: int | None = None  # the stored ping it came from, when it did
    jump: "Track | None" = None

    @property
    def last_at(self) -> datetime:
        """The device's timeline watermark: its last fix, trusted or not."""
        return self.at if self.jump is None else max(self.at, self.jump.at)


class Fix(NamedTuple):
    device: int
    latitude: float
    longitude: float
    accuracy: float
    at: datetime
    mocked: bool = False
    ping: int | None = None


@dataclass(frozen=True)
class BeaconReading:
    device: int
    store: int
    zone: int | None
    rssi: int
    threshold: int
    at: datetime
    sighting: int | None = None


@dataclass(frozen=True)
class Event:
    kind: str
    place: Place
    at: datetime
    minutes: int | None = None
    distance_m: float | None = None
    ping: int | None = None
    sighting: int | None = None
    reason: str = ""


@dataclass
class Outcome:
    events: list[Event] = field(default_factory=list)
    states: dict[Place, PlaceState] = field(default_factory=dict)
    tracks: dict[int, Track] = field(default_factory=dict)
    suspicious: list[int] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)


# locate(latitude, longitude) -> [(store, signed metres from its fence: negative inside)] for
# every store within the widest approach ring plus the exit margin.
Locate = Callable[[float, float], list[tuple[int, float]]]
# measure(store, latitude, longitude) -> signed metres from the store's fence, or None when
# it has none (deleted since): for a store the customer is in that `locate` left out.
Measure = Callable[[int, float, float], float | None]


class _Run:
    """One customer's states while observations are applied; records what changed."""

    def __init__(
        self,
        states: Mapping[Place, PlaceState],
        tracks: Mapping[int, Track],
        dwell_minutes: Collection[int],
        near_distances: Mapping[int, Collection[float]],
        rules: Rules,
    ) -> None:
        self.states = {place: replace(state) for place, state in states.items()}
        self.tracks = dict(tracks)
        self.dwell_minutes = sorted(set(dwell_minutes))
        self.near_distances = near_distances
        self.rules = rules
        self.locate_reach_m = math.inf
        self.measure: Measure | None = None
        self.outcome = Outcome()
        self.changed: set[Place] = set()
        self.entered: set[Place] = set()
        # The times of the readings this run has yet to apply, by place they feed: a window
        # is judged at a moment only once every reading of the run up to it is in it.
        self.pending: dict[Place, deque[datetime]] = {}
        # The places whose windows from the next pending reading's time on were left to it.
        self.deferred: set[Place] = set()

    def state(self, place: Place) -> PlaceState:
        if place not in self.states:
            self.states[place] = PlaceState()
        return self.states[place]

    def emit(self, kind: str, place: Place, at: datetime, **details) -> None:
        self.outcome.events.append(Event(kind, place, at, **details))

    # --- entering, staying, leaving -----------------------------------------------------

    def enter(self, place: Place, at: datetime, holders: tuple[Hold, ...], **evidence) -> None:
        """Enter the place at `at`, held by `holders`. Beacon readings from after `at` already
        applied here (another request's, processed first) are the visit's evidence as if
        they had come after the entry: they keep it alive."""
        state = self.state(place)
        state.inside, state.entered_at, state.last_evidence_at = True, at, at
        state.dwelled, state.holders, state.released_at = (), holders, None
        state.left_by = ()
        if place.near_m is None:
            state.watched = tuple(self.dwell_minutes)
        # The smoothing window has done its work: inside, readings only keep the visit alive.
        state.rssi = ()
        state.mark(at)
        self.changed.add(place)
        self.entered.add(place)
        if place.near_m is None:
            self.emit(ENTERED, place, at, **evidence)
        for device, read_at in state.read_at:
            self.stay(place, Hold(device, reading_at=read_at))
        if state.read_at:
            self.dwell(place, state.last_evidence_at)

    def stay(self, place: Place, hold: Hold) -> None:
        state = self.state(place)
        state.last_evidence_at = _latest(state.last_evidence_at, hold.at)
        holders = state.holders
        for n, held in enumerate(holders):
            if held.device == hold.device:
                state.holders = (*holders[:n], held.merged(hold), *holders[n + 1 :])
                break
        else:
            state.holders = tuple(sorted((*holders, hold)))
        self.changed.add(place)

    def let_go(self, place: Place, device: int, at: datetime) -> bool:
        """A fix late for the place (at or before its last entry or exit) is still its own
        device's latest word (stale ones never get here): if the device held the customer in
        the place, it says they left. Whether the place is to be left now, no device holding
        it any more."""
        state = self.states.get(place)
        if state is None or not state.inside:
            return False
        if all(hold.device != device for hold in state.holders):
            return False
        return self.release(place, device, at)

    def release(self, place: Place, device: int, at: datetime) -> bool:
        """The device's far fix at `at` says the customer is out of the place: its GPS hold
        ends, and its beacon hold too unless it read a beacon here within the beacon window
        (a GPS outlier indoors, between two readings). Its word also ends the holds that have
        gone quiet by then: other devices' fixes older than the timeout (a watch whose app
        stopped), readings older than the beacon window (a card tag no gateway sees any more,
        which can send no far fix of its own). A device that held nothing here (a tablet at
        home) ends nothing. Whether nothing holds the customer here any more."""
        state = self.state(place)
        if all(hold.device != device for hold in state.holders):
            # A presence stored before holders were recorded has none: any far fix ends it.
            return not state.holders
        rules = self.rules
        held_by = tuple(sorted({hold.device for hold in state.holders}))
        kept = []
        for hold in state.holders:
            fix_at, reading_at = hold.fix_at, hold.reading_at
            if hold.device == device or (fix_at is not None and fix_at + rules.timeout <= at):
                fix_at = None
            if reading_at is not None and reading_at + rules.beacon_window < at:
                reading_at = None
            if fix_at is not None or reading_at is not None:
                kept.append(Hold(hold.device, fix_at, reading_at))
        state.holders = tuple(kept)
        if kept:
            state.last_evidence_at = max(hold.at for hold in kept)
            if all(hold.device != device for hold in kept):
                state.released_at = _latest(state.released_at, at)
        else:
            state.left_by = held_by
        self.changed.add(place)
        return not kept

    def leaving_moment(self, place: Place, at: datetime) -> datetime:
        """When the customer left the place, on the far fix at `at` of the last device out:
        not before another holder left it, even one whose fix arrived first, nor before the
        place's last entry or exit."""
        state = self.state(place)
        return _latest(at, state.last_at, state.released_at)

    def leave(self, place: Place, at: datetime, **evidence) -> None:
        state = self.state(place)
        if not state.inside:
            return
        if state.holders:  # a timeout, or a device given away (a far fix's release records it)
            state.left_by = tuple(sorted({hold.device for hold in state.holders}))
        state.inside, state.entered_at, state.dwelled, state.rssi = False, None, (), ()
        state.holders, state.released_at, state.watched = (), None, None
        # The exit is the place's newest fact: an observation from before it, arriving late
        # (after a timeout exit, say), must not start a visit earlier than the exit.
        state.mark(at)
        self.changed.add(place)
        if place.near_m is None:
            self.emit(EXITED, place, at, **evidence)

    def held_until(self, state: PlaceState) -> datetime:
        """When the presence ends if no new evidence comes: the timeout after the newest
        evidence of a device holding it. Once a holder has left (`released_at`), a hold by
        beacon readings alone lasts the beacon window only, as a far fix would find it then:
        a card tag sends no far fix of its own, and the device that came with it has said
        the customer left."""
        timeout = self.rules.timeout
        if state.released_at is None or not state.holders:
            return state.last_evidence_at + timeout
        return max(
            hold.reading_at + self.rules.beacon_window if hold.fix_at is None else hold.at + timeout
            for hold in state.holders
        )

    def expire(self, at: datetime) -> None:
        """Everything whose evidence is older than the timeout at `at` has exited, and what
        only beacons unread for the window held once a holder had left (a beacon hold is
        ended only after its window: read exactly the window before, it still holds)."""
        for place, state in sorted(self.states.items()):
            if not state.inside:
                continue
            ended = self.held_until(state)
            if ended > at or (ended == at and state.released_at is not None):
                continue
            # Not before the last holder out left, nor before the entry. Like any timeout, it
            # announces the dwells reached by then (decisions reads a "timeout" exit so).
            ended = _latest(ended, state.released_at, state.last_at)
            self.dwell(place, ended)
            if place.zone is None and place.near_m is None:
                # A zone is held by the same readings, but no far fix releases it: it goes
                # with its store, unless its own timeout comes first.
                for zone in self.places_of_store(place.store):
                    zone_state = self.states[zone]
                    if zone_state.inside and self.held_until(zone_state) > ended:
                        self.dwell(zone, ended)
                        self.leave(zone, ended, reason="timeout")
            self.leave(place, ended, reason="timeout")

    def dwell(self, place: Place, at: datetime) -> None:
        """Announce the dwell thresholds reached by `at` (not past the presence's timeout,
        counted from the devices still holding it). One the visit passed before it was
        watched is announced at `at`, when it is first evaluated: backdated to when it was
        reached, it would be history before anyone could act on it."""
        state = self.states.get(place)
        if not state or not state.inside or place.near_m is not None:
            return
        alive_until = self.held_until(state)
        for minutes in self.dwell_minutes:
            reached = state.entered_at + timedelta(minutes=minutes)
            if minutes not in state.dwelled and reached <= min(at, alive_until):
                if state.watched is not None and minutes not in state.watched:
                    reached = at
                state.dwelled = (*state.dwelled, minutes)
                self.changed.add(place)
                self.emit(DWELLED, place, reached, minutes=minutes, reason=f"inside {minutes} min")
        watched = tuple(self.dwell_minutes)
        if state.watched != watched:
            state.watched = watched
            self.changed.add(place)

    def places_of_store(self, store: int) -> Iterable[Place]:
        return [p for p in self.states if p.store == store and p.near_m is None and p.zone]

    # --- observations -------------------------------------------------------------------

    def apply_fix(self, fix: Fix, locate: Locate) -> None:
        rules = self.rules
        if not _follow(self.tracks, fix, rules, self.outcome):
            return
        self.expire(fix.at)

        share = rules.accuracy_share * fix.accuracy
        precise = fix.accuracy <= rules.max_entry_accuracy_m
        exit_radius = _exit_radius(fix, rules)
        distances = dict(locate(fix.latitude, fix.longitude))
        # A store or ring the customer is in has an exit to judge however far the fix. One
        # `locate` left out is measured: a cell position kilometres away, its circle far
        # wider than what `locate` looks at, is still a shopper who left.
        held = {p.store for p, s in self.states.items() if s.inside and p.zone is None}
        if self.measure is not None:
            for store in held - distances.keys():
                measured = self.measure(store, fix.latitude, fix.longitude)
                if measured is not None:
                    distances[store] = measured
        stores = distances.keys() | held
        evidence = {"ping": fix.ping}
        here = Hold(fix.device, fix_at=fix.at)
        for store in sorted(stores):
            distance = distances.get(store)
            place = Place(store)
            state = self.state(place)
            # Leaving needs the whole accuracy circle beyond the margin (a vague fix's 95 %
            # circle): a vague fix whose centre lands outside proves little, and would flap a
            # customer out and back in.
            # A store neither located nor measured (no fence any more) is at least
            # `locate_reach_m` away.
            at_least = distance if distance is not None else self.locate_reach_m
            far = at_least - exit_radius > rules.exit_margin_m
            was_inside = state.inside
            if state.last_at is not None and fix.at <= state.last_at:
                if far and self.let_go(place, fix.device, fix.at):
                    moment = self.leaving_moment(place, fix.at)
                    self.leave_store(store, moment, distance, evidence)
                # Each ring has a watermark of its own.
                self._rings(store, distance, share, precise, fix, was_inside)
                continue
            inside_now = distance is not None and precise and distance + share <= 0
            if state.inside:
                if far and self.release(place, fix.device, fix.at):
                    moment = self.leaving_moment(place, fix.at)
                    self.leave_store(store, moment, distance, evidence)
                elif inside_now or (precise and distance is not None and distance <= 0):
                    # A fix whose centre is inside, its circle reaching past the wall (a
                    # shopper by the window), is still the customer in the store.
                    self.stay(place, here)
                    self.dwell(place, fix.at)
                # A fix in the margin band whose centre is outside holds off the exit, no more:
                # it proves no one inside (the shop next door, a tablet at home across the
                # street), so it keeps the visit alive no longer, adds no dwell, and makes no
                # device a holder. A vague fix that is not far proves neither: 20 km off with a
                # 3 km circle would otherwise keep a presence alive, and dwelling, for as long
                # as it lasts.
            elif inside_now:
                why = f"fix {-distance:.0f} m inside (accuracy {fix.accuracy:.0f} m)"
                self.enter(place, fix.at, (here,), reason=why, **evidence)
            # A fix that changed nothing here leaves no mark on the place: its own device's
            # track already makes it stale for a second run, and another device's evidence of
            # the same moments (a beacon reading posted in the next request) must still count.
            self._rings(store, distance, share, precise, fix, was_inside or state.inside)

    def leave_store(self, store: int, at: datetime, distance: float | None, evidence: dict) -> None:
        """Leave the store and its zones, on a fix `distance` from its fence (None: beyond
        what `locate` looks at)."""
        why = "no fence nearby" if distance is None else f"fix {distance:.0f} m out"
        for zone in self.places_of_store(store):
            self.leave(zone, at, reason=why, **evidence)
        self.leave(Place(store), at, reason=why, **evidence)

    def _rings(
        self,
        store: int,
        distance: float | None,
        share: float,
        precise: bool,
        fix: Fix,
        in_store: bool,
    ) -> None:
        """`in_store`: the customer is in the store, or was until this fix, by any evidence
        (beacons too, which never enter a ring themselves)."""
        here = Hold(fix.device, fix_at=fix.at)
        exit_radius = _exit_radius(fix, self.rules)
        left_at = self.just_left(store, fix.at)
        for radius in sorted(self.near_distances.get(store, ())):
            ring = Place(store, near_m=float(radius))
            state = self.state(ring)
            # As for a store, the accuracy counts against the customer: a vague fix just
            # beyond the ring must not read as an approach.
            within = distance is not None and precise and distance + share <= radius
            at_least = distance if distance is not None else self.locate_reach_m
            beyond = at_least - exit_radius > radius + self.rules.exit_margin_m
            if state.last_at is not None and fix.at <= state.last_at:
                if beyond and self.let_go(ring, fix.device, fix.at):
                    self.leave_ring(ring, self.leaving_moment(ring, fix.at))
                continue
            # Just out of the store, and not beyond the ring since.
            walking_out = left_at is not None and not _not_after(left_at, state.beyond_at)
            # In the ring as far as keeping the customer in it goes: the circle reaching it.
            in_ring = precise and distance is not None and distance - share <= radius
            if state.inside:
                if beyond:
                    if self.release(ring, fix.device, fix.at):
                        self.leave_ring(ring, self.leaving_moment(ring, fix.at))
                elif in_ring:
                    self.stay(ring, here)
            elif in_store or walking_out:
                # Shopping, or walking out after shopping, is not an approach: the ring counts
                # as entered. Unless the fix is already beyond it: coming back is an approach.
                # A vague fix neither beyond nor in it (a tablet at home a kilometre off, its
                # circle wide) proves neither: as its holder, that device would keep the ring
                # entered when the phone that walks out goes beyond it.
                if in_ring:
                    self.enter(ring, fix.at, (here,))
                elif beyond and walking_out and self.went_with(store, fix.device):
                    state.beyond_at = fix.at
                    self.changed.add(ring)
            elif within and distance + share > 0:
                self.enter(ring, fix.at, (here,))
                self.emit(
                    NEAR,
                    Place(store, near_m=float(radius)),
                    fix.at,
                    distance_m=float(radius),
                    ping=fix.ping,
                    reason=f"fix {distance:.0f} m from the fence",
                )

    def just_left(self, store: int, at: datetime) -> datetime | None:
        """When the customer left the store, if that was the timeout before `at` or less
        (whether a fix or the timeout ended the visit): walking out is no approach."""
        state = self.states.get(Place(store))
        if state is None or state.inside or state.last_at is None:
            return None
        return state.last_at if at <= state.last_at + self.rules.timeout else None

    def went_with(self, store: int, device: int) -> bool:
        """Whether the device's fixes tell where the customer went from the store they left:
        it held them in it (or who did is not recorded)."""
        left_by = self.state(Place(store)).left_by
        return not left_by or device in left_by

    def leave_ring(self, ring: Place, at: datetime) -> None:
        """Leave the approach ring on fixes beyond it: coming back is an approach, even
        just after leaving the store."""
        self.leave(ring, at)
        self.state(ring).beyond_at = at

    def expect_reading(self, reading: BeaconReading) -> None:
        """Note a reading this run will apply (in time order, after those noted before)."""
        for place in _places_fed(reading):
            self.pending.setdefault(place, deque()).append(reading.at)

    def apply_reading(self, reading: BeaconReading) -> None:
        self.expire(reading.at)
        evidence = {"sighting": reading.sighting}
        store_place = Place(reading.store)
        places = _places_fed(reading)
        # The reading's own time leaves each place's pending times: what is left is the next
        # reading of this run the place will see, which judges the windows from its time on.
        until = {}
        for place in places:
            pending = self.pending.get(place)
            if pending:
                pending.popleft()
            until[place] = pending[0] if pending else None
        for place in places:
            state = self.state(place)
            # Nothing from before the place's last entry or exit moves it.
            if _not_after(reading.at, state.last_at):
                continue
            if not self._applied(state, reading):
                state.note_reading(reading.device, reading.at)
                self.changed.add(place)
                if state.inside:
                    self.stay(place, Hold(reading.device, reading_at=reading.at))
                    self.dwell(place, reading.at)
                    continue
                self._hold_rssi(state, reading)
            elif state.inside or not state.rssi or place not in self.deferred:
                continue
            # A reading held already (the same one from a second gateway) still judges the
            # windows an earlier reading of this run left to it.
            self.deferred.discard(place)
            if until[place] is not None and until[place] <= reading.at + self.rules.beacon_window:
                self.deferred.add(place)
            entry = self._strong_moment(state, reading, until[place])
            if entry is None:
                continue
            moment, why = entry
            holders = self._readers(state, moment, reading)
            store_state = self.state(store_place)
            if place != store_place and not store_state.inside:
                # The zone entry would enter the store too: not at a moment the store's
                # state has already moved past (a late reading from before its exit).
                if _not_after(moment, store_state.last_at):
                    continue
                self.enter(place, moment, holders, reason=why, **evidence)
                self.enter(store_place, moment, holders, reason=why, **evidence)
                break
            self.enter(place, moment, holders, reason=why, **evidence)

    def _applied(self, state: PlaceState, reading: BeaconReading) -> bool:
        """Whether the reading was applied here already, or can change nothing. A device's
        readings are not one timeline: two gateways upload the same tag's buffers on their
        own schedules, and the app flushes the rangings it queued after a live one. So one at
        or before its device's last reading here still counts toward an entry, unless the
        smoothing window holds it already (a batch processed twice) or would not keep it.
        Inside, each device holds by its latest reading: an older one adds nothing."""
        if not _not_after(reading.at, state.reading_watermark(reading.device)):
            return False
        if state.inside or not state.rssi:
            # An empty window with a mark of the device's: readings applied while inside,
            # after an entry or exit that came earlier.
            return True
        item, rssi = _window_item(reading), state.rssi
        if item[0] < rssi[-1][0] - 2 * self.rules.beacon_window:
            return True
        if len(rssi) >= _WINDOW_CAP and item < rssi[0]:
            return True
        # The same reading whatever its threshold then (its zone's may have been edited since).
        # Windows stored before they named devices hold (at, rssi) alone.
        return any(held[:3] == item[:3] or held == item[:2] for held in rssi)

    def _hold_rssi(self, state: PlaceState, reading: BeaconReading) -> None:
        """Add the reading to the place's smoothing window. Two windows are held: a reading
        up to a window late still finds the whole window of each reading after it."""
        rssi, item = state.rssi, _window_item(reading)
        held = (*rssi, item) if not rssi or item[0] > rssi[-1][0] else tuple(sorted((*rssi, item)))
        oldest, first = held[-1][0] - 2 * self.rules.beacon_window, 0
        while held[first][0] < oldest:
            first += 1
        state.rssi = held[max(first, len(held) - _WINDOW_CAP) :]

    def _strong_moment(
        self, state: PlaceState, reading: BeaconReading, until: datetime | None = None
    ) -> tuple[datetime, str] | None:
        """The first moment, from the reading's on, at which the window's readings make an
        entry, and why. A reading that arrived late (another device's, or another gateway's
        upload of the same device, posted in another request) completes the windows of the
        readings after it, as it would have done applied in time order. Not those from
        `until` on, the time of the run's next reading here: they lack it and the readings
        after it (a late upload's faint readings, applied one by one, would otherwise let its
        first and a strong one already held make a window the faint ones make too weak); that
        reading judges them."""
        window, needed = self.rules.beacon_window, self.rules.beacon_min_sightings
        # Only windows the held readings cover whole are judged: two windows back from the
        # latest are held, so those ending a window before it or later. A reading more than a
        # window late still completes those (a strong reading, then a faint one 30 s on:
        # another gateway's strong one of just before the first makes two within 30 s).
        start = max(reading.at, state.rssi[-1][0] - window)
        for moment, *_ in state.rssi[bisect_left(state.rssi, (start,)) :]:
            if moment > reading.at + window or (until is not None and moment >= until):
                break
            # "2 sightings within 30 s": 30 s apart counts. Each reading is judged against its
            # own zone's threshold: a store's window pools its zones, and a strict zone's weak
            # readings must not pass by a lenient zone's threshold. Items stored before they
            # held one are judged by this reading's.
            margins = [
                item[1] - (item[3] if len(item) > 3 else reading.threshold)
                for item in state.rssi
                if moment - window <= item[0] <= moment
            ]
            margin = median(margins)
            if len(margins) >= needed and margin >= 0:
                why = (
                    f"median rssi {margin:.0f} dB above the threshold over {len(margins)} readings"
                )
                return moment, why
        return None

    def _readers(
        self, state: PlaceState, moment: datetime, reading: BeaconReading
    ) -> tuple[Hold, ...]:
        """Who an entry at `moment` puts in: every device read in its window, each by its own
        latest reading there. The reading that completed the window may be another device's,
        arriving late in another request: the entry is still the others' too, as it is
        applied in time order, and the hold of each keeps its own time."""
        latest = {reading.device: reading.at}
        for at, _, *named in state.rssi:
            if named and moment - self.rules.beacon_window <= at <= moment:
                device = named[0]
                latest[device] = max(at, latest.get(device, at))
        return tuple(Hold(device, reading_at=at) for device, at in sorted(latest.items()))

    def finish(self, original: Mapping[Place, PlaceState]) -> Outcome:
        # A place the customer never entered and that was not stored needs no row: the
        # device's timeline already guards it against stale fixes. One entered, even if left
        # again in this run, keeps its row: its watermark is all that stops a late reading, or
        # another device's late fix, from starting a visit before the exit.
        self.outcome.states = {
            place: self.states[place]
            for place in sorted(self.changed)
            if place in original
            or place in self.entered
            or self.states[place].rssi
            # Beyond an approach ring just after leaving the store: what makes coming back
            # an approach again, in a later batch too.
            or self.states[place].beyond_at
        }
        # Stable: events of one instant keep the order they were emitted in.
        self.outcome.events.sort(key=lambda e: e.at)
        return self.outcome


def _places_fed(reading: BeaconReading) -> list[Place]:
    """The places whose windows a reading feeds: its zone's, if it has one, then its store's."""
    store = Place(reading.store)
    return [Place(reading.store, zone=reading.zone), store] if reading.zone is not None else [store]


def _window_item(reading: BeaconReading) -> tuple[datetime, int, int, int]:
    return (reading.at, reading.rssi, reading.device, reading.threshold)


def _exit_radius(fix: Fix, rules: Rules) -> float:
    """How far around its centre a fix may put the customer, for leaving: its accuracy, or
    for one too vague to cause an entry, its 95 % circle."""
    if fix.accuracy <= rules.max_entry_accuracy_m:
        return fix.accuracy
    return _VAGUE_EXIT_RADII * fix.accuracy


def _not_after(at: datetime, mark: datetime | None) -> bool:
    return mark is not None and at <= mark


def _follow(tracks: dict[int, Track], fix: Fix, rules: Rules, outcome: Outcome) -> bool:
    """Move the fix's device along its own timeline; whether the fix may move presence. A
    mocked fix is suspicious, uploaded late or not; a stale one (at or before the device's
    last) changes nothing. A teleport from the track is suspicious and becomes the device's
    jump, unless it agrees with the jump already held: then two fixes say the phone is there,
    and it moves on."""
    if fix.mocked:
        if fix.ping is not None:
            outcome.suspicious.append(fix.ping)
        return False
    track = tracks.get(fix.device)
    if track is not None and fix.at <= track.last_at:
        if fix.ping is not None:
            outcome.stale.append(fix.ping)
        return False
    here = Track(fix.latitude, fix.longitude, fix.accuracy, fix.at, fix.ping)
    limit = rules.teleport_speed_kmh
    if (
        track is None
        or not _teleport(track, fix, limit)
        or (track.jump is not None and not _teleport(track.jump, fix, limit))
    ):
        tracks[fix.device] = outcome.tracks[fix.device] = here
        return True
    tracks[fix.device] = outcome.tracks[fix.device] = track._replace(jump=here)
    if fix.ping is not None:
        outcome.suspicious.append(fix.ping)
    return False


def follow_devices(
    fixes: np.ndarray, tracks: np.ndarray, rules: Rules
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_follow` for many devices at once, one fix each, for customers no fix can move (the
    caller knows: no place stored, no fence near): which fixes move their device's track,
    which become its jump, and which are suspicious.

    `fixes` has a row (latitude, longitude, accuracy, seconds since the epoch, mocked) per
    fix; `tracks` a row (latitude, longitude, accuracy, seconds, then the same four for the
    jump) for the fix's device, NaN where it has none. Seconds are µs-exact floats, so they
    order as the datetimes do."""
    mocked = fixes[:, 4].astype(bool)
    has_track = ~np.isnan(tracks[:, 3])
    last_at = np.fmax(tracks[:, 3], tracks[:, 7])
    stale = has_track & (fixes[:, 3] <= np.where(has_track, last_at, -np.inf))
    usable = ~stale & ~mocked
    # NaN (no track, no jump) compares false: no teleport from nowhere, and no confirmation.
    teleport = _too_fast(tracks[:, :4], fixes[:, :4], rules.teleport_speed_kmh)
    confirmed = ~np.isnan(tracks[:, 7]) & ~_too_fast(
        tracks[:, 4:], fixes[:, :4], rules.teleport_speed_kmh
    )
    jumps = usable & teleport & ~confirmed
    # A mocked location is suspicious whenever it arrives: a late one too (an offline queue).
    return usable & ~jumps, jumps, mocked | jumps


def _too_fast(origins: np.ndarray, fixes: np.ndarray, limit_kmh: float) -> np.ndarray:
    """`_teleport` by rows of (latitude, longitude, accuracy, seconds); false where an origin
    is NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        lat1, lat2 = np.radians(origins[:, 0]), np.radians(fixes[:, 0])
        lon1, lon2 = np.radians(origins[:, 1]), np.radians(fixes[:, 1])
        h = (
            np.sin((lat2 - lat1) / 2) ** 2
            + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
        )
        distance = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(h)))
        moved = np.maximum(0.0, distance - origins[:, 2] - fixes[:, 2])
        seconds = fixes[:, 3] - origins[:, 3]
        return (moved > 0) & ((seconds <= 0) | (moved / seconds * 3.6 > limit_kmh))


def _teleport(track: Track, fix: Fix, limit_kmh: float) -> bool:
    """Whether going from the track to the fix needs a speed over the limit. The accuracy
    circles are taken off the distance: two vague fixes far apart prove no movement."""
    apart = distance_m((track.longitude, track.latitude), (fix.longitude, fix.latitude))
    moved = max(0.0, apart - track.accuracy - fix.accuracy)
    seconds = (fix.at - track.at).total_seconds()
    if moved == 0:
        return False
    return seconds <= 0 or moved / seconds * 3.6 > limit_kmh


def _order(observation: Fix | BeaconReading) -> tuple:
    # Time first; at one instant, fixes before readings, then a stable key, so that any
    # permutation of the same observations is applied in the same order.
    if isinstance(observation, Fix):
        return (
            observation.at,
            0,
            observation.device,
            observation.ping or 0,
            observation.latitude,
            observation.longitude,
            observation.accuracy,
        )
    return (
        observation.at,
        1,
        observation.device,
        observation.sighting or 0,
        observation.store,
        observation.zone or 0,
        observation.rssi,
    )


def advance(
    *,
    states: Mapping[Place, PlaceState],
    tracks: Mapping[int, Track],
    observations: Sequence[Fix | BeaconReading],
    locate: Locate,
    locate_reach_m: float = math.inf,
    measure: Measure | None = None,
    dwell_minutes: Collection[int] = (),
    near_distances: Mapping[int, Collection[float]] | None = None,
    rules: Rules = Rules(),
    now: datetime,
) -> Outcome:
    """Apply one customer's observations, in time order, to their places' states.
    `locate_reach_m`: how far `locate` looks; `measure`: the distance to a store the customer
    is in that `locate` leaves out. A store neither returns is at least `locate_reach_m` away."""
    run = _Run(states, tracks, dwell_minutes, near_distances or {}, rules)
    run.locate_reach_m, run.measure = locate_reach_m, measure
    horizon = now + rules.timeout
    # A clock far ahead: ingest refuses these, and they must not pin state.
    applied = [o for o in sorted(observations, key=_order) if o.at <= horizon]
    for observation in applied:
        if isinstance(observation, BeaconReading):
            run.expect_reading(observation)
    for observation in applied:
        if isinstance(observation, Fix):
            run.apply_fix(observation, locate)
        else:
            run.apply_reading(observation)
    return run.finish(states)


def release_device(
    *,
    states: Mapping[Place, PlaceState],
    device: int,
    rules: Rules = Rules(),
    now: datetime,
) -> Outcome:
    """The device is no longer the customer's (registered to someone else): it holds them in
    no place any more. A place it was the last to hold is left at `now`, announcing no
    dwell: nothing the customer still owns says they stayed. A presence stored before holders
    were recorded names none: it goes on to its timeout, as nothing says whose it was."""
    run = _Run(states, {}, (), {}, rules)
    for place, state in sorted(run.states.items()):
        # Nor do its readings in a smoothing window count toward an entry of theirs.
        window = tuple(item for item in state.rssi if item[2:3] != (device,))
        if window != state.rssi:
            state.rssi = window
            run.changed.add(place)
        if not state.inside or all(hold.device != device for hold in state.holders):
            continue
        state.holders = tuple(hold for hold in state.holders if hold.device != device)
        run.changed.add(place)
        if state.holders:
            state.last_evidence_at = max(hold.at for hold in state.holders)
            continue
        moment = run.leaving_moment(place, now)
        if place.zone is None and place.near_m is None:
            for zone in run.places_of_store(place.store):
                run.leave(zone, moment, reason="device reassigned")
        run.leave(place, moment, reason="device reassigned")
    return run.finish(states)


def tick(
    *,
    states: Mapping[Place, PlaceState],
    dwell_minutes: Collection[int] = (),
    rules: Rules = Rules(),
    now: datetime,
) -> Outcome:
    """With no new observation: dwells reached in silence, and presences timed out by `now`."""
    run = _Run(states, {}, dwell_minutes, {}, rules)
    # Exits first: each announces the dwells reached before it, and a zone that left with its
    # store (beacons unread once the phone left) must not dwell after.
    run.expire(now)
    for place in sorted(run.states):
        run.dwell(place, now)
    return run.finish(states)
