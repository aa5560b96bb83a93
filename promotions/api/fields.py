"""Serializer fields shared by the API: strict about what clients commonly get wrong."""

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail
from rest_framework.fields import empty

from customers.models import validate_time_zone

# The mock flag refusal of a batch item that has no `mocked` field: a sighting, an event.
ONLY_PINGS_ARE_MOCKED = "Unknown field: only pings are flagged as mocked, with `mocked`."


def looks_like_a_mock_flag(key: str) -> bool:
    """Whether `key` may be a location's mock flag under a name of an app developer's
    choosing: is_mock, isMock, isFromMockProvider (Android's Location), mock_location..."""
    return "mock" in key.lower()


class KnownFieldsOnly:
    """Mixin for input serializers, nested ones included: a key that names none of the
    fields is refused ({"<key>": ["Unknown field."]}), where DRF would drop it. A misspelt
    field is a client's mistake its answer must show: "consent" for "sms_consent" would be
    a 200 that changed nothing.

    A batch item (a ping, a sighting, a browsing event) sets `extra_keys_ignored`: apps and
    gateways send what their platform gives them (altitude, bearing, battery, a raw RSSI),
    and refusing those would lose every ping of an app. Its unknown keys are ignored, as
    DRF ignores them, but for one that looks like a mock flag: dropped, "is_mock" would
    take a mocked location for a genuine one, so it is refused with `mock_flag_message`.
    unknown_key_message() is the one statement of this; the pings' fast path asks it too.

    Read-only fields are fields too: a resource read, changed and sent back whole still
    goes in, its id and times ignored as DRF ignores them. promotions.api.schema says
    `additionalProperties: false` in the request schema of every serializer that refuses
    every unknown key."""

    unknown_field_message = "Unknown field."
    extra_keys_ignored = False
    mock_flag_message = "Unknown field: mock locations are flagged with `mocked`."

    @classmethod
    def unknown_key_message(cls, key: str) -> str | None:
        """Why `key`, which names none of the fields, is refused; None if it is ignored."""
        if not cls.extra_keys_ignored:
            return cls.unknown_field_message
        if looks_like_a_mock_flag(key):
            return cls.mock_flag_message
        return None

    def to_internal_value(self, data: Any) -> Any:
        unknown = {}
        if isinstance(data, Mapping):
            fields = self.fields  # type: ignore[attr-defined]
            for key in data:
                if key not in fields and (message := self.unknown_key_message(key)):
                    unknown[key] = [ErrorDetail(message, code="unknown")]
        try:
            values = super().to_internal_value(data)  # type: ignore[misc]
        except serializers.ValidationError as error:
            if unknown and isinstance(error.detail, dict):
                error.detail.update(unknown)
            raise
        if unknown:
            raise serializers.ValidationError(unknown)
        return values


class FiniteFloatField(serializers.FloatField):
    """A float that is a real number: no NaN, no infinity, no `true` read as 1."""

    default_error_messages = {
        "invalid": "A number is required.",
        "not_finite": "Must be a finite number, not NaN or infinity.",
    }

    def to_internal_value(self, data: object) -> float:
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, float) and not math.isfinite(data):
            self.fail("not_finite")
        return super().to_internal_value(data)


class GeoJsonField(serializers.JSONField):
    """A GeoJSON value as the body parser read it, for the model to judge (promotions.geo).
    DRF's JSONField encodes the value again, strictly, to check it: a NaN or a number past a
    double (1e400, read as infinity) anywhere in it was "Value must be valid JSON.", sending
    the client looking for a syntax error. The geometry's own check names the ring whose
    position is no finite number, and what it keeps holds no other number."""

    def to_internal_value(self, data: Any) -> Any:
        if self.binary or getattr(data, "is_json_string", False):
            return super().to_internal_value(data)  # text to read, as DRF reads it
        return data


class StrictCharField(serializers.CharField):
    """Text given as a JSON string, or as an integer (read as its decimal digits); never a
    float, nor a bool (refused as DRF's CharField refuses it).

    DRF's CharField str()s a float, so NaN arrived as the id "nan" and 1e3 as "1000.0": a
    float has no one spelling as text, and past 2**53 a client's encoder has already
    changed its digits. An integer has exactly one, the digits a client sending it as a
    string would send, so numeric retailer ids stay accepted."""

    default_error_messages = {
        "float": "Must be a string, not a floating-point number (nor NaN or Infinity).",
    }

    def to_internal_value(self, data: object) -> str:
        if isinstance(data, float):
            self.fail("float")
        return super().to_internal_value(data)


class MacAddressField(serializers.RegexField):
    """A Bluetooth device address in any of the spellings gateways write: pairs separated by
    colons or by dashes, twelve bare hex digits, or Cisco's three dotted groups of four;
    stored one way, AA:BB:CC:DD:EE:FF. The pattern is the schema's too: written so that a
    client's (ECMAScript) regex engine reads it as Python's does."""

    SPELLINGS = (
        r"^(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$"
        r"|^(?:[0-9A-Fa-f]{2}-){5}[0-9A-Fa-f]{2}$"
        r"|^[0-9A-Fa-f]{12}$"
        r"|^[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}$"
    )
    default_error_messages = {
        "invalid": (
            "A MAC address: 12 hex digits, as AA:BB:CC:DD:EE:FF, AA-BB-CC-DD-EE-FF, "
            "AABBCCDDEEFF or aabb.ccdd.eeff."
        ),
    }

    def __init__(self, **kwargs: Any) -> None:
        self.regex = re.compile(self.SPELLINGS)
        super().__init__(self.regex, **kwargs)

    def to_internal_value(self, data: object) -> str:
        # Checked here, as written: DRF's validators run on what this returns.
        written = super().to_internal_value(data)
        if not self.regex.search(written):
            self.fail("invalid")
        digits = "".join(ch for ch in written if ch not in ":-.")
        return ":".join(digits[i : i + 2] for i in range(0, 12, 2)).upper()


class FlagField(serializers.BooleanField):
    """A yes-or-no that is no unless the client says yes: left out or sent as null (how
    some JSON encoders write an optional field they have no value for), it is False."""

    # Only JSON null: DRF would also read the strings "null" and "" as null.
    NULL_VALUES: frozenset[Any] = frozenset()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, default=False, allow_null=True, **kwargs)

    def validate_empty_values(self, data: object) -> tuple[bool, Any]:
        is_empty, value = super().validate_empty_values(data)
        return is_empty, False if value is None else value


# Integer columns are PostgreSQL `integer`s; a larger number fails the INSERT (and, beyond
# 64 bits, SQLite's too), so it is refused as input instead.
DATABASE_INTEGER_MIN = -(2**31)
DATABASE_INTEGER_MAX = 2**31 - 1


class StrictIntegerField(serializers.IntegerField):
    """An integer given as a JSON number or a numeric string, never a bool; within the
    range a database integer column holds unless the caller gives a narrower one."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", DATABASE_INTEGER_MIN)
        kwargs.setdefault("max_value", DATABASE_INTEGER_MAX)
        super().__init__(**kwargs)

    def to_internal_value(self, data: object) -> int:
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class IntentWindowDaysField(StrictIntegerField):
    """How many days back an intent condition counts views: within how long browsing is
    kept, INTENT_WINDOW_DAYS (Campaign.clean refuses more; promotions.api.schema documents
    the limit as configured when the schema is generated)."""


@extend_schema_field(OpenApiTypes.DATETIME)
class InstantField(serializers.Field):
    """An ISO 8601 time that names its UTC offset; a time without one is ambiguous."""

    default_error_messages = {
        "invalid": "Expected an ISO 8601 time with a UTC offset, e.g. 2026-11-22T10:15:00+01:00.",
        "naive": "This time has no UTC offset; add one, e.g. +01:00 or Z.",
    }

    def to_internal_value(self, data: object) -> datetime:
        if not isinstance(data, str) or len(data) > 40:
            self.fail("invalid")
        try:
            value = datetime.fromisoformat(data)
        except ValueError:
            self.fail("invalid")
        if value.tzinfo is None:
            self.fail("naive")
        try:
            return value.astimezone(UTC)
        except (OverflowError, ValueError):
            self.fail("invalid")

    def to_representation(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class RecentInstantField(InstantField):
    """An instant of something that has happened: not ahead of the server's clock by more
    than phones drift, and, with `max_age`, recent enough to still be of use.

    The batch views put one `now` in the serializer context for the whole batch."""

    default_error_messages = {
        "future": "This time is {seconds} s ahead of the server's clock; check the device clock.",
        "too_old": "This time is more than {limit} old; it is no longer accepted.",
    }

    def __init__(self, *, max_age: Callable[[], timedelta] | None = None, **kwargs: Any) -> None:
        self.max_age = max_age
        super().__init__(**kwargs)

    def to_internal_value(self, data: object) -> datetime:
        value = super().to_internal_value(data)
        now = self.context.get("now") or timezone.now()
        ahead = (value - now).total_seconds()
        if ahead > settings.INGEST_MAX_CLOCK_SKEW_SECONDS:
            self.fail("future", seconds=round(ahead))
        if self.max_age is not None and value < now - self.max_age():
            self.fail("too_old", limit=_describe(self.max_age()))
        return value


def _describe(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    if hours % 24 == 0:
        return f"{int(hours // 24)} days"
    return f"{hours:g} hours"


class TimeZoneField(StrictCharField):
    """An IANA time zone name, such as Europe/Paris."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 64)
        super().__init__(**kwargs)

    def to_internal_value(self, data: object) -> str:
        value = super().to_internal_value(data)
        if value:
            try:
                validate_time_zone(value)
            except DjangoValidationError as error:
                raise serializers.ValidationError(error.messages) from None
        return value


class HourMinuteField(serializers.TimeField):
    """A time of day to the minute, "HH:MM" both ways. "HH:MM:00" is read too, as clients
    that write an RFC 3339 time send it; other seconds are refused: kept but never shown,
    21:00:30-21:00 would read back as the empty window 21:00-21:00."""

    default_error_messages = {
        "invalid": "A time to the minute, HH:MM such as 21:00; seconds, if any, are 00.",
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%H:%M", input_formats=["%H:%M", "%H:%M:%S"], **kwargs)

    def to_internal_value(self, value: object) -> time:
        parsed = super().to_internal_value(value)
        if parsed.second:
            self.fail("invalid")
        return parsed


class HourMinuteFieldSchema(OpenApiSerializerFieldExtension):
    """HourMinuteField's schema: a request may add ":00", a response never does.
    extend_schema_field gives a field one schema for both directions."""

    target_class = HourMinuteField

    def map_serializer_field(self, auto_schema: Any, direction: str) -> dict[str, Any]:
        seconds = "(:00)?" if direction == "request" else ""
        return {
            "type": "string",
            "pattern": rf"^([01]\d|2[0-3]):[0-5]\d{seconds}$",
            "example": "21:00",
        }


class AccuracyField(FiniteFloatField):
    """How far from the fix the phone may be, in metres: above 0, and within
    INGEST_MAX_ACCURACY_M (read when checked; promotions.api.schema documents both)."""

    default_error_messages = {
        "negative": "accuracy must be above 0 m.",
        "unknown": (
            "accuracy must be above 0 m: 0 means the phone does not know how accurate the fix is."
        ),
        "too_large": "An accuracy over {limit:g} m is not a location.",
    }

    def run_validation(self, data: object = empty) -> float | None:
        value = super().run_validation(data)
        if value is None:
            return value
        # Android's Location.getAccuracy() is 0.0 for a fix without one; no fix is exact,
        # and read as one it would count as inside any fence it falls in.
        if value < 0:
            self.fail("negative")
        if value == 0:
            self.fail("unknown")
        if value > settings.INGEST_MAX_ACCURACY_M:
            self.fail("too_large", limit=settings.INGEST_MAX_ACCURACY_M)
        return value


@extend_schema_field(
    {"type": "string", "format": "decimal", "pattern": r"^\d{0,10}(?:\.\d{0,2})?$"}
)
class AmountField(serializers.DecimalField):
    """A sum paid: 0 or more, to the cent, at most 10 digits before the point. Stated in
    the schema's pattern, which DRF's (from max_digits alone) would give a minus sign."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_digits=12, decimal_places=2, min_value=0, **kwargs)

    def validate_precision(self, value: Decimal) -> Decimal:
        # A money type may write more places than it holds digits for (SQL Server's `money`
        # writes 59.9000): zeros past the cent are the same cents, and only a digit there is
        # a sum of floating-point noise (59.900000000000006).
        value = _zeros_past_places_dropped(value, self.decimal_places)
        # DRF checks the total of digits first: a till's floating-point sum (59.900000000000006)
        # or 12 digits before the point would be told "no more than 12 digits in total",
        # which names neither rule it breaks. The two rules, each by its own message, imply
        # the total.
        _, digits, exponent = value.as_tuple()
        if -exponent > self.decimal_places:
            self.fail("max_decimal_places", max_decimal_places=self.decimal_places)
        if len(digits) + exponent > self.max_whole_digits:
            self.fail("max_whole_digits", max_whole_digits=self.max_whole_digits)
        return super().validate_precision(value)

    def quantize(self, value: Decimal) -> Decimal:
        # "-0" is 0 and passes min_value, but would be kept and answered as "-0.00", which
        # the pattern refuses; both directions quantize, so zero loses its sign here.
        quantized = super().quantize(value)
        return quantized.copy_abs() if quantized == 0 else quantized


def _zeros_past_places_dropped(value: Decimal, places: int) -> Decimal:
    """`value` without the trailing zeros it has past `places` decimal places: 59.9000 is
    59.90 for two places; 59.9001 is left as it is."""
    sign, digits, exponent = value.as_tuple()
    kept = list(digits)
    while isinstance(exponent, int) and exponent < -places and kept and kept[-1] == 0:
        kept.pop()
        exponent += 1
    if not kept:
        return Decimal((sign, (0,), -places))  # 0.000 is 0.00
    return Decimal((sign, tuple(kept), exponent))
