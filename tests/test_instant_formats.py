"""The API's date-time fields, its JSON renderer and the admin's JSON export write instants
through DRF and Django, not through promotions.times; its format_instant_for_api writes
them in the API's messages ("This code expired on ..."). Pinned here to agree, so that a
client reads the same second in a message as in the field beside it. No database."""

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from rest_framework import serializers
from rest_framework.utils.encoders import JSONEncoder

from promotions.api.fields import InstantField
from promotions.times import format_instant_for_api

PARIS = ZoneInfo("Europe/Paris")
WHOLE_SECONDS = [
    datetime(2026, 11, 24, 9, 15, 30, tzinfo=UTC),
    datetime(2026, 3, 29, 0, 0, tzinfo=UTC),
]
FRACTIONS = [
    datetime(2026, 11, 24, 9, 15, 30, 250_000, tzinfo=UTC),
    # An offer's last instant, as Delivery.expires_at holds it.
    datetime(2026, 11, 25, 0, 0, tzinfo=UTC) - timedelta(microseconds=1),
]


def written_by_the_api(instant: datetime) -> dict[str, str]:
    """The instant as each of the API's and the exports' writers spell it."""
    return {
        "DateTimeField": serializers.DateTimeField().to_representation(instant),
        "InstantField": InstantField().to_representation(instant),
        "JSONRenderer": json.loads(json.dumps(instant, cls=JSONEncoder)),
        "admin export": json.loads(json.dumps(instant, cls=DjangoJSONEncoder)),
    }


@pytest.mark.parametrize("instant", WHOLE_SECONDS)
def test_a_whole_second_reads_the_same_in_a_message_as_in_the_api_and_the_exports(instant):
    assert set(written_by_the_api(instant).values()) == {format_instant_for_api(instant)}


@pytest.mark.parametrize("instant", WHOLE_SECONDS)
def test_the_api_fields_write_an_instant_read_in_another_zone_in_utc_as_messages_do(instant):
    in_paris = instant.astimezone(PARIS)

    assert serializers.DateTimeField().to_representation(in_paris) == format_instant_for_api(
        in_paris
    )
    assert InstantField().to_representation(in_paris) == format_instant_for_api(in_paris)


@pytest.mark.parametrize("instant", FRACTIONS)
def test_a_message_gives_the_second_the_api_and_the_exports_write_a_fraction_of(instant):
    second = format_instant_for_api(instant).removesuffix("Z")

    for writer, written in written_by_the_api(instant).items():
        assert written.startswith(second + "."), writer
        assert written.endswith("Z"), writer
