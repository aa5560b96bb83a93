"""Property tests of the input serializers: whatever a client sends, `is_valid()` answers
True or False and never raises, and what it accepts is of the right type, in range and
storable in PostgreSQL (no NUL, no lone surrogate, no NaN, aware UTC times).

The strategies here are shared with tests/test_no_server_errors.py, which sends the same
kinds of values through the API."""

import json
import math
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from itertools import count
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import models
from django.utils import timezone as django_timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework import serializers
from rest_framework.exceptions import ParseError

from customers.api.serializers import (
    BrowsingEventSerializer,
    CustomerInputSerializer,
    DeviceInputSerializer,
    IdentifySerializer,
)
from customers.models import BrowsingEvent, Customer, Device
from promotions.api.batch import batch_items, validate_items
from promotions.api.fields import InstantField, RecentInstantField, StrictCharField
from promotions.api.identity import (
    EddystoneUidSerializer,
    IBeaconSerializer,
    RawAdvertisementField,
)
from promotions.api.parsers import JsonBodyParser, PingBatchParser
from promotions.api.ping_batch import PingBatchIn, validate_ping_batch
from promotions.api.serializers import (
    GatewaySightingSerializer,
    PingSerializer,
    SightingSerializer,
)
from promotions.models import Ping, Sighting

BEACON_UUID = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"
RAW_IBEACON = "0201061aff4c000215" + BEACON_UUID.replace("-", "") + "00010002c5"
IDENTITY_KEY = re.compile(
    r"ibeacon:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:\d{1,5}:\d{1,5}"
    r"|eddystone:[0-9a-f]{20}:[0-9a-f]{12}"
)
E164 = re.compile(r"\+[1-9][0-9]{1,14}")

FUZZ = settings(
    max_examples=150,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- Strategies: what a JSON body can hold, and the values that break parsers ------------

# A lone surrogate reaches Python from a JSON "\ud800" escape; the body is otherwise valid.
characters = st.one_of(
    st.characters(),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
)
ODD_STRINGS = [
    "",
    " ",
    "\n",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfff",
    "\ud83d\ude00",
    "😀",
    "\ufeff",
    "\u2028",
    "NaN",
    "nan",
    "Infinity",
    "-inf",
    "1e400",
    "-1e400",
    "1" * 400,
    "0x10",
    "١٢٣",
    "\uff11\uff12",  # fullwidth digits
    "\U0001d7d7",  # mathematical bold nine
    "true",
    "null",
    "%00",
    "%ED%A0%80",
    "../..",
]
texts = st.one_of(
    st.text(characters, max_size=24),
    st.sampled_from(ODD_STRINGS),
    st.integers(min_value=30, max_value=2100).map(lambda n: "é" * n),
)
HUGE_INTEGERS = [2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 2**64, 10**20, 10**400, -(10**400)]
numbers = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.sampled_from(HUGE_INTEGERS),
    # JSON reads integers of up to 4,300 digits.
    st.integers(min_value=-(10**4000), max_value=10**4000),
    st.floats(),  # NaN and infinities included: the parser reads NaN and Infinity literals.
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(texts, children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def odd_times(draw: st.DrawFn) -> str:
    """ISO 8601 times a client could send: near now or at the ends of the calendar, with
    offsets from -23:59 to +23:59, in the extended or basic form."""
    now = datetime.now(UTC)
    instant = draw(
        st.one_of(
            st.floats(min_value=-100 * 3600, max_value=2 * 3600).map(
                lambda seconds: now + timedelta(seconds=seconds)
            ),
            st.sampled_from(
                [datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)]
            ),
            st.datetimes(timezones=st.just(UTC)),
        )
    )
    minutes = draw(st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1))
    try:
        local = instant.astimezone(timezone(timedelta(minutes=minutes)))
    except OverflowError:
        local = instant.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    text = local.isoformat()
    return draw(
        st.sampled_from(
            [
                text,
                text.replace("+00:00", "Z"),
                text.replace("-", "").replace(":", ""),
                text[:19],  # no offset
                text[:10],  # a date alone
            ]
        )
    )


ODD_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    -0.0,
    1e308,
    -1e308,
    5e-324,
    float("nan"),
    float("inf"),
    float("-inf"),
    *HUGE_INTEGERS,
    "x" * 101,
    "x" * 500,
    "x" * 2001,
    [],
    {},
    [1],
    {"a": 1},
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00+00:00",
    "0001-01-01T00:30:00+00:59",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59.999999+00:00",
    "9999-12-31T23:59:59+14:00",
    "2026-02-30T10:00:00Z",
    "2026-01-01T10:00:00+25:00",
    "10:00",
    RAW_IBEACON,
    "0201061aff4c000215" + "00" * 21,
    "ff" * 300,
]
# What replaces one field of a valid item: anything JSON, with the known troublemakers first.
odd_values = st.one_of(st.sampled_from(ODD_VALUES), odd_times(), json_values)

_ids = count()


def fresh_number() -> int:
    """A number no earlier example used: data persists between examples of one test."""
    return next(_ids)


def fresh_id(prefix: str) -> str:
    return f"{prefix}-{fresh_number()}"


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def leaf_paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """The path of every value in nested dicts and lists, containers included."""
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from leaf_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from leaf_paths(child, (*prefix, index))


@st.composite
def nearly_valid(
    draw: st.DrawFn, make_valid: Callable[[], dict[str, Any]], extra_keys: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A valid item with one value replaced by an odd one, removed, or added."""
    item = make_valid()
    paths = [*leaf_paths(item), *((key,) for key in extra_keys if key not in item)]
    path = draw(st.sampled_from(paths))
    *parents, leaf = path
    node = item
    for parent in parents:
        node = node[parent]
    if draw(st.integers(min_value=0, max_value=4)) == 0 and isinstance(node, dict):
        node.pop(leaf, None)
    else:
        node[leaf] = draw(
            st.one_of(odd_values, like(node.get(leaf) if isinstance(node, dict) else None))
        )
    return item


def like(value: Any) -> st.SearchStrategy[Any]:
    """Values of the same JSON type as `value`, often within a field's range, often not."""
    if isinstance(value, bool):
        return st.one_of(st.booleans(), st.sampled_from(["true", "false", "1", "0", "yes", 1, 0]))
    if isinstance(value, int | float):
        return st.one_of(
            st.integers(min_value=-(2**70), max_value=2**70),
            st.floats(),
            st.floats(min_value=-200, max_value=200),
            st.floats(min_value=-200, max_value=200).map(repr),
            st.integers(min_value=-70000, max_value=70000).map(str),
        )
    if isinstance(value, str):
        if re.match(r"\d{4}-\d\d-\d\dT", value):
            return odd_times()
        return st.one_of(texts, st.text(max_size=24))
    return st.nothing()


# --- Valid items, one per serializer ------------------------------------------------------


def valid_event() -> dict[str, Any]:
    return {
        "event_id": fresh_id("e"),
        "customer_id": "C-world",
        "type": "product_view",
        "sku": "X200",
        "product_name": "X200 headphones",
        "category": "audio",
        "url": "https://shop.example/x200",
        "occurred_at": ago(hours=1),
    }


def valid_ping() -> dict[str, Any]:
    return {
        "ping_id": fresh_id("p"),
        "device_id": "world-phone",
        "latitude": 48.8606,
        "longitude": 2.3417,
        "accuracy": 12.5,
        "recorded_at": ago(seconds=fresh_number() % 3600 + 1),
        "speed": 1.4,
        "mocked": False,
    }


def valid_sighting() -> dict[str, Any]:
    return {
        "device_id": "world-phone",
        "ibeacon": {"uuid": BEACON_UUID, "major": 1, "minor": 2},
        "rssi": -67,
        "seen_at": ago(seconds=fresh_number() % 3600 + 1),
    }


def valid_gateway_sighting() -> dict[str, Any]:
    return {
        "mac": "AA:BB:CC:DD:EE:FF",
        "ibeacon": {"uuid": BEACON_UUID, "major": 7, "minor": 7},
        "rssi": -60,
        "seen_at": ago(seconds=fresh_number() % 3600 + 1),
    }


def valid_customer() -> dict[str, Any]:
    return {
        "phone": "+33612345678",
        "first_name": "Léa",
        "timezone": "Europe/Paris",
        "locale": "fr-FR",
        "sms_consent": "opted_in",
        "consent_source": "web_form",
    }


def valid_device() -> dict[str, Any]:
    return {
        "device_id": fresh_id("device"),
        "customer_id": "C-world",
        "platform": "ios",
        "ibeacon": {"uuid": BEACON_UUID, "major": 9, "minor": fresh_number() % 65536},
    }


IDENTITY_FORMS = ("ibeacon", "eddystone_uid", "raw")
# serializer, a valid item, keys a client could add, and the model its values are stored in.
CASES = {
    "event": (BrowsingEventSerializer, valid_event, ("visitor_id",), BrowsingEvent),
    "ping": (PingSerializer, valid_ping, (), Ping),
    "sighting": (SightingSerializer, valid_sighting, IDENTITY_FORMS, Sighting),
    "gateway_sighting": (
        GatewaySightingSerializer,
        valid_gateway_sighting,
        IDENTITY_FORMS,
        Sighting,
    ),
    "customer": (CustomerInputSerializer, valid_customer, (), Customer),
    "device": (DeviceInputSerializer, valid_device, ("eddystone_uid",), Device),
}


def serializer_data(name: str) -> st.SearchStrategy[Any]:
    serializer_class, make_valid, extra_keys, _ = CASES[name]
    field_names = list(serializer_class().fields)
    return st.one_of(
        json_values,
        st.fixed_dictionaries({}, optional={key: odd_values for key in field_names}),
        nearly_valid(make_valid, extra_keys),
        nearly_valid(make_valid, extra_keys),
        nearly_valid(make_valid, extra_keys),
    )


# --- What accepted values must look like --------------------------------------------------


def assert_storable(value: Any, where: str = "") -> None:
    """PostgreSQL takes it: text without NUL or lone surrogates, finite floats, aware times."""
    if isinstance(value, str):
        assert "\x00" not in value, f"{where}: NUL in {value!r}"
        value.encode("utf-8")  # raises on a lone surrogate
    elif isinstance(value, float):
        assert math.isfinite(value), f"{where}: {value!r}"
    elif isinstance(value, datetime):
        assert value.utcoffset() == timedelta(0), f"{where}: {value!r} is not UTC"
    elif isinstance(value, dict):
        for key, child in value.items():
            assert_storable(key, where)
            assert_storable(child, f"{where}.{key}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            assert_storable(child, f"{where}[{index}]")
    else:
        assert value is None or isinstance(value, int), f"{where}: {value!r}"


def _model_max_length(model: type[models.Model], name: str) -> int | None:
    try:
        return model._meta.get_field(name).max_length
    except Exception:  # not a column of the model (a lookup key such as device_id)
        return None


def assert_field_in_range(
    field: serializers.Field, value: Any, now: datetime, model: type[models.Model]
) -> None:
    name = field.source
    if value is None:
        assert field.allow_null, f"{name} is null"
        return
    if isinstance(field, serializers.BooleanField):
        assert isinstance(value, bool), name
    elif isinstance(field, serializers.ChoiceField):
        assert value in field.choices, name
    elif isinstance(field, serializers.CharField):
        assert isinstance(value, str), name
        if field.max_length is not None:
            assert len(value) <= field.max_length, name
        column_max = _model_max_length(model, name)
        if column_max is not None:
            assert len(value) <= column_max, f"{name} does not fit its column"
    elif isinstance(field, serializers.FloatField):
        assert type(value) is float and math.isfinite(value), name
        assert field.min_value is None or value >= field.min_value, name
        assert field.max_value is None or value <= field.max_value, name
    elif isinstance(field, serializers.IntegerField):
        assert type(value) is int, name
        assert -(2**31) <= value < 2**31, f"{name} does not fit an integer column"
        assert field.min_value is None or value >= field.min_value, name
        assert field.max_value is None or value <= field.max_value, name
    elif isinstance(field, InstantField):
        assert isinstance(value, datetime) and value.utcoffset() == timedelta(0), name
        if isinstance(field, RecentInstantField):
            skew = timedelta(seconds=django_settings.INGEST_MAX_CLOCK_SKEW_SECONDS)
            assert value <= now + skew, name
            if field.max_age is not None:
                assert value >= now - field.max_age(), name
    else:
        raise AssertionError(f"No range check for {name} ({type(field).__name__}).")


def check(name: str, data: Any) -> None:
    serializer_class, _, _, model = CASES[name]
    now = django_timezone.now()
    serializer = serializer_class(data=data, context={"now": now})
    if not serializer.is_valid():
        assert serializer.errors, "invalid without a reason"
        return
    values = dict(serializer.validated_data)
    assert_storable(values, name)
    for field in serializer.fields.values():
        if field.source in IDENTITY_FORMS:
            assert field.source not in values, "identity forms are reduced to one key"
        elif field.source in values:
            assert_field_in_range(field, values.pop(field.source), now, model)
    identity = values.pop("identity", None) or values.pop("ble_identity", None)
    if identity is not None:
        assert IDENTITY_KEY.fullmatch(identity), identity
        assert len(identity) <= 80
    assert not values, f"unexpected values {values}"
    if name == "customer" and serializer.validated_data.get("phone"):
        assert E164.fullmatch(serializer.validated_data["phone"])


# --- The properties -----------------------------------------------------------------------


@FUZZ
@given(data=serializer_data("event"))
def test_an_event_item_is_valid_or_invalid_never_an_error(data):
    check("event", data)


@FUZZ
@given(data=serializer_data("ping"))
def test_a_ping_item_is_valid_or_invalid_never_an_error(data):
    check("ping", data)


@FUZZ
@given(data=serializer_data("sighting"))
def test_a_sighting_item_is_valid_or_invalid_never_an_error(data):
    check("sighting", data)


@FUZZ
@given(data=serializer_data("gateway_sighting"))
def test_a_gateway_sighting_item_is_valid_or_invalid_never_an_error(data):
    check("gateway_sighting", data)


@FUZZ
@given(data=serializer_data("customer"))
def test_customer_input_is_valid_or_invalid_never_an_error(data):
    check("customer", data)


@FUZZ
@given(data=serializer_data("device"))
def test_device_input_is_valid_or_invalid_never_an_error(data):
    check("device", data)


@FUZZ
@given(name=st.sampled_from(sorted(CASES)), text=texts)
def test_text_in_any_field_is_refused_or_storable(name, text):
    serializer_class, make_valid, _, _ = CASES[name]
    for key in serializer_class().fields:
        check(name, {**make_valid(), key: text})


identity_parts = st.fixed_dictionaries(
    {},
    optional={
        "uuid": st.one_of(st.just(BEACON_UUID), st.just(BEACON_UUID.upper()), odd_values),
        "major": st.one_of(st.integers(min_value=-1, max_value=65536), odd_values),
        "minor": st.one_of(st.integers(min_value=-1, max_value=65536), odd_values),
        "namespace": st.one_of(st.just("00" * 10), st.just("aB" * 10), odd_values),
        "instance": st.one_of(st.just("0000000000ab"), st.just("AB" * 6), odd_values),
    },
)


@FUZZ
@given(data=st.one_of(identity_parts, json_values), partial=st.booleans())
def test_an_identity_is_whole_or_refused_even_in_a_partial_update(data, partial):
    for serializer_class in (IBeaconSerializer, EddystoneUidSerializer):
        serializer = serializer_class(data=data, partial=partial)
        if serializer.is_valid():
            assert IDENTITY_KEY.fullmatch(serializer.validated_data)


# --- Text fields take text, not floats ----------------------------------------------------

FLOAT_FOR_TEXT = "Must be a string, not a floating-point number (nor NaN or Infinity)."
TEXT_INPUT_CASES = {name: case[:2] for name, case in CASES.items()}
TEXT_INPUT_CASES["identify"] = (
    IdentifySerializer,
    lambda: {"visitor_id": fresh_id("v"), "customer_id": "C-world"},
)
# Text read as something stricter: a MAC address, hex advertising data. No float's spelling
# ("1.5", "1e+20", "nan") is either, so a float is refused there with that field's reason.
TEXT_WITH_A_FORMAT = (serializers.RegexField, RawAdvertisementField)


def text_fields(serializer_class: type[serializers.Serializer]) -> dict[str, serializers.Field]:
    return {
        name: field
        for name, field in serializer_class().fields.items()
        if isinstance(field, serializers.CharField) and not field.read_only
    }


STRICT_TEXT_FIELDS = [
    (name, field_name)
    for name, (serializer_class, _) in sorted(TEXT_INPUT_CASES.items())
    for field_name, field in text_fields(serializer_class).items()
    if isinstance(field, StrictCharField)
]


def test_every_text_input_of_the_api_items_refuses_floats():
    # A new text field made with serializers.CharField would str() NaN into "nan" again.
    for serializer_class, _ in TEXT_INPUT_CASES.values():
        for name, field in text_fields(serializer_class).items():
            assert isinstance(field, (StrictCharField, *TEXT_WITH_A_FORMAT)), (
                f"{serializer_class.__name__}.{name} is a {type(field).__name__}"
            )


@FUZZ
@given(case=st.sampled_from(STRICT_TEXT_FIELDS), number=st.floats())
def test_a_float_in_a_text_field_is_refused_with_one_reason(case, number):
    name, field_name = case
    serializer_class, make_valid = TEXT_INPUT_CASES[name]
    serializer = serializer_class(
        data={**make_valid(), field_name: number}, context={"now": django_timezone.now()}
    )

    assert not serializer.is_valid()
    assert serializer.errors[field_name] == [FLOAT_FOR_TEXT]


def ping_endpoint_items(body: bytes, now: datetime) -> tuple[Any, list]:
    """What the pings endpoint makes of a body: its fast path when the body takes it."""
    data = PingBatchParser().decode(body)
    if isinstance(data, PingBatchIn):
        valid, result = validate_ping_batch(data.pings, now)
    else:
        valid, result = validate_items(batch_items(data, "pings"), PingSerializer, {"now": now})
    # The serializer leaves out an optional field the body left out; the fast path says None.
    return [(index, {"ping_id": None, "speed": None, **values}) for index, values in valid], (
        result.rejected
    )


def serializer_items(body: bytes, now: datetime) -> tuple[Any, list]:
    """What PingSerializer alone makes of the same body."""
    data = JsonBodyParser().decode(body)
    valid, result = validate_items(batch_items(data, "pings"), PingSerializer, {"now": now})
    return [(index, {"ping_id": None, "speed": None, **values}) for index, values in valid], (
        result.rejected
    )


ID_FLOATS = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 1.0, 1e3]), st.floats())
pings_with_float_ids = st.builds(
    lambda ping, field, number: {**ping, field: number},
    st.builds(valid_ping),
    st.sampled_from(["ping_id", "device_id"]),
    ID_FLOATS,
)


@FUZZ
@given(
    pings=st.lists(
        st.one_of(st.builds(valid_ping), nearly_valid(valid_ping), pings_with_float_ids),
        max_size=4,
    )
)
def test_the_pings_fast_path_judges_every_item_as_the_serializer_does(pings):
    # json.dumps writes NaN and Infinity bare, as a client's encoder would.
    body = json.dumps({"pings": pings}).encode()
    now = django_timezone.now()
    try:
        expected = serializer_items(body, now)
    except ParseError as error:
        with pytest.raises(ParseError) as refused:
            ping_endpoint_items(body, now)
        assert refused.value.detail == error.detail
        return

    valid, rejected = ping_endpoint_items(body, now)

    assert (valid, rejected) == expected
    for index, item in enumerate(pings):
        for field in ("ping_id", "device_id"):
            if type(item.get(field)) is float:
                reasons = next(one["errors"] for one in rejected if one["index"] == index)
                assert reasons[field] == [FLOAT_FOR_TEXT]
