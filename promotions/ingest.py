"""Storing a batch of items once: duplicates counted, never stored twice, one bulk insert.

Shared by every batch endpoint (events, pings, sightings). Items arrive validated, as
(index in the request, values) pairs; what cannot be stored is rejected by its index.
"""

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.db import IntegrityError, models, transaction

Row = TypeVar("Row", bound=models.Model)
Errors = dict[str, list[str]]
# Validated items with their index in the request.
ValidItems = list[tuple[int, dict[str, Any]]]
# Two concurrent requests carrying the same item can both pass the duplicate check; the
# loser's insert fails on the unique constraint and is retried with fresh knowledge.
INSERT_ATTEMPTS = 3


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    stored_ids: list[int] = field(default_factory=list)

    def reject(self, index: int, errors: Errors) -> None:
        self.rejected.append({"index": index, "errors": errors})

    def add_stored(self, rows: list[models.Model], duplicates: int) -> None:
        self.accepted += len(rows)
        self.duplicates += duplicates
        self.stored_ids.extend(row.pk for row in rows)

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
