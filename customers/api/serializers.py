from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from customers.models import (
    Customer,
    Device,
    EventType,
    Platform,
    SmsConsent,
    locale_validator,
)
from promotions.api.fields import RecentInstantField, StrictCharField, TimeZoneField
from promotions.api.identity import (
    EddystoneUidSerializer,
    IBeaconSerializer,
    identity_representation,
    pop_identity,
)


def _optional_text(max_length: int, **kwargs: Any) -> StrictCharField:
    return StrictCharField(
        max_length=max_length, required=False, allow_blank=True, allow_null=True, **kwargs
    )


class CustomerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Customer
        fields = [
            "external_id",
            "phone",
            "first_name",
            "timezone",
            "locale",
            "sms_consent",
            "consent_source",
            "consent_updated_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class CustomerInputSerializer(serializers.Serializer):
    """Fields left out keep their stored value; null or "" clears a text field."""

    phone = _optional_text(
        40, help_text="E.164, or national format when the locale names a country."
    )
    first_name = _optional_text(100)
    timezone = TimeZoneField(required=False, allow_blank=True, allow_null=True)
    locale = _optional_text(35, help_text="BCP 47, e.g. fr-FR.")
    sms_consent = serializers.ChoiceField(choices=SmsConsent.choices, required=False)
    consent_source = _optional_text(100, help_text="Where consent was given, e.g. web_form.")

    def validate_locale(self, value: str | None) -> str | None:
        if not value:
            return value
        value = value.replace("_", "-")
        try:
            locale_validator(value)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.messages) from None
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("phone"):
            # The phone's rules are the model's, which the admin applies too.
            stored: Customer | None = self.context.get("customer")
            locale = attrs.get("locale") if "locale" in attrs else (stored.locale if stored else "")
            customer = Customer(phone=attrs["phone"], locale=locale or "")
            try:
                customer.clean()
            except DjangoValidationError as error:
                raise serializers.ValidationError(error.message_dict) from None
            attrs["phone"] = customer.phone
        return attrs


DEVICE_IDENTITY_FORMS = ("ibeacon", "eddystone_uid")


class DeviceInputSerializer(serializers.Serializer):
    """What a registration leaves out is kept: the platform (`other` for a new device) and
    the BLE identity. An identity sent as null is removed."""

    device_id = StrictCharField(max_length=100)
    customer_id = StrictCharField(max_length=100)
    platform = serializers.ChoiceField(
        choices=Platform.choices,
        required=False,
        help_text="Left out: kept as stored, or `other` for a new device.",
    )
    ibeacon = IBeaconSerializer(
        required=False, allow_null=True, help_text="Left out: kept as stored; null: removed."
    )
    eddystone_uid = EddystoneUidSerializer(
        required=False, allow_null=True, help_text="Left out: kept as stored; null: removed."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Only a form present in the body, null included, says anything about the identity.
        given = any(form in attrs for form in DEVICE_IDENTITY_FORMS)
        identity = pop_identity(attrs, forms=DEVICE_IDENTITY_FORMS, required=False)
        if given:
            attrs["ble_identity"] = identity
        return attrs


class DeviceSerializer(serializers.ModelSerializer):
    customer_id = serializers.CharField(source="customer.external_id")
    ibeacon = serializers.SerializerMethodField()
    eddystone_uid = serializers.SerializerMethodField()

    class Meta:
        model = Device
        fields = [
            "device_id",
            "customer_id",
            "platform",
            "ibeacon",
            "eddystone_uid",
            "created_at",
            "updated_at",
        ]

    def get_ibeacon(self, device: Device) -> dict[str, Any] | None:
        return identity_representation(device.ble_identity)["ibeacon"]

    def get_eddystone_uid(self, device: Device) -> dict[str, Any] | None:
        return identity_representation(device.ble_identity)["eddystone_uid"]


class IdentifySerializer(serializers.Serializer):
    visitor_id = StrictCharField(max_length=100)
    customer_id = StrictCharField(max_length=100)


class IdentifiedSerializer(serializers.Serializer):
    visitor_id = serializers.CharField()
    customer_id = serializers.CharField()
    events_attributed = serializers.IntegerField(
        help_text="Past events of the visitor that now count as the customer's."
    )


_NEEDS_SKU = {EventType.PRODUCT_VIEW, EventType.ADD_TO_CART, EventType.CART_ABANDONED}


class BrowsingEventSerializer(serializers.Serializer):
    event_id = StrictCharField(max_length=100)
    customer_id = _optional_text(100)
    visitor_id = _optional_text(100)
    type = serializers.ChoiceField(choices=EventType.choices)
    sku = _optional_text(100)
    product_name = _optional_text(200)
    category = _optional_text(100)
    url = _optional_text(2000)
    occurred_at = RecentInstantField(
        max_age=lambda: timedelta(days=settings.INTENT_WINDOW_DAYS),
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not (attrs.get("customer_id") or attrs.get("visitor_id")):
            raise serializers.ValidationError(
                {"non_field_errors": ["An event needs a customer_id or a visitor_id."]}
            )
        if attrs["type"] in _NEEDS_SKU and not attrs.get("sku"):
            raise serializers.ValidationError({"sku": [f"A {attrs['type']} event needs a sku."]})
        return attrs
