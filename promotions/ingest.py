"""Storing a batch of items once: duplicates counted, never stored twice, one bulk insert.

Shared by every batch endpoint (events, pings, sightings). Items arrive validated, as
(index in the request, values) pairs; what cannot be stored is rejected by its index.
"""

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from django.db import IntegrityError, connection, models, transaction

from customers.models import Customer, Device
from promotions.batch_sql import rows_source
from promotions.models import LocationBatch, Ping, Sighting

Row = TypeVar("Row", bound=models.Model)
Errors = dict[str, list[str]]
# Validated items with their index in the request.
ValidItems = list[tuple[int, dict[str, Any]]]
# Two concurrent requests carrying the same item can both pass the duplicate check; the
# loser's insert fails on the unique constraint and is retried with fresh knowledge.
INSERT_ATTEMPTS = 3
# The PostgreSQL advisory lock that ping ingest holds shared and a device's deletion holds
# exclusively (any fixed number no other code uses).
DEVICES_LOCK = 0x7061_7373_6167_6501


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
    params = [received_at, *params]
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


def hold_devices_for_ingest() -> None:
    """Called first in the transaction that stores pings: a device deleted meanwhile waits
    for it to commit (see `devices_deleted`). One shared lock a request, where a foreign key
    would lock the device's row once for every ping."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [DEVICES_LOCK])


def wait_for_ping_ingest() -> None:
    """Called in a transaction that deletes a device's pings: pings name their device without
    a foreign key, so the deletion could miss pings that an ingest in flight stores after it
    collected them. This waits for such ingest to commit (then the deletion sees its pings);
    ingest starting later waits for this transaction."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [DEVICES_LOCK])


def devices_deleted(sender: type, instance: models.Model, **kwargs: Any) -> None:
    """pre_delete receiver for Device: its pings and sightings go with it, those of an
    ingest in flight too; ingest starting later finds no device and rejects them. The owner
    is locked first, as the location worker locks a batch's customers before it reads their
    pings: a batch never writes presence for pings deleted under it."""
    list(Customer.objects.select_for_update().filter(pk=instance.customer_id).values("pk"))
    # Sighting ingest holds the device's row (a key share) until it commits; locked here,
    # the deletion waits for those sightings rather than failing on their foreign key at
    # commit.
    list(Device.objects.select_for_update().filter(pk=instance.pk).values("pk"))
    wait_for_ping_ingest()
    Ping.objects.filter(device_id=instance.pk).delete()
    # Django collected the device's sightings before this hook ran, without those.
    Sighting.objects.filter(device_id=instance.pk).delete()
