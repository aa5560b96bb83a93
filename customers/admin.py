from django.contrib import admin

from customers.models import (
    BrowsingEvent,
    CategoryIntent,
    ConsentChange,
    Customer,
    Device,
    Product,
    ProductIntent,
    Visitor,
)


class ConsentChangeInline(admin.TabularInline):
    model = ConsentChange
    extra = 0
    can_delete = False
    readonly_fields = ["changed_at", "previous", "consent", "source", "note"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class DeviceInline(admin.TabularInline):
    model = Device
    extra = 0
    fields = ["device_id", "platform", "ble_identity", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["external_id", "first_name", "phone", "sms_consent", "updated_at"]
    list_filter = ["sms_consent"]
    search_fields = ["external_id", "first_name", "phone"]
    readonly_fields = ["sms_consent", "consent_source", "consent_updated_at", "created_at"]
    inlines = [DeviceInline, ConsentChangeInline]


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["device_id", "customer", "platform", "ble_identity"]
    list_filter = ["platform"]
    search_fields = ["device_id", "customer__external_id", "ble_identity"]
    raw_id_fields = ["customer"]


@admin.register(Visitor)
class VisitorAdmin(admin.ModelAdmin):
    list_display = ["visitor_id", "customer", "identified_at"]
    search_fields = ["visitor_id", "customer__external_id"]
    raw_id_fields = ["customer"]


@admin.register(BrowsingEvent)
class BrowsingEventAdmin(admin.ModelAdmin):
    list_display = ["event_id", "type", "customer", "visitor", "sku", "occurred_at"]
    list_filter = ["type"]
    search_fields = ["event_id", "sku", "customer__external_id", "visitor__visitor_id"]
    raw_id_fields = ["customer", "visitor"]
    date_hierarchy = "occurred_at"


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "category", "named_at"]
    search_fields = ["sku", "name", "category"]


@admin.register(ProductIntent)
class ProductIntentAdmin(admin.ModelAdmin):
    list_display = ["customer", "sku", "category", "cart_state", "score", "last_seen_at"]
    list_filter = ["cart_state"]
    search_fields = ["customer__external_id", "sku"]
    raw_id_fields = ["customer"]


@admin.register(CategoryIntent)
class CategoryIntentAdmin(admin.ModelAdmin):
    list_display = ["customer", "category", "cart_state", "score", "last_seen_at"]
    search_fields = ["customer__external_id", "category"]
    raw_id_fields = ["customer"]
