"""promotions.beacons against published vectors, the known traps, and generated input."""

import json
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promotions.beacons import (
    APPLE_COMPANY_ID,
    AltBeacon,
    BeaconFrame,
    BeaconParseError,
    EddystoneETLM,
    EddystoneTLM,
    EddystoneUID,
    EddystoneURL,
    IBeacon,
    decode_eddystone_service_data,
    decode_eddystone_url,
    decode_manufacturer_data,
    eddystone_uid_key,
    ibeacon_key,
    identity_from_key,
    identity_key,
    iter_ad_structures,
    parse_advertisement,
)
from promotions.models import Beacon, PresenceEvent, Sighting
from tests.clock import ago
from tests.factories import BeaconFactory, DeviceFactory, GatewayFactory, ZoneFactory

VECTORS_PATH = (
    Path(__file__).resolve().parents[2].parent / "shared" / "peers" / "beacons" / "vectors.json"
)
VECTORS_MISSING = (
    f"BLE test vectors not found at {VECTORS_PATH}: the shared peers folder is not checked out "
    "next to the project, so the published-vector tests cannot run."
)
FRAME_TYPES = (IBeacon, EddystoneUID, EddystoneURL, EddystoneTLM, EddystoneETLM, AltBeacon)

# The source's encrypted-TLM packet declares a 0x11-byte service data structure, which ends
# after the 12 encrypted bytes; its salt and MIC lie past that length, where a parser that
# honours AD lengths does not read. The verbatim packet must therefore be rejected, and the
# vector's big-endian salt and MIC are checked on the same bytes with the 0x15 length the spec
# gives an ETLM structure.
ETLM_LENGTH_REPAIRS = {"eddystone-tlm-encrypted-beacontools": ("1116aafe2001", "1516aafe2001")}
# Vector fields that come from the scanner rather than the frame, and beacontools' little-endian
# reading of the ETLM salt and MIC, which the spec contradicts.
FIELDS_NOT_IN_THE_FRAME = {"rssi", "address", "name", "local_name"}
FIELDS_DELIBERATELY_NOT_FOLLOWED = {"beacontools_salt", "beacontools_mic"}

fuzz = settings(max_examples=400)

UUID_TEXT = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"
NAMESPACE = "edd1ebeac04e5defa017"
INSTANCE = "0123456789ab"


def ad(ad_type: int, payload: bytes) -> bytes:
    """One AD structure with a length byte that tells the truth."""
    return bytes([len(payload) + 1, ad_type]) + payload


FLAGS = ad(0x01, b"\x06")
EDDYSTONE_UUID_LIST = ad(0x03, b"\xaa\xfe")


def ibeacon_payload(uuid_text: str, major: int, minor: int, power: int = -59) -> bytes:
    return (
        b"\x02\x15"
        + uuid.UUID(uuid_text).bytes
        + major.to_bytes(2, "big")
        + minor.to_bytes(2, "big")
        + power.to_bytes(1, "big", signed=True)
    )


def ibeacon_ad(uuid_text: str = UUID_TEXT, major: int = 1, minor: int = 2) -> bytes:
    return ad(0xFF, b"\x4c\x00" + ibeacon_payload(uuid_text, major, minor))


def altbeacon_ad(beacon_id: bytes, company: bytes = b"\x18\x01", rssi: int = -59) -> bytes:
    data = b"\xbe\xac" + beacon_id + rssi.to_bytes(1, "big", signed=True) + b"\x00"
    return ad(0xFF, company + data)


def eddystone_ad(service_data: bytes) -> bytes:
    return EDDYSTONE_UUID_LIST + ad(0x16, b"\xaa\xfe" + service_data)


def uid_frame(namespace: str = NAMESPACE, instance: str = INSTANCE) -> bytes:
    return b"\x00\xee" + bytes.fromhex(namespace) + bytes.fromhex(instance) + b"\x00\x00"


def tlm_frame(battery: int = 3000, temperature: bytes = b"\x13\x00", count: int = 7) -> bytes:
    return (
        b"\x20\x00"
        + battery.to_bytes(2, "big")
        + temperature
        + count.to_bytes(4, "big")
        + (12345).to_bytes(4, "big")
    )


IBEACON_HEX = ibeacon_ad().hex()


def published(section: str, only: object = None) -> list:
    """The vectors of a section as test parameters (optionally only those with the given ids),
    or one parameter that skips when the vector file is absent."""
    if not VECTORS_PATH.exists():
        return [pytest.param(None, id="vectors-missing")]
    vectors = json.loads(VECTORS_PATH.read_text())[section]
    return [
        pytest.param(vector, id=vector.get("id") or vector["source"]["test"])
        for vector in vectors
        if only is None or vector.get("id") in only
    ]


def decode_vector(vector: dict, raw_hex: str) -> BeaconFrame | str:
    raw = bytes.fromhex(raw_hex)
    form = vector["raw_form"]
    if form == "advertising_data":
        frame = parse_advertisement(raw_hex)
        assert parse_advertisement(raw) == frame, "hex text and bytes decode differently"
        return frame
    if form == "manufacturer_data_after_company_id":
        return decode_manufacturer_data(vector["expected"]["company_id"], raw)
    if form == "service_data_after_uuid":
        return decode_eddystone_service_data(raw)
    if form == "url_scheme_and_encoded_url":
        return decode_eddystone_url(raw)
    pytest.fail(f"vector {vector['id']} has a raw_form this test does not know: {form}")


def observed(result: object) -> dict[str, object]:
    """What the module decoded, under the names the vector file uses."""
    if isinstance(result, str):
        return {"url": result}
    if isinstance(result, IBeacon):
        return {
            "company_id": APPLE_COMPANY_ID,
            "uuid": result.uuid,
            "major": result.major,
            "minor": result.minor,
            "measured_power": result.measured_power,
        }
    if isinstance(result, AltBeacon):
        return {
            "company_id": result.company_id,
            "beacon_code": 0xBEAC,
            "id1": result.id1,
            "id2": result.id2,
            "id3": result.id3,
            "reference_rssi": result.reference_rssi,
            "mfg_reserved": result.mfg_reserved,
        }
    eddystone = {"service_uuid": 0xFEAA}
    if isinstance(result, EddystoneUID):
        return eddystone | {
            "frame_type": 0x00,
            "namespace": result.namespace,
            "instance": result.instance,
            "tx_power_0m": result.tx_power_0m,
        }
    if isinstance(result, EddystoneURL):
        return eddystone | {
            "frame_type": 0x10,
            "url": result.url,
            "tx_power_0m": result.tx_power_0m,
        }
    if isinstance(result, EddystoneTLM):
        return eddystone | {
            "frame_type": 0x20,
            "version": 0,
            "battery_mv": result.battery_mv,
            "temperature_c": result.temperature_c,
            "adv_count": result.adv_count,
            "sec_cnt_raw": round(result.uptime_s * 10),
            "uptime_s": result.uptime_s,
        }
    if isinstance(result, EddystoneETLM):
        return eddystone | {
            "frame_type": 0x20,
            "version": 1,
            "encrypted_data_hex": result.encrypted_data,
            "salt_spec_big_endian": result.salt,
            "mic_spec_big_endian": result.mic,
        }
    pytest.fail(f"decoded to something that is not a frame: {result!r}")


def raises_only_beacon_parse_error(call, *args):
    """The call's result, or None when it raised BeaconParseError; anything else propagates."""
    try:
        return call(*args)
    except BeaconParseError as error:
        assert str(error), "a BeaconParseError must say what is wrong"
        return None


# Published vectors


@pytest.mark.parametrize("vector", published("vectors"))
def test_it_decodes_every_published_vector_to_the_values_its_source_gives(vector):
    if vector is None:
        pytest.skip(VECTORS_MISSING)
    raw_hex = vector["raw_hex"]
    if vector["id"] in ETLM_LENGTH_REPAIRS:
        verbatim, repaired = ETLM_LENGTH_REPAIRS[vector["id"]]
        assert raw_hex.count(verbatim) == 1
        raw_hex = raw_hex.replace(verbatim, repaired)

    found = observed(decode_vector(vector, raw_hex))

    expected = {
        name: value
        for name, value in vector["expected"].items()
        if name not in FIELDS_NOT_IN_THE_FRAME | FIELDS_DELIBERATELY_NOT_FOLLOWED
    }
    assert set(expected) <= set(found), "the vector has fields this test does not compare"
    for name, value in expected.items():
        wanted = pytest.approx(value) if isinstance(value, float) else value
        assert found[name] == wanted, f"{vector['id']}: {name}"


@pytest.mark.parametrize("vector", published("negative"))
def test_it_rejects_every_published_malformed_packet(vector):
    if vector is None:
        pytest.skip(VECTORS_MISSING)
    with pytest.raises(BeaconParseError):
        parse_advertisement(vector["raw_hex"])
    with pytest.raises(BeaconParseError):
        parse_advertisement(bytes.fromhex(vector["raw_hex"]))


@pytest.mark.parametrize("vector", published("vectors", only=ETLM_LENGTH_REPAIRS))
def test_it_rejects_the_published_etlm_packet_whose_salt_and_mic_lie_past_its_length(vector):
    if vector is None:
        pytest.skip(VECTORS_MISSING)
    with pytest.raises(BeaconParseError, match="encrypted Eddystone-TLM frame is 18 bytes"):
        parse_advertisement(vector["raw_hex"])
    verbatim, repaired = ETLM_LENGTH_REPAIRS[vector["id"]]
    frame = parse_advertisement(vector["raw_hex"].replace(verbatim, repaired))
    assert frame.salt != vector["expected"]["beacontools_salt"]
    assert frame.mic != vector["expected"]["beacontools_mic"]


# Walking AD structures


def test_it_names_the_structure_that_claims_more_bytes_than_remain():
    with pytest.raises(BeaconParseError) as raised:
        parse_advertisement(FLAGS + ibeacon_ad()[:21])
    assert "AD structure at byte 3 claims 26 bytes but only 20 remain" in str(raised.value)


def test_it_walks_structures_by_their_own_lengths():
    data = FLAGS + ad(0x09, b"Shop") + ad(0x16, b"") + ad(0xFF, b"\x4c")
    assert list(iter_ad_structures(data)) == [
        (0x01, b"\x06"),
        (0x09, b"Shop"),
        (0x16, b""),
        (0xFF, b"\x4c"),
    ]


def test_iterating_ad_structures_passes_over_zero_padding():
    data = (FLAGS + ad(0x09, b"Shop")).ljust(31, b"\x00") + ad(0x0A, b"\x04") + bytes(31)
    assert list(iter_ad_structures(data)) == [(0x01, b"\x06"), (0x09, b"Shop"), (0x0A, b"\x04")]


def test_iterating_ad_structures_rejects_a_structure_longer_than_the_data():
    with pytest.raises(BeaconParseError, match="at byte 3 claims 5 bytes but only 2 remain"):
        list(iter_ad_structures(FLAGS + b"\x05\xff\x4c"))


def test_iterating_ad_structures_rejects_text():
    with pytest.raises(BeaconParseError, match="must be bytes"):
        list(iter_ad_structures("020106"))


ACCEPTED = [
    pytest.param(FLAGS + ibeacon_ad() + bytes(31), id="android-zero-padding"),
    # The walk stops at the first frame: what follows, even a structure claiming too much, is
    # unread.
    pytest.param(ibeacon_ad() + b"\x00\x1e\xff\x4c", id="nothing-read-after-the-frame"),
    # Advertising data padded with zeros to its 31 bytes, then the scan response a scanner
    # appends to it (Linux, ESPHome's Bluetooth proxies): a zero byte is padding, not the end.
    pytest.param(
        (FLAGS + ad(0x09, b"Card tag")).ljust(31, b"\x00") + ibeacon_ad(),
        id="padded-advertising-data-then-scan-response",
    ),
    pytest.param(FLAGS + b"\x00\x00" + ibeacon_ad(), id="zero-padding-between-structures"),
    # The walk stops at the first frame, as the published TLM vector with a stray byte needs.
    pytest.param(ibeacon_ad() + b"\xe4", id="stray-byte-after-the-frame"),
    pytest.param(ad(0xFF, b"\x4c\x00\x10\x05\x01\x18\x1f") + ibeacon_ad(), id="apple-nearby-first"),
    pytest.param(ad(0xFF, b"\x06\x00\x01\x09\x20") + ibeacon_ad(), id="microsoft-data-first"),
    pytest.param(ad(0x16, b"\x0f\x18\x64") + ibeacon_ad(), id="battery-service-data-first"),
    pytest.param(ad(0xFF, b"\x4c") + ad(0x16, b"\xaa") + ibeacon_ad(), id="stubby-structures"),
]


@pytest.mark.parametrize("data", ACCEPTED)
def test_it_finds_the_beacon_frame_around_other_data(data):
    assert parse_advertisement(data) == IBeacon(UUID_TEXT, 1, 2, -59)


def test_an_eddystone_url_frame_ends_where_its_structure_ends():
    service_data = b"\x10\xee\x03" + b"shop" + b"\x07"
    data = eddystone_ad(service_data) + ad(0x09, b"Shop beacon") + bytes(10)
    assert parse_advertisement(data) == EddystoneURL("https://shop.com", -18)


# Hex text


HEX_FORMS = [
    pytest.param(IBEACON_HEX, id="plain"),
    pytest.param(IBEACON_HEX.upper(), id="upper-case"),
    pytest.param("0x" + IBEACON_HEX, id="0x-prefix"),
    pytest.param("0X" + IBEACON_HEX.upper(), id="0X-prefix"),
    pytest.param(f"  \n{IBEACON_HEX}\t ", id="surrounding-whitespace"),
    pytest.param(ibeacon_ad().hex(":"), id="colons"),
    pytest.param(ibeacon_ad().hex("-"), id="dashes"),
    pytest.param(ibeacon_ad().hex(" "), id="spaces"),
    pytest.param(ibeacon_ad().hex(" ", 4), id="spaces-between-groups-of-bytes"),
    pytest.param(" 0x" + ibeacon_ad().hex(":").upper() + "\n", id="everything-at-once"),
]


@pytest.mark.parametrize("text", HEX_FORMS)
def test_it_reads_hex_text_in_the_forms_clients_send(text):
    assert parse_advertisement(text) == IBeacon(UUID_TEXT, 1, 2, -59)


def test_it_reads_a_bytearray_like_bytes():
    assert parse_advertisement(bytearray(ibeacon_ad())) == IBeacon(UUID_TEXT, 1, 2, -59)


REJECTED_INPUT = [
    pytest.param("", "empty", id="empty-text"),
    pytest.param("  \n", "empty", id="only-whitespace"),
    pytest.param("0x", "empty", id="only-a-prefix"),
    pytest.param(b"", "empty", id="empty-bytes"),
    pytest.param(IBEACON_HEX[:-1], "odd number of hex digits", id="odd-length"),
    pytest.param(IBEACON_HEX + "zz", "'z' at position 54", id="non-hex-letters"),
    pytest.param("02 01 06 g1", "'g' at position 9", id="non-hex-after-separators"),
    pytest.param("0x0x" + IBEACON_HEX, "'x' at position 3", id="double-prefix"),
    pytest.param(IBEACON_HEX + "\u0661\u0662", "neither a hex digit", id="non-ascii-digits"),
    pytest.param("02,01,06", "','", id="comma-separators"),
    pytest.param("02\t01", "'\\\\t'", id="tab-between-bytes"),
    pytest.param("0 201 06", "misplaced separator", id="separator-inside-a-byte"),
    pytest.param("02::01", "misplaced separator", id="doubled-separator"),
    pytest.param(":020106", "misplaced separator", id="leading-separator"),
    pytest.param("02 01 06:", "misplaced separator", id="trailing-separator"),
    pytest.param("02" * 256, "256 bytes; at most 255", id="over-long-text"),
    pytest.param("02:" * 300, "characters long", id="far-too-long-text"),
    pytest.param(bytes(256), "256 bytes; at most 255", id="over-long-bytes"),
    pytest.param(None, "hex text or bytes, not NoneType", id="none"),
    pytest.param(42, "hex text or bytes, not int", id="an-int"),
    pytest.param(memoryview(b"\x02\x01\x06"), "not memoryview", id="a-memoryview"),
]


@pytest.mark.parametrize(("raw", "message"), REJECTED_INPUT)
def test_it_rejects_input_that_is_not_advertising_data(raw, message):
    with pytest.raises(BeaconParseError, match=message):
        parse_advertisement(raw)


def test_255_bytes_of_advertising_data_are_accepted():
    assert parse_advertisement(ibeacon_ad() + bytes(255 - 27)) == IBeacon(UUID_TEXT, 1, 2, -59)


# Malformed and missing frames


REJECTED_ADVERTISEMENTS = [
    pytest.param(FLAGS + ibeacon_ad()[:20], "claims 26 bytes but only 19 remain", id="truncated"),
    pytest.param(b"\x05\xff\x4c\x00", "at byte 0 claims 5 bytes but only 3 remain", id="short"),
    pytest.param(
        FLAGS, "no iBeacon, AltBeacon or Eddystone frame \\(AD types found: 0x01\\)", id="flags"
    ),
    pytest.param(bytes(31), "no iBeacon, AltBeacon or Eddystone frame\\.", id="only-padding"),
    pytest.param(
        ad(0xFF, b"\x4c\x00\x02\x15" + bytes(20)), "iBeacon is 23 bytes", id="ibeacon-short"
    ),
    pytest.param(
        ad(0xFF, b"\x4c\x00\x02\x15" + bytes(22)), "iBeacon is 23 bytes", id="ibeacon-long"
    ),
    pytest.param(
        ad(0xFF, b"\x4c\x00\x02\x14" + bytes(21)), "second byte is 0x15", id="ibeacon-0x14"
    ),
    pytest.param(
        ad(0xFF, b"\x18\x01\xbe\xac" + bytes(21)), "AltBeacon is 24 bytes", id="altbeacon-short"
    ),
    pytest.param(
        eddystone_ad(b"\x50" + bytes(19)), "frame type 0x50 is not defined", id="type-0x50"
    ),
    pytest.param(
        eddystone_ad(b"\x01" + bytes(19)), "frame type 0x01 is not defined", id="type-0x01"
    ),
    pytest.param(eddystone_ad(b"\x30\xee" + bytes(8)), "Eddystone-EID frames are not", id="eid"),
    pytest.param(eddystone_ad(b""), "service data is empty", id="no-frame-type"),
    pytest.param(eddystone_ad(uid_frame()[:19]), "Eddystone-UID frame is 20 bytes", id="uid-19"),
    pytest.param(
        eddystone_ad(uid_frame() + b"\x00"), "Eddystone-UID frame is 20 bytes", id="uid-21"
    ),
    pytest.param(
        eddystone_ad(b"\x10\xee\x04shop\x00"), "scheme 0x04 is not defined", id="url-scheme-4"
    ),
    pytest.param(
        eddystone_ad(b"\x10\xee\xffshop"), "scheme 0xff is not defined", id="url-scheme-ff"
    ),
    pytest.param(eddystone_ad(b"\x10\xee\x03"), "at least 4 bytes", id="url-without-a-url"),
    pytest.param(eddystone_ad(b"\x10"), "at least 4 bytes", id="url-without-tx-power"),
    pytest.param(eddystone_ad(b"\x10\xee\x03" + b"a" * 18), "1 to 17 bytes", id="url-too-long"),
    pytest.param(eddystone_ad(b"\x10\xee\x03shop\x7f"), "Byte 0x7f at position 5", id="url-0x7f"),
    pytest.param(eddystone_ad(b"\x10\xee\x03sh p"), "Byte 0x20 at position 3", id="url-space"),
    pytest.param(eddystone_ad(b"\x10\xee\x03shop\x0e"), "Byte 0x0e", id="url-0x0e"),
    pytest.param(eddystone_ad(b"\x10\xee\x03\xc3\xa9"), "Byte 0xc3", id="url-utf-8"),
    pytest.param(eddystone_ad(tlm_frame()[:13]), "Eddystone-TLM frame is 14 bytes", id="tlm-short"),
    pytest.param(
        eddystone_ad(tlm_frame() + b"\x00"), "Eddystone-TLM frame is 14 bytes", id="tlm-long"
    ),
    pytest.param(eddystone_ad(b"\x20"), "no version byte", id="tlm-without-version"),
    pytest.param(eddystone_ad(b"\x20\x02" + bytes(12)), "version 0x02 is not defined", id="tlm-v2"),
    pytest.param(
        eddystone_ad(b"\x20\x01" + bytes(12)), "encrypted Eddystone-TLM frame is 18", id="etlm-14"
    ),
]


@pytest.mark.parametrize(("data", "message"), REJECTED_ADVERTISEMENTS)
def test_it_rejects_advertisements_without_a_well_formed_beacon_frame(data, message):
    with pytest.raises(BeaconParseError, match=message):
        parse_advertisement(data)


def test_it_says_which_structure_holds_a_malformed_frame():
    with pytest.raises(BeaconParseError, match=r"^AD structure at byte 7: Eddystone frame type"):
        parse_advertisement(FLAGS + eddystone_ad(b"\x01" + bytes(19)))


def test_the_first_beacon_frame_decides_even_when_it_is_malformed():
    with pytest.raises(BeaconParseError, match="scheme 0x04"):
        parse_advertisement(eddystone_ad(b"\x10\xee\x04shop") + ibeacon_ad())


def test_manufacturer_data_of_other_companies_is_not_taken_for_an_ibeacon():
    not_apple = ad(0xFF, b"\x4d\x00" + ibeacon_payload(UUID_TEXT, 1, 2))
    with pytest.raises(BeaconParseError, match="AD types found: 0xff"):
        parse_advertisement(not_apple)


# Frames


def test_it_decodes_an_altbeacon_from_any_company_and_splits_its_id_the_conventional_way():
    beacon_id = uuid.UUID(UUID_TEXT).bytes + b"\x01\x02\xff\xfe"
    frame = parse_advertisement(altbeacon_ad(beacon_id, company=b"\x4c\x00", rssi=-70))
    assert frame == AltBeacon(APPLE_COMPANY_ID, beacon_id.hex(), -70, 0)
    assert (frame.id1, frame.id2, frame.id3) == (UUID_TEXT, 0x0102, 0xFFFE)


def test_it_decodes_the_legacy_eddystone_uid_without_reserved_bytes():
    frame = parse_advertisement(eddystone_ad(uid_frame()[:18]))
    assert frame == EddystoneUID(NAMESPACE, INSTANCE, -18)


def test_it_decodes_an_eddystone_uid_whatever_its_reserved_bytes_hold():
    frame = parse_advertisement(eddystone_ad(uid_frame()[:18] + b"\xff\xff"))
    assert frame == EddystoneUID(NAMESPACE, INSTANCE, -18)


def test_it_decodes_the_eddystone_spec_tx_power_examples():
    assert decode_eddystone_service_data(b"\x10\x12\x02a").tx_power_0m == 18
    assert decode_eddystone_service_data(b"\x10\xee\x02a").tx_power_0m == -18


TEMPERATURES = [
    pytest.param(b"\x13\x00", 19.0, id="19"),
    pytest.param(b"\x47\x11", 71 + 17 / 256, id="fraction"),
    pytest.param(b"\xff\x80", -0.5, id="minus-half"),
    pytest.param(b"\x80\x01", -128 + 1 / 256, id="coldest"),
    pytest.param(b"\x80\x00", None, id="not-supported"),
]


@pytest.mark.parametrize(("raw", "celsius"), TEMPERATURES)
def test_it_reads_tlm_temperature_as_signed_8_8_fixed_point(raw, celsius):
    frame = decode_eddystone_service_data(tlm_frame(temperature=raw))
    assert frame.temperature_c == celsius


def test_it_reads_tlm_uptime_in_tenths_of_a_second_and_zero_battery_as_unsupported():
    frame = decode_eddystone_service_data(tlm_frame(battery=0, count=0xFFFFFFFF))
    assert frame == EddystoneTLM(0, 19.0, 0xFFFFFFFF, 1234.5)


def test_it_reads_encrypted_tlm_salt_and_mic_big_endian():
    frame = decode_eddystone_service_data(b"\x20\x01" + b"A" * 12 + b"\xde\xad\xbe\xff")
    assert frame == EddystoneETLM("41" * 12, 0xDEAD, 0xBEFF)


URLS = [
    pytest.param(b"\x00a\x00", "http://www.a.com/", id="http-www"),
    pytest.param(b"\x01a\x07", "https://www.a.com", id="https-www"),
    pytest.param(b"\x02a\x01b", "http://a.org/b", id="http"),
    pytest.param(
        b"\x03" + bytes(range(14)),
        "https://" + (".com/.org/.edu/.net/.info/.biz/.gov/.com.org.edu.net.info.biz.gov"),
        id="every-expansion",
    ),
    pytest.param(b"\x03!~", "https://!~", id="printable-ends"),
    pytest.param(b"\x03" + b"a" * 17, "https://" + "a" * 17, id="17-bytes"),
]


@pytest.mark.parametrize(("payload", "url"), URLS)
def test_it_expands_eddystone_urls(payload, url):
    assert decode_eddystone_url(payload) == url


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        pytest.param(b"", "empty", id="empty"),
        pytest.param(b"\x03", "1 to 17 bytes", id="scheme-only"),
        pytest.param(b"\x04a", "scheme 0x04", id="bad-scheme"),
        pytest.param(b"\x03" + b"a" * 18, "1 to 17 bytes", id="18-bytes"),
        pytest.param("\x03a", "must be bytes", id="text"),
    ],
)
def test_it_rejects_malformed_eddystone_urls(payload, message):
    with pytest.raises(BeaconParseError, match=message):
        decode_eddystone_url(payload)


@pytest.mark.parametrize(
    ("company_id", "payload", "message"),
    [
        pytest.param(0x004C, b"\x10\x05\x01\x18", "neither an iBeacon", id="apple-nearby"),
        pytest.param(0x0006, b"", "company 0x0006 is neither", id="empty"),
        pytest.param(0x0118, ibeacon_payload(UUID_TEXT, 1, 2), "neither", id="ibeacon-not-apple"),
        pytest.param(0x10000, b"", "from 0 to 65535", id="company-too-big"),
        pytest.param(-1, b"", "from 0 to 65535", id="negative-company"),
        pytest.param(True, b"", "not bool", id="bool-company"),
        pytest.param("76", b"", "not str", id="text-company"),
        pytest.param(0x004C, "0215", "must be bytes", id="text-payload"),
    ],
)
def test_it_rejects_manufacturer_data_that_is_not_a_beacon(company_id, payload, message):
    with pytest.raises(BeaconParseError, match=message):
        decode_manufacturer_data(company_id, payload)


# Identity keys


# Spellings uuid.UUID accepts as some UUID, that are not one.
MALFORMED_UUIDS = {
    "leading-plus": "+" + UUID_TEXT.replace("-", "")[:31],
    "underscores": "f7826da6_4fa2_4e98_8024_bc5b71e0",
    "arabic-indic-digits": "\u0661" * 32,
    "fullwidth-digits": "\uff11" * 32,
    "misplaced-hyphens": "f7826da64-fa2-4e98-8024-bc5b71e0893e",
    "unclosed-brace": "{" + UUID_TEXT,
    "space-inside-braces": "{ " + UUID_TEXT.replace("-", "")[:31] + "}",
}


@pytest.mark.parametrize(
    "spelling",
    [
        UUID_TEXT,
        UUID_TEXT.upper(),
        UUID_TEXT.replace("-", ""),
        "{" + UUID_TEXT + "}",
        "urn:uuid:" + UUID_TEXT,
        uuid.UUID(UUID_TEXT),
    ],
)
def test_every_spelling_of_a_uuid_gives_the_same_ibeacon_key(spelling):
    assert ibeacon_key(spelling, 0, 65535) == f"ibeacon:{UUID_TEXT}:0:65535"


@pytest.mark.parametrize(
    ("uuid_value", "major", "minor", "message"),
    [
        pytest.param("not-a-uuid", 1, 2, "'not-a-uuid' is not a UUID", id="bad-uuid"),
        pytest.param("", 1, 2, "is not a UUID", id="empty-uuid"),
        pytest.param(UUID_TEXT[:-1], 1, 2, "is not a UUID", id="short-uuid"),
        pytest.param(
            "x" * 10_000, 1, 2, r"'x{80}'\.\.\. is not a UUID", id="huge-uuid-quoted-short"
        ),
        pytest.param(None, 1, 2, "not NoneType", id="none-uuid"),
        # uuid.UUID reads these with int(), as a different UUID: a typo must not pass for one.
        *(
            pytest.param(spelling, 1, 2, "is not a UUID", id=name)
            for name, spelling in MALFORMED_UUIDS.items()
        ),
        pytest.param(UUID_TEXT, 65536, 2, "major must be from 0 to 65535; got 65536", id="65536"),
        pytest.param(UUID_TEXT, 1, -1, "minor must be from 0 to 65535; got -1", id="negative"),
        pytest.param(UUID_TEXT, 10**5000, 2, "far outside", id="huge-int"),
        pytest.param(UUID_TEXT, True, 2, "major must be a whole number .* not bool", id="bool"),
        pytest.param(UUID_TEXT, 1, False, "not bool", id="false"),
        pytest.param(UUID_TEXT, "1", 2, "not str", id="text-major"),
        pytest.param(UUID_TEXT, 1.0, 2, "not float", id="float-major"),
    ],
)
def test_ibeacon_key_rejects_what_is_not_an_ibeacon_identity(uuid_value, major, minor, message):
    with pytest.raises(BeaconParseError, match=message):
        ibeacon_key(uuid_value, major, minor)


@pytest.mark.django_db
@pytest.mark.parametrize("spelling", MALFORMED_UUIDS.values(), ids=MALFORMED_UUIDS.keys())
def test_a_beacon_registered_with_a_malformed_uuid_is_refused_with_the_reason(api, spelling):
    zone = ZoneFactory()
    body = {"store": zone.store.code, "ibeacon": {"uuid": spelling, "major": 1, "minor": 2}}

    response = api.post("/api/v1/beacons", body)

    assert response.status_code == 400
    assert "is not a UUID" in response.json()["ibeacon"]["uuid"][0]
    assert not Beacon.objects.exists()


def test_eddystone_uid_key_is_case_insensitive_and_lower_case():
    key = eddystone_uid_key(NAMESPACE.upper(), INSTANCE.upper())
    assert key == f"eddystone:{NAMESPACE}:{INSTANCE}"


@pytest.mark.parametrize(
    ("namespace", "instance", "message"),
    [
        pytest.param(NAMESPACE[:-1], INSTANCE, "namespace is 20 hex digits", id="namespace-19"),
        pytest.param(NAMESPACE + "0", INSTANCE, "namespace is 20 hex digits", id="namespace-21"),
        pytest.param(NAMESPACE, INSTANCE + "0", "instance is 12 hex digits", id="instance-13"),
        pytest.param(NAMESPACE, "", "instance is 12 hex digits", id="instance-empty"),
        pytest.param("g" * 20, INSTANCE, "namespace is 20 hex digits", id="namespace-not-hex"),
        pytest.param(NAMESPACE, "0x0123456789", "instance is 12 hex digits", id="instance-0x"),
        pytest.param(NAMESPACE, "\u0661" * 12, "instance is 12 hex digits", id="arabic-digits"),
        pytest.param(bytes(10), INSTANCE, "not bytes", id="namespace-as-bytes"),
        pytest.param(NAMESPACE, 123, "not int", id="instance-as-int"),
    ],
)
def test_eddystone_uid_key_rejects_ids_of_the_wrong_shape(namespace, instance, message):
    with pytest.raises(BeaconParseError, match=message):
        eddystone_uid_key(namespace, instance)


def test_identity_keys_round_trip_to_the_api_shape():
    assert identity_from_key(ibeacon_key(UUID_TEXT.upper(), 1, 2)) == {
        "ibeacon": {"uuid": UUID_TEXT, "major": 1, "minor": 2}
    }
    assert identity_from_key(eddystone_uid_key(NAMESPACE, INSTANCE)) == {
        "eddystone_uid": {"namespace": NAMESPACE, "instance": INSTANCE}
    }


@pytest.mark.parametrize(
    ("key", "message"),
    [
        pytest.param("", "is not an identity key", id="empty"),
        pytest.param("ibeacon:", "is not an identity key", id="ibeacon-without-parts"),
        pytest.param(f"ibeacon:{UUID_TEXT}:1", "is not an identity key", id="no-minor"),
        pytest.param(f"ibeacon:{UUID_TEXT}:1:2:3", "is not an identity key", id="extra-part"),
        pytest.param(f"ibeacon:{UUID_TEXT}:-1:2", "is not an identity key", id="negative"),
        pytest.param(f"ibeacon:{UUID_TEXT}:+1:2", "is not an identity key", id="plus-sign"),
        pytest.param(f"ibeacon:{UUID_TEXT}: 1:2", "is not an identity key", id="space"),
        pytest.param(f"ibeacon:{UUID_TEXT}:\u0661:2", "is not an identity key", id="arabic-digit"),
        pytest.param(f"ibeacon:{UUID_TEXT}:65536:2", "from 0 to 65535", id="major-too-big"),
        pytest.param(f"ibeacon:{UUID_TEXT}:999999:2", "is not an identity key", id="six-digits"),
        pytest.param("ibeacon:nope:1:2", "'nope' is not a UUID", id="bad-uuid"),
        pytest.param(
            f"ibeacon:{MALFORMED_UUIDS['underscores']}:1:2", "is not a UUID", id="underscored-uuid"
        ),
        pytest.param(f"ibeacon:{UUID_TEXT.upper()}:1:2", "canonical", id="upper-case-uuid"),
        pytest.param(f"ibeacon:{{{UUID_TEXT}}}:1:2", "canonical", id="braced-uuid"),
        pytest.param(f"ibeacon:{UUID_TEXT}:01:2", "canonical", id="leading-zero"),
        pytest.param(f"IBEACON:{UUID_TEXT}:1:2", "is not an identity key", id="upper-kind"),
        pytest.param(f"eddystone:{NAMESPACE.upper()}:{INSTANCE}", "canonical", id="upper-hex"),
        pytest.param(f"eddystone:{NAMESPACE}", "is not an identity key", id="no-instance"),
        pytest.param(f"eddystone:{NAMESPACE}:{INSTANCE}:", "is not an identity key", id="extra"),
        pytest.param(f"eddystone:{INSTANCE}:{NAMESPACE}", "20 hex digits", id="swapped"),
        pytest.param(f"altbeacon:{UUID_TEXT}:1:2", "is not an identity key", id="altbeacon"),
        pytest.param(None, "text, not NoneType", id="none"),
        pytest.param(b"ibeacon:", "text, not bytes", id="bytes"),
    ],
)
def test_identity_from_key_rejects_malformed_keys(key, message):
    with pytest.raises(BeaconParseError, match=message):
        identity_from_key(key)


def test_an_altbeacon_and_an_ibeacon_with_the_same_ids_resolve_to_the_same_key():
    altbeacon = parse_advertisement(altbeacon_ad(uuid.UUID(UUID_TEXT).bytes + b"\x00\x07\x01\x00"))
    ibeacon = parse_advertisement(ibeacon_ad(UUID_TEXT, 7, 256))
    assert identity_key(altbeacon) == identity_key(ibeacon) == f"ibeacon:{UUID_TEXT}:7:256"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (
            EddystoneURL("https://shop.com", -18),
            "an Eddystone-URL frame carries no beacon identity",
        ),
        (EddystoneTLM(3000, 19.0, 7, 1234.5), "an Eddystone-TLM frame carries no beacon identity"),
        (
            EddystoneETLM("41" * 12, 1, 2),
            "encrypted Eddystone-TLM frame carries no beacon identity",
        ),
        (None, "Expected a decoded beacon frame, got NoneType"),
        (f"ibeacon:{UUID_TEXT}:1:2", "got str"),
    ],
)
def test_frames_without_an_identity_have_no_key(frame, message):
    with pytest.raises(BeaconParseError, match=message):
        identity_key(frame)


@pytest.mark.parametrize(
    "frame",
    [
        IBeacon("not a uuid", 1, 2, -59),
        IBeacon(UUID_TEXT, 70000, 2, -59),
        EddystoneUID("short", INSTANCE, -18),
        AltBeacon(0x0118, "beef", -59, 0),
        AltBeacon(0x0118, None, -59, 0),
    ],
)
def test_a_hand_made_frame_with_bad_ids_is_refused_a_key(frame):
    with pytest.raises(BeaconParseError):
        identity_key(frame)


def test_altbeacon_ids_of_a_hand_made_frame_fail_with_a_beacon_parse_error():
    with pytest.raises(BeaconParseError, match="AltBeacon beacon id is 40 hex digits"):
        _ = AltBeacon(0x0118, "zz" * 20, -59, 0).id1


# --- The signal a scanner reports -------------------------------------------------------
# iOS reports a beacon it ranged but could not measure with rssi 0 (CLBeacon: "0 if the
# RSSI could not be obtained"); no scanner reports a positive one. Read as a reading, 0 is
# the strongest signal there is.

UNMEASURED_RSSI = "rssi must be below 0 dBm: 0 means the phone could not measure the signal."


def ranged(rssi: int, seconds_ago: int) -> dict:
    return {
        "device_id": "lea-phone",
        "ibeacon": {"uuid": UUID_TEXT, "major": 1, "minor": 2},
        "rssi": rssi,
        "seen_at": ago(seconds=seconds_ago),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("rssi", [0, 1, 20])
def test_an_app_sighting_whose_rssi_could_not_be_measured_is_refused_and_enters_no_zone(api, rssi):
    DeviceFactory(device_id="lea-phone")
    BeaconFactory(identity=ibeacon_key(UUID_TEXT, 1, 2))  # zone threshold -80 dBm

    response = api.post(
        "/api/v1/sightings",
        {"sightings": [ranged(rssi, seconds_ago=20), ranged(rssi, seconds_ago=10)]},
        format="json",
    )

    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 0
    assert [item["errors"] for item in body["rejected"]] == [{"rssi": [UNMEASURED_RSSI]}] * 2
    assert not Sighting.objects.exists()
    assert not PresenceEvent.objects.filter(kind="entered").exists()


@pytest.mark.django_db
def test_a_gateway_sighting_of_rssi_0_is_refused_with_the_reason(api):
    key = ibeacon_key(UUID_TEXT, 1000, 1)
    DeviceFactory(device_id="lea-phone", ble_identity=key)
    gateway = GatewayFactory()
    seen = {"ibeacon": {"uuid": UUID_TEXT, "major": 1000, "minor": 1}, "seen_at": ago(seconds=3)}

    response = api.post(
        f"/api/v1/gateways/{gateway.gateway_id}/sightings",
        {"sightings": [{**seen, "rssi": 0}, {**seen, "rssi": -1}]},
        format="json",
    )

    body = response.json()
    assert body["accepted"] == 1
    assert body["rejected"] == [{"index": 0, "errors": {"rssi": [UNMEASURED_RSSI]}}]
    assert Sighting.objects.get().rssi == -1


# Generated input


# The first bytes of each kind of data the decoders look at, under the AD type that carries it.
INTERESTING_STARTS = [
    (0xFF, b"\x4c\x00"),
    (0xFF, b"\x4c\x00\x02"),
    (0xFF, b"\x4c\x00\x02\x15"),
    (0xFF, b"\x18\x01\xbe\xac"),
    (0x16, b"\xaa\xfe"),
    (0x16, b"\xaa\xfe\x00"),
    (0x16, b"\xaa\xfe\x10"),
    (0x16, b"\xaa\xfe\x10\xee\x03"),
    (0x16, b"\xaa\xfe\x20\x00"),
    (0x16, b"\xaa\xfe\x20\x01"),
    (0x16, b"\xaa\xfe\x30"),
]


@st.composite
def ad_structures(draw) -> bytes:
    """An AD structure likely to reach the decoders, sometimes lying about its length."""
    ad_type, start = draw(
        st.sampled_from(INTERESTING_STARTS)
        | st.tuples(st.sampled_from([0x01, 0x03, 0x09, 0x16, 0xFF]), st.just(b""))
        | st.tuples(st.integers(0, 255), st.binary(max_size=4))
    )
    payload = start + draw(st.binary(max_size=26))
    lie = draw(st.sampled_from([0, 0, 0, -1, 1, 2]))
    length = min(255, max(0, len(payload) + 1 + lie))
    return bytes([length, ad_type]) + payload


@st.composite
def well_formed_frames(draw) -> bytes:
    """A structure of exactly a beacon frame's length, with arbitrary content."""
    start, rest = draw(
        st.sampled_from(
            [
                (b"\x4c\x00\x02\x15", 21),
                (b"\x18\x01\xbe\xac", 22),
                (b"\xaa\xfe\x00", 19),
                (b"\xaa\xfe\x00", 17),
                (b"\xaa\xfe\x20\x00", 12),
                (b"\xaa\xfe\x20\x01", 16),
            ]
        )
    )
    ad_type = 0x16 if start.startswith(b"\xaa\xfe") else 0xFF
    return ad(ad_type, start + draw(st.binary(min_size=rest, max_size=rest)))


@st.composite
def url_frames(draw) -> bytes:
    scheme = draw(st.integers(0, 5))
    encoded = draw(st.binary(max_size=19) | st.lists(st.integers(0, 0x7E), max_size=18).map(bytes))
    return eddystone_ad(
        b"\x10" + draw(st.binary(min_size=1, max_size=1)) + bytes([scheme]) + encoded
    )


advertisements = st.lists(ad_structures() | well_formed_frames() | url_frames(), max_size=4).map(
    b"".join
) | st.binary(max_size=300)


@st.composite
def hex_texts(draw) -> str:
    """Advertising data as hex, in the forms clients send and slightly off them."""
    data = draw(advertisements)
    separator = draw(st.sampled_from(["", ":", "-", " ", "::", ",", "\t"]))
    text = separator.join(f"{byte:02x}" for byte in data)
    if draw(st.booleans()):
        text = text.upper()
    prefix = draw(st.sampled_from(["", "0x", "0X", "x"]))
    padding = draw(st.sampled_from(["", " ", "\n\t", ":"]))
    return padding + prefix + text + padding


@fuzz
@given(advertisements)
def test_parse_advertisement_on_any_bytes_returns_a_frame_or_raises_beacon_parse_error(data):
    frame = raises_only_beacon_parse_error(parse_advertisement, data)
    assert frame is None or isinstance(frame, FRAME_TYPES)


@fuzz
@given(hex_texts() | st.text(max_size=80) | st.text("0123456789abcdefABCDEFxX:- \t\n"))
def test_parse_advertisement_on_any_text_returns_a_frame_or_raises_beacon_parse_error(text):
    frame = raises_only_beacon_parse_error(parse_advertisement, text)
    assert frame is None or isinstance(frame, FRAME_TYPES)


@fuzz
@given(advertisements)
def test_a_decoded_frame_has_an_identity_that_round_trips_or_none_at_all(data):
    frame = raises_only_beacon_parse_error(parse_advertisement, data)
    if isinstance(frame, IBeacon | AltBeacon | EddystoneUID):
        key = identity_key(frame)
        identity = identity_from_key(key)
        if "ibeacon" in identity:
            assert ibeacon_key(**identity["ibeacon"]) == key
        else:
            assert eddystone_uid_key(**identity["eddystone_uid"]) == key
    elif frame is not None:
        with pytest.raises(BeaconParseError, match="carries no beacon identity"):
            identity_key(frame)


@fuzz
@given(st.lists(ad_structures(), max_size=4).map(b"".join) | st.binary(max_size=300))
def test_iterating_ad_structures_yields_pairs_or_raises_beacon_parse_error(data):
    structures = raises_only_beacon_parse_error(lambda: list(iter_ad_structures(data)))
    for ad_type, payload in structures or []:
        assert 0 <= ad_type <= 255
        assert len(payload) <= 254


@fuzz
@given(
    st.integers() | st.sampled_from([0x004C, 0x0118]) | st.booleans(),
    st.sampled_from([b"", b"\x02\x15", b"\xbe\xac"]).flatmap(
        lambda start: st.binary(max_size=30).map(lambda rest: start + rest)
    ),
)
def test_decode_manufacturer_data_returns_a_beacon_or_raises_beacon_parse_error(company, payload):
    frame = raises_only_beacon_parse_error(decode_manufacturer_data, company, payload)
    assert frame is None or isinstance(frame, IBeacon | AltBeacon)


@fuzz
@given(
    st.sampled_from([b"", b"\x00", b"\x10", b"\x20\x00", b"\x20\x01", b"\x30"]).flatmap(
        lambda start: st.binary(max_size=24).map(lambda rest: start + rest)
    )
)
def test_decode_eddystone_service_data_returns_a_frame_or_raises_beacon_parse_error(payload):
    frame = raises_only_beacon_parse_error(decode_eddystone_service_data, payload)
    assert frame is None or isinstance(
        frame, EddystoneUID | EddystoneURL | EddystoneTLM | EddystoneETLM
    )


@fuzz
@given(st.binary(max_size=24))
def test_decode_eddystone_url_returns_printable_text_or_raises_beacon_parse_error(payload):
    url = raises_only_beacon_parse_error(decode_eddystone_url, payload)
    assert url is None or (url.isascii() and url.isprintable() and " " not in url)


@given(st.text(), st.integers() | st.booleans(), st.integers())
def test_ibeacon_key_returns_a_key_or_raises_beacon_parse_error(uuid_text, major, minor):
    key = raises_only_beacon_parse_error(ibeacon_key, uuid_text, major, minor)
    assert key is None or identity_from_key(key)["ibeacon"]["major"] == major


@given(st.text(max_size=24), st.text(max_size=14))
def test_eddystone_uid_key_returns_a_key_or_raises_beacon_parse_error(namespace, instance):
    key = raises_only_beacon_parse_error(eddystone_uid_key, namespace, instance)
    assert key is None or key == f"eddystone:{namespace.lower()}:{instance.lower()}"


@given(
    st.text()
    | st.builds(
        lambda kind, parts: kind + ":" + ":".join(parts),
        st.sampled_from(["ibeacon", "eddystone", "altbeacon"]),
        st.lists(st.text("0123456789abcdefABCDEF-{}", max_size=40), max_size=4),
    )
)
def test_identity_from_key_returns_an_identity_or_raises_beacon_parse_error(key):
    identity = raises_only_beacon_parse_error(identity_from_key, key)
    assert identity is None or len(identity) == 1


@given(st.uuids(), st.integers(0, 65535), st.integers(0, 65535), st.integers(-128, 127))
def test_an_ibeacon_identity_round_trips_through_the_air_and_its_key(
    beacon_uuid, major, minor, power
):
    data = FLAGS + ad(0xFF, b"\x4c\x00" + ibeacon_payload(str(beacon_uuid), major, minor, power))
    frame = parse_advertisement(data.hex(":"))
    assert frame == IBeacon(str(beacon_uuid), major, minor, power)
    assert identity_from_key(identity_key(frame)) == {
        "ibeacon": {"uuid": str(beacon_uuid), "major": major, "minor": minor}
    }


@given(st.binary(min_size=10, max_size=10), st.binary(min_size=6, max_size=6), st.booleans())
def test_an_eddystone_uid_identity_round_trips_through_the_air_and_its_key(
    namespace, instance, upper_case
):
    frame = parse_advertisement(eddystone_ad(uid_frame(namespace.hex(), instance.hex())))
    assert frame == EddystoneUID(namespace.hex(), instance.hex(), -18)
    assert identity_from_key(identity_key(frame)) == {
        "eddystone_uid": {"namespace": namespace.hex(), "instance": instance.hex()}
    }
    spelled = (
        (namespace.hex().upper(), instance.hex().upper())
        if upper_case
        else (namespace.hex(), instance.hex())
    )
    assert eddystone_uid_key(*spelled) == identity_key(frame)


@given(st.binary(min_size=20, max_size=20))
def test_an_altbeacon_resolves_to_the_ibeacon_identity_of_its_split_id(beacon_id):
    frame = parse_advertisement(altbeacon_ad(beacon_id))
    split_uuid = str(uuid.UUID(bytes=beacon_id[:16]))
    major, minor = int.from_bytes(beacon_id[16:18], "big"), int.from_bytes(beacon_id[18:], "big")
    assert identity_from_key(identity_key(frame)) == {
        "ibeacon": {"uuid": split_uuid, "major": major, "minor": minor}
    }
