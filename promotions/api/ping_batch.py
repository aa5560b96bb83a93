"""The pings endpoint's fast path: a batch of well-formed pings decoded and checked in one
pass, at about a microsecond a ping where DRF's serializer takes tens.

PingSerializer stays the one statement of the rules and their messages. The fast path
accepts only what it knows the serializer accepts, with the same values, and hands
everything else to the serializer: a body msgspec cannot decode into the shape below (any
wrong type, missing field or malformed JSON anywhere) goes whole to the general path, and
an item that breaks a rule is judged alone by the serializer, which gives its reasons.
tests/promotions/test_ping_batch.py checks the two agree on generated input.

Apps send keys of their own beside the SPEC's (altitude, bearing, provider...). The
serializer ignores them, but for a mock flag under another name, which it refuses
(KnownFieldsOnly.unknown_key_message). A batch of pings with the SPEC's keys alone, the
common case, is decoded in one pass; one with other keys in three (the first fails at the
first such key): the pings typed, then each ping's keys with its values as written, to
ask the serializer about each new key. A key it refuses sends the body to the general
path, which rejects that ping with its reason.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from django.conf import settings

from promotions.api.serializers import ItemJudge, PingSerializer
from promotions.ingest import IngestResult, ValidItems

# Field lengths of PingSerializer (and of the Ping columns).
DEVICE_ID_MAX = 100
PING_ID_MAX = 64
INSTANT_MAX = 40
# The longest value of a key the serializer ignores that the fast path skips; a longer one
# sends the body to the general path. Skipped, it is read as msgspec reads JSON, not as the
# general path's parser does, which answers 400 for some values msgspec takes: an integer
# of over 4,300 digits, nesting deeper than the recursion limit. Within 256 bytes a value
# holds neither.
EXTRA_VALUE_MAX = 256


class PingIn(msgspec.Struct):
    """A ping's fields, typed; its other keys skipped (decode_ping_batch looks at them)."""

    device_id: str
    latitude: float
    longitude: float
    accuracy: float
    recorded_at: str
    ping_id: str | None = None
    speed: float | None = None
    mocked: bool | None = None


# Unknown fields around the pings are refused: the body goes to the general path.
class PingBatchIn(msgspec.Struct, forbid_unknown_fields=True):
    pings: list[PingIn]


class _BarePingIn(PingIn, forbid_unknown_fields=True):
    """A ping with the SPEC's keys alone: nothing skipped, every byte read as a value."""


class _BarePingBatchIn(PingBatchIn):
    pings: list[_BarePingIn]


class _PingKeys(msgspec.Struct):
    """Each ping's keys, with its values as written."""

    pings: list[dict[str, msgspec.Raw]]


PING_FIELDS = frozenset(PingIn.__struct_fields__)
_bare_decoder = msgspec.json.Decoder(_BarePingBatchIn)
_decoder = msgspec.json.Decoder(PingBatchIn)
_keys_decoder = msgspec.json.Decoder(_PingKeys)


def decode_ping_batch(body: bytes) -> PingBatchIn | None:
    """A body in the expected shape, typed; None for the general path to parse."""
    try:
        return _bare_decoder.decode(body)
    except msgspec.MsgspecError:
        pass  # a key beside the SPEC's, or a body the general path is to parse
    try:
        batch = _decoder.decode(body)
        keys = _keys_decoder.decode(body)
    except (msgspec.MsgspecError, RecursionError):
        return None
    # msgspec checks the UTF-8 of what it decodes, not of a value it skips.
    if not (body.isascii() or _is_utf8(body)):
        return None
    # What the serializer makes of each extra key: ignored, or (a mock flag) refused.
    refused: dict[str, bool] = {}
    for written in keys.pings:
        for key, value in written.items():
            if key in PING_FIELDS:
                continue
            if len(value) > EXTRA_VALUE_MAX:
                return None
            if key not in refused:
                refused[key] = PingSerializer.unknown_key_message(key) is not None
            if refused[key]:
                # A misconfigured app, rare: the serializer words the refusal.
                return None
    return batch


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def validate_ping_batch(pings: list[PingIn], now: datetime) -> tuple[ValidItems, IngestResult]:
    """Validated values by index, as PingSerializer gives them; the rest rejected with its
    reasons. `now` is the batch's one clock reading."""
    limits = _Limits(now)
    valid: ValidItems = []
    result = IngestResult()
    judge = ItemJudge(PingSerializer, {"now": now})
    for index, ping in enumerate(pings):
        values = limits.clean(ping)
        if values is None:
            values, errors = judge(msgspec.structs.asdict(ping))
            if errors is not None:
                result.reject(index, errors)
                continue
        valid.append((index, values))
    return valid, result


class _Limits:
    def __init__(self, now: datetime) -> None:
        self.latest = now + timedelta(seconds=settings.INGEST_MAX_CLOCK_SKEW_SECONDS)
        self.earliest = now - timedelta(hours=settings.INGEST_MAX_PING_AGE_HOURS)
        self.max_accuracy = settings.INGEST_MAX_ACCURACY_M

    def clean(self, ping: PingIn) -> dict[str, Any] | None:
        """The serializer's values for a ping it accepts as is; None when in any doubt."""
        if not (
            _plain_text(ping.device_id, DEVICE_ID_MAX)
            and (ping.ping_id is None or _plain_text(ping.ping_id, PING_ID_MAX))
            and -90.0 <= ping.latitude <= 90.0
            and -180.0 <= ping.longitude <= 180.0
            and 0.0 < ping.accuracy <= self.max_accuracy
            and len(ping.recorded_at) <= INSTANT_MAX
        ):
            return None
        try:
            recorded_at = datetime.fromisoformat(ping.recorded_at)
            if recorded_at.tzinfo is None:
                return None
            recorded_at = recorded_at.astimezone(UTC)
        except (ValueError, OverflowError):
            return None
        if not self.earliest <= recorded_at <= self.latest:
            return None
        speed = ping.speed
        return {
            "ping_id": ping.ping_id,
            "device_id": ping.device_id,
            "latitude": ping.latitude,
            "longitude": ping.longitude,
            "accuracy": ping.accuracy,
            "recorded_at": recorded_at,
            "speed": None if speed is None or speed < 0 else speed,
            "mocked": ping.mocked is True,  # null is not mocked, as for the serializer
        }


def _plain_text(value: str, max_length: int) -> bool:
    """True for text a DRF CharField keeps as it is: not blank, no surrounding whitespace
    for it to trim, no NUL, within its length."""
    return 0 < len(value) <= max_length and value == value.strip() and "\x00" not in value
