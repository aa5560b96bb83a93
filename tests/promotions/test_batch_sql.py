"""The batch SQL helpers read and write what the ORM would, on either database."""

from datetime import UTC, datetime

import pytest
from django.db import connection

from customers.models import Device
from promotions.batch_sql import EpochSeconds, array_literal
from promotions.models import Ping
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "at",
    [
        datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 29, 12, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 11, 29, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
    ],
)
def test_a_time_read_as_epoch_seconds_comes_back_to_the_microsecond(at):
    device = DeviceFactory()
    ping = Ping.objects.create(device=device, latitude=0, longitude=0, accuracy=5, recorded_at=at)

    seconds = Ping.objects.filter(pk=ping.pk).values_list(EpochSeconds("recorded_at"), flat=True)

    assert datetime.fromtimestamp(seconds[0], UTC) == at


def test_in_batch_matches_in_for_ids_and_text_with_quotes():
    devices = [DeviceFactory(device_id=name) for name in ['a"b', "c\\d", "e,f", "{g}", "plain"]]
    wanted = {'a"b', "c\\d", "e,f", "{g}"}

    found = set(
        Device.objects.filter(device_id__in_batch=wanted).values_list("device_id", flat=True)
    )
    by_id = Device.objects.filter(id__in_batch={devices[0].id, devices[4].id})

    assert found == wanted
    assert {device.device_id for device in by_id} == {'a"b', "plain"}


def test_rows_come_back_from_rows_source_as_they_went_in():
    from promotions.batch_sql import rows_source

    rows = [
        (1, 'a"b', 48.8566, True, datetime(2026, 11, 29, 12, 0, 0, 1, tzinfo=UTC)),
        (2, "c\\d,{e} é", -0.1, False, datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
        (3, None, None, None, None),
        (4, "line\nbreak\ttab", 1e-7, True, None),
    ]
    source, params = rows_source(["bigint", "varchar", "float8", "boolean", "timestamptz"], rows)
    with connection.cursor() as cursor:
        cursor.execute(source, params)
        found = cursor.fetchall()

    def normal(row):
        pk, text, number, flag, at = row
        if isinstance(at, str):  # SQLite gives the stored text back
            at = datetime.fromisoformat(at).replace(tzinfo=UTC)
        return (int(pk), text, None if number is None else float(number), flag, at)

    assert [normal(row)[:3] for row in found] == [row[:3] for row in rows]
    assert [normal(row)[4] for row in found] == [row[4] for row in rows]
    assert [None if f is None else bool(int(f)) for _, _, _, f, _ in found] == [
        True,
        False,
        None,
        True,
    ]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="array literals: PostgreSQL")
def test_text_travels_through_an_array_literal_unchanged():
    # What advisory locks on names (devices, zone codes) hash is what the server reads.
    names = ['a"b', "c\\d", "e,f", "{g}", "NULL", "", " spaced ", "é 漢", "line\nbreak", '\\"']
    with connection.cursor() as cursor:
        cursor.execute("SELECT unnest(%s::text[])", [array_literal(names, "text")])
        found = [name for (name,) in cursor.fetchall()]

    assert found == names
