import math
from copy import copy
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Model
from django.utils import timezone
from rest_framework import serializers
from rest_framework.fields import empty

from promotions.api.fields import (
    ONLY_PINGS_ARE_MOCKED,
    AccuracyField,
    FiniteFloatField,
    FlagField,
    GeoJsonField,
    HourMinuteField,
    InstantField,
    IntentWindowDaysField,
    KnownFieldsOnly,
    MacAddressField,
    RecentInstantField,
    StrictCharField,
    StrictIntegerField,
    TimeZoneField,
)
from promotions.api.identity import (
    REGISTERED_FORMS,
    SIGHTED_FORMS,
    EddystoneUidSerializer,
    IBeaconSerializer,
    RawAdvertisementField,
    identity_representation,
    pop_identity,
)
from promotions.geocoding import GeocodingError, geocode
from promotions.models import (
    MAX_CAMPAIGN_PRIORITY,
    MAX_DWELL_MINUTES,
    MAX_FENCE_RADIUS_M,
    MAX_INTENT_MIN_VIEWS,
    MAX_INTENT_WITHIN_DAYS,
    MAX_LIMIT_PER_CUSTOMER_DAYS,
    MAX_OFFER_VALID_DAYS,
    WEEKDAYS,
    Beacon,
    Campaign,
    CampaignStatus,
    Gateway,
    Store,
    TriggerType,
    Zone,
    check_campaign_places,
    no_such_key,
    zone_code_hint,
)
from promotions.times import format_instant_for_api


def _ping_max_age() -> timedelta:
    return timedelta(hours=settings.INGEST_MAX_PING_AGE_HOURS)


def _clean_as_saved(
    model: type[Model],
    instance: Model | None,
    attrs: dict[str, Any],
    *,
    error_fields: dict[str, str] | None = None,
) -> Model:
    """The object as it would be saved, checked by the model's rules (which the admin applies
    too) without touching the instance being edited; returned as clean() left it. Its errors
    are raised on the model's field names, or on the resource's where `error_fields` maps
    them."""
    changed = copy(instance) if instance is not None else model()
    for name, value in attrs.items():
        setattr(changed, name, value)
    try:
        changed.clean()
    except DjangoValidationError as error:
        renamed = error_fields or {}
        errors = {
            renamed.get(name, name): messages for name, messages in error.message_dict.items()
        }
        raise serializers.ValidationError(errors) from None
    return changed


# --- Places -----------------------------------------------------------------------------


def _whole_on_put(
    serializer: serializers.ModelSerializer, names: tuple[str, ...], attrs: dict[str, Any]
) -> dict[str, Any]:
    """`attrs` with the optional columns `names` a PUT leaves out at their defaults, as a
    create sets them; a PATCH's, or a create's, as they are. A PUT gives the resource whole:
    what it left out was kept from before, so a gateway replaced without its zone went on
    reporting its shoppers in the zone (and one moved to a store without a zone of that
    code was refused on a zone the body never named)."""
    if serializer.instance is None or serializer.partial:
        return attrs
    model = serializer.Meta.model
    defaults = {name: model._meta.get_field(name).get_default() for name in names}
    return {**defaults, **attrs}


# A store created (or replaced) without coordinates is placed at its address, when a
# geocoder is configured; one being edited keeps its place unless coordinates are given.
COORDINATES_HELP = (
    "Degrees. Left out with `longitude` on a create or a replace: the address is geocoded "
    "(GEOCODER), or the answer is 400 saying why it could not be."
)


class StoreCodeField(serializers.SlugRelatedField):
    """A store named by its code; one no store has is refused naming the codes it may mean."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("slug_field", "code")
        kwargs.setdefault("queryset", Store.objects.all())
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Store:
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as error:
            if error.get_codes() != ["does_not_exist"]:
                raise
            message = no_such_key(Store, "code", str(data), label="code")
            raise serializers.ValidationError(message, code="does_not_exist") from None


# What promotions.geo.outline_geometry takes, as map editors export an outline.
POLYGON_HELP = (
    "The fence as a GeoJSON Polygon ([longitude, latitude] positions, the outer ring first, "
    "then any holes), instead of radius_m. Also taken as map editors export it: a Feature, a "
    "FeatureCollection of one Feature, or a MultiPolygon of one polygon (QGIS), holding it. "
    "Stored and answered as the Polygon, its type and coordinates only."
)


class StoreSerializer(KnownFieldsOnly, serializers.ModelSerializer):
    latitude = FiniteFloatField(
        min_value=-90, max_value=90, required=False, help_text=COORDINATES_HELP
    )
    longitude = FiniteFloatField(
        min_value=-180, max_value=180, required=False, help_text=COORDINATES_HELP
    )
    radius_m = FiniteFloatField(
        min_value=1, max_value=MAX_FENCE_RADIUS_M, required=False, allow_null=True
    )
    polygon = GeoJsonField(required=False, allow_null=True, help_text=POLYGON_HELP)
    timezone = TimeZoneField()

    class Meta:
        model = Store
        fields = [
            "code",
            "name",
            "address",
            "latitude",
            "longitude",
            "radius_m",
            "polygon",
            "timezone",
        ]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Coordinates left out of a PUT are not reset: the address places the store instead.
        attrs = self._placed(_whole_on_put(self, ("address", "radius_m", "polygon"), attrs))
        store = _clean_as_saved(Store, self.instance, attrs)
        if "polygon" in attrs:
            attrs["polygon"] = store.polygon  # as clean() keeps it: its type and coordinates
        return attrs

    def _placed(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The attributes with coordinates: as given, or the address geocoded."""
        if self.partial:  # an edit moves what it names, and keeps the rest
            return attrs
        given = [name for name in ("latitude", "longitude") if name in attrs]
        if len(given) == 1:
            missing = "longitude" if given == ["latitude"] else "latitude"
            raise serializers.ValidationError({missing: ["Give both coordinates, or neither."]})
        if given:
            return attrs
        try:
            latitude, longitude = geocode(attrs.get("address", ""))
        except GeocodingError as error:
            raise serializers.ValidationError(
                {"address": [f"{error} Give the store's latitude and longitude."]}
            ) from None
        return {**attrs, "latitude": latitude, "longitude": longitude}


class ZoneSerializer(KnownFieldsOnly, serializers.ModelSerializer):
    store = StoreCodeField()
    rssi_threshold = StrictIntegerField(min_value=-127, max_value=-1, required=False)

    class Meta:
        model = Zone
        fields = ["id", "store", "code", "name", "rssi_threshold"]

    def get_unique_together_validators(self) -> list:
        return []  # checked in validate, in words that name the store and the code

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = _whole_on_put(self, ("rssi_threshold",), attrs)
        zone = _clean_as_saved(Zone, self.instance, attrs)
        taken = Zone.objects.filter(store=zone.store_id, code=zone.code).exclude(pk=zone.pk)
        if taken.exists():
            raise serializers.ValidationError(
                {"non_field_errors": [f"Store {zone.store.code} has a zone '{zone.code}' already."]}
            )
        return attrs


class ZoneCodeField(serializers.CharField):
    """A zone named by its code within the object's store; resolved in `validate`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=32, required=False, allow_null=True, **kwargs)

    def to_representation(self, value: Zone) -> str:
        return value.code


def _resolve_zone(attrs: dict[str, Any], instance: Any) -> None:
    """Replace the zone code in `attrs` by the zone of that code in the (new or kept) store."""
    store = attrs.get("store") or getattr(instance, "store", None)
    kept = None
    if "zone" in attrs:
        code = attrs["zone"]
    elif "store" in attrs and instance is not None and instance.zone_id:
        kept = instance.zone  # moving to another store: find the zone of the same code
        code = kept.code
    else:
        return
    if not code:
        attrs["zone"] = None
        return
    zone = Zone.objects.filter(store=store, code=code).first()
    if zone is None:
        message = f"Store {store.code} has no zone '{code}'.{zone_code_hint(code, [store.pk])}"
        if kept is not None:
            # The body named no zone: say which one this is, and what to send instead.
            message = (
                f"Store {store.code} has no zone '{code}', this {type(instance).__name__.lower()}"
                f"'s zone in store {kept.store.code}: give a zone of store {store.code} with "
                "the move, or null."
            )
        raise serializers.ValidationError({"zone": [message]})
    attrs["zone"] = zone


class BeaconSerializer(KnownFieldsOnly, serializers.ModelSerializer):
    store = StoreCodeField()
    zone = ZoneCodeField()
    ibeacon = IBeaconSerializer(required=False, allow_null=True)
    eddystone_uid = EddystoneUidSerializer(required=False, allow_null=True)
    measured_power = StrictIntegerField(min_value=-127, max_value=20, required=False)

    class Meta:
        model = Beacon
        fields = ["id", "store", "zone", "ibeacon", "eddystone_uid", "measured_power"]

    def to_representation(self, beacon: Beacon) -> dict[str, Any]:
        return {
            "id": beacon.id,
            "store": beacon.store.code,
            "zone": beacon.zone.code if beacon.zone_id else None,
            **identity_representation(beacon.identity),
            "measured_power": beacon.measured_power,
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = _whole_on_put(self, ("zone", "measured_power"), attrs)
        nulled = [form for form in REGISTERED_FORMS if form in attrs and attrs[form] is None]
        # A PUT names the identity as a create does; a PATCH keeps the one it leaves out.
        identity = pop_identity(attrs, forms=REGISTERED_FORMS, required=not self.partial)
        if identity is None and self.instance is not None:
            # A PATCH nulling the form the beacon has, with none in its place, asks for a
            # beacon without an identity: refused, not a 200 that kept it.
            current = identity_representation(self.instance.identity)
            if taken_away := [form for form in nulled if current[form] is not None]:
                message = (
                    "A beacon keeps one identity: give the one that replaces it "
                    f"({' or '.join(REGISTERED_FORMS)}), or delete the beacon."
                )
                raise serializers.ValidationError({form: [message] for form in taken_away})
        if identity is not None:
            taken = Beacon.objects.filter(identity=identity).select_related("store")
            if self.instance is not None:
                taken = taken.exclude(pk=self.instance.pk)
            if held := taken.first():
                # Named: the list cannot be searched by identity, and a beacon carried to
                # another store is registered there anew before the old one is moved.
                message = (
                    f"Beacon {held.pk} of store {held.store.code} is registered with this "
                    "identity: move or delete that one first."
                )
                raise serializers.ValidationError({"non_field_errors": [message]})
            attrs["identity"] = identity
        _resolve_zone(attrs, self.instance)
        # The resource has no identity field: its ibeacon or eddystone_uid is the identity.
        _clean_as_saved(Beacon, self.instance, attrs, error_fields={"identity": "non_field_errors"})
        return attrs


class GatewaySerializer(KnownFieldsOnly, serializers.ModelSerializer):
    store = StoreCodeField()
    zone = ZoneCodeField()

    class Meta:
        model = Gateway
        fields = ["gateway_id", "store", "zone"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = _whole_on_put(self, ("zone",), attrs)
        _resolve_zone(attrs, self.instance)
        _clean_as_saved(Gateway, self.instance, attrs)
        return attrs


# --- Campaigns --------------------------------------------------------------------------
# The resource nests trigger, intent, offer and limits; the model keeps them as columns.
# Nested serializers with source="*" map one onto the other in both directions.

NO_INTENT = {
    "intent_skus": [],
    "intent_categories": [],
    "intent_min_views": 1,
    "intent_within_days": 30,
    "intent_cart_abandoned": False,
}
NO_QUIET_HOURS = {"quiet_hours_start": None, "quiet_hours_end": None}
TRIGGER_DETAILS = {"trigger_minutes": None, "trigger_distance_m": None, "trigger_zone": ""}
TRIGGER_TYPE_OF_DETAIL = {
    "trigger_minutes": TriggerType.DWELL,
    "trigger_distance_m": TriggerType.NEAR,
    "trigger_zone": TriggerType.BEACON_ZONE,
}
TRIGGER_DETAIL_OF_TYPE = {type_: name for name, type_ in TRIGGER_TYPE_OF_DETAIL.items()}
# Where each model field appears in the resource, to report model validation errors there.
RESOURCE_PATH = {
    "trigger_type": ("trigger", "type"),
    "trigger_minutes": ("trigger", "minutes"),
    "trigger_distance_m": ("trigger", "distance_m"),
    "trigger_zone": ("trigger", "zone"),
    "intent_skus": ("intent", "skus"),
    "intent_categories": ("intent", "categories"),
    "intent_min_views": ("intent", "min_views"),
    "intent_within_days": ("intent", "within_days"),
    "intent_cart_abandoned": ("intent", "cart_abandoned"),
    "offer_template": ("offer", "template"),
    "offer_valid_days": ("offer", "valid_days"),
    "limit_per_customer_days": ("limits", "per_customer_days"),
    "quiet_hours_start": ("limits", "quiet_hours", "start"),
    "quiet_hours_end": ("limits", "quiet_hours", "end"),
    "allowed_days": ("limits", "allowed_days"),
    "daily_budget": ("limits", "daily_budget"),
    "total_budget": ("limits", "total_budget"),
    "holdout_percent": ("limits", "holdout_percent"),
}


def _nest_errors(errors: dict[str, list[str]]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for field, messages in errors.items():
        *parents, leaf = RESOURCE_PATH.get(field, (field,))
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = messages
    return nested


class TriggerSerializer(KnownFieldsOnly, serializers.Serializer):
    type = serializers.ChoiceField(source="trigger_type", choices=TriggerType.choices)
    minutes = StrictIntegerField(
        source="trigger_minutes",
        min_value=1,
        max_value=MAX_DWELL_MINUTES,
        required=False,
        allow_null=True,
    )
    distance_m = FiniteFloatField(
        source="trigger_distance_m",
        min_value=1,
        max_value=MAX_FENCE_RADIUS_M,
        required=False,
        allow_null=True,
    )
    zone = serializers.CharField(
        source="trigger_zone", max_length=32, required=False, allow_blank=True, allow_null=True
    )

    def to_representation(self, campaign: Campaign) -> dict[str, Any]:
        shape: dict[str, Any] = {"type": campaign.trigger_type}
        if campaign.trigger_type == TriggerType.DWELL:
            shape["minutes"] = campaign.trigger_minutes
        elif campaign.trigger_type == TriggerType.NEAR:
            shape["distance_m"] = campaign.trigger_distance_m
        elif campaign.trigger_type == TriggerType.BEACON_ZONE:
            shape["zone"] = campaign.trigger_zone
        return shape

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "trigger_zone" in attrs and attrs["trigger_zone"] is None:
            attrs["trigger_zone"] = ""  # a text column: "" is no zone
        # The type sent, or in a PATCH of the details alone, the campaign's.
        campaign = self.root.instance
        trigger_type = attrs.get("trigger_type", getattr(campaign, "trigger_type", None))
        wanted = TRIGGER_DETAIL_OF_TYPE.get(trigger_type)
        # A detail of another type would be dropped, a 200 that changed nothing the client
        # meant: {"minutes": 10} on an enter campaign. Null or "" is a detail left out.
        misplaced = {
            RESOURCE_PATH[name][-1]: [
                f"Only a {TRIGGER_TYPE_OF_DETAIL[name]} trigger has "
                f"{RESOURCE_PATH[name][-1]}; this trigger is {trigger_type}."
            ]
            for name, value in attrs.items()
            if name in TRIGGER_DETAILS and name != wanted and value not in (None, "")
        }
        if misplaced:
            raise serializers.ValidationError(misplaced)
        # A partial update of the details alone, or one that restates the campaign's own type:
        # the details it leaves out are kept, as a PATCH keeps what it leaves out of the
        # offer or the limits.
        restated = (
            self.root.partial and campaign is not None and trigger_type == campaign.trigger_type
        )
        if "trigger_type" not in attrs or restated:
            return attrs
        # A new trigger replaces the old one whole: the details of other types are cleared.
        values = {**TRIGGER_DETAILS, **{k: v for k, v in attrs.items() if v is not None}}
        for name, blank in TRIGGER_DETAILS.items():
            if name != wanted:
                values[name] = blank
        return values


class IntentSerializer(KnownFieldsOnly, serializers.Serializer):
    skus = serializers.ListField(
        source="intent_skus",
        child=serializers.CharField(max_length=100),
        max_length=100,
        required=False,
    )
    categories = serializers.ListField(
        source="intent_categories",
        child=serializers.CharField(max_length=100),
        max_length=100,
        required=False,
    )
    min_views = StrictIntegerField(
        source="intent_min_views", min_value=1, max_value=MAX_INTENT_MIN_VIEWS, required=False
    )
    within_days = IntentWindowDaysField(
        source="intent_within_days", min_value=1, max_value=MAX_INTENT_WITHIN_DAYS, required=False
    )
    cart_abandoned = serializers.BooleanField(source="intent_cart_abandoned", required=False)

    def run_validation(self, data: Any = empty) -> Any:
        if data is None:
            return dict(NO_INTENT)
        return super().run_validation(data)

    def to_representation(self, campaign: Campaign) -> dict[str, Any] | None:
        return super().to_representation(campaign) if campaign.has_intent else None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A nested serializer is never partial itself: a PATCH shows on the root.
        campaign = self.root.instance
        patching = self.root.partial and campaign is not None
        current = {name: getattr(campaign, name) for name in NO_INTENT} if patching else NO_INTENT
        values = {**current, **attrs}
        # Stricter than Campaign.clean, which refuses views or days set with nothing named
        # (what a form can hold): here an intent object is a condition, and null is none, so
        # an object naming nothing is refused whatever else it holds ({} included).
        if (
            not (values["intent_skus"] or values["intent_categories"])
            and not values["intent_cart_abandoned"]
        ):
            raise serializers.ValidationError(
                "Name SKUs or categories, or ask for an abandoned cart; "
                "for no intent condition send null."
            )
        # A patch changes the conditions it names and keeps the others; a whole intent
        # object resets those it leaves out.
        return attrs if patching else values


def as_created(names: tuple[str, ...], attrs: dict[str, Any]) -> dict[str, Any]:
    """A nested object's values with the campaign columns it leaves out at their defaults, as
    a create sets them. A PUT gives the object whole (a PATCH only what it changes): what it
    leaves out was kept from before, so a holdout or quiet hours the client's copy no longer
    has went on applying."""
    defaults = {name: Campaign._meta.get_field(name).get_default() for name in names}
    return {**defaults, **attrs}


class OfferSerializer(KnownFieldsOnly, serializers.Serializer):
    template = serializers.CharField(source="offer_template", max_length=1600)
    valid_days = StrictIntegerField(
        source="offer_valid_days", min_value=1, max_value=MAX_OFFER_VALID_DAYS, required=False
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return attrs if self.root.partial else as_created(("offer_valid_days",), attrs)


class QuietHoursSerializer(KnownFieldsOnly, serializers.Serializer):
    start = HourMinuteField(source="quiet_hours_start")
    end = HourMinuteField(source="quiet_hours_end")

    def run_validation(self, data: Any = empty) -> Any:
        if data is None:
            return dict(NO_QUIET_HOURS)
        return super().run_validation(data)

    def to_representation(self, campaign: Campaign) -> dict[str, Any] | None:
        if campaign.quiet_hours_start is None:
            return None
        return super().to_representation(campaign)


class LimitsSerializer(KnownFieldsOnly, serializers.Serializer):
    per_customer_days = StrictIntegerField(
        source="limit_per_customer_days",
        min_value=1,
        max_value=MAX_LIMIT_PER_CUSTOMER_DAYS,
        required=False,
        allow_null=True,
        help_text="At most one SMS from this campaign per customer in this many days.",
    )
    quiet_hours = QuietHoursSerializer(
        source="*", required=False, allow_null=True, help_text="In the customer's time zone."
    )
    allowed_days = serializers.ListField(
        child=serializers.ChoiceField(choices=WEEKDAYS),
        allow_empty=False,
        min_length=1,  # for the schema's minItems: allow_empty answers an empty list first
        max_length=7,
        required=False,
    )
    daily_budget = StrictIntegerField(min_value=0, required=False, allow_null=True)
    total_budget = StrictIntegerField(min_value=0, required=False, allow_null=True)
    holdout_percent = StrictIntegerField(min_value=0, max_value=100, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return attrs if self.root.partial else as_created(LIMIT_COLUMNS, attrs)


LIMIT_COLUMNS = (
    "limit_per_customer_days",
    "quiet_hours_start",
    "quiet_hours_end",
    "allowed_days",
    "daily_budget",
    "total_budget",
    "holdout_percent",
)


# What a campaign's PUT must send, and how to say "none" or "all" there. A PUT gives the
# campaign whole, as it gives a store or a beacon: what it leaves out is never kept from
# before, and is as a create sets it (the priority; each detail inside the trigger, intent,
# offer and limits), but for these, whose create default would widen who is texted, where or
# when: every store, every shopper, no quiet hours, cap or budget, a schedule dropped or a
# status changed. A tool's copy that lacks one is refused naming it, not read as that default.
PUT_MUST_SEND = {
    "status": "its status",
    "starts_at": "its start (null for none)",
    "ends_at": "its end (null for none)",
    "stores": "its stores ([] for every store)",
    "intent": "its intent (null for no intent condition)",
    "limits": "its limits ({} for none)",
}


def put_must_send_message(name: str) -> str:
    """What a campaign's PUT that leaves out `name` (one of PUT_MUST_SEND) is told."""
    return f"A PUT gives the campaign whole: send {PUT_MUST_SEND[name]}."


class CampaignSerializer(KnownFieldsOnly, serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=CampaignStatus.choices, required=False)
    starts_at = InstantField(required=False, allow_null=True)
    ends_at = InstantField(required=False, allow_null=True)
    stores = StoreCodeField(
        many=True,
        required=False,
        help_text="Store codes; an empty list means every store.",
    )
    trigger = TriggerSerializer(source="*")
    intent = IntentSerializer(
        source="*", required=False, allow_null=True, help_text="null: no intent condition."
    )
    priority = StrictIntegerField(
        min_value=-MAX_CAMPAIGN_PRIORITY, max_value=MAX_CAMPAIGN_PRIORITY, required=False
    )
    offer = OfferSerializer(source="*")
    limits = LimitsSerializer(source="*", required=False)

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "status",
            "starts_at",
            "ends_at",
            "stores",
            "trigger",
            "intent",
            "priority",
            "offer",
            "limits",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    @property
    def replacing(self) -> bool:
        """A PUT: the campaign given whole."""
        return self.instance is not None and not self.partial

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        if self.replacing:
            for name in PUT_MUST_SEND:
                fields[name].required = True
                # A format string to DRF, whose braces would read {} as a placeholder.
                message = put_must_send_message(name).replace("{", "{{").replace("}", "}}")
                fields[name].error_messages["required"] = message
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = _whole_on_put(self, ("priority",), attrs)
        # Check the campaign as it would be saved, without touching the instance being edited.
        campaign = Campaign() if self.instance is None else copy(self.instance)
        for name, value in attrs.items():
            if name != "stores":
                setattr(campaign, name, value)
        if "stores" in attrs:
            stores = attrs["stores"]
        else:
            stores = list(self.instance.stores.all()) if self.instance is not None else []
        try:
            campaign.clean()
            check_campaign_places(
                status=campaign.status,
                trigger_type=campaign.trigger_type,
                trigger_zone=campaign.trigger_zone,
                stores=stores,
            )
        except DjangoValidationError as error:
            raise serializers.ValidationError(_nest_errors(error.message_dict)) from None
        # Saved as clean() keeps it, as the admin saves it: names trimmed and once each, days
        # once each, quiet hours to the minute.
        return {
            name: value if name == "stores" else getattr(campaign, name)
            for name, value in attrs.items()
        }


class CampaignReplaceSerializer(CampaignSerializer):
    """A campaign's PUT body as the schema documents it: PUT_MUST_SEND required, as
    CampaignSerializer requires them of a PUT (the schema is drawn with no instance)."""

    @property
    def replacing(self) -> bool:
        return not self.partial


# --- Location data in -------------------------------------------------------------------


class PingSerializer(KnownFieldsOnly, serializers.Serializer):
    extra_keys_ignored = True  # but a mock flag under another name (KnownFieldsOnly)

    ping_id = StrictCharField(max_length=64, required=False, allow_null=True)
    device_id = StrictCharField(max_length=100)
    latitude = FiniteFloatField(min_value=-90, max_value=90)
    longitude = FiniteFloatField(min_value=-180, max_value=180)
    accuracy = AccuracyField(help_text="Metres, above 0.")
    recorded_at = RecentInstantField(max_age=_ping_max_age)
    speed = FiniteFloatField(
        required=False, allow_null=True, help_text="Metres per second; negative means unknown."
    )
    mocked = FlagField(help_text="Left out or null: not mocked.")

    def validate_speed(self, value: float | None) -> float | None:
        # iOS reports -1 when it does not know the speed.
        return None if value is None or value < 0 else value


class SightingRssiField(StrictIntegerField):
    """A received signal strength in dBm, below 0. iOS reports 0 for a beacon it ranged
    but could not measure (CLBeacon: "0 if the RSSI could not be obtained"), and no
    scanner reports a positive one: read as a reading, 0 would be the strongest signal
    there is and walk the customer into the beacon's zone."""

    default_error_messages = {
        "max_value": "rssi must be below 0 dBm: 0 means the phone could not measure the signal."
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault(
            "help_text", "dBm, below 0; an average's fraction is rounded to the nearest dBm."
        )
        super().__init__(min_value=-127, max_value=-1, **kwargs)

    def to_internal_value(self, data: object) -> int:
        # A running average, as the Android Beacon Library's runningAverageRssi (a double)
        # that many apps send: its nearest dBm, which the range is then checked on.
        if isinstance(data, float) and math.isfinite(data):
            data = round(data)
        return super().to_internal_value(data)


class SightingSerializer(KnownFieldsOnly, serializers.Serializer):
    """A store beacon the app ranged."""

    extra_keys_ignored = True
    mock_flag_message = ONLY_PINGS_ARE_MOCKED

    device_id = StrictCharField(max_length=100)
    ibeacon = IBeaconSerializer(required=False, allow_null=True)
    eddystone_uid = EddystoneUidSerializer(required=False, allow_null=True)
    raw = RawAdvertisementField(required=False, allow_null=True)
    rssi = SightingRssiField()
    seen_at = RecentInstantField(max_age=_ping_max_age)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["identity"] = pop_identity(attrs, forms=SIGHTED_FORMS, required=True)
        return attrs


class GatewaySightingSerializer(KnownFieldsOnly, serializers.Serializer):
    """A customer's phone or tag that a gateway saw."""

    extra_keys_ignored = True
    mock_flag_message = ONLY_PINGS_ARE_MOCKED

    mac = MacAddressField(required=False, allow_null=True)
    ibeacon = IBeaconSerializer(required=False, allow_null=True)
    eddystone_uid = EddystoneUidSerializer(required=False, allow_null=True)
    raw = RawAdvertisementField(required=False, allow_null=True)
    rssi = SightingRssiField()
    seen_at = RecentInstantField(max_age=_ping_max_age)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["identity"] = pop_identity(attrs, forms=SIGHTED_FORMS, required=True)
        return attrs


class ItemJudge:
    """One serializer for a whole batch, judging each item: `judge(item)` gives the values
    and None, or None and the errors, as is_valid() would. A serializer made per item
    costs six times as much: its fields are copied and bound each time, for the items
    rejected too (an app that sends a refused key in every ping)."""

    def __init__(self, serializer_class: type[serializers.Serializer], context: dict) -> None:
        self.serializer_class = serializer_class
        self.context = context
        self.serializer = serializer_class(context=context)

    def __call__(self, item: Any) -> tuple[Any, Any]:
        try:
            return self.serializer.run_validation(item), None
        except serializers.ValidationError as error:
            if item is not None:
                return None, error.detail
            # Worded as is_valid() words a null item: "No data provided", not a field's
            # "may not be null".
            serializer = self.serializer_class(data=item, context=self.context)
            serializer.is_valid()
            return None, serializer.errors


# --- Dry run ----------------------------------------------------------------------------

MAX_DRY_RUN_DAYS = 366


class DryRunSerializer(KnownFieldsOnly, serializers.Serializer):
    since = InstantField(help_text=f"In the past, within the last {MAX_DRY_RUN_DAYS} days.")
    until = InstantField(help_text=f"After since, {MAX_DRY_RUN_DAYS} days later at most.")

    def validate_since(self, value: datetime) -> datetime:
        # What a marketer can ask of stored history, and bounds that keep the run's date
        # arithmetic (cap windows before `since`, local midnights) within the calendar:
        # year 1, and year 9999 in a time zone east of UTC, overflowed.
        now = timezone.now()
        earliest = now - timedelta(days=MAX_DRY_RUN_DAYS)
        if value < earliest:
            raise serializers.ValidationError(
                f"A dry run replays the last {MAX_DRY_RUN_DAYS} days at most: since must be "
                f"{format_instant_for_api(earliest)} or later."
            )
        if value >= now:
            raise serializers.ValidationError(
                "A dry run replays what has already happened: since must be in the past."
            )
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["until"] <= attrs["since"]:
            raise serializers.ValidationError({"until": ["Must be after since."]})
        if attrs["until"] - attrs["since"] > timedelta(days=MAX_DRY_RUN_DAYS):
            raise serializers.ValidationError(
                {"until": [f"A dry run covers {MAX_DRY_RUN_DAYS} days at most."]}
            )
        return attrs


class DryRunResultSerializer(serializers.Serializer):
    campaign = serializers.IntegerField()
    since = InstantField()
    until = InstantField()
    presence_events = serializers.IntegerField(help_text="Presence events in the period.")
    matched = serializers.IntegerField(help_text="Decisions the campaign would have made.")
    would_send = serializers.IntegerField()
    customers_reached = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())
    by_reason = serializers.DictField(child=serializers.IntegerField())
    arrived_too_late = serializers.IntegerField(
        help_text="Events the campaign waits for that reached the server after the SMS "
        "validity period: live, they are kept but not decided, so no decision here either."
    )
    outranked = serializers.IntegerField(
        help_text="Events another campaign really texted (or held the customer out for) and "
        "that ranks first: live, one SMS goes out per event, so no decision here."
    )
    warnings = serializers.ListField(
        child=serializers.CharField(),
        help_text="What the stored history cannot tell, such as approaches at a distance "
        "no active campaign watches.",
    )
