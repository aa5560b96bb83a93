"""The pings fast path agrees with PingSerializer, the statement of the rules, on every
input: the same items accepted with the same values, the same reasons for the rest; keys
beside the SPEC's ignored, but for a mock flag under another name, refused by both."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ParseError

from promotions.api.parsers import JsonBodyParser, PingBatchParser
from promotions.api.ping_batch import EXTRA_VALUE_MAX, decode_ping_batch, validate_ping_batch
from promotions.api.serializers import PingSerializer
from promotions.models import Ping
from tests.clock import ago
from tests.factories import DeviceFactory

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

# The rules' edges; each strategy below draws from them half the time, as random values
# seldom land there.
EDGES = [-180.0, -90.0, -0.0, 0.0, 90.0, 180.0, 90.0000001, -90.0000001, 180.0000001, -1.0]
TEXT_EDGES = ["", " ", "a" * 64, "a" * 65, "a" * 100, "a" * 101, " pad ", "nul\x00", "é", 7]
NUMBER_EDGES = [*EDGES, 50_000.0, 50_000.5, 1e-300, 5e-324, 10**20, True, "48.5", None]
INSTANT_EDGES = [
    (NOW - timedelta(minutes=1)).isoformat(),
    (NOW - timedelta(hours=72)).isoformat(),
    (NOW - timedelta(hours=72, microseconds=1)).isoformat(),
    (NOW + timedelta(seconds=300)).isoformat(),
    (NOW + timedelta(seconds=301)).isoformat(),
    "2026-11-29T12:59:00+01:00",
    "2026-11-29 11:59:00+00:00",
    "2026-11-29T11:59:00",
    "2026-11-29",
    "yesterday",
    "2026-11-29T11:59:00.000000000000000000000000000000+00:00",
    1764417540,
]
texts = st.one_of(
    st.sampled_from([edge for edge in TEXT_EDGES if isinstance(edge, str)]),
    st.text(min_size=0, max_size=110),
)
numbers = st.one_of(
    st.sampled_from(NUMBER_EDGES),
    st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(min_value=-(10**20), max_value=10**20),
    ),
)
instants = st.one_of(
    st.sampled_from(INSTANT_EDGES),
    st.one_of(
        st.datetimes(
            min_value=datetime(2026, 11, 25),
            max_value=datetime(2026, 11, 30),
            timezones=st.just(UTC),
        ).map(datetime.isoformat),
        numbers,
    ),
)
VALID = {
    "device_id": "lea-phone",
    "latitude": 48.86,
    "longitude": 2.34,
    "accuracy": 12.5,
    "recorded_at": "2026-11-29T11:59:00Z",
    "ping_id": "p1",
    "speed": 1.2,
    "mocked": False,
}
FIELDS = {
    "device_id": texts,
    "latitude": numbers,
    "longitude": numbers,
    "accuracy": numbers,
    "recorded_at": instants,
    "ping_id": st.one_of(texts, numbers),
    "speed": numbers,
    "mocked": st.one_of(st.booleans(), st.none(), st.sampled_from([1, "true"])),
}
# Keys apps send beside the SPEC's, which both paths ignore...
HARMLESS_KEYS = ["altitude", "bearing", "provider", "battery", "rssi_raw", "verticalAccuracy"]
# ...and mock flags under other names, which both refuse.
MOCK_KEYS = ["is_mock", "isMock", "isFromMockProvider", "mock", "mock_location", "MOCKED"]
extra_values = st.recursive(
    st.one_of(
        numbers,
        texts,
        st.booleans(),
        st.none(),
        st.floats(),  # NaN and infinities, which msgspec does not read: the general path's
        st.text(min_size=EXTRA_VALUE_MAX - 2, max_size=EXTRA_VALUE_MAX + 2),  # about the limit
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
extras = st.dictionaries(
    st.one_of(st.sampled_from(HARMLESS_KEYS + MOCK_KEYS), st.text(max_size=12)),
    extra_values,
    max_size=3,
)
# A valid ping with a few fields changed or left out, and often keys of the app's own: most
# pings a client sends are close to valid, and a rule's edge is only reached when the other
# fields pass.
pings = st.builds(
    lambda changed, removed, added: {
        key: value for key, value in {**VALID, **changed, **added}.items() if key not in removed
    },
    st.lists(st.sampled_from(sorted(FIELDS)), max_size=2, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({key: FIELDS[key] for key in keys})
    ),
    st.sets(st.sampled_from(sorted(VALID)), max_size=2),
    st.one_of(st.just({}), extras),
)


def general_path(item: dict) -> tuple[bool, dict]:
    serializer = PingSerializer(data=item, context={"now": NOW})
    if serializer.is_valid():
        values = serializer.validated_data
        return True, {**values, "ping_id": values.get("ping_id"), "speed": values.get("speed")}
    return False, serializer.errors


def assert_paths_agree(*items: dict) -> bool:
    """The fast path's verdicts on a batch of `items` are the serializer's, item by item;
    whether the fast path took the body (else the serializer itself judges it)."""
    body = json.dumps({"pings": list(items)}).encode()
    batch = decode_ping_batch(body)
    if batch is None:
        return False

    valid, result = validate_ping_batch(batch.pings, NOW)

    expected_valid, expected_rejected = [], []
    for index, item in enumerate(json.loads(body)["pings"]):
        accepted, expected = general_path(item)
        if accepted:
            expected_valid.append((index, expected))
        else:
            expected_rejected.append({"index": index, "errors": expected})
    assert valid == expected_valid
    assert result.rejected == expected_rejected
    return True


EDGE_VALUES = {
    "device_id": TEXT_EDGES,
    "ping_id": [*TEXT_EDGES, None],
    "latitude": NUMBER_EDGES,
    "longitude": NUMBER_EDGES,
    "accuracy": NUMBER_EDGES,
    "speed": NUMBER_EDGES,
    "recorded_at": INSTANT_EDGES,
    "mocked": [True, False, None, 1, "true"],
}


@pytest.mark.parametrize("field", sorted(EDGE_VALUES))
def test_the_fast_path_agrees_with_the_serializer_at_each_rules_edges(field):
    for value in EDGE_VALUES[field]:
        assert_paths_agree({**VALID, field: value})
    assert_paths_agree({key: value for key, value in VALID.items() if key != field})


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(pings, min_size=1, max_size=3))
def test_the_fast_path_agrees_with_the_serializer_on_any_batch(items):
    event("fast path" if assert_paths_agree(*items) else "general path")


@pytest.mark.parametrize("key", HARMLESS_KEYS)
def test_a_ping_with_a_key_of_the_app_s_own_takes_the_fast_path_and_is_accepted(key):
    added = {**VALID, key: 35.5, "provider": "fused"}

    assert assert_paths_agree(VALID, added)
    valid, _ = validate_ping_batch(
        decode_ping_batch(json.dumps({"pings": [added]}).encode()).pings, NOW
    )
    assert valid == [(0, general_path(VALID)[1])]


@pytest.mark.parametrize("key", MOCK_KEYS)
def test_a_mock_flag_under_another_name_sends_the_body_to_the_serializer(key):
    # A misconfigured app: the serializer, which words every refusal, judges its batch.
    flagged = {**VALID, key: False, "altitude": 35.5}

    assert decode_ping_batch(json.dumps({"pings": [VALID, flagged]}).encode()) is None
    assert general_path(VALID)[0]
    assert general_path(flagged) == (
        False,
        {key: ["Unknown field: mock locations are flagged with `mocked`."]},
    )


def test_a_mock_flag_beside_a_broken_rule_is_named_with_it():
    flagged = {**VALID, "isMock": True, "latitude": 91}

    assert decode_ping_batch(json.dumps({"pings": [flagged]}).encode()) is None
    accepted, errors = general_path(flagged)
    assert not accepted
    assert set(errors) == {"isMock", "latitude"}


# What the general path's parser refuses in a value the serializer would ignore; msgspec
# skips these, so the fast path must not take the body.
UNREADABLE_EXTRAS = {
    "an integer over 4,300 digits": b"9" * 4301,
    "nesting deeper than the recursion limit": b"[" * 5000 + b"]" * 5000,
    "a byte that is not UTF-8": b'"\xff"',
    "an unpaired surrogate": b'"\\ud800"',
}


@pytest.mark.parametrize("value", UNREADABLE_EXTRAS.values(), ids=UNREADABLE_EXTRAS.keys())
def test_a_value_the_general_path_cannot_read_is_refused_whole_by_both(value):
    ping = json.dumps(VALID).encode()
    body = b'{"pings": [' + ping[:-1] + b', "altitude": ' + value + b"}]}"

    with pytest.raises(ParseError) as general:
        JsonBodyParser().decode(body)
    with pytest.raises(ParseError) as endpoint:
        PingBatchParser().decode(body)
    assert endpoint.value.detail == general.value.detail


def test_a_long_value_of_a_key_of_the_app_s_own_goes_to_the_general_path():
    # Read by the general path's parser alone: it may hold what that parser refuses.
    short = {**VALID, "extras": "x" * (EXTRA_VALUE_MAX - 2)}  # 256 bytes with its quotes
    long = {**VALID, "extras": "x" * (EXTRA_VALUE_MAX - 1)}

    assert assert_paths_agree(short)
    assert decode_ping_batch(json.dumps({"pings": [long]}).encode()) is None


@pytest.mark.parametrize("accuracy", [0, 0.0, -0.0])
def test_both_paths_refuse_a_ping_of_unknown_accuracy_with_the_same_reason(accuracy):
    # Android's 0.0 for a fix without an accuracy; the edges above check agreement, this
    # that they agree on refusing it.
    body = json.dumps({"pings": [{**VALID, "accuracy": accuracy}]}).encode()

    valid, result = validate_ping_batch(decode_ping_batch(body).pings, NOW)

    assert not valid
    [rejected] = result.rejected
    assert rejected["errors"] == general_path({**VALID, "accuracy": accuracy})[1]
    assert "0 means the phone does not know" in str(rejected["errors"]["accuracy"][0])


def test_well_formed_pings_take_the_fast_path_unless_a_rule_needs_the_serializer():
    good = {
        "device_id": "lea-phone",
        "latitude": 48.86,
        "longitude": 2.34,
        "accuracy": 12,
        "recorded_at": "2026-11-29T12:59:00+01:00",
        "speed": -1,
    }
    extra = {**good, "altitude": 35.0}

    assert decode_ping_batch(json.dumps({"pings": [good]}).encode()) is not None
    assert decode_ping_batch(json.dumps({"pings": [good, extra]}).encode()) is not None
    assert decode_ping_batch(json.dumps({"pings": [good], "sent_by": "app"}).encode()) is None
    decoded = decode_ping_batch(json.dumps({"pings": [good]}).encode())
    valid, _ = validate_ping_batch(decoded.pings, NOW)
    assert valid[0][1]["speed"] is None
    assert valid[0][1]["recorded_at"] == NOW - timedelta(minutes=1)


@pytest.mark.django_db
def test_a_batch_mixing_values_the_fast_path_does_not_type_is_stored_the_same(api):
    DeviceFactory(device_id="lea-phone")
    base = {"device_id": "lea-phone", "latitude": 48.86, "longitude": 2.34, "accuracy": 9}
    batch = [
        {**base, "recorded_at": ago(minutes=1), "ping_id": "a"},
        {**base, "recorded_at": ago(minutes=2), "ping_id": "b", "accuracy": "9"},
        {**base, "recorded_at": ago(minutes=3), "accuracy": 50_001},
        {**base, "recorded_at": ago(minutes=4), "ping_id": "d", "altitude": 35.0},
        {**base, "recorded_at": ago(minutes=5), "ping_id": "e", "is_mock": False},
    ]

    response = api.post("/api/v1/pings", {"pings": batch})

    assert response.json()["accepted"] == 3
    assert [rejected["index"] for rejected in response.json()["rejected"]] == [2, 4]
    assert response.json()["rejected"][1]["errors"] == {
        "is_mock": ["Unknown field: mock locations are flagged with `mocked`."]
    }
    assert set(Ping.objects.values_list("ping_id", flat=True)) == {"a", "b", "d"}


@pytest.mark.django_db
def test_duplicates_within_a_batch_and_against_stored_pings_are_counted_once(api):
    DeviceFactory(device_id="lea-phone")
    at = ago(minutes=4)
    base = {"device_id": "lea-phone", "latitude": 48.86, "longitude": 2.34, "accuracy": 9}
    first = api.post("/api/v1/pings", {"pings": [{**base, "recorded_at": at, "ping_id": "a"}]})
    batch = [
        {**base, "recorded_at": ago(minutes=5), "ping_id": "a"},  # same ping_id as stored
        {**base, "recorded_at": at, "ping_id": "c"},  # same device and time as stored
        {**base, "recorded_at": ago(minutes=6), "ping_id": "d"},
        {**base, "recorded_at": ago(minutes=7), "ping_id": "d"},  # same ping_id, this batch
        {**base, "recorded_at": ago(minutes=8)},
    ]

    response = api.post("/api/v1/pings", {"pings": batch})

    assert first.json()["accepted"] == 1
    assert response.json() == {"accepted": 2, "duplicates": 3, "rejected": []}
    stored = Ping.objects.order_by("-recorded_at")
    assert [ping.ping_id for ping in stored] == ["a", "d", None]
    assert stored[1].latitude == 48.86 and stored[1].recorded_at.tzinfo is not None
