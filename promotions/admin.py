from django.contrib import admin

from promotions.models import (
    ApiKey,
    Beacon,
    Campaign,
    Delivery,
    Gateway,
    OfferCode,
    Ping,
    PresenceEvent,
    Redemption,
    Sighting,
    Store,
    Zone,
)


class ZoneInline(admin.TabularInline):
    model = Zone
    extra = 0


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "address", "radius_m", "timezone"]
    search_fields = ["code", "name", "address"]
    inlines = [ZoneInline]


@admin.register(Zone)
class ZoneAdmin(admin.ModelAdmin):
    list_display = ["store", "code", "name", "rssi_threshold"]
    list_filter = ["store"]


@admin.register(Beacon)
class BeaconAdmin(admin.ModelAdmin):
    list_display = ["identity", "store", "zone", "measured_power"]
    list_filter = ["store"]
    search_fields = ["identity"]


@admin.register(Gateway)
class GatewayAdmin(admin.ModelAdmin):
    list_display = ["gateway_id", "store", "zone"]
    list_filter = ["store"]


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "trigger_type", "priority", "starts_at", "ends_at"]
    list_filter = ["status", "trigger_type"]
    search_fields = ["name"]
    filter_horizontal = ["stores"]
    fieldsets = [
        (None, {"fields": ["name", "status", "priority", "starts_at", "ends_at", "stores"]}),
        (
            "Trigger",
            {"fields": ["trigger_type", "trigger_minutes", "trigger_distance_m", "trigger_zone"]},
        ),
        (
            "Intent condition",
            {
                "fields": [
                    "intent_skus",
                    "intent_categories",
                    "intent_min_views",
                    "intent_within_days",
                    "intent_cart_abandoned",
                ]
            },
        ),
        ("Offer", {"fields": ["offer_template", "offer_valid_days"]}),
        (
            "Limits",
            {
                "fields": [
                    "limit_per_customer_days",
                    "quiet_hours_start",
                    "quiet_hours_end",
                    "allowed_days",
                    "daily_budget",
                    "total_budget",
                    "holdout_percent",
                ]
            },
        ),
    ]


@admin.register(Ping)
class PingAdmin(admin.ModelAdmin):
    list_display = [
        "device",
        "recorded_at",
        "latitude",
        "longitude",
        "accuracy",
        "mocked",
        "suspicious",
    ]
    list_filter = ["suspicious"]
    raw_id_fields = ["device"]
    date_hierarchy = "recorded_at"


@admin.register(Sighting)
class SightingAdmin(admin.ModelAdmin):
    list_display = ["device", "source", "store", "zone", "rssi", "seen_at"]
    list_filter = ["source", "store"]
    raw_id_fields = ["device", "beacon", "gateway"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "key_hash", "created_at", "last_used_at"]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records the engine writes: marketers read them, nobody edits history by hand."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PresenceEvent)
class PresenceEventAdmin(ReadOnlyAdmin):
    list_display = ["customer", "kind", "store", "zone", "minutes", "distance_m", "occurred_at"]
    list_filter = ["kind", "store"]
    raw_id_fields = ["customer", "ping", "sighting"]
    date_hierarchy = "occurred_at"


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "campaign", "customer", "store", "status", "reason", "code"]
    list_filter = ["status", "reason", "campaign", "store"]
    search_fields = ["code", "customer__external_id", "twilio_sid"]
    raw_id_fields = ["customer", "presence_event"]
    date_hierarchy = "created_at"


@admin.register(Redemption)
class RedemptionAdmin(ReadOnlyAdmin):
    list_display = ["redeemed_at", "delivery", "store", "amount"]
    list_filter = ["store"]
    raw_id_fields = ["delivery"]


@admin.register(OfferCode)
class OfferCodeAdmin(admin.ModelAdmin):
    list_display = ["code", "campaign", "delivery"]
    list_filter = ["campaign"]
    search_fields = ["code"]
    raw_id_fields = ["delivery"]
