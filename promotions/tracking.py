"""From stored pings and sightings to presence events: loads each customer's presence in
bulk, runs the pure state machine of `promotions.presence`, and writes what changed.

A batch costs a fixed number of queries, whatever its size: customers are locked in one
statement (so two workers given overlapping batches take turns per customer), states and
tracks are read and written in bulk, and events are inserted once with their unique key
guarding against a second worker or a redelivered batch.
"""

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from customers.models import Customer, Device
from promotions import geo, presence
from promotions.batch_sql import EpochSeconds, json_rows, json_time_writer
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
    widest = max((max(radii) for radii in near.values()), default=0.0)
    fences = [
        geo.fence_from_store(pk, lat, lon, radius, polygon)
        for pk, lat, lon, radius, polygon in Store.objects.values_list(
            "id", "latitude", "longitude", "radius_m", "polygon"
        )
    ]
    return Watch(
        # Far enough to tell an exit: a store the index leaves out is beyond the margin even
        # for a fix as vague as an entry allows.
        index=BatchFenceIndex(
            fences,
            reach_m=widest
            + settings.PRESENCE_EXIT_MARGIN_M
            + settings.PRESENCE_MAX_ENTRY_ACCURACY_M,
        ),
        dwell_minutes=frozenset(dwell),
        near_distances={store: frozenset(radii) for store, radii in near.items()},
    )


def process_location_batch(
    *, ping_ids: Iterable[int] = (), sighting_ids: Iterable[int] = (), now: datetime
) -> list[int]:
    """Apply stored pings and sightings to their customers' presence; returns the ids of the
    presence events this produced (none when the batch was already processed)."""
    ping_ids, sighting_ids = list(ping_ids), list(sighting_ids)
    fixes = _fixes(ping_ids)
    readings = _readings(sighting_ids)
    observations: dict[int, list[presence.Fix | presence.BeaconReading]] = defaultdict(list)
    for customer_id, fix in fixes:
        observations[customer_id].append(fix)
    for customer_id, reading in readings:
        observations[customer_id].append(reading)
    watch = current_watch() if observations else None
    rules = presence_rules()
    nearby = _locate_all(watch.index, fixes) if fixes else {}

    def advance(
        customer_id: int,
        states: dict[presence.Place, presence.PlaceState],
        tracks: dict[int, presence.Track],
    ) -> presence.Outcome:
        return presence.advance(
            states=states,
            tracks=tracks,
            observations=observations[customer_id],
            locate=lambda latitude, longitude: nearby.get((latitude, longitude), []),
            locate_reach_m=watch.index.reach_m,
            dwell_minutes=watch.dwell_minutes,
            near_distances=watch.near_distances,
            rules=rules,
            now=now,
        )

    return _run(observations.keys(), advance, now=now) if observations else []


def _locate_all(
    index: BatchFenceIndex, fixes: list[tuple[int, presence.Fix]]
) -> dict[tuple[float, float], list[tuple[int, float]]]:
    """Every fix of the batch against the fences in one vectorised pass; the state machine
    then reads its answers from this table."""
    points = list({(fix.latitude, fix.longitude) for _, fix in fixes})
    latitudes = np.fromiter((p[0] for p in points), dtype=np.float64, count=len(points))
    longitudes = np.fromiter((p[1] for p in points), dtype=np.float64, count=len(points))
    found: dict[tuple[float, float], list[tuple[int, float]]] = defaultdict(list)
    for n, key, distance in zip(*index.nearby_batch(latitudes, longitudes), strict=True):
        found[points[n]].append((int(key), float(distance)))
    return found


def unprocessed_batches(*, now: datetime, older_than: timedelta, limit: int) -> list[int]:
    """Stored batches no task has processed, oldest first: those whose task was lost (a
    broker down when the batch was accepted, a queue purged)."""
    unprocessed = LocationBatch.objects.filter(processed_at=None, received_at__lt=now - older_than)
    return list(unprocessed.order_by("received_at").values_list("id", flat=True)[:limit])


def expire_presence(*, now: datetime, chunk: int = 500) -> list[int]:
    """Timeouts and dwells reached while no fix arrived (Celery beat, every minute)."""
    watch = current_watch()
    rules = presence_rules()
    customer_ids = list(
        Presence.objects.filter(inside=True).values_list("customer_id", flat=True).distinct()
    )

    def tick(customer_id: int, states: dict, tracks: dict) -> presence.Outcome:
        return presence.tick(states=states, dwell_minutes=watch.dwell_minutes, rules=rules, now=now)

    event_ids = []
    for start in range(0, len(customer_ids), chunk):
        event_ids += _run(customer_ids[start : start + chunk], tick, now=now, with_tracks=False)
    return event_ids


Step = Callable[
    [int, dict[presence.Place, presence.PlaceState], dict[int, presence.Track]], presence.Outcome
]


def _run(
    customer_ids: Iterable[int], step: Step, *, now: datetime, with_tracks: bool = True
) -> list[int]:
    """Lock the customers, load their states, `step` each one, write what changed."""
    with transaction.atomic():
        locked = list(
            Customer.objects.select_for_update()
            .filter(id__in_batch=set(customer_ids))
            .order_by("id")
            .values_list("id", flat=True)
        )
        rows: dict[int, dict[presence.Place, Presence]] = defaultdict(dict)
        for row in Presence.objects.filter(customer_id__in_batch=set(locked)):
            rows[row.customer_id][presence.Place.from_key(row.place_key)] = row
        tracks: dict[int, presence.Track] = {}
        devices_of: dict[int, list[int]] = defaultdict(list)
        if with_tracks:
            devices = Device.objects.filter(customer_id__in_batch=set(locked)).values_list(
                "id",
                "customer_id",
                "track__latitude",
                "track__longitude",
                "track__accuracy",
                EpochSeconds("track__at"),
            )
            for device_id, customer_id, latitude, longitude, accuracy, seconds in devices:
                devices_of[customer_id].append(device_id)
                if seconds is not None:
                    at = datetime.fromtimestamp(seconds, UTC)
                    tracks[device_id] = presence.Track(latitude, longitude, accuracy, at)

        changed_states: list[tuple[int, presence.Place, presence.PlaceState]] = []
        changed_tracks: dict[int, presence.Track] = {}
        events: list[tuple[int, presence.Event]] = []
        suspicious: list[int] = []
        for customer_id in locked:
            states = {
                place: presence.PlaceState.from_json(row.state)
                for place, row in rows[customer_id].items()
            }
            own_tracks = {
                device: tracks[device] for device in devices_of[customer_id] if device in tracks
            }
            outcome = step(customer_id, states, own_tracks)
            changed_states += [(customer_id, p, s) for p, s in outcome.states.items()]
            changed_tracks.update(outcome.tracks)
            events += [(customer_id, event) for event in outcome.events]
            suspicious += outcome.suspicious

        _write_states(changed_states, rows)
        _write_tracks(changed_tracks)
        if suspicious:
            Ping.objects.filter(id__in_batch=set(suspicious)).update(suspicious=True)
        return _write_events(events, now=now)


def _fixes(ping_ids: Iterable[int]) -> list[tuple[int, presence.Fix]]:
    ids = list(ping_ids)
    if not ids:
        return []
    return [
        (
            customer_id,
            presence.Fix(
                device=device_id,
                latitude=lat,
                longitude=lon,
                accuracy=accuracy,
                at=datetime.fromtimestamp(seconds, UTC),
                mocked=mocked,
                ping=pk,
            ),
        )
        for pk, device_id, customer_id, lat, lon, accuracy, seconds, mocked in Ping.objects.filter(
            id__in_batch=set(ids)
        ).values_list(
            "id",
            "device_id",
            "device__customer_id",
            "latitude",
            "longitude",
            "accuracy",
            EpochSeconds("recorded_at"),
            "mocked",
        )
    ]


def _readings(sighting_ids: Iterable[int]) -> list[tuple[int, presence.BeaconReading]]:
    ids = list(sighting_ids)
    if not ids:
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
            Sighting.objects.filter(id__in_batch=set(ids)).values_list(
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


def _write_states(
    changed: list[tuple[int, presence.Place, presence.PlaceState]],
    rows: dict[int, dict[presence.Place, Presence]],
) -> None:
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


def _write_tracks(changed: dict[int, presence.Track]) -> None:
    """One upsert for the batch. Every fix moves its device's track, so this is a row per
    device of the batch: the largest write of a batch that changes no presence."""
    if not changed:
        return
    time = json_time_writer()
    rows = [
        [device_id, track.latitude, track.longitude, track.accuracy, time(track.at)]
        for device_id, track in changed.items()
    ]
    source = json_rows(["bigint", "float8", "float8", "float8", "timestamptz"])
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {DeviceTrack._meta.db_table} "
            "(device_id, latitude, longitude, accuracy, at) "
            f"SELECT * FROM ({source}) AS batch WHERE true "
            "ON CONFLICT (device_id) DO UPDATE SET latitude = excluded.latitude, "
            "longitude = excluded.longitude, accuracy = excluded.accuracy, at = excluded.at",
            [json.dumps(rows)],
        )


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
    keys = Q()
    for row in rows:
        keys |= Q(
            customer_id=row.customer_id,
            place_key=row.place_key,
            kind=row.kind,
            occurred_at=row.occurred_at,
            created_at=now,
        )
    return list(PresenceEvent.objects.filter(keys).values_list("id", flat=True))
