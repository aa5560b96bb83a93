import json
import math
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from customers.models import (
    BrowsingEvent,
    CartIntent,
    CategoryIntent,
    ConsentChange,
    Customer,
    DecayingScore,
    Device,
    Intent,
    Product,
    ProductIntent,
    Visitor,
)
from customers.selectors import get_customer_export
from customers.services import erase_customer, save_customer_edit, save_device
from promotions.admin_lists import BigListAdmin, CheckedListAdmin
from promotions.models import Delivery


class ConsentChangeInline(admin.TabularInline):
    model = ConsentChange
    extra = 0
    can_delete = False
    readonly_fields = ["changed_at", "previous", "consent", "source", "note", "by_reply"]

    def has_add_permission(self, request: HttpRequest, obj: Customer | None = None) -> bool:
        return False


class DeviceInline(admin.TabularInline):
    model = Device
    extra = 0
    fields = ["device_id", "platform", "ble_identity", "owner_since", "created_at"]
    readonly_fields = ["owner_since", "created_at"]


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Customer | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Customer | None = None) -> bool:
        return False


@admin.display(description="score now")
def score_now(row: DecayingScore) -> str:
    """The score as matching reads it now: the stored one is as of its newest event."""
    return f"{row.score_as_of(timezone.now()):.2f}"


# The windows a customer's page counts their views in, besides all that ingest keeps
# (INTENT_WINDOW_DAYS): a week, the two weeks of SPEC's example campaign, a month.
VIEW_WINDOWS_DAYS = (7, 14, 30)


@admin.display(description="product views")
def views_now(row: Intent) -> str:
    """The product views a campaign's "N views within D days" counts now, for a few windows:
    what tells a marketer why a campaign passed a customer by (a visit that matched nothing
    records no decision to read)."""
    kept = settings.INTENT_WINDOW_DAYS
    now = timezone.now().timestamp()
    windows = sorted({*(days for days in VIEW_WINDOWS_DAYS if days < kept), kept})
    # As matching counts them (rules._views_since): at or after the window's first instant.
    return ", ".join(
        f"{row.views_since(math.ceil(now - days * 86400))} in {days} days" for days in windows
    )


class ProductIntentInline(ReadOnlyInline):
    model = ProductIntent
    fields = [
        "sku",
        "category",
        "categories",
        views_now,
        "cart_state",
        "cart_updated_at",
        score_now,
        "score",
        "score_at",
        "last_seen_at",
    ]
    readonly_fields = fields
    verbose_name_plural = "intent per product"


class CategoryIntentInline(ReadOnlyInline):
    model = CategoryIntent
    fields = [
        "category",
        views_now,
        "cart_state",
        "cart_updated_at",
        score_now,
        "score",
        "score_at",
        "last_seen_at",
    ]
    readonly_fields = fields
    verbose_name_plural = "intent per category"


class CartIntentInline(ReadOnlyInline):
    model = CartIntent
    fields = ["cart_state", "cart_updated_at", score_now, "score", "score_at", "last_seen_at"]
    readonly_fields = fields
    # One row a customer: a one-row inline is headed by its singular name.
    verbose_name = "whole cart, as the site reports it"


# A customer page shows this many of their latest deliveries, and links to the rest: a
# regular who walks past stores every day has hundreds.
DELIVERIES_SHOWN = 50


class LatestDeliveries(forms.BaseInlineFormSet):
    def get_queryset(self) -> QuerySet[Delivery]:
        # Sliced here, not in the inline's queryset, which the formset filters afterwards.
        if not hasattr(self, "_queryset"):
            self._queryset = super().get_queryset()[:DELIVERIES_SHOWN]
        return self._queryset


class DeliveryInline(ReadOnlyInline):
    model = Delivery
    formset = LatestDeliveries
    fields = ["created_at", "campaign", "store", "status", "reason", "code"]
    readonly_fields = fields
    ordering = ["-created_at", "-id"]
    verbose_name_plural = f"deliveries (the latest {DELIVERIES_SHOWN})"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Delivery]:
        return super().get_queryset(request).select_related("campaign", "store")


# The erase confirmation names this many of the customers it will erase, then counts the rest.
ERASE_NAMES_SHOWN = 100
# An export is one download built in memory, each customer's whole location history in it:
# this many customers at most.
EXPORT_AT_MOST = 100


@admin.register(Customer)
class CustomerAdmin(CheckedListAdmin):
    list_display = ["external_id", "first_name", "phone", "sms_consent", "updated_at"]
    list_filter = ["sms_consent"]
    search_fields = ["external_id", "first_name", "phone"]
    readonly_fields = [
        "sms_consent",
        "consent_source",
        "consent_updated_at",
        "created_at",
        "all_deliveries",
    ]
    inlines = [
        DeviceInline,
        ConsentChangeInline,
        ProductIntentInline,
        CategoryIntentInline,
        CartIntentInline,
        DeliveryInline,
    ]
    actions = ["export", "erase"]

    def save_model(self, request: HttpRequest, obj: Customer, form: Any, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
        elif not save_customer_edit(customer=obj, source="admin"):
            # The admin's transaction rolls back: the devices' rows are not saved either.
            raise Http404("This customer was erased while the page was being saved.")

    def save_formset(
        self, request: HttpRequest, form: Any, formset: forms.BaseInlineFormSet, change: bool
    ) -> None:
        if formset.model is not Device:
            super().save_formset(request, form, formset, change)
            return
        # A device renamed in its row waits for ingest in flight under its old id, as on
        # its own page (save_device): a later erasure would otherwise miss those pings.
        for device in formset.save(commit=False):
            save_device(device=device)
        for device in formset.deleted_objects:
            device.delete()

    def get_actions(self, request: HttpRequest) -> dict:
        # Deleting a customer row would keep their phone and messages in the deliveries;
        # erasing anonymises those too. It is the only way out.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request: HttpRequest, obj: Customer | None = None) -> bool:
        return False

    @admin.display(description="Deliveries")
    def all_deliveries(self, customer: Customer) -> str:
        if customer.pk is None:
            return "-"
        url = reverse("admin:promotions_delivery_changelist")
        return format_html(
            '<a id="all-deliveries" href="{}?customer__id__exact={}">All {} of them, in the '
            "deliveries list</a> (the page shows the latest {})",
            url,
            customer.pk,
            customer.deliveries.count(),
            DELIVERIES_SHOWN,
        )

    @admin.action(description="Export everything held about them (JSON)", permissions=["export"])
    def export(self, request: HttpRequest, queryset: QuerySet[Customer]) -> HttpResponse | None:
        count = queryset.count()
        if count > EXPORT_AT_MOST:
            self.message_user(
                request,
                f"{count} customers selected: an export holds at most {EXPORT_AT_MOST}. "
                "Narrow the selection (a filter or a search) and export each part.",
                messages.ERROR,
            )
            return None
        exports = {c.external_id: get_customer_export(c) for c in queryset}
        response = HttpResponse(
            json.dumps(exports, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2),
            content_type="application/json",
        )
        response["Content-Disposition"] = 'attachment; filename="customers-export.json"'
        return response

    @admin.action(description="Erase them (personal data, location, intent)", permissions=["erase"])
    def erase(self, request: HttpRequest, queryset: QuerySet[Customer]) -> TemplateResponse | None:
        if request.POST.get("confirmed") == "yes":
            count = 0
            for customer in queryset:
                erase_customer(customer=customer)
                count += 1
            self.message_user(request, f"{count} customer(s) erased.", messages.SUCCESS)
            return None
        count = queryset.count()
        context = {
            **self.admin_site.each_context(request),
            "title": "Erase these customers?",
            "shown": queryset[:ERASE_NAMES_SHOWN],
            "more": max(count - ERASE_NAMES_SHOWN, 0),
            # "All N customers" of a filter is posted back as such, with one of them as the
            # admin wants one (the page's address keeps the filter), not as a field per
            # customer: a form's fields are capped.
            "select_across": request.POST.get("select_across") == "1",
            "customers": queryset,
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(
            request, "admin/customers/customer/erase_confirmation.html", context
        )

    def has_erase_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("customers.erase_customer")

    def has_export_permission(self, request: HttpRequest) -> bool:
        # The export holds what viewing a customer does not show: their pings, sightings,
        # browsing and visitors. Granted apart, as erasing is.
        return request.user.has_perm("customers.export_customer")


@admin.register(Device)
class DeviceAdmin(CheckedListAdmin):
    list_display = ["device_id", "customer", "platform", "ble_identity"]
    list_filter = ["platform"]
    search_fields = ["device_id", "customer__external_id", "ble_identity"]
    raw_id_fields = ["customer"]
    readonly_fields = ["owner_since"]

    def save_model(self, request: HttpRequest, obj: Device, form: Any, change: bool) -> None:
        # A device given to another customer loses the previous owner's location history.
        try:
            save_device(device=obj)
        except Customer.DoesNotExist:
            # As on the customer's own page: the admin's transaction rolls back.
            raise Http404("The customer this device was given to was erased meanwhile.") from None


class ReadOnlyAdmin(CheckedListAdmin):
    """Rows that ingest derives or stitches together: viewed here, never edited by hand. An
    edit would leave what was derived from them (intent, attributions) saying otherwise,
    and a malformed value could break the ingest that reads them back."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Visitor)
class VisitorAdmin(CheckedListAdmin):
    list_display = ["visitor_id", "customer", "identified_at"]
    # The customer may be empty: Django joins only the links that cannot be, and would
    # read it with a query a row.
    list_select_related = ["customer"]
    search_fields = ["visitor_id", "customer__external_id"]
    # Identify links a visitor and credits its events and intent to the customer; a link
    # changed here would leave those with the previous customer.
    readonly_fields = ["customer", "identified_at"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Its events would go with it, still counted in its customer's intent.
        return False


@admin.register(BrowsingEvent)
class BrowsingEventAdmin(BigListAdmin, ReadOnlyAdmin):
    list_display = ["event_id", "type", "customer", "visitor", "sku", "occurred_at"]
    # Both may be empty: without naming them, two queries a row (see VisitorAdmin).
    list_select_related = ["customer", "visitor"]
    list_filter = ["type"]
    search_fields = ["event_id", "sku", "customer__external_id", "visitor__visitor_id"]
    search_help_text = "An event's id, a SKU, a customer's external id or a visitor's id, whole."
    date_hierarchy = "occurred_at"
    # Newest first by the drill-down's date: a day or month chosen is then a page of its
    # index (browsing_event_occurred), where by id a month long past read every newer event.
    ordering = ["-occurred_at"]


# Said on the product pages: an edit here would not hold, so none is offered.
PRODUCTS_COME_FROM_THE_SITE = (
    "Products are the web site's catalogue, as its browsing events name them: each event "
    "with a product_name or category sets them. Change a name on the site, not here."
)


@admin.register(Product)
class ProductAdmin(ReadOnlyAdmin):
    """Read-only for everyone: the next event naming a product puts the site's name back,
    and a SKU changed here would unhook the campaigns and intent that name it."""

    list_display = ["sku", "name", "category", "named_at"]
    search_fields = ["sku", "name", "category"]
    fieldsets = [
        (
            None,
            {
                "fields": ["sku", "name", "category", "named_at", "categorised_at"],
                "description": PRODUCTS_COME_FROM_THE_SITE,
            },
        )
    ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().changelist_view(
            request, {**(extra_context or {}), "subtitle": PRODUCTS_COME_FROM_THE_SITE}
        )


@admin.register(ProductIntent)
class ProductIntentAdmin(ReadOnlyAdmin):
    list_display = [
        "customer",
        "sku",
        "category",
        views_now,
        "cart_state",
        score_now,
        "last_seen_at",
    ]
    list_filter = ["cart_state"]
    search_fields = ["customer__external_id", "sku"]


@admin.register(CategoryIntent)
class CategoryIntentAdmin(ReadOnlyAdmin):
    list_display = ["customer", "category", views_now, "cart_state", score_now, "last_seen_at"]
    search_fields = ["customer__external_id", "category"]


@admin.register(CartIntent)
class CartIntentAdmin(ReadOnlyAdmin):
    """The cart as the site reported it whole (cart events naming neither a SKU nor a
    category)."""

    list_display = ["customer", "cart_state", "cart_updated_at", score_now, "last_seen_at"]
    list_filter = ["cart_state"]
    search_fields = ["customer__external_id"]
