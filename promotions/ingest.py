"""Storing a batch of items once: duplicates counted, never stored twice, one bulk insert.

Shared by every batch endpoint (events, pings, sightings). Items arrive validated, as
(index in the request, values) pairs; what cannot be stored is rejected by its index.
"""

from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from django.db import IntegrityError, connection, models, transaction

from customers.models import Customer, Device
from promotions.batch_sql import rows_source
from promotions.database import hold_names
from promotions.models import LocationBatch, Ping, PresenceEvent, Sighting

Row = TypeVar("Row", bound=models.Model)
Errors = dict[str, list[str]]
# Validated items with their index in the request.
ValidItems = list[tuple[int, dict[str, Any]]]
# Two concurrent requests carrying the same item can both pass the duplicate check; the
# loser's insert fails on the unique constraint and is retried with fresh knowledge.
INSERT_ATTEMPTS = 3
# The first key of the PostgreSQL advisory locks on devices, the second the device_id's
# bucket: ping ingest holds its batch's devices' buckets shared, a device's deletion its
# own exclusively. Apart from customers.services.NUMBER_LOCKS.
DEVICE_LOCKS = 0x4456  # "DV"
# Buckets, not a lock a device: every lock a transaction holds takes a slot of PostgreSQL's
# shared lock table (max_locks_per_transaction x max_connections, 6,400 by default), and a
# few gateways' batches of a thousand devices each would fill it ("out of shared memory").
# An app uploads its own device's pings, one bucket; an erasure holds up 1/64 of them.
DEVICE_LOCK_BUCKETS = 64


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, index: int, errors: Errors) -> None:
        self.rejected.append({"index": index, "errors": errors})

    def add_stored(self, stored: int, duplicates: int) -> None:
        self.accepted += stored
        self.duplicates += duplicates

    def add(self, other: "IngestResult") -> None:
        self.add_stored(other.accepted, other.duplicates)
        self.rejected.extend(other.rejected)

    def as_response(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": sorted(self.rejected, key=lambda item: item["index"]),
        }


def insert_new_rows(
    model: type[Row],
    rows: list[Row],
    keys_of: Callable[[Row], Iterable[Hashable]],
    stored_keys: Callable[[list[Row]], set[Hashable]],
) -> tuple[list[Row], int]:
    """Insert the rows that are new; return them (with their ids) and how many were not.

    `keys_of(row)` gives every key that identifies a row (a ping is identified by its
    ping_id and by its device and time); `stored_keys(rows)` returns those already stored,
    in one query. A row is a duplicate when any of its keys is stored or earlier in `rows`.
    """
    for attempt in range(INSERT_ATTEMPTS):
        seen = stored_keys(rows) if rows else set()
        fresh = []
        for row in rows:
            keys = list(keys_of(row))
            if any(key in seen for key in keys):
                continue
            seen.update(keys)
            fresh.append(row)
        try:
            with transaction.atomic():
                model.objects.bulk_create(fresh)
        except IntegrityError:
            if attempt == INSERT_ATTEMPTS - 1:
                raise
            for row in fresh:
                row.pk = None
            continue
        return fresh, len(rows) - len(fresh)
    raise AssertionError("unreachable")


# A ping as a row: device pk, ping_id, latitude, longitude, accuracy, recorded_at, speed,
# mocked.
PingRow = tuple[int, str | None, float, float, float, datetime, float | None, bool]
_PING_COLUMNS = "device_id, ping_id, latitude, longitude, accuracy, recorded_at, speed, mocked"


def insert_ping_batch(
    rows: list[PingRow], received_at: datetime, *, skip_stored: bool
) -> tuple[int, int | None]:
    """Insert a request's pings and the location batch that names the new ones; return how
    many were new and the batch's id (None when none was). This is the ingest hot path: the
    rows travel as one parameter a column, no model instance built for each.

    The database tells duplicates apart: a ping_id or a device and time already stored, or
    earlier in `rows`. Nearly every batch is all new, so the caller inserts it plainly
    first (`skip_stored=False`), and a stored ping makes the statement fail with
    IntegrityError (a concurrent request's same ping is waited for until it commits). Only
    then does the caller roll back and insert again with `skip_stored=True`, which adds
    `ON CONFLICT DO NOTHING`: that searches every unique index, the primary key's too, for
    each row before inserting it, over a third of the statement's cost."""
    if not rows:
        return 0, None
    source, params = rows_source(
        ["bigint", "varchar", "float8", "float8", "float8", "timestamptz", "float8", "boolean"],
        rows,
    )
    insert = (
        f"INSERT INTO {Ping._meta.db_table} ({_PING_COLUMNS}, suspicious, received_at) "
        f"SELECT *, false, %s FROM ({source}) AS batch WHERE true"
        f"{' ON CONFLICT DO NOTHING' if skip_stored else ''} RETURNING id"
    )
    # Written as the ORM writes it (SQLite keeps text): a ping's receipt is its batch's, and
    # the presence tick finds the pings of a batch still waiting by it.
    params = [connection.ops.adapt_datetimefield_value(received_at), *params]
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(insert, params)
            ids = [pk for (pk,) in cursor.fetchall()]
            return len(ids), new_location_batch(received_at=received_at, ping_ids=ids)
        # PostgreSQL writes the batch row in the same statement: the ids never travel.
        cursor.execute(
            f"WITH stored AS ({insert}) "
            f"INSERT INTO {LocationBatch._meta.db_table} (received_at, ping_ids, sighting_ids) "
            "SELECT %s, jsonb_agg(id), '[]'::jsonb FROM stored HAVING count(*) > 0 "
            "RETURNING id, jsonb_array_length(ping_ids)",
            [*params, received_at],
        )
        batch = cursor.fetchone()
    return (0, None) if batch is None else (batch[1], batch[0])


def new_location_batch(
    *, received_at: datetime, ping_ids: Sequence[int] = (), sighting_ids: Sequence[int] = ()
) -> int | None:
    """Record what one request stored, for a worker to process; None when it stored
    nothing. Called in the transaction that stored the rows, so a batch never names rows
    that are not there."""
    if not (ping_ids or sighting_ids):
        return None
    batch = LocationBatch.objects.create(
        received_at=received_at, ping_ids=list(ping_ids), sighting_ids=list(sighting_ids)
    )
    return batch.pk


def hold_devices_for_ingest(device_ids: Collection[str]) -> None:
    """Called first in the transaction that stores pings, before it reads the devices: a
    device being deleted meanwhile is read once its deletion has committed (gone), and one
    deleted later waits for these pings to commit, then deletes them too (see
    `delete_location_history`). One lock a bucket of devices (DEVICE_LOCK_BUCKETS), so that
    deleting one device stalls only the ingest of the devices in its bucket; one statement a
    request, where a foreign key would lock the device's row once for every ping."""
    _lock_devices(device_ids, shared=True)


def hold_devices_from_ingest(*, device_pks: Collection[int]) -> list[int]:
    """Wait for the devices' ingest in flight to commit, and hold off any that starts later
    until this transaction commits: before their history is deleted, or a device is
    renamed (ping ingest in flight under its old id stores for it, and a deletion that
    came after the rename would lock the new id only, and miss those pings). The devices
    found, by pk. Called with the devices' owner locked where it is locked at all."""
    # Sighting ingest holds the device's row (a key share) until it commits; locked here,
    # this waits for those sightings rather than missing them.
    devices = list(
        Device.objects.select_for_update()
        .filter(pk__in=device_pks)
        .order_by("pk")
        .values_list("pk", "device_id")
    )
    # Read with the row locked: the device_id that ingest looks the device up by.
    _lock_devices([device_id for _, device_id in devices], shared=False)
    return [pk for pk, _ in devices]


def delete_location_history(*, device_pks: Collection[int]) -> None:
    """Delete the devices' pings and sightings, those of an ingest in flight too; ingest
    starting later waits for this transaction to commit. Called in it with the devices'
    owner locked (see devices_deleted).

    Each goes in one statement, its presence events' evidence link cleared first: Django's
    collector would load every ping into Python to clear the links one by one, months of
    them for a phone, holding the devices' locks, hence their ingest, all that time."""
    pks = hold_devices_from_ingest(device_pks=device_pks)
    for model, link in ((Ping, "ping"), (Sighting, "sighting")):
        PresenceEvent.objects.filter(**{f"{link}__device_id__in": pks}).update(**{link: None})
        history = model.objects.filter(device_id__in=pks)
        history._raw_delete(history.db)


def _lock_devices(device_ids: Collection[str], *, shared: bool) -> None:
    """Take the devices' advisory locks in key order (see database.hold_names): an erasure
    locking a customer's devices and a batch carrying several of them cannot each wait for
    a lock the other holds."""
    hold_names(DEVICE_LOCKS, device_ids, shared=shared, buckets=DEVICE_LOCK_BUCKETS)


def devices_deleted(sender: type, instance: models.Model, **kwargs: Any) -> None:
    """pre_delete receiver for Device: its pings and sightings go with it, those of an
    ingest in flight too; ingest starting later finds no device and rejects them. The owner
    is locked first, as the location worker locks a batch's customers before it reads their
    pings: a batch never writes presence for pings deleted under it."""
    list(Customer.objects.select_for_update().filter(pk=instance.customer_id).values("pk"))
    delete_location_history(device_pks=[instance.pk])
