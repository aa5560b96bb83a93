"""The pings fast path agrees with PingSerializer, the statement of the rules, on every
input: the same items accepted with the same values, the same reasons for the rest."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promotions.api.ping_batch import decode_ping_batch, validate_ping_batch
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
    "altitude": numbers,
}
# A valid ping with a few fields changed or left out: most pings a client sends are close to
# valid, and a rule's edge is only reached when the other fields pass.
pings = st.builds(
    lambda changed, removed: {
        key: value for key, value in {**VALID, **changed}.items() if key not in removed
    },
    st.lists(st.sampled_from(sorted(FIELDS)), max_size=2, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({key: FIELDS[key] for key in keys})
    ),
    st.sets(st.sampled_from(sorted(VALID)), max_size=2),
)


def general_path(item: dict) -> tuple[bool, dict]:
    serializer = PingSerializer(data=item, context={"now": NOW})
    if serializer.is_valid():
        values = serializer.validated_data
        return True, {**values, "ping_id": values.get("ping_id"), "speed": values.get("speed")}
    return False, serializer.errors


def assert_paths_agree(item: dict) -> None:
    body = json.dumps({"pings": [item]}).encode()
    batch = decode_ping_batch(body)
    if batch is None:
        return  # the general path, which is the serializer itself, judges this body

    valid, result = validate_ping_batch(batch.pings, NOW)

    accepted, expected = general_path(json.loads(body)["pings"][0])
    if accepted:
        assert valid == [(0, expected)]
        assert not result.rejected
    else:
        assert not valid
        assert result.rejected == [{"index": 0, "errors": expected}]


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
@given(item=pings)
def test_the_fast_path_agrees_with_the_serializer_on_any_ping(item):
    assert_paths_agree(item)


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
    assert decode_ping_batch(json.dumps({"pings": [extra]}).encode()) is None
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
        {**base, "recorded_at": ago(minutes=4), "altitude": 35.0},
    ]

    response = api.post("/api/v1/pings", {"pings": batch})

    assert response.json()["accepted"] == 2
    assert [rejected["index"] for rejected in response.json()["rejected"]] == [2, 3]
    assert response.json()["rejected"][1]["errors"] == {"altitude": ["Unknown field."]}
    assert set(Ping.objects.values_list("ping_id", flat=True)) == {"a", "b"}


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
