from django.contrib import admin

from promotions.models import ApiKey, Beacon, Campaign, Gateway, Ping, Sighting, Store, Zone


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
    list_display = ["device", "recorded_at", "latitude", "longitude", "accuracy", "mocked"]
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
