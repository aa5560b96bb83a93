"""BLE beacon advertisements decoded from raw advertising data, and beacon identity keys: no Django.

Understands Apple iBeacon and AltBeacon (manufacturer specific data) and Eddystone UID, URL and
TLM (service data under the 16-bit UUID 0xFEAA). Advertising data arrives from apps and gateways
we do not control, so every public function either returns or raises BeaconParseError, whose
message is meant for the client developer; no other exception escapes, whatever the input.

An identity key ("ibeacon:<uuid>:<major>:<minor>" or "eddystone:<namespace>:<instance>") is the
one spelling of a beacon identity. It is stored in a unique column, so a sighting matches a
registered beacon or device only if both were reduced to the same key.
"""

import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from string import hexdigits
from uuid import UUID

APPLE_COMPANY_ID = 0x004C
EDDYSTONE_SERVICE_UUID = 0xFEAA
ALTBEACON_CODE = 0xBEAC
MAX_ADVERTISING_DATA_BYTES = 255

# AD types, from the Bluetooth Assigned Numbers.
_SERVICE_DATA_16_BIT_UUID = 0x16
_MANUFACTURER_SPECIFIC_DATA = 0xFF

# Apple's manufacturer data type for iBeacon, then the length of the rest (21 bytes).
_IBEACON_TYPE = 0x02
_IBEACON_REST_LENGTH = 0x15
_IBEACON_LENGTH = 2 + _IBEACON_REST_LENGTH
_ALTBEACON_LENGTH = 24
# AD data is little-endian, but the AltBeacon spec gives its beacon code big-endian.
_ALTBEACON_CODE_BYTES = ALTBEACON_CODE.to_bytes(2, "big")
_EDDYSTONE_UUID_BYTES = EDDYSTONE_SERVICE_UUID.to_bytes(2, "little")

_EDDYSTONE_UID = 0x00
_EDDYSTONE_URL = 0x10
_EDDYSTONE_TLM = 0x20
_EDDYSTONE_EID = 0x30
_EDDYSTONE_UID_LENGTH = 20
# Eddystone-UID before the two reserved bytes were added; the Android Beacon Library's own
# examples still use it.
_EDDYSTONE_UID_LEGACY_LENGTH = 18
_EDDYSTONE_URL_MAX_ENCODED = 17
_TLM_PLAIN = 0x00
_TLM_ENCRYPTED = 0x01
_TLM_PLAIN_LENGTH = 14
_TLM_ENCRYPTED_LENGTH = 18
_TLM_TEMPERATURE_NOT_SUPPORTED = 0x8000

_URL_SCHEMES = ("http://www.", "https://www.", "http://", "https://")
_URL_EXPANSIONS = (
    ".com/",
    ".org/",
    ".edu/",
    ".net/",
    ".info/",
    ".biz/",
    ".gov/",
    ".com",
    ".org",
    ".edu",
    ".net",
    ".info",
    ".biz",
    ".gov",
)
# Eddystone-URL reserves 0x0e-0x20 and 0x7f-0xff; what is left is printable ASCII.
_URL_PRINTABLE = range(0x21, 0x7F)

_HEX_SEPARATORS = ":- "
_WITHOUT_SEPARATORS = str.maketrans("", "", _HEX_SEPARATORS)
_HEX_TEXT = re.compile(r"[0-9a-fA-F]{2}(?:[:\- ]?[0-9a-fA-F]{2})*")
# 255 bytes written as hex with a separator between every two: 255 * 3 - 1 characters.
_MAX_HEX_TEXT_LENGTH = MAX_ADVERTISING_DATA_BYTES * 3 - 1
_DECIMAL_UINT16 = re.compile(r"[0-9]{1,5}")
# The spellings of a UUID we take: 32 ASCII hex digits, bare or hyphenated 8-4-4-4-12,
# optionally in braces or after "urn:uuid:". uuid.UUID alone is looser: it reads the digits
# with int(), which also takes a sign, '_' between digits and non-ASCII digits, so a typo
# became a different, valid UUID instead of an error.
_UUID_DIGITS = (
    "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{32}"
)
_UUID_TEXT = re.compile(rf"(?:urn:uuid:)?(?:{_UUID_DIGITS}|\{{(?:{_UUID_DIGITS})\}})")
# How much of a client's bad value to quote back in an error message.
_QUOTE_LIMIT = 80


class BeaconParseError(ValueError):
    """The only exception this module raises for bad input; its message says what is wrong, in
    words a client developer understands."""


@dataclass(frozen=True)
class IBeacon:
    """Apple iBeacon: manufacturer data of company 0x004C starting 0x02 0x15."""

    uuid: str  # canonical lower-case 8-4-4-4-12
    major: int
    minor: int
    measured_power: int  # dBm at 1 m


@dataclass(frozen=True)
class EddystoneUID:
    """Eddystone-UID frame (0x00): a fixed 10-byte namespace and 6-byte instance."""

    namespace: str  # 20 lower-case hex digits
    instance: str  # 12 lower-case hex digits
    tx_power_0m: int  # dBm at 0 m


@dataclass(frozen=True)
class EddystoneURL:
    """Eddystone-URL frame (0x10)."""

    url: str
    tx_power_0m: int  # dBm at 0 m


@dataclass(frozen=True)
class EddystoneTLM:
    """Unencrypted Eddystone-TLM frame (0x20, version 0x00): the beacon's telemetry."""

    battery_mv: int  # 0 when the beacon does not report it
    temperature_c: float | None  # None when the beacon does not report it
    adv_count: int  # advertisements sent since power-up or reboot
    uptime_s: float  # since power-up or reboot, in 0.1 s steps


@dataclass(frozen=True)
class EddystoneETLM:
    """Encrypted Eddystone-TLM frame (0x20, version 0x01), left encrypted."""

    encrypted_data: str  # 12 bytes as hex
    salt: int
    mic: int


@dataclass(frozen=True)
class AltBeacon:
    """AltBeacon: manufacturer data of any company starting with beacon code 0xBEAC."""

    company_id: int
    beacon_id: str  # the 20-byte beacon id as 40 lower-case hex digits
    reference_rssi: int  # dBm at 1 m
    mfg_reserved: int

    # The Android Beacon Library splits the beacon id into a UUID and two uint16s, the same
    # shape as an iBeacon's identity; identity_key relies on that.
    @property
    def id1(self) -> str:
        """The first 16 bytes of the beacon id, as a UUID."""
        return str(UUID(bytes=self._beacon_id_bytes()[:16]))

    @property
    def id2(self) -> int:
        """Bytes 16-17 of the beacon id, big-endian."""
        return int.from_bytes(self._beacon_id_bytes()[16:18], "big")

    @property
    def id3(self) -> int:
        """Bytes 18-19 of the beacon id, big-endian."""
        return int.from_bytes(self._beacon_id_bytes()[18:20], "big")

    def _beacon_id_bytes(self) -> bytes:
        return bytes.fromhex(_hex_id(self.beacon_id, "AltBeacon beacon id", 20))


BeaconFrame = IBeacon | EddystoneUID | EddystoneURL | EddystoneTLM | EddystoneETLM | AltBeacon

_FRAMES_WITHOUT_IDENTITY = {
    EddystoneURL: "an Eddystone-URL frame carries no beacon identity (it only broadcasts a URL)",
    EddystoneTLM: (
        "an Eddystone-TLM frame carries no beacon identity (it reports telemetry; the same "
        "beacon's Eddystone-UID frame identifies it)"
    ),
    EddystoneETLM: (
        "an encrypted Eddystone-TLM frame carries no beacon identity (it reports telemetry; the "
        "same beacon's Eddystone-UID frame identifies it)"
    ),
}


def parse_advertisement(raw: str | bytes) -> BeaconFrame:
    """The first beacon frame in raw advertising data (a sequence of [length][type][data] AD
    structures), given as bytes or as hex text.

    Hex text may have a 0x prefix, surrounding whitespace and one ':', '-' or ' ' between bytes.
    Structures are walked by their own lengths, over zero padding (advertising data, then the
    scan response a scanner may append to it). The walk stops at the first beacon frame, so
    bytes after it are not examined. Raises BeaconParseError for data that is empty, over 255
    bytes or not hex; for a structure longer than what remains before a frame is found; for a
    beacon frame that is malformed (wrong length, undefined Eddystone frame type, bad URL
    scheme...); and when no beacon frame is found.
    """
    data = _advertising_data(raw)
    ad_types_seen = []
    for offset, ad_type, payload in _ad_structures(data):
        try:
            frame = _beacon_frame(ad_type, payload)
        except BeaconParseError as error:
            raise BeaconParseError(f"AD structure at byte {offset}: {error}") from None
        if frame is not None:
            return frame
        ad_types_seen.append(f"0x{ad_type:02x}")
    seen = f" (AD types found: {', '.join(ad_types_seen)})" if ad_types_seen else ""
    raise BeaconParseError(
        f"The advertising data holds no iBeacon, AltBeacon or Eddystone frame{seen}."
    )


def iter_ad_structures(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(AD type, payload) for each AD structure in advertising data, in order.

    A zero length byte is padding and is passed over: Android hands over whole scan records,
    zero-padded after the last structure, and advertising data padded to its 31 bytes may be
    followed by the scan response. Raises BeaconParseError, when iteration reaches it, for a
    structure whose length runs past the end of the data.
    """
    for _offset, ad_type, payload in _ad_structures(_as_bytes(data, "Advertising data")):
        yield ad_type, payload


def decode_manufacturer_data(company_id: int, payload: bytes) -> IBeacon | AltBeacon:
    """The iBeacon or AltBeacon in manufacturer specific data, given its company id and the bytes
    after the company id (the form BlueZ and bleak hand over).

    Raises BeaconParseError when the data is neither, or is one of them with the wrong length.
    """
    _uint16(company_id, "company id")
    data = _as_bytes(payload, "Manufacturer data")
    frame = _manufacturer_frame(company_id, data)
    if frame is None:
        raise BeaconParseError(
            f"Manufacturer data of company 0x{company_id:04x} is neither an iBeacon (company "
            "0x004c, then 0x02 0x15) nor an AltBeacon (beacon code 0xbeac)."
        )
    return frame


def decode_eddystone_service_data(
    payload: bytes,
) -> EddystoneUID | EddystoneURL | EddystoneTLM | EddystoneETLM:
    """The Eddystone frame in service data, given the bytes after the 16-bit UUID 0xFEAA.

    Raises BeaconParseError for an undefined frame type or version, a frame of the wrong
    length, and Eddystone-EID (its ephemeral id means nothing without the beacon's key).
    """
    data = _as_bytes(payload, "Eddystone service data")
    if not data:
        raise BeaconParseError("The Eddystone service data is empty: it starts with a frame type.")
    frame_type = data[0]
    if frame_type == _EDDYSTONE_UID:
        return _eddystone_uid(data)
    if frame_type == _EDDYSTONE_URL:
        return _eddystone_url(data)
    if frame_type == _EDDYSTONE_TLM:
        return _eddystone_tlm(data)
    if frame_type == _EDDYSTONE_EID:
        raise BeaconParseError(
            "Eddystone-EID frames are not supported: their ephemeral id rotates and can only be "
            "resolved with the beacon's key; register the beacon by its UID or iBeacon frame."
        )
    raise BeaconParseError(
        f"Eddystone frame type 0x{frame_type:02x} is not defined (0x00 UID, 0x10 URL, 0x20 TLM, "
        "0x30 EID)."
    )


def decode_eddystone_url(payload: bytes) -> str:
    """The URL in an Eddystone-URL frame, given its scheme byte and encoded URL (1-17 bytes).

    Raises BeaconParseError for an undefined scheme, an encoded URL of the wrong length, or a
    byte the spec reserves.
    """
    data = _as_bytes(payload, "Eddystone-URL data")
    if not data:
        raise BeaconParseError("The Eddystone-URL data is empty: it starts with a URL scheme byte.")
    scheme = data[0]
    if scheme >= len(_URL_SCHEMES):
        raise BeaconParseError(
            f"Eddystone-URL scheme 0x{scheme:02x} is not defined (0x00 http://www., "
            "0x01 https://www., 0x02 http://, 0x03 https://)."
        )
    encoded = data[1:]
    if not 1 <= len(encoded) <= _EDDYSTONE_URL_MAX_ENCODED:
        raise BeaconParseError(
            f"An Eddystone-URL's encoded URL is 1 to {_EDDYSTONE_URL_MAX_ENCODED} bytes after "
            f"the scheme byte; this one is {len(encoded)}."
        )
    parts = [_URL_SCHEMES[scheme]]
    for position, byte in enumerate(encoded, start=1):
        if byte < len(_URL_EXPANSIONS):
            parts.append(_URL_EXPANSIONS[byte])
        elif byte in _URL_PRINTABLE:
            parts.append(chr(byte))
        else:
            raise BeaconParseError(
                f"Byte 0x{byte:02x} at position {position} of the Eddystone-URL is reserved: URL "
                "bytes are printable ASCII or an expansion code 0x00-0x0d."
            )
    return "".join(parts)


def ibeacon_key(uuid: str | UUID, major: int, minor: int) -> str:
    """The identity key of an iBeacon: "ibeacon:<uuid lower-case 8-4-4-4-12>:<major>:<minor>".

    The uuid may be in any form uuid.UUID accepts; major and minor are ints from 0 to 65535 (not
    bools). Raises BeaconParseError otherwise.
    """
    return (
        f"ibeacon:{key_part('ibeacon_uuid', uuid)}:{key_part('ibeacon_major', major)}:"
        f"{key_part('ibeacon_minor', minor)}"
    )


def eddystone_uid_key(namespace: str, instance: str) -> str:
    """The identity key of an Eddystone-UID: "eddystone:<namespace>:<instance>", lower case.

    The namespace is 20 hex digits and the instance 12, in either case, each optionally after
    "0x": the Android Beacon Library writes them so (Identifier.toString() of an id that is
    neither a UUID nor two bytes). Raises BeaconParseError otherwise.
    """
    return (
        f"eddystone:{key_part('eddystone_uid_namespace', namespace)}:"
        f"{key_part('eddystone_uid_instance', instance)}"
    )


# Each part of an identity, named as the API names it (`ibeacon.major`: ibeacon_major): the
# kind of key it is in, where it sits there after the kind, and how messages call it.
KEY_PARTS = {
    "ibeacon_uuid": ("ibeacon", "first", "iBeacon UUID"),
    "ibeacon_major": ("ibeacon", "middle", "iBeacon major"),
    "ibeacon_minor": ("ibeacon", "last", "iBeacon minor"),
    "eddystone_uid_namespace": ("eddystone", "first", "Eddystone-UID namespace"),
    "eddystone_uid_instance": ("eddystone", "last", "Eddystone-UID instance"),
}


def key_part(part: str, value: object) -> str:
    """One part of an identity (a name of KEY_PARTS) as its key writes it, from any form
    the key's own builder takes. Raises BeaconParseError otherwise."""
    name = KEY_PARTS[part][2]
    if part == "ibeacon_uuid":
        return _canonical_uuid(value)
    if part in ("ibeacon_major", "ibeacon_minor"):
        return str(_uint16(value, name))
    return _hex_id(value, name, 10 if part == "eddystone_uid_namespace" else 6, prefixed=True)


def key_part_match(part: str, text: str) -> tuple[str, str, str]:
    """What a key holding `text` (as key_part writes it) as `part` starts with, contains and
    ends with. The parts after the kind are separated by colons and hold none, and a UUID is
    never digits alone: ":12:" in an iBeacon key is its major, a final ":12" its minor."""
    kind, where, _ = KEY_PARTS[part]
    if where == "first":
        return f"{kind}:{text}:", "", ""
    if where == "middle":
        return f"{kind}:", f":{text}:", ""
    return f"{kind}:", "", f":{text}"


def identity_key(frame: BeaconFrame) -> str:
    """The identity key of a decoded frame.

    An AltBeacon gets the iBeacon key of (id1, id2, id3), the Android Beacon Library's
    convention, so an AltBeacon and an iBeacon with the same ids resolve to one registration.
    Raises BeaconParseError for frames without an identity (Eddystone URL and TLM) and for
    anything that is not a frame.
    """
    if isinstance(frame, IBeacon):
        return ibeacon_key(frame.uuid, frame.major, frame.minor)
    if isinstance(frame, AltBeacon):
        return ibeacon_key(frame.id1, frame.id2, frame.id3)
    if isinstance(frame, EddystoneUID):
        return eddystone_uid_key(frame.namespace, frame.instance)
    for frame_type, reason in _FRAMES_WITHOUT_IDENTITY.items():
        if isinstance(frame, frame_type):
            raise BeaconParseError(reason)
    raise BeaconParseError(f"Expected a decoded beacon frame, got {type(frame).__name__}.")


def identity_key_from_text(text: str) -> str:
    """The canonical key of an identity key typed by hand ("ibeacon:<uuid>:<major>:<minor>" or
    "eddystone:<namespace>:<instance>", in any case, the uuid in any form ibeacon_key takes):
    the form gateways' sightings are matched against. Raises BeaconParseError otherwise."""
    kind, _, rest = text.strip().partition(":")
    kind = kind.lower()
    if kind == "ibeacon" and rest.count(":") >= 2:
        uuid, major, minor = rest.rsplit(":", 2)
        if major.isascii() and major.isdigit() and minor.isascii() and minor.isdigit():
            key = ibeacon_key(uuid, int(major), int(minor))
            identity_from_key(key)  # the form the API reads back must accept it
            return key
    if kind == "eddystone" and rest.count(":") == 1:
        key = eddystone_uid_key(*rest.split(":"))
        identity_from_key(key)
        return key
    raise BeaconParseError(
        f"{text[:80]!r} is not an identity key: expected 'ibeacon:<uuid>:<major>:<minor>' or "
        "'eddystone:<20 hex digits>:<12 hex digits>'."
    )


def identity_from_key(key: str) -> dict[str, dict[str, str | int]]:
    """The identity a key names, in the API's shape: {"ibeacon": {"uuid", "major", "minor"}} or
    {"eddystone_uid": {"namespace", "instance"}}.

    Only a canonical key, exactly as ibeacon_key or eddystone_uid_key spell it, is accepted:
    anything else would never match a stored key. Raises BeaconParseError otherwise.
    """
    if not isinstance(key, str):
        raise BeaconParseError(f"An identity key is text, not {type(key).__name__}.")
    kind, _, rest = key.partition(":")
    parts = rest.split(":")
    if kind == "ibeacon" and len(parts) == 3 and all(map(_DECIMAL_UINT16.fullmatch, parts[1:])):
        uuid, major, minor = parts[0], int(parts[1]), int(parts[2])
        _require_canonical(key, ibeacon_key, uuid, major, minor)
        return {"ibeacon": {"uuid": uuid, "major": major, "minor": minor}}
    if kind == "eddystone" and len(parts) == 2:
        namespace, instance = parts
        _require_canonical(key, eddystone_uid_key, namespace, instance)
        return {"eddystone_uid": {"namespace": namespace, "instance": instance}}
    raise BeaconParseError(
        f"{_quoted(key)} is not an identity key: expected "
        "'ibeacon:<uuid>:<major>:<minor>' or 'eddystone:<20 hex digits>:<12 hex digits>'."
    )


def identity_of_stored_key(key: str) -> dict[str, dict[str, str | int]] | None:
    """The identity a stored key names, in the API's shape (see identity_from_key); None when
    it names none. A key migration promotions.0026 left as typed in the first release's
    admin (typed twice, or not an identity) is read as that typing would be now: it is
    for the admin to settle, and must not fail what lists it."""
    try:
        return identity_from_key(identity_key_from_text(key))
    except BeaconParseError:
        return None


def _require_canonical(key: str, make_key: Callable[..., str], *parts: object) -> None:
    try:
        canonical = make_key(*parts)
    except BeaconParseError as error:
        raise BeaconParseError(f"{_quoted(key)} is not an identity key: {error}") from None
    if canonical != key:
        raise BeaconParseError(
            f"{_quoted(key)} is not in canonical form; the canonical key is {canonical!r}."
        )


def _advertising_data(raw: object) -> bytes:
    if isinstance(raw, str):
        data = _bytes_from_hex_text(raw)
    elif isinstance(raw, bytes | bytearray):
        data = bytes(raw)
    else:
        raise BeaconParseError(f"Advertising data is hex text or bytes, not {type(raw).__name__}.")
    if not data:
        raise BeaconParseError("The advertising data is empty.")
    if len(data) > MAX_ADVERTISING_DATA_BYTES:
        raise BeaconParseError(
            f"The advertising data is {len(data)} bytes; at most {MAX_ADVERTISING_DATA_BYTES} "
            "are accepted."
        )
    return data


def _bytes_from_hex_text(text: str) -> bytes:
    body = text.strip()
    start = len(text) - len(text.lstrip())
    if body[:2] in ("0x", "0X"):
        body, start = body[2:], start + 2
    if len(body) > _MAX_HEX_TEXT_LENGTH:
        raise BeaconParseError(
            f"The hex text is {len(body)} characters long; advertising data is at most "
            f"{MAX_ADVERTISING_DATA_BYTES} bytes."
        )
    if body and not _HEX_TEXT.fullmatch(body):
        raise BeaconParseError(_hex_text_problem(body, start))
    return bytes.fromhex(body.translate(_WITHOUT_SEPARATORS))


def _hex_text_problem(body: str, start: int) -> str:
    for index, character in enumerate(body):
        if character not in hexdigits and character not in _HEX_SEPARATORS:
            return (
                f"The hex text has {character!r} at position {start + index}, which is neither "
                "a hex digit nor a separator (':', '-' or ' ')."
            )
    digits = sum(character in hexdigits for character in body)
    if digits % 2:
        return f"The hex text has an odd number of hex digits ({digits}); each byte needs two."
    return (
        "The hex text has a misplaced separator: one ':', '-' or ' ' may sit between two bytes, "
        "never inside a byte, doubled, or at either end."
    )


def _ad_structures(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    offset = 0
    while offset < len(data):
        length = data[offset]
        if length == 0:
            # Padding, not the end: advertising data is zero-padded to its 31 bytes, and a
            # scanner that appends the scan response (Linux, ESPHome's Bluetooth proxies) leaves
            # that padding in front of it; some beacons pad between structures too.
            offset += 1
            continue
        remaining = len(data) - offset - 1
        if length > remaining:
            raise BeaconParseError(
                f"AD structure at byte {offset} claims {length} bytes but only {remaining} remain."
            )
        yield offset, data[offset + 1], data[offset + 2 : offset + 1 + length]
        offset += 1 + length


def _beacon_frame(ad_type: int, payload: bytes) -> BeaconFrame | None:
    """The beacon frame an AD structure carries, or None when it carries something else."""
    if ad_type == _MANUFACTURER_SPECIFIC_DATA and len(payload) >= 2:
        return _manufacturer_frame(int.from_bytes(payload[:2], "little"), payload[2:])
    if ad_type == _SERVICE_DATA_16_BIT_UUID and payload[:2] == _EDDYSTONE_UUID_BYTES:
        return decode_eddystone_service_data(payload[2:])
    return None


def _manufacturer_frame(company_id: int, data: bytes) -> IBeacon | AltBeacon | None:
    if company_id == APPLE_COMPANY_ID and data[:1] == bytes([_IBEACON_TYPE]):
        return _ibeacon(data)
    if data[:2] == _ALTBEACON_CODE_BYTES:
        return _altbeacon(company_id, data)
    return None


def _ibeacon(data: bytes) -> IBeacon:
    if len(data) != _IBEACON_LENGTH:
        raise BeaconParseError(
            f"An iBeacon is {_IBEACON_LENGTH} bytes after the company id (0x02, 0x15, a 16-byte "
            f"UUID, major, minor, measured power); this one is {len(data)}."
        )
    if data[1] != _IBEACON_REST_LENGTH:
        raise BeaconParseError(
            f"An iBeacon's second byte is 0x15, the length of the rest; this one has "
            f"0x{data[1]:02x}."
        )
    major, minor, measured_power = struct.unpack(">HHb", data[18:23])
    return IBeacon(str(UUID(bytes=data[2:18])), major, minor, measured_power)


def _altbeacon(company_id: int, data: bytes) -> AltBeacon:
    if len(data) != _ALTBEACON_LENGTH:
        raise BeaconParseError(
            f"An AltBeacon is {_ALTBEACON_LENGTH} bytes after the company id (beacon code "
            f"0xbeac, a 20-byte beacon id, reference RSSI, a reserved byte); this one is "
            f"{len(data)}."
        )
    return AltBeacon(company_id, data[2:22].hex(), _int8(data[22]), data[23])


def _eddystone_uid(data: bytes) -> EddystoneUID:
    # The two trailing bytes are reserved for future use, so their value is not checked.
    if len(data) not in (_EDDYSTONE_UID_LENGTH, _EDDYSTONE_UID_LEGACY_LENGTH):
        raise BeaconParseError(
            f"An Eddystone-UID frame is {_EDDYSTONE_UID_LENGTH} bytes (frame type, tx power, "
            f"10-byte namespace, 6-byte instance, 2 reserved; {_EDDYSTONE_UID_LEGACY_LENGTH} "
            f"without the reserved bytes); this one is {len(data)}."
        )
    return EddystoneUID(data[2:12].hex(), data[12:18].hex(), _int8(data[1]))


def _eddystone_url(data: bytes) -> EddystoneURL:
    if len(data) < 4:
        raise BeaconParseError(
            "An Eddystone-URL frame needs at least 4 bytes (frame type, tx power, URL scheme, "
            f"one URL byte); this one has {len(data)}."
        )
    return EddystoneURL(decode_eddystone_url(data[2:]), _int8(data[1]))


def _eddystone_tlm(data: bytes) -> EddystoneTLM | EddystoneETLM:
    if len(data) < 2:
        raise BeaconParseError("An Eddystone-TLM frame has no version byte.")
    version = data[1]
    if version == _TLM_PLAIN:
        if len(data) != _TLM_PLAIN_LENGTH:
            raise BeaconParseError(
                f"An Eddystone-TLM frame is {_TLM_PLAIN_LENGTH} bytes (frame type, version, "
                f"battery, temperature, advertising count, uptime); this one is {len(data)}."
            )
        battery_mv, temperature, adv_count, tenths = struct.unpack(">HHII", data[2:14])
        return EddystoneTLM(battery_mv, _temperature_c(temperature), adv_count, tenths / 10)
    if version == _TLM_ENCRYPTED:
        if len(data) != _TLM_ENCRYPTED_LENGTH:
            raise BeaconParseError(
                f"An encrypted Eddystone-TLM frame is {_TLM_ENCRYPTED_LENGTH} bytes (frame type, "
                f"version, 12 encrypted bytes, salt, MIC); this one is {len(data)}."
            )
        salt, mic = struct.unpack(">HH", data[14:18])
        return EddystoneETLM(data[2:14].hex(), salt, mic)
    raise BeaconParseError(
        f"Eddystone-TLM version 0x{version:02x} is not defined (0x00 plain, 0x01 encrypted)."
    )


def _temperature_c(raw: int) -> float | None:
    if raw == _TLM_TEMPERATURE_NOT_SUPPORTED:
        return None
    # Signed 8.8 fixed point.
    return int.from_bytes(raw.to_bytes(2, "big"), "big", signed=True) / 256


def _int8(byte: int) -> int:
    return byte - 256 if byte > 127 else byte


def _as_bytes(value: object, name: str) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise BeaconParseError(f"{name} must be bytes, not {type(value).__name__}.")


def _uint16(value: object, name: str) -> int:
    # bool is an int subclass, but True as a major number is a client bug, not 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise BeaconParseError(
            f"The {name} must be a whole number from 0 to 65535, not {type(value).__name__}."
        )
    if not 0 <= value <= 0xFFFF:
        # Huge ints are refused by str(), so only small ones are quoted back.
        shown = str(value) if abs(value) < 10**12 else "a number far outside that range"
        raise BeaconParseError(f"The {name} must be from 0 to 65535; got {shown}.")
    return int(value)


def _canonical_uuid(value: object) -> str:
    if isinstance(value, UUID):
        return str(value)
    if not isinstance(value, str):
        raise BeaconParseError(f"A UUID is text, not {type(value).__name__}.")
    if not _UUID_TEXT.fullmatch(value):
        raise BeaconParseError(
            f"{_quoted(value)} is not a UUID; expected 32 hex digits, bare or hyphenated "
            "8-4-4-4-12, such as 'f7826da6-4fa2-4e98-8024-bc5b71e0893e'."
        )
    return str(UUID(value))


def _hex_id(value: object, name: str, size: int, *, prefixed: bool = False) -> str:
    """`size` bytes as hex digits, lower case; with `prefixed`, optionally after "0x"."""
    if not isinstance(value, str):
        raise BeaconParseError(f"The {name} is text, not {type(value).__name__}.")
    digits = value[2:] if prefixed and value[:2] in ("0x", "0X") else value
    if len(digits) != size * 2 or not all(character in hexdigits for character in digits):
        optional = ', optionally after "0x"' if prefixed else ""
        raise BeaconParseError(
            f"The {name} is {size * 2} hex digits ({size} bytes){optional}; got {_quoted(value)}."
        )
    return digits.lower()


def _quoted(text: str) -> str:
    if len(text) > _QUOTE_LIMIT:
        return repr(text[:_QUOTE_LIMIT]) + "..."
    return repr(text)
