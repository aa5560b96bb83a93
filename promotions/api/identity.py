"""The three ways a client names a BLE identity (iBeacon, Eddystone-UID, raw advertisement),
each validated into the one canonical key that beacons and devices are stored under."""

from typing import Any

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from promotions import beacons
from promotions.api.fields import KnownFieldsOnly, StrictIntegerField

# How a beacon or a device is registered: the identity it advertises, by its parts.
REGISTERED_FORMS = ("ibeacon", "eddystone_uid")
# How a sighting names what was seen: by its parts, or as the advertisement heard.
SIGHTED_FORMS = (*REGISTERED_FORMS, "raw")


class WholeIdentitySerializer(KnownFieldsOnly, serializers.Serializer):
    """An identity is given whole, even in a PATCH: DRF passes a partial update down to
    nested serializers, which would then skip the parts left out."""

    def validate(self, attrs: dict[str, Any]) -> Any:
        missing = {
            name: [field.error_messages["required"]]
            for name, field in self.fields.items()
            if name not in attrs
        }
        if missing:
            raise serializers.ValidationError(missing)
        return attrs


class IBeaconSerializer(WholeIdentitySerializer):
    # The longest spelling beacons.ibeacon_key takes: "urn:uuid:" and 36 characters.
    uuid = serializers.CharField(max_length=45)
    major = StrictIntegerField(min_value=0, max_value=65535)
    minor = StrictIntegerField(min_value=0, max_value=65535)

    def validate(self, attrs: dict[str, Any]) -> str:
        attrs = super().validate(attrs)
        try:
            return beacons.ibeacon_key(attrs["uuid"], attrs["major"], attrs["minor"])
        except beacons.BeaconParseError as error:
            raise serializers.ValidationError({"uuid": [str(error)]}) from None


class EddystoneUidSerializer(WholeIdentitySerializer):
    # Up to two characters more than the digits: the Android Beacon Library's "0x" prefix.
    namespace = serializers.CharField(
        max_length=22, help_text='10 bytes as 20 hex digits, optionally after "0x".'
    )
    instance = serializers.CharField(
        max_length=14, help_text='6 bytes as 12 hex digits, optionally after "0x".'
    )

    def validate(self, attrs: dict[str, Any]) -> str:
        attrs = super().validate(attrs)
        try:
            return beacons.eddystone_uid_key(attrs["namespace"], attrs["instance"])
        except beacons.BeaconParseError as error:
            raise serializers.ValidationError({"non_field_errors": [str(error)]}) from None


class RawAdvertisementField(serializers.CharField):
    """Advertising data as hex, decoded to the iBeacon, Eddystone-UID or AltBeacon it carries."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 1024)
        kwargs.setdefault("help_text", "Raw BLE advertising data (AD structures) in hex.")
        super().__init__(**kwargs)

    def to_internal_value(self, data: object) -> str:
        text = super().to_internal_value(data)
        try:
            return beacons.identity_key(beacons.parse_advertisement(text))
        except beacons.BeaconParseError as error:
            raise serializers.ValidationError(str(error)) from None


def pop_identity(attrs: dict[str, Any], *, forms: tuple[str, ...], required: bool) -> str | None:
    """Remove the identity forms from validated `attrs`; return the key of the one given.

    Each form's field validates to the canonical key, so any one of them will do."""
    values = {form: attrs.pop(form, None) for form in forms}
    given = {form: key for form, key in values.items() if key is not None}
    if len(given) > 1:
        raise serializers.ValidationError(
            {"non_field_errors": [f"Give one identity ({' or '.join(forms)}), not several."]}
        )
    if not given:
        if required:
            raise serializers.ValidationError(
                {"non_field_errors": [f"An identity is required: {' or '.join(forms)}."]}
            )
        return None
    return next(iter(given.values()))


def identity_representation(key: str | None) -> dict[str, Any]:
    """`{"ibeacon": {...} or None, "eddystone_uid": {...} or None}` for a stored key."""
    shape: dict[str, Any] = {"ibeacon": None, "eddystone_uid": None}
    if key:
        shape.update(beacons.identity_of_stored_key(key) or {})
    return shape


# --- Beacons found by their identity ----------------------------------------------------------


class KeyPartFormField(forms.CharField):
    """One part of an identity in a query string, read as the body reads it and written as
    keys hold it (beacons.key_part). A major or minor is ASCII digits: int() would also read
    " 1", "+1" or other scripts' digits."""

    def __init__(self, *, part: str, **kwargs: Any) -> None:
        self.part = part
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> str:
        text = super().to_python(value)
        if text in self.empty_values:
            return text
        name = beacons.KEY_PARTS[self.part][2]
        try:
            if self.part in ("ibeacon_major", "ibeacon_minor"):
                if not (text.isascii() and text.isdigit()):
                    raise beacons.BeaconParseError(
                        f"The {name} must be a whole number from 0 to 65535."
                    )
                return beacons.key_part(self.part, int(text))
            return beacons.key_part(self.part, text)
        except beacons.BeaconParseError as error:
            # django-filter formats every message with `%`, params or none: the value quoted
            # in it (a `%` typed in a query string) goes in as a param, never as format.
            raise forms.ValidationError("%(reason)s", params={"reason": str(error)}) from None


class KeyPartFilter(django_filters.CharFilter):
    field_class = KeyPartFormField

    def __init__(self, *, part: str, **kwargs: Any) -> None:
        super().__init__(part=part, **kwargs)
        self.part = part

    def filter(self, queryset: QuerySet, value: str) -> QuerySet:
        if value in ([], (), {}, "", None):
            return queryset
        starts, contains, ends = beacons.key_part_match(self.part, value)
        match = Q(identity__startswith=starts)
        if contains:
            match &= Q(identity__contains=contains)
        if ends:
            match &= Q(identity__endswith=ends)
        return queryset.filter(match)


class MajorMinorFilter(KeyPartFilter):
    def __init__(self, *, part: str, **kwargs: Any) -> None:
        super().__init__(part=part, **kwargs)
        # Documented on the filter itself: a schema given for the class would hold one
        # description for both.
        name = beacons.KEY_PARTS[part][2]
        schema = {"type": "integer", "minimum": 0, "maximum": 65535}
        extend_schema_field({**schema, "description": f"{name}, from 0 to 65535."})(self)


class IdentityFilters(django_filters.FilterSet):
    """A beacon found by the identity it advertises, in part or whole: the one printed on it,
    or sighted, where its `id` is what the API addresses it by. Each part as the body names
    it (`ibeacon.uuid`: `ibeacon_uuid`) and in any form the body takes."""

    ibeacon_uuid = KeyPartFilter(
        part="ibeacon_uuid", help_text="iBeacon UUID: 32 hex digits, bare or 8-4-4-4-12."
    )
    ibeacon_major = MajorMinorFilter(part="ibeacon_major")
    ibeacon_minor = MajorMinorFilter(part="ibeacon_minor")
    eddystone_uid_namespace = KeyPartFilter(
        part="eddystone_uid_namespace",
        help_text='Eddystone-UID namespace: 20 hex digits, optionally after "0x".',
    )
    eddystone_uid_instance = KeyPartFilter(
        part="eddystone_uid_instance",
        help_text='Eddystone-UID instance: 12 hex digits, optionally after "0x".',
    )
