"""From stored pings and sightings to presence events: loads each customer's presence in
bulk, runs the pure state machine of `promotions.presence`, and writes what changed.

A batch costs a fixed number of queries, whatever its size: customers are locked in one
statement (so two workers given overlapping batches take turns per customer), states and
tracks are read and written in bulk, and events are inserted once with their unique key
guarding against a second worker or a redelivered batch.
"""

import logging
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import NamedTuple

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet

from customers.models import Customer
from promotions import geo, presence
from promotions.batch_sql import EpochSeconds, raw_rows
from promotions.geo_index import BatchFenceIndex
from promotions.models import (
    DEFAULT_RSSI_THRESHOLD,
    Campaign,
    CampaignStatus,
    DeviceTrack,
    FenceVersion,
    LocationBatch,
    Ping,
    Presence,
    PresenceEvent,
    Sighting,
    Store,
    TriggerType,
)

logger = logging.getLogger(__name__)

# How far back the tick looks for batches still waiting for processing. The sweep processes
# a lost batch within minutes (SWEEP_AFTER_SECONDS); one still waiting an hour on is one it
# fails on and passes over every run, and waiting for it would hold timeouts back for ever.
BACKLOG_HORIZON = timedelta(hours=1)
# New presence events are read back this many at a time (see _write_events).
EVENT_READ_CHUNK = 250


def presence_rules() -> presence.Rules:
    return presence.Rules(
        max_entry_accuracy_m=settings.PRESENCE_MAX_ENTRY_ACCURACY_M,
        accuracy_share=settings.PRESENCE_ACCURACY_SHARE,
        exit_margin_m=settings.PRESENCE_EXIT_MARGIN_M,
        timeout=timedelta(minutes=settings.PRESENCE_TIMEOUT_MINUTES),
        teleport_speed_kmh=settings.PRESENCE_TELEPORT_KMH,
        beacon_min_sightings=settings.BEACON_MIN_SIGHTINGS,
        beacon_window=timedelta(seconds=settings.BEACON_WINDOW_SECONDS),
    )


@dataclass(frozen=True)
class Watch:
    """What live campaigns ask the state machine to watch, and the fences to watch it on."""

    index: BatchFenceIndex
    dwell_minutes: frozenset[int]
    near_distances: dict[int, frozenset[float]]
    # By store id: a store the index finds nothing near is measured when the customer is in
    # it (a vague fix kilometres away still ends the visit).
    fences: dict[int, geo.Fence]

    def measure(self, store: int, latitude: float, longitude: float) -> float | None:
        """Metres from the store's fence (negative inside); None for a store with none (one
        deleted, or left out for an invalid fence)."""
        fence = self.fences.get(store)
        return None if fence is None else geo.signed_distance_m(fence, latitude, longitude)


_watch_cache: dict[str, tuple[tuple, Watch]] = {}


def current_watch() -> Watch:
    """The fence index and the dwell and near thresholds, rebuilt only when a store or a
    campaign changed (FenceVersion's token tells, in one read) or the settings they are
    built with did."""
    version = (
        FenceVersion.current(),
        settings.PRESENCE_EXIT_MARGIN_M,
        settings.PRESENCE_MAX_ENTRY_ACCURACY_M,
    )
    cached = _watch_cache.get("watch")
    if cached and cached[0] == version:
        return cached[1]
    watch = _build_watch()
    _watch_cache["watch"] = (version, watch)
    return watch


def fences_changed(**kwargs: object) -> None:
    """Signal receiver: a store or a campaign (or a campaign's stores) was saved or deleted."""
    FenceVersion.bump()


def _build_watch() -> Watch:
    live = Campaign.objects.filter(status=CampaignStatus.ACTIVE).prefetch_related("stores")
    store_ids = list(Store.objects.values_list("id", flat=True))
    dwell: set[int] = set()
    near: dict[int, set[float]] = defaultdict(set)
    for campaign in live:
        if campaign.trigger_type == TriggerType.DWELL and campaign.trigger_minutes:
            dwell.add(campaign.trigger_minutes)
        if campaign.trigger_type == TriggerType.NEAR and campaign.trigger_distance_m:
            targets = [store.id for store in campaign.stores.all()] or store_ids
            for store_id in targets:
                near[store_id].add(float(campaign.trigger_distance_m))
    fences = []
    for pk, lat, lon, radius, polygon in Store.objects.values_list(
        "id", "latitude", "longitude", "radius_m", "polygon"
    ):
        try:
            fences.append(geo.fence_from_store(pk, lat, lon, radius, polygon))
        except geo.GeometryError as error:
            # Store.clean refuses such a fence; one stored before a rule was added, or
            # written around it, must not stop every other store's presence.
            logger.error("Store %d left out of presence: its fence is invalid (%s).", pk, error)
    return Watch(
        # Far enough to tell an exit: a store the index leaves out is beyond the margin even
        # for a fix as vague as an entry allows, and beyond its own widest approach ring (a
        # store's ring is its own: the others are not looked at that far).
        index=BatchFenceIndex(
            fences,
            reach_m=settings.PRESENCE_EXIT_MARGIN_M + settings.PRESENCE_MAX_ENTRY_ACCURACY_M,
            beyond={store: max(radii) for store, radii in near.items()},
        ),
        dwell_minutes=frozenset(dwell),
        near_distances={store: frozenset(radii) for store, radii in near.items()},
        fences={fence.key: fence for fence in fences},
    )


def process_location_batch(
    *, ping_ids: Iterable[int] = (), sighting_ids: Iterable[int] = (), now: datetime
) -> list[int]:
    """Apply stored pings and sightings to their customers' presence; returns the ids of the
    presence events this produced (none when the batch was already processed)."""
    ping_ids, sighting_ids = set(ping_ids), set(sighting_ids)
    with transaction.atomic(savepoint=False):
        # The owners are locked before their pings are read: a device handed to another
        # customer loses its pings under its owner's lock (customers.services.save_device),
        # so pings read before the lock could be gone by the time their events are written.
        owners = Q(id__in=Ping.objects.filter(id__in_batch=ping_ids).values("device__customer"))
        if sighting_ids:
            seen = Sighting.objects.filter(id__in_batch=sighting_ids)
            owners |= Q(id__in=seen.values("device__customer"))
        customers = lock_customers(Customer.objects.filter(owners))
        if not customers:
            return []
        pings = _pings(ping_ids)
        readings = _readings(sighting_ids)
        # Read under the customers' locks: what the last batch of theirs wrote.
        stored = _stored_states(customers)
        tracks = _tracks(set(pings.device.tolist()))
        watch = current_watch()
        rules = presence_rules()
        hit, stores, distances = watch.index.nearby_batch(pings.values[:, 0], pings.values[:, 1])

        # Customers no ping of this batch can move, the common case: their devices' tracks
        # are followed for the whole batch at once. Busy ones go through the state machine.
        busy = set(stored) | {customer for customer, _ in readings}
        busy |= _busy_with_pings(pings, hit, horizon=(now + rules.timeout).timestamp())
        quiet = np.isin(pings.customer, customers) & ~np.isin(pings.customer, list(busy))

        changes = _Changes(tracked=frozenset(tracks.device.tolist()))
        changes.follow(pings, quiet, tracks, rules)
        nearby: dict[tuple[float, float], dict[int, float]] = defaultdict(dict)
        for n, store, distance in zip(
            hit.tolist(), stores.tolist(), distances.tolist(), strict=True
        ):
            nearby[(pings.values[n, 0], pings.values[n, 1])][store] = distance
        observations = _observations(pings, ~quiet, readings)
        track_of = tracks.as_dict({fix.device for seen in observations.values() for fix in seen})
        no_fence: dict[int, float] = {}

        for customer_id in customers:
            if customer_id not in busy:
                continue
            seen = observations.get(customer_id, [])
            outcome = presence.advance(
                states=stored.get(customer_id, {}),
                tracks={o.device: track_of[o.device] for o in seen if o.device in track_of},
                observations=seen,
                locate=lambda lat, lon: list(nearby.get((lat, lon), no_fence).items()),
                locate_reach_m=watch.index.reach_m,
                measure=watch.measure,
                dwell_minutes=watch.dwell_minutes,
                near_distances=watch.near_distances,
                rules=rules,
                now=now,
            )
            changes.add(customer_id, outcome)
        return changes.write(now=now)


class _Pings(NamedTuple):
    """A batch's pings in columns."""

    customer: np.ndarray
    device: np.ndarray
    id: np.ndarray
    # latitude, longitude, accuracy, seconds since the epoch, mocked (1.0 or 0.0)
    values: np.ndarray


def _pings(ping_ids: set[int]) -> _Pings:
    rows = Ping.objects.filter(id__in_batch=ping_ids).values_list(
        "device__customer_id",
        "device_id",
        "id",
        "latitude",
        "longitude",
        "accuracy",
        EpochSeconds("recorded_at"),
        "mocked",
    )
    table = np.array(raw_rows(rows) if ping_ids else [], dtype=np.float64).reshape(-1, 8)
    ids = table[:, :3].astype(np.int64)
    return _Pings(ids[:, 0], ids[:, 1], ids[:, 2], table[:, 3:])


def _busy_with_pings(pings: _Pings, hit: np.ndarray, *, horizon: float) -> set[int]:
    """Customers whose pings need the state machine: one near a fence (`hit`: the pings the
    fence index found something near), two of one device (applied in time order), or one
    from a clock ahead of `horizon` (ignored there)."""
    devices, counts = np.unique(pings.device, return_counts=True)
    needy = np.isin(pings.device, devices[counts > 1]) | (pings.values[:, 3] > horizon)
    needy[hit] = True
    return set(pings.customer[needy].tolist())


class _Tracks(NamedTuple):
    """Devices' last trusted fixes and their jumps: device ids, sorted, and a row (latitude,
    longitude, accuracy, seconds since the epoch; then the same four for the jump, NaN when
    there is none) for each."""

    device: np.ndarray
    values: np.ndarray

    def aligned(self, devices: np.ndarray) -> np.ndarray:
        """A row for each of `devices`, NaN for a device with no track."""
        rows = np.full((len(devices), 8), np.nan)
        at = np.minimum(np.searchsorted(self.device, devices), max(len(self.device) - 1, 0))
        found = self.device[at] == devices if len(self.device) else np.zeros(len(devices), bool)
        rows[found] = self.values[at[found]]
        return rows

    def as_dict(self, devices: set[int]) -> dict[int, presence.Track]:
        wanted = np.isin(self.device, list(devices))
        moment = datetime.fromtimestamp
        tracks = {}
        for device, (lat, lon, accuracy, at, *jump) in zip(
            self.device[wanted].tolist(), self.values[wanted].tolist(), strict=True
        ):
            held = None
            if not math.isnan(jump[3]):
                held = presence.Track(*jump[:3], moment(jump[3], UTC))
            tracks[device] = presence.Track(lat, lon, accuracy, moment(at, UTC), jump=held)
        return tracks


def _tracks(device_ids: set[int]) -> _Tracks:
    rows = DeviceTrack.objects.filter(device_id__in_batch=device_ids).values_list(
        "device_id",
        "latitude",
        "longitude",
        "accuracy",
        EpochSeconds("at"),
        "jump_latitude",
        "jump_longitude",
        "jump_accuracy",
        EpochSeconds("jump_at"),
    )
    # None (no jump) becomes NaN.
    table = np.array(raw_rows(rows) if device_ids else [], dtype=np.float64).reshape(-1, 9)
    order = np.argsort(table[:, 0])
    return _Tracks(table[order, 0].astype(np.int64), table[order, 1:])


def _observations(
    pings: _Pings, chosen: np.ndarray, readings: list[tuple[int, presence.BeaconReading]]
) -> dict[int, list[presence.Fix | presence.BeaconReading]]:
    """The chosen pings as fixes, and the readings, by customer."""
    observations: dict[int, list[presence.Fix | presence.BeaconReading]] = defaultdict(list)
    moment = datetime.fromtimestamp
    for customer, device, pk, (lat, lon, accuracy, at, mocked) in zip(
        pings.customer[chosen].tolist(),
        pings.device[chosen].tolist(),
        pings.id[chosen].tolist(),
        pings.values[chosen].tolist(),
        strict=True,
    ):
        fix = presence.Fix(device, lat, lon, accuracy, moment(at, UTC), bool(mocked), pk)
        observations[customer].append(fix)
    for customer, reading in readings:
        observations[customer].append(reading)
    return observations


@dataclass
class _Changes:
    """What a batch changed, written in a fixed number of statements."""

    states: list[tuple[int, presence.Place, presence.PlaceState]] = field(default_factory=list)
    # A device's track is the last trusted ping applied to it, its jump the teleport held
    # after it: the pings that moved a track, and those that became a jump, by device.
    tracks: dict[int, int] = field(default_factory=dict)
    jumps: dict[int, int] = field(default_factory=dict)
    # The devices whose track was there before the batch (the others get a row).
    tracked: frozenset[int] = frozenset()
    events: list[tuple[int, presence.Event]] = field(default_factory=list)
    suspicious: list[int] = field(default_factory=list)

    def follow(
        self, pings: _Pings, chosen: np.ndarray, tracks: _Tracks, rules: presence.Rules
    ) -> None:
        """The chosen pings, one per device, only move their devices' tracks."""
        devices, ids = pings.device[chosen], pings.id[chosen]
        moves, jumps, suspicious = presence.follow_devices(
            pings.values[chosen], tracks.aligned(devices), rules
        )
        self.tracks.update(zip(devices[moves].tolist(), ids[moves].tolist(), strict=True))
        self.jumps.update(zip(devices[jumps].tolist(), ids[jumps].tolist(), strict=True))
        self.suspicious += ids[suspicious].tolist()

    def add(self, customer_id: int, outcome: presence.Outcome) -> None:
        self.states += [(customer_id, place, state) for place, state in outcome.states.items()]
        self.events += [(customer_id, event) for event in outcome.events]
        for device, track in outcome.tracks.items():
            # A track read from the database has no ping: then only its jump is new.
            if track.ping is not None:
                self.tracks[device] = track.ping
            if track.jump is not None and track.jump.ping is not None:
                self.jumps[device] = track.jump.ping
        self.suspicious += outcome.suspicious

    def write(self, *, now: datetime) -> list[int]:
        """Returns the ids of the presence events."""
        _write_states(self.states)
        _write_tracks(self.tracks, self.tracked)
        _write_jumps(self.jumps)
        if self.suspicious:
            Ping.objects.filter(id__in_batch=set(self.suspicious)).update(suspicious=True)
        return _write_events(self.events, now=now)


def unprocessed_batches(*, now: datetime, older_than: timedelta, limit: int) -> list[int]:
    """Stored batches no task has processed, oldest first: those whose task was lost (a
    broker down when the batch was accepted, a queue purged)."""
    unprocessed = LocationBatch.objects.filter(processed_at=None, received_at__lt=now - older_than)
    return list(unprocessed.order_by("received_at").values_list("id", flat=True)[:limit])


def _oldest_unprocessed(*, now: datetime) -> datetime | None:
    """When the oldest batch still waiting for processing was received, of those received
    within BACKLOG_HORIZON; None when none waits."""
    waiting = LocationBatch.objects.filter(
        processed_at=None, received_at__gte=now - BACKLOG_HORIZON
    )
    return waiting.order_by("received_at").values_list("received_at", flat=True).first()


def expire_presence(*, now: datetime, chunk: int = 500) -> list[int]:
    """Timeouts and dwells reached while no fix arrived (Celery beat, every minute).

    Silence is judged only as far as what has been processed: a customer the tick would
    time out whose pings or sightings may still wait in an unprocessed batch (workers
    behind, or a task lost with the broker that the sweep has yet to run) is judged, their
    timeouts and dwells, at the earliest of them instead. The backlog holds the timeout back
    rather than ending a visit those pings continue, which processing them later would
    start again; a silence longer than the timeout before them still ends it. A dwell the
    tick would announce waits for them too: they may say the shopper walked out before it.
    """
    watch = current_watch()
    rules = presence_rules()
    backlog_since = _oldest_unprocessed(now=now)
    customer_ids = sorted(
        set(Presence.objects.filter(inside=True).values_list("customer_id", flat=True))
    )

    def tick(states: dict[presence.Place, presence.PlaceState], at: datetime) -> presence.Outcome:
        return presence.tick(states=states, dwell_minutes=watch.dwell_minutes, rules=rules, now=at)

    event_ids = []
    for start in range(0, len(customer_ids), chunk):
        with transaction.atomic(savepoint=False):
            locked = lock_customers(
                Customer.objects.filter(id__in_batch=set(customer_ids[start : start + chunk]))
            )
            stored = _stored_states(locked)
            outcomes = {
                customer_id: tick(stored.get(customer_id, {}), now) for customer_id in locked
            }
            if backlog_since is not None:
                silent = {
                    customer_id: since
                    for customer_id, outcome in outcomes.items()
                    if (since := _silent_since(stored.get(customer_id, {}), outcome))
                }
                waiting = _first_signals(silent, received_since=backlog_since)
                for customer_id, first in waiting.items():
                    outcomes[customer_id] = tick(stored[customer_id], min(first, now))
            changes = _Changes()
            for customer_id, outcome in outcomes.items():
                changes.add(customer_id, outcome)
            event_ids += changes.write(now=now)
    return event_ids


def _silent_since(
    states: dict[presence.Place, presence.PlaceState], outcome: presence.Outcome
) -> datetime | None:
    """The oldest last evidence among the places the tick's outcome ends or announces a dwell
    of (None when it does neither): only a signal recorded after it could have kept them, or
    ended them before the dwell (the fixes of a shopper walking out, waiting in a batch)."""
    judged = [
        states[place]
        for place, state in outcome.states.items()
        if place in states
        and states[place].inside
        and (not state.inside or set(state.dwelled) - set(states[place].dwelled))
    ]
    return min((state.last_evidence_at or state.entered_at for state in judged), default=None)


def _first_signals(
    silent_since: dict[int, datetime], *, received_since: datetime
) -> dict[int, datetime]:
    """For each customer, the earliest of their pings and sightings waiting in a batch not
    processed yet (received since `received_since`, when the oldest of them was) and recorded
    after their `silent_since`. Customers with none are left out. Two queries, whatever the
    number of customers.

    A ping or sighting is stored with its batch's receipt time: those received when a batch
    still waiting was are its own. One a worker processed already has been applied (a second
    device's that holds nothing, a vague fix): it cannot keep the visit, and holding the
    timeout back for it would keep the shopper in the store while any batch waits."""
    if not silent_since:
        return {}
    customers, after = set(silent_since), min(silent_since.values())
    waiting = LocationBatch.objects.filter(
        processed_at=None, received_at__gte=received_since
    ).values("received_at")
    pings = Ping.objects.filter(
        device__customer_id__in_batch=customers,
        recorded_at__gt=after,
        received_at__gte=received_since,
        received_at__in=waiting,
    ).values_list("device__customer_id", "recorded_at")
    sightings = Sighting.objects.filter(
        device__customer_id__in_batch=customers,
        seen_at__gt=after,
        received_at__gte=received_since,
        received_at__in=waiting,
    ).values_list("device__customer_id", "seen_at")
    first: dict[int, datetime] = {}
    for customer_id, at in chain(pings, sightings):
        if at > silent_since[customer_id] and (customer_id not in first or at < first[customer_id]):
            first[customer_id] = at
    return first


def release_device(*, customer_id: int, device_id: int, now: datetime) -> list[int]:
    """The device was registered to another customer: it holds its previous owner in no
    place any more, and a visit it alone held ends now. Returns the ids of the exits. The
    caller holds the previous owner locked, as a batch of theirs would."""
    stored = _stored_states([customer_id]).get(customer_id, {})
    if not stored:
        return []
    outcome = presence.release_device(
        states=stored, device=device_id, rules=presence_rules(), now=now
    )
    changes = _Changes()
    changes.add(customer_id, outcome)
    return changes.write(now=now)


def lock_customers(customers: QuerySet[Customer]) -> list[int]:
    """Lock the customers' rows, in id order (two workers never wait on each other in a
    cycle): a second worker given a batch of the same customers waits for this one's
    presence to be written, then reads it. Returns the ids of those found. Whatever else
    locks several customers for writes a worker may be making (a device changing hands)
    locks them here, first, so that it and a worker queue instead of deadlocking."""
    return list(
        customers.select_for_update(of=("self",)).order_by("id").values_list("id", flat=True)
    )


def _stored_states(
    customer_ids: list[int],
) -> dict[int, dict[presence.Place, presence.PlaceState]]:
    stored: dict[int, dict[presence.Place, presence.PlaceState]] = defaultdict(dict)
    rows = Presence.objects.filter(customer_id__in_batch=set(customer_ids)).values_list(
        "customer_id", "place_key", "state"
    )
    for customer_id, place_key, state in rows:
        place = presence.Place.from_key(place_key)
        stored[customer_id][place] = presence.PlaceState.from_json(state)
    return stored


def _readings(sighting_ids: set[int]) -> list[tuple[int, presence.BeaconReading]]:
    if not sighting_ids:
        return []
    return [
        (
            customer_id,
            presence.BeaconReading(
                device=device_id,
                store=store_id,
                zone=zone_id,
                rssi=rssi,
                threshold=DEFAULT_RSSI_THRESHOLD if threshold is None else threshold,
                at=at,
                sighting=pk,
            ),
        )
        for pk, device_id, customer_id, store_id, zone_id, threshold, rssi, at in (
            Sighting.objects.filter(id__in_batch=sighting_ids).values_list(
                "id",
                "device_id",
                "device__customer_id",
                "store_id",
                "zone_id",
                "zone__rssi_threshold",
                "rssi",
                "seen_at",
            )
        )
    ]


def _write_states(changed: list[tuple[int, presence.Place, presence.PlaceState]]) -> None:
    # One INSERT ... ON CONFLICT DO UPDATE for the batch: Django's bulk_update writes a CASE
    # per row and field, which PostgreSQL parses far more slowly.
    Presence.objects.bulk_create(
        [
            Presence(
                customer_id=customer_id,
                place_key=place.key(),
                store_id=place.store,
                zone_id=place.zone,
                inside=state.inside,
                state=state.to_json(),
            )
            for customer_id, place, state in changed
        ],
        update_conflicts=True,
        unique_fields=["customer", "place_key"],
        update_fields=["inside", "state", "updated_at"],
    )


def _write_tracks(moves: dict[int, int], tracked: frozenset[int]) -> None:
    """Copy each moved track's values from its ping, inside the database (where writing the
    numbers out as text would cost more), dropping any jump it held: an UPDATE for the
    devices that had a track (a quarter cheaper than an upsert), an upsert for the others.
    Every trusted fix moves its device's track, so this is a row per device of the batch:
    the largest write of a batch that changes no presence."""
    table = DeviceTrack._meta.db_table
    moved = {pk for device, pk in moves.items() if device in tracked}
    if moved:
        source, params = _ping_positions(moved)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET latitude = p.latitude, longitude = p.longitude, "
                f"accuracy = p.accuracy, at = p.recorded_at, jump_latitude = NULL, "
                f"jump_longitude = NULL, jump_accuracy = NULL, jump_at = NULL "
                f"FROM ({source}) AS p WHERE {table}.device_id = p.device_id",
                params,
            )
    started = {pk for device, pk in moves.items() if device not in tracked}
    if started:
        source, params = _ping_positions(started)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (device_id, latitude, longitude, accuracy, at) {source} "
                "ON CONFLICT (device_id) DO UPDATE SET latitude = excluded.latitude, "
                "longitude = excluded.longitude, accuracy = excluded.accuracy, at = excluded.at, "
                "jump_latitude = NULL, jump_longitude = NULL, jump_accuracy = NULL, "
                "jump_at = NULL",
                params,
            )


def _write_jumps(jumps: dict[int, int]) -> None:
    """Hold each teleport as its device's jump. A jump follows a track (the first fix of a
    device is none), so the row exists: written before, or by `_write_tracks` just now."""
    if not jumps:
        return
    table = DeviceTrack._meta.db_table
    source, params = _ping_positions(set(jumps.values()))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET jump_latitude = p.latitude, jump_longitude = p.longitude, "
            f"jump_accuracy = p.accuracy, jump_at = p.recorded_at "
            f"FROM ({source}) AS p WHERE {table}.device_id = p.device_id",
            params,
        )


def _ping_positions(ping_ids: set[int]) -> tuple[str, tuple]:
    pings = Ping.objects.filter(id__in_batch=ping_ids).values_list(
        "device_id", "latitude", "longitude", "accuracy", "recorded_at"
    )
    return pings.query.sql_with_params()


def _write_events(events: list[tuple[int, presence.Event]], *, now: datetime) -> list[int]:
    if not events:
        return []
    rows = [
        PresenceEvent(
            customer_id=customer_id,
            place_key=event.place.key(),
            kind=event.kind,
            store_id=event.place.store,
            zone_id=event.place.zone,
            minutes=event.minutes,
            distance_m=event.distance_m,
            occurred_at=event.at,
            ping_id=event.ping,
            sighting_id=event.sighting,
            evidence={"reason": event.reason},
            created_at=now,
        )
        for customer_id, event in events
    ]
    # The customers are locked, so a conflict here is a batch processed before: its events
    # already exist and were decided then.
    PresenceEvent.objects.bulk_create(rows, ignore_conflicts=True)
    # Read back a chunk at a time: SQLite parses the ORs of one condition a row as a tree
    # one level deeper a row, and refuses one deeper than 1,000 (a batch of a crowd walking
    # in, a tick timing out a store at closing time).
    event_ids = []
    for start in range(0, len(rows), EVENT_READ_CHUNK):
        keys = Q()
        for row in rows[start : start + EVENT_READ_CHUNK]:
            keys |= Q(
                customer_id=row.customer_id,
                place_key=row.place_key,
                kind=row.kind,
                minutes=row.minutes,
                occurred_at=row.occurred_at,
                created_at=now,
            )
        event_ids += PresenceEvent.objects.filter(keys).values_list("id", flat=True)
    return event_ids
