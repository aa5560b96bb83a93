from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from customers.models import (
    CartState,
    Customer,
    Device,
    EventType,
    Platform,
    ReplySource,
    SmsConsent,
    locale_validator,
)
from promotions.api.fields import (
    ONLY_PINGS_ARE_MOCKED,
    AmountField,
    KnownFieldsOnly,
    RecentInstantField,
    StrictCharField,
    TimeZoneField,
)
from promotions.api.identity import (
    REGISTERED_FORMS,
    EddystoneUidSerializer,
    IBeaconSerializer,
    identity_representation,
    pop_identity,
)
from promotions.models import DeliveryStatus, PresenceKind, SightingSource


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


class CustomerInputSerializer(KnownFieldsOnly, serializers.Serializer):
    """Fields left out keep their stored value; null or "" clears a text field."""

    phone = _optional_text(
        40, help_text="E.164, or national format when the locale names a country."
    )
    first_name = _optional_text(100)
    timezone = TimeZoneField(required=False, allow_blank=True, allow_null=True)
    locale = _optional_text(35, help_text="BCP 47, e.g. fr-FR.")
    sms_consent = serializers.ChoiceField(
        choices=SmsConsent.choices,
        required=False,
        allow_null=True,
        help_text="Left out or null: kept as stored.",
    )
    consent_source = _optional_text(
        100,
        help_text="Where consent was given, e.g. web_form: with `sms_consent` (alone, only "
        "when the customer is created).",
    )
    # What a GET answers besides, so that a customer read and sent back whole goes in; ignored.
    external_id = serializers.CharField(read_only=True)
    consent_updated_at = serializers.DateTimeField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

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
        if "sms_consent" in attrs and attrs["sms_consent"] is None:
            del attrs["sms_consent"]  # an encoder's way of leaving it out
        stored: Customer | None = self.context.get("customer")
        if stored is not None and attrs.get("consent_source") and "sms_consent" not in attrs:
            # The stored source is that of the consent as it stands: rewritten alone, it
            # would say consent was given somewhere it was not.
            raise serializers.ValidationError(
                {"consent_source": ["Send it with the consent it is the source of (sms_consent)."]}
            )
        if attrs.get("phone"):
            # The phone's rules are the model's, which the admin applies too.
            locale = attrs.get("locale") if "locale" in attrs else (stored.locale if stored else "")
            customer = Customer(phone=attrs["phone"], locale=locale or "")
            try:
                customer.clean()
            except DjangoValidationError as error:
                raise serializers.ValidationError(error.message_dict) from None
            attrs["phone"] = customer.phone
        return attrs


class DeviceInputSerializer(KnownFieldsOnly, serializers.Serializer):
    """What a registration leaves out is kept: the platform (`other` for a new device) and
    the BLE identity. An identity sent as null is removed."""

    device_id = StrictCharField(max_length=100)
    customer_id = StrictCharField(max_length=100)
    platform = serializers.ChoiceField(
        choices=Platform.choices,
        required=False,
        allow_null=True,
        help_text="Left out or null: kept as stored, or `other` for a new device.",
    )
    ibeacon = IBeaconSerializer(
        required=False, allow_null=True, help_text="Left out: kept as stored; null: removed."
    )
    eddystone_uid = EddystoneUidSerializer(
        required=False, allow_null=True, help_text="Left out: kept as stored; null: removed."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A null platform is an encoder's way of leaving it out.
        if "platform" in attrs and attrs["platform"] is None:
            del attrs["platform"]
        # Only a form present in the body, null included, says anything about the identity.
        given = any(form in attrs for form in REGISTERED_FORMS)
        identity = pop_identity(attrs, forms=REGISTERED_FORMS, required=False)
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


class IdentifySerializer(KnownFieldsOnly, serializers.Serializer):
    visitor_id = StrictCharField(max_length=100)
    customer_id = StrictCharField(max_length=100)


class IdentifiedSerializer(serializers.Serializer):
    visitor_id = serializers.CharField()
    customer_id = serializers.CharField()
    events_attributed = serializers.IntegerField(
        help_text="Past events of the visitor that now count as the customer's."
    )


class BrowsingEventSerializer(KnownFieldsOnly, serializers.Serializer):
    extra_keys_ignored = True  # a site's tag manager sends what it has (KnownFieldsOnly)
    mock_flag_message = ONLY_PINGS_ARE_MOCKED

    event_id = StrictCharField(max_length=100)
    customer_id = _optional_text(100)
    visitor_id = _optional_text(100)
    type = serializers.ChoiceField(choices=EventType.choices)
    sku = _optional_text(
        100,
        help_text="Left out, the event counts towards its category alone; with neither, a "
        "cart event counts towards the whole cart (a cart-level abandonment, say), and a "
        "view is stored and changes no intent.",
    )
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
        return attrs


# --- Export -----------------------------------------------------------------------------
# What GET /customers/{external_id}/export answers (customers.selectors.get_customer_export
# builds it), for the schema. Related rows are named as the rest of the API names them: a
# store by its code, a device by its device_id.


class ExportedConsentChangeSerializer(serializers.Serializer):
    previous = serializers.ChoiceField(choices=SmsConsent.choices)
    consent = serializers.ChoiceField(choices=SmsConsent.choices)
    source = serializers.CharField()
    note = serializers.CharField()
    changed_at = serializers.DateTimeField()
    by_reply = serializers.BooleanField()


class ExportedOptedOutNumberSerializer(serializers.Serializer):
    opted_out_at = serializers.DateTimeField()
    source = serializers.ChoiceField(choices=ReplySource.choices)


class ExportedDeviceSerializer(serializers.Serializer):
    device_id = serializers.CharField()
    platform = serializers.ChoiceField(choices=Platform.choices)
    ble_identity = serializers.DictField(
        allow_null=True,
        help_text='{"ibeacon": {uuid, major, minor}} or {"eddystone_uid": {namespace, instance}}; '
        '{"stored_as": text} for a tag typed in the first release\'s admin naming no identity.',
    )
    owner_since = serializers.DateTimeField(
        allow_null=True,
        help_text="When the device came to this customer from another (null: first linked to "
        "them). Pings and sightings it recorded before then are refused.",
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField(help_text="When it was last registered or changed.")


class ExportedVisitorSerializer(serializers.Serializer):
    visitor_id = serializers.CharField()
    identified_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField(help_text="When the browser was first seen.")


class ExportedBrowsingEventSerializer(serializers.Serializer):
    event_id = serializers.CharField()
    visitor_id = serializers.CharField(
        allow_null=True, help_text="The anonymous visitor the event was sent as, if any."
    )
    type = serializers.ChoiceField(choices=EventType.choices)
    sku = serializers.CharField()
    product_name = serializers.CharField()
    category = serializers.CharField()
    url = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField()


CART_STATE_HELP = f'"{CartState.IN_CART}", "{CartState.ABANDONED}", or "" for none.'


class ExportedCategoryIntentSerializer(serializers.Serializer):
    category = serializers.CharField()
    view_times = serializers.ListField(
        child=serializers.DateTimeField(), help_text="Recent product views, oldest first."
    )
    last_seen_at = serializers.DateTimeField(allow_null=True)
    cart_state = serializers.CharField(help_text=CART_STATE_HELP)
    cart_updated_at = serializers.DateTimeField(
        allow_null=True, help_text="When the cart event that set cart_state occurred."
    )
    score = serializers.FloatField(help_text="Decayed score as of score_at.")
    score_at = serializers.DateTimeField(allow_null=True)


class ExportedCartIntentSerializer(serializers.Serializer):
    last_seen_at = serializers.DateTimeField(allow_null=True)
    cart_state = serializers.CharField(help_text=CART_STATE_HELP)
    cart_updated_at = serializers.DateTimeField(
        allow_null=True, help_text="When the cart event that set cart_state occurred."
    )
    score = serializers.FloatField(help_text="Decayed score as of score_at.")
    score_at = serializers.DateTimeField(allow_null=True)


class ExportedProductIntentSerializer(ExportedCategoryIntentSerializer):
    sku = serializers.CharField()
    categorised_at = serializers.DateTimeField(
        allow_null=True, help_text="When the event that gave the category occurred."
    )
    categories = serializers.ListField(
        child=serializers.CharField(),
        help_text="Every category its events counted towards, case and spacing folded as "
        "campaigns match them (a product listed under two is in both); empty for a row "
        "stored before these were kept, which is in `category` alone.",
    )


class ExportedPingSerializer(serializers.Serializer):
    id = serializers.IntegerField(
        help_text="Ours: what a presence event's `ping` and a delivery's trace name it by."
    )
    device_id = serializers.CharField()
    ping_id = serializers.CharField(allow_null=True)
    latitude = serializers.FloatField()
    longitude = serializers.FloatField()
    accuracy = serializers.FloatField()
    speed = serializers.FloatField(allow_null=True)
    mocked = serializers.BooleanField()
    suspicious = serializers.BooleanField(
        help_text="Judged a mocked location or a teleport: kept, but it moved nothing."
    )
    recorded_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField()


class ExportedDeviceTrackSerializer(serializers.Serializer):
    device_id = serializers.CharField()
    latitude = serializers.FloatField()
    longitude = serializers.FloatField()
    accuracy = serializers.FloatField()
    at = serializers.DateTimeField()
    jump_latitude = serializers.FloatField(allow_null=True)
    jump_longitude = serializers.FloatField(allow_null=True)
    jump_accuracy = serializers.FloatField(allow_null=True)
    jump_at = serializers.DateTimeField(allow_null=True)


class ExportedPresenceSerializer(serializers.Serializer):
    store = serializers.CharField()
    zone = serializers.CharField(allow_null=True)
    place_key = serializers.CharField()
    inside = serializers.BooleanField()
    state = serializers.JSONField()
    updated_at = serializers.DateTimeField()


class ExportedPresenceEventSerializer(serializers.Serializer):
    id = serializers.IntegerField(
        help_text="Ours: what a delivery's `presence_event` and trace name it by."
    )
    kind = serializers.ChoiceField(choices=PresenceKind.choices)
    place_key = serializers.CharField(
        help_text="The place, as presence keys it: store:<id>, zone:<id> or near:<id>:<m>."
    )
    store = serializers.CharField()
    zone = serializers.CharField(allow_null=True)
    minutes = serializers.IntegerField(allow_null=True)
    distance_m = serializers.FloatField(allow_null=True)
    occurred_at = serializers.DateTimeField()
    ping = serializers.IntegerField(
        allow_null=True, help_text="The `id` of the ping that caused it, if one did."
    )
    sighting = serializers.IntegerField(
        allow_null=True, help_text="The `id` of the sighting that caused it, if one did."
    )
    evidence = serializers.JSONField(help_text='What caused it: {"reason": ...}.')
    created_at = serializers.DateTimeField(help_text="When it was recorded.")


class ExportedDeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    campaign = serializers.IntegerField()
    campaign_name = serializers.CharField()
    presence_event = serializers.IntegerField(
        allow_null=True, help_text="The `id` of the presence event it was decided on."
    )
    store = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    reason = serializers.CharField(help_text='Why it was not sent; "" if sent.')
    to = serializers.CharField()
    body = serializers.CharField()
    encoding = serializers.CharField(help_text='"GSM-7" or "UCS-2"; "" if no SMS was written.')
    segments = serializers.IntegerField(help_text="How many SMS the body takes.")
    code = serializers.CharField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    product_sku = serializers.CharField()
    intent_score = serializers.FloatField()
    trace = serializers.JSONField()
    twilio_sid = serializers.CharField()
    error_code = serializers.IntegerField(allow_null=True)
    error_message = serializers.CharField()
    attempts = serializers.IntegerField(help_text="How many times sending it was tried.")
    created_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField(allow_null=True)
    status_updated_at = serializers.DateTimeField(
        allow_null=True, help_text="When its status last changed."
    )


class ExportedRedemptionSerializer(serializers.Serializer):
    code = serializers.CharField(allow_null=True)
    store = serializers.CharField(allow_null=True)
    amount = AmountField(allow_null=True)
    redeemed_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField(help_text="When the redemption was recorded.")


class ExportedSightingSerializer(serializers.Serializer):
    id = serializers.IntegerField(
        help_text="Ours: what a presence event's `sighting` and a delivery's trace name it by."
    )
    device_id = serializers.CharField()
    source = serializers.ChoiceField(choices=SightingSource.choices)
    store = serializers.CharField()
    zone = serializers.CharField(
        allow_null=True, help_text="The zone the sighting placed the device in, if any."
    )
    beacon = serializers.DictField(
        allow_null=True,
        help_text='The store beacon the app ranged: {"ibeacon": {uuid, major, minor}} or '
        '{"eddystone_uid": {namespace, instance}}; null for a gateway\'s sighting.',
    )
    gateway = serializers.CharField(
        allow_null=True, help_text="The gateway that saw the device; null for the app's."
    )
    rssi = serializers.IntegerField()
    mac = serializers.CharField()
    seen_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField()


class ExportedAdminHistoryEntrySerializer(serializers.Serializer):
    action_time = serializers.DateTimeField()
    action = serializers.ChoiceField(choices=["added", "changed", "deleted"])
    object_type = serializers.ChoiceField(
        choices=["customer", "device", "visitor"],
        help_text="The customer, one of their devices, or one of their browsers.",
    )
    object_id = serializers.CharField(
        help_text="The row's id as the API names it: external_id, device_id or visitor_id."
    )
    object_repr = serializers.CharField(help_text="How the entry named the row when written.")
    change_message = serializers.CharField(help_text='What changed, e.g. "Changed First name."')
    user = serializers.CharField(help_text="The username of the staff member who did it.")


class CustomerExportSerializer(serializers.Serializer):
    customer = CustomerSerializer()
    consent_log = ExportedConsentChangeSerializer(many=True)
    opted_out_number = ExportedOptedOutNumberSerializer(
        allow_null=True,
        help_text="The customer's number is on the list of numbers that opted out by replying "
        "to an SMS (kept as a keyed hash, through erasure, until it replies START): no one is "
        "opted in at it through the API. Null when it is not.",
    )
    number_replied_start_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When the customer's number last replied START (kept as a keyed hash, through "
        "erasure, whether or not that changed their consent): a 21610 from Twilio for an SMS "
        "sent before then opts no one out. Null when it never has.",
    )
    devices = ExportedDeviceSerializer(many=True)
    visitors = ExportedVisitorSerializer(many=True)
    browsing_events = ExportedBrowsingEventSerializer(many=True)
    product_intent = ExportedProductIntentSerializer(many=True)
    category_intent = ExportedCategoryIntentSerializer(many=True)
    cart_intent = ExportedCartIntentSerializer(
        allow_null=True,
        help_text="The cart as the site reported it whole, from cart events naming neither a "
        "SKU nor a category; null when none came.",
    )
    pings = ExportedPingSerializer(many=True)
    device_tracks = ExportedDeviceTrackSerializer(many=True)
    presence = ExportedPresenceSerializer(many=True)
    presence_events = ExportedPresenceEventSerializer(many=True)
    deliveries = ExportedDeliverySerializer(many=True)
    redemptions = ExportedRedemptionSerializer(many=True)
    sightings = ExportedSightingSerializer(many=True)
    admin_history = ExportedAdminHistoryEntrySerializer(
        many=True, help_text="What staff changed about them in the admin."
    )
