"""Writes for places, location data and API keys. Views, commands and tasks call these."""

import secrets
from collections.abc import Callable, Collection, Hashable, Sequence
from datetime import date, datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from customers.models import Device
from customers.services import ConflictError
from promotions.database import against_current_places
from promotions.ingest import (
    Errors,
    IngestResult,
    PingRow,
    ValidItems,
    hold_devices_for_ingest,
    insert_new_rows,
    insert_ping_batch,
    new_location_batch,
)
from promotions.models import (
    ApiKey,
    Beacon,
    Campaign,
    CampaignDay,
    Delivery,
    DeviceTrack,
    Gateway,
    LocationBatch,
    OfferCode,
    Ping,
    Presence,
    PresenceEvent,
    Scope,
    Sighting,
    SightingSource,
    Store,
    Zone,
    hold_zone_codes,
    zone_loss_refusal,
    zones_lost_by_campaigns,
)
from promotions.selectors import EMPTY_DAY, get_budget_zone, get_day_figures
from promotions.times import local_day

API_KEY_PREFIX = "psg_"


def create_api_key(*, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the key itself, which is shown once and not kept."""
    longest = ApiKey._meta.get_field("name").max_length
    if not name.strip() or len(name) > longest:
        raise ValueError(f"Name the key's user in 1 to {longest} characters.")
    unknown = set(scopes) - set(Scope.values)
    if unknown or not scopes:
        raise ValueError(
            f"Scopes are {', '.join(Scope.values)}; got {', '.join(scopes) or 'none'}."
        )
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        name=name,
        prefix=key[: len(API_KEY_PREFIX) + 8],
        key_hash=ApiKey.hash(key),
        scopes=sorted(set(scopes)),
    )
    return api_key, key


def delete_stores(*, stores: Sequence[Store]) -> None:
    """Delete stores, unless a live campaign targets one (removing a campaign's last store
    would turn it into an every-store campaign), or their zones going would leave a live
    campaign with no zone to watch (see zones_lost_by_campaigns): ConflictError. The API
    deletes one, the admin's list several at once. What goes with them: see
    going_with_stores."""
    with transaction.atomic():
        ids = sorted(store.pk for store in stores)
        # Locked before they are checked, the stores then their zones, as a campaign's save
        # holds them (check_campaign_places): a save in flight is waited for, then seen by
        # the checks; one that comes after waits for this deletion, then finds them gone.
        # Unlocked, a campaign committed between the checks and the deletion lost the store
        # (its link deleted with it) and ran in every store. The API's view has locked the
        # store's row already (FOR NO KEY UPDATE), which a campaign's hold does not wait on.
        _lock_for_deletion(Store.objects.filter(pk__in=ids))
        _lock_for_deletion(Zone.objects.filter(store__in=ids))
        hold_zone_codes(Zone.objects.filter(store__in=ids).values_list("code", flat=True))
        for store in stores:
            live = store.campaigns_targeting()
            if live:
                raise ConflictError(
                    f"Campaigns target store {store.code}: {', '.join(live)}. "
                    "Remove it from them first."
                )
        lost = zones_lost_by_campaigns(
            dict.fromkeys(Zone.objects.filter(store__in=ids).values_list("pk", flat=True))
        )
        if lost:
            doing = (
                f"Deleting store {stores[0].code}" if len(stores) == 1 else "Deleting these stores"
            )
            raise ConflictError(zone_loss_refusal(f"{doing} with its zones", lost))
        # In the order the collector took them: links cleared, then the rows pointing at the
        # store (presence events, sightings, then zones, beacons and gateways), the store
        # last.
        _delete_history(going_with_stores(ids))
        Store.objects.filter(pk__in=ids).delete()


def delete_zones(*, zones: Sequence[Zone]) -> None:
    """Delete zones, unless their going would leave a live campaign with no zone to watch
    (see zones_lost_by_campaigns): ConflictError. What goes with them: see
    going_with_zones."""
    with transaction.atomic():
        ids = sorted(zone.pk for zone in zones)
        # Locked before they are checked, as delete_stores locks its zones.
        _lock_for_deletion(Zone.objects.filter(pk__in=ids))
        hold_zone_codes(Zone.objects.filter(pk__in=ids).values_list("code", flat=True))
        lost = zones_lost_by_campaigns(dict.fromkeys(ids))
        if lost:
            doing = f"Deleting zone {zones[0]}" if len(zones) == 1 else "Deleting these zones"
            raise ConflictError(zone_loss_refusal(doing, lost))
        _delete_history(going_with_zones(ids))
        Zone.objects.filter(pk__in=ids).delete()


def delete_heard_places(*, model: type[Beacon] | type[Gateway], ids: Collection[int]) -> None:
    """Delete beacons or gateways (`model`), and the sightings they heard: a statement for
    the sightings, whatever their number (see going_with_heard_places). Django's collector
    read every one, then cleared and deleted them a hundred at a time: a gateway at a busy
    entrance hears millions within the retention period, past gunicorn's timeout."""
    with transaction.atomic():
        ids = sorted(ids)
        # Locked first, as delete_stores locks its stores: a sighting being stored for one
        # (its insert holds the row) is waited for, then deleted with the others; one stored
        # after waits for the deletion, then finds its beacon or gateway gone.
        _lock_for_deletion(model.objects.filter(pk__in=ids))
        _delete_history(going_with_heard_places(model, ids))
        model.objects.filter(pk__in=ids).delete()


def _lock_for_deletion(rows: QuerySet) -> None:
    """Lock rows about to be deleted (FOR UPDATE, which a foreign key's check and a
    campaign's hold wait on), in the order of their ids, as every deletion takes them."""
    list(rows.select_for_update().order_by("pk").values_list("pk", flat=True))


# What a deletion takes with it, a query a model: the rows Django's collector deletes by
# cascade (on_delete=CASCADE). Rows that point at them with SET_NULL are kept: a delivery
# or redemption without its store, a beacon, gateway or sighting without its zone, a
# delivery without its presence event, a presence event without its sighting.
Going = dict[type[models.Model], QuerySet]


def going_with_stores(ids: Collection[int]) -> Going:
    """Their zones, beacons, gateways, sightings (the store's, and its beacons' and gateways'),
    presence state and events (the store's and its zones'), and their places in campaigns."""
    zones = Zone.objects.filter(store__in=ids)
    beacons = Beacon.objects.filter(store__in=ids)
    gateways = Gateway.objects.filter(store__in=ids)
    return {
        Store: Store.objects.filter(pk__in=ids),
        Zone: zones,
        Beacon: beacons,
        Gateway: gateways,
        Sighting: Sighting.objects.filter(
            Q(store__in=ids) | Q(beacon__in=beacons) | Q(gateway__in=gateways)
        ),
        Presence: Presence.objects.filter(Q(store__in=ids) | Q(zone__in=zones)),
        PresenceEvent: PresenceEvent.objects.filter(Q(store__in=ids) | Q(zone__in=zones)),
        Campaign.stores.through: Campaign.stores.through.objects.filter(store__in=ids),
    }


def going_with_zones(ids: Collection[int]) -> Going:
    """Their presence state and events; sightings stay, without their zone."""
    return {
        Zone: Zone.objects.filter(pk__in=ids),
        Presence: Presence.objects.filter(zone__in=ids),
        PresenceEvent: PresenceEvent.objects.filter(zone__in=ids),
    }


def going_with_heard_places(model: type[Beacon] | type[Gateway], ids: Collection[int]) -> Going:
    """Their sightings; the presence events those made stay, without their sighting."""
    heard_by = "beacon" if model is Beacon else "gateway"
    return {
        model: model.objects.filter(pk__in=ids),
        Sighting: Sighting.objects.filter(**{f"{heard_by}__in": ids}),
    }


def count_going(going: Going) -> dict[type[models.Model], int]:
    """How many rows of each model a deletion takes (those with none left out): a COUNT a
    model, what the admin's delete page shows instead of every row."""
    counts = {model: rows.count() for model, rows in going.items()}
    return {model: count for model, count in counts.items() if count}


def _delete_history(going: Going) -> None:
    """Delete a place's presence events and sightings, a statement each, links to
    them cleared first as their SET_NULL says. Django's collector would read every row (and
    a million-row store would time its request out) to find what points at them; what is
    left for it then (zones, beacons, gateways, the store itself) is a few rows."""
    if (events := going.get(PresenceEvent)) is not None:
        Delivery.objects.filter(presence_event__in=events).update(presence_event=None)
        events._raw_delete(events.db)
    if (sightings := going.get(Sighting)) is not None:
        PresenceEvent.objects.filter(sighting__in=sightings).update(sighting=None)
        sightings._raw_delete(sightings.db)


def delete_campaigns(*, campaigns: Sequence[Campaign]) -> None:
    """Delete campaigns that have made no decision yet, or none (ConflictError). One that
    has keeps its deliveries, which are its results (Delivery.campaign is PROTECT): it can
    be ended instead. The API deletes one, the admin's list several at once."""
    with transaction.atomic():
        ids = sorted(campaign.pk for campaign in campaigns)
        # Locked before the count: a worker recording a decision holds its campaign (see
        # decisions._hold_campaigns), so a decision in flight is waited for, then counted, and
        # one that comes after waits for the deletion, then runs again without the campaign
        # (its commit fails). Counted unlocked, a decision committed between the count and
        # the deletion made the deletion fail (a 500 in the admin).
        # The campaigns a worker locks for update (those with a budget or a code pool, see
        # decisions._lock_budgets) first, then the others, each in id order, as the worker
        # takes them: it holds the others (a key share) only after those. Locked in id
        # order alone, a deletion holding a campaign without a budget waited for one with a
        # budget that a worker held, which waited for the first: PostgreSQL failed one.
        chosen = Campaign.objects.filter(pk__in=ids)
        spending = (
            Q(daily_budget__isnull=False)
            | Q(total_budget__isnull=False)
            | Exists(OfferCode.objects.filter(campaign=OuterRef("pk")))
        )
        _lock_for_deletion(chosen.filter(spending))
        _lock_for_deletion(chosen.exclude(spending))
        decided = dict(
            Delivery.objects.filter(campaign__in=ids)
            .values_list("campaign")
            .annotate(count=models.Count("pk"))
        )
        for campaign in campaigns:
            if decided.get(campaign.pk):
                whose = "This campaign" if len(campaigns) == 1 else f"Campaign {campaign.name}"
                raise ConflictError(
                    f"{whose} has made {decisions_kept(decided[campaign.pk])}; it cannot be "
                    f"deleted. {END_IT_INSTEAD}"
                )
        Campaign.objects.filter(pk__in=ids).delete()


END_IT_INSTEAD = 'End it instead: set its status to "ended".'


def decisions_kept(count: int) -> str:
    """Why a campaign that has decided cannot be deleted (the API's words and the admin's)."""
    return f"{count} decision{'' if count == 1 else 's'}, kept as deliveries for its results"


class LinkedDevice(NamedTuple):
    """A device as ingest reads it."""

    pk: int
    # Since when its customer has had it; None: since it was first linked.
    owner_since: datetime | None


BEFORE_OWNER = (
    "Recorded before this device was linked to its current customer: it is the previous "
    "owner's location, not theirs."
)


def record_pings(*, items: ValidItems, result: IngestResult, now: datetime) -> int | None:
    """Store a request's pings; returns the location batch to process (None if none new).
    The batch goes in plainly and, only when one of its pings is stored already, again
    skipping those (see insert_ping_batch)."""
    try:
        return _record_pings(items, result, now, skip_stored=False)
    except IntegrityError:
        return _record_pings(items, result, now, skip_stored=True)


def _record_pings(
    items: ValidItems, result: IngestResult, now: datetime, *, skip_stored: bool
) -> int | None:
    with transaction.atomic():
        device_ids = {values["device_id"] for _, values in items}
        hold_devices_for_ingest(device_ids)
        devices = _devices("device_id", device_ids)
        rows: list[PingRow] = []
        # Rejected once the transaction is over: it may run twice (see record_pings).
        refused: list[tuple[int, Errors]] = []
        for index, values in items:
            device = devices.get(values["device_id"])
            if device is None:
                refused.append((index, {"device_id": [f"Unknown device '{values['device_id']}'."]}))
                continue
            if _before_owner(device, values["recorded_at"]):
                refused.append((index, {"recorded_at": [BEFORE_OWNER]}))
                continue
            rows.append(
                (
                    device.pk,
                    values.get("ping_id"),
                    values["latitude"],
                    values["longitude"],
                    values["accuracy"],
                    values["recorded_at"],
                    values.get("speed"),
                    values["mocked"],
                )
            )
        stored, batch = insert_ping_batch(rows, now, skip_stored=skip_stored)
    for index, errors in refused:
        result.reject(index, errors)
    result.add_stored(stored, duplicates=len(rows) - stored)
    return batch


def _against_current_places(
    store: Callable[[IngestResult], int | None], result: IngestResult
) -> int | None:
    """`store(outcome)` run in a transaction of its own, again while a place it read is
    deleted under it (see database.against_current_places): stored again, the sightings of
    a place gone are rejected by their index and the others go in. Its outcome is added to
    `result` once it committed."""

    def attempt() -> tuple[int | None, IngestResult]:
        outcome = IngestResult()
        return store(outcome), outcome

    batch, outcome = against_current_places(attempt)
    result.add(outcome)
    return batch


def record_app_sightings(*, items: ValidItems, result: IngestResult, now: datetime) -> int | None:
    """Store beacons the app ranged: the beacon places the device in its store and zone.
    Returns the location batch to process (None if none new)."""
    return _against_current_places(
        lambda outcome: _record_app_sightings(items, outcome, now), result
    )


def _record_app_sightings(items: ValidItems, result: IngestResult, now: datetime) -> int | None:
    with transaction.atomic():
        devices = _devices("device_id", {values["device_id"] for _, values in items}, hold=True)
        beacons = {
            identity: (pk, store_id, zone_id)
            for identity, pk, store_id, zone_id in Beacon.objects.filter(
                identity__in={values["identity"] for _, values in items}
            ).values_list("identity", "pk", "store_id", "zone_id")
        }
        sightings = []
        for index, values in items:
            device = devices.get(values["device_id"])
            beacon = beacons.get(values["identity"])
            errors = {}
            if device is None:
                errors["device_id"] = [f"Unknown device '{values['device_id']}'."]
            elif _before_owner(device, values["seen_at"]):
                errors["seen_at"] = [BEFORE_OWNER]
            if beacon is None:
                errors["non_field_errors"] = ["No store beacon is registered with this identity."]
            if errors:
                result.reject(index, errors)
                continue
            beacon_pk, store_pk, zone_pk = beacon
            sightings.append(
                Sighting(
                    source=SightingSource.APP,
                    device_id=device.pk,
                    beacon_id=beacon_pk,
                    store_id=store_pk,
                    zone_id=zone_pk,
                    rssi=values["rssi"],
                    seen_at=values["seen_at"],
                    received_at=now,
                )
            )
        return _store_sightings(sightings, result, place="beacon_id", now=now)


def record_gateway_sightings(
    *, gateway_id: str, items: ValidItems, result: IngestResult, now: datetime
) -> int | None:
    """Store the devices a gateway saw: the gateway places them in its store and zone.
    Returns the location batch to process (None if none new)."""
    return _against_current_places(
        lambda outcome: _record_gateway_sightings(gateway_id, items, outcome, now), result
    )


def _record_gateway_sightings(
    gateway_id: str, items: ValidItems, result: IngestResult, now: datetime
) -> int | None:
    # The id comes from the URL; PostgreSQL refuses a NUL even in a lookup, and no stored
    # id holds one.
    gateway = (
        None if "\x00" in gateway_id else Gateway.objects.filter(gateway_id=gateway_id).first()
    )
    if gateway is None:
        for index, _ in items:
            result.reject(index, {"gateway_id": [f"Unknown gateway '{gateway_id}'."]})
        return None
    with transaction.atomic():
        devices = _devices("ble_identity", {values["identity"] for _, values in items}, hold=True)
        sightings = []
        for index, values in items:
            device = devices.get(values["identity"])
            if device is None:
                result.reject(
                    index, {"non_field_errors": ["No device is registered with this identity."]}
                )
                continue
            if _before_owner(device, values["seen_at"]):
                result.reject(index, {"seen_at": [BEFORE_OWNER]})
                continue
            sightings.append(
                Sighting(
                    source=SightingSource.GATEWAY,
                    device_id=device.pk,
                    gateway_id=gateway.pk,
                    store_id=gateway.store_id,
                    zone_id=gateway.zone_id,
                    rssi=values["rssi"],
                    mac=values.get("mac") or "",
                    seen_at=values["seen_at"],
                    received_at=now,
                )
            )
        return _store_sightings(sightings, result, place="gateway_id", now=now)


def _store_sightings(
    sightings: list[Sighting], result: IngestResult, *, place: str, now: datetime
) -> int | None:
    """Store sightings once per device, place (beacon or gateway) and time."""

    def keys_of(sighting: Sighting) -> list[Hashable]:
        return [(sighting.device_id, getattr(sighting, place), sighting.seen_at)]

    def stored_keys(rows: list[Sighting]) -> set[Hashable]:
        stored = Sighting.objects.filter(
            device_id__in={row.device_id for row in rows},
            seen_at__in={row.seen_at for row in rows},
            **{f"{place}__in": {getattr(row, place) for row in rows}},
        )
        return set(stored.values_list("device_id", place, "seen_at"))

    # Inserted in key order, as events are (record_browsing_events): two batches holding
    # some of the same sightings (an app's retry flushed with what it ranged since) in other
    # orders each waited for a sighting the other had inserted, a deadlock.
    sightings = sorted(sightings, key=lambda row: keys_of(row)[0])
    with transaction.atomic():
        stored, duplicates = insert_new_rows(
            Sighting, sightings, keys_of=keys_of, stored_keys=stored_keys
        )
        result.add_stored(len(stored), duplicates)
        return new_location_batch(received_at=now, sighting_ids=[row.pk for row in stored])


def _before_owner(device: LinkedDevice, at: datetime) -> bool:
    """True for a measurement the device took for its previous owner (see save_device)."""
    return device.owner_since is not None and at <= device.owner_since


def _devices(field: str, keys: set[str], *, hold: bool = False) -> dict[str, LinkedDevice]:
    """Devices by `field` (device_id or ble_identity) for a batch's keys, in one query.

    With `hold`, in the transaction that stores their sightings, the devices are held until
    it commits (a key share, as the sightings' foreign key takes): a device changing hands
    meanwhile waits, then deletes what was stored; it cannot change hands between this read
    and the insert, leaving sightings of the previous owner stored as the new one's. Ping
    ingest needs no hold: its advisory locks do this (see hold_devices_for_ingest)."""
    if not keys:
        return {}
    devices = Device.objects.filter(**{f"{field}__in_batch": keys}).values_list(
        field, "pk", "owner_since"
    )
    if hold and connection.vendor == "postgresql":
        # Django's ORM locks rows only for update, which would queue concurrent batches
        # that see the same device.
        sql, params = devices.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"{sql} FOR KEY SHARE", params)
            rows = cursor.fetchall()
    else:
        rows = list(devices)
    return {key: LinkedDevice(pk, owner_since) for key, pk, owner_since in rows}


def purge_location_history(*, now: datetime, chunk: int = 5_000) -> int:
    """Delete raw pings and sightings past the retention period, and the batches that named
    them; returns how many pings and sightings. Presence events keep their history without
    them (their evidence link is cleared). A chunk at a time, each its own transaction: an
    hour of pings at a national retailer's rate is millions of rows, which one transaction
    would hold locks on, and Django's `delete()` would load into memory to clear the links.

    Devices' tracks go too once their fix is past the retention: each holds its device's
    last trusted position, a copy of a ping, and the engine has no use for one that old
    (pings over INGEST_MAX_PING_AGE_HOURS are refused, and any move is possible in days).

    A ping or sighting is past the retention once it was taken before the cutoff: the app
    uploads its offline queue late, and a fix is as old as when it was taken. (Or once it was
    uploaded before the cutoff: a phone's clock may run a little ahead.) Each is found by
    its own index, which holds nothing older than the last run's cutoff: a run reads what
    aged past the retention since the last, where finding the late uploads read every row
    uploaded in the INGEST_MAX_PING_AGE_HOURS after the cutoff (72 hours of pings) again
    every hour."""
    cutoff = now - timedelta(days=settings.LOCATION_RETENTION_DAYS)
    removed = 0
    for model, link, taken in ((Ping, "ping", "recorded_at"), (Sighting, "sighting", "seen_at")):
        for column in ("received_at", taken):
            removed += _purge_before(model, link, column, cutoff, chunk=chunk)
    LocationBatch.objects.filter(received_at__lt=cutoff).delete()
    _purge_device_tracks(cutoff, chunk=chunk)
    return removed


def _purge_before(
    model: type[Ping] | type[Sighting], link: str, column: str, cutoff: datetime, *, chunk: int
) -> int:
    """Delete the pings or sightings whose `column` (an indexed time) is before `cutoff`, a
    chunk at a time in its order, each chunk's query starting where the last one's ended
    rather than at the rows it deleted; returns how many."""
    removed, since = 0, None
    while True:
        expired = model.objects.filter(**{f"{column}__lt": cutoff})
        if since is not None:
            expired = expired.filter(**{f"{column}__gte": since})
        rows = list(expired.order_by(column).values_list("pk", column)[:chunk])
        if not rows:
            return removed
        ids, since = {pk for pk, _ in rows}, rows[-1][1]
        with transaction.atomic():
            PresenceEvent.objects.filter(**{f"{link}_id__in_batch": ids}).update(**{link: None})
            # The links are cleared: nothing is left for Django's collector to do.
            gone = model.objects.filter(pk__in_batch=ids)
            removed += gone._raw_delete(gone.db)


def _purge_device_tracks(cutoff: datetime, *, chunk: int) -> None:
    """Tracks whose fix is older than `cutoff`, and a jump that old on a newer track. Each
    statement keeps the age condition: a track a worker moved meanwhile is kept."""
    stale = DeviceTrack.objects.filter(at__lt=cutoff).order_by("pk")
    while ids := set(stale.values_list("pk", flat=True)[:chunk]):
        DeviceTrack.objects.filter(pk__in_batch=ids, at__lt=cutoff).delete()
    DeviceTrack.objects.filter(jump_at__lt=cutoff).update(
        jump_latitude=None, jump_longitude=None, jump_accuracy=None, jump_at=None
    )


def budget_days_before(now: datetime, count: int) -> list[date]:
    """The `count` days before `now`'s, in the zone daily budgets count days in, oldest first:
    the days gone by whose campaign figures record_campaign_days recounts."""
    today = local_day(now, get_budget_zone())
    return [today - timedelta(days=n) for n in range(count, 0, -1)]


def record_campaign_days(
    *, days: Collection[date], now: datetime, campaign: Campaign | None = None
) -> int:
    """Record every campaign's (or one campaign's) figures for these days, the budget's
    (CampaignDay), replacing what an earlier run recorded for them; returns how many rows.
    Idempotent: Celery beat runs it every hour over the last two days gone by, whose SMS
    statuses may still be arriving, and a redemption reported late runs it for its day and
    campaign."""
    with transaction.atomic():
        recorded = CampaignDay.objects.filter(day__in=set(days))
        if campaign is not None:
            recorded = recorded.filter(campaign=campaign)
        # Counted once the rows it replaces are locked: two recounts of a day take turns,
        # and the second counts what the first committed (two tills reporting late).
        list(recorded.select_for_update())
        figures = get_day_figures(days=days, campaign=campaign)
        # A campaign with nothing left to count on a day (deleted deliveries) keeps no row.
        recorded.delete()
        CampaignDay.objects.bulk_create(
            [
                CampaignDay(
                    campaign_id=campaign_id,
                    day=day,
                    zone=settings.SMS_BUDGET_TIMEZONE,
                    recorded_at=now,
                    **values,
                )
                for (campaign_id, day), values in figures.items()
            ],
            # A run beside this one (beat and the backfill command) may have inserted first.
            update_conflicts=True,
            unique_fields=["campaign", "day"],
            update_fields=[*EMPTY_DAY, "zone", "recorded_at"],
        )
    return len(figures)
