import json
from collections.abc import Iterable
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, models, transaction
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.text import capfirst

from customers.models import Customer, Product
from customers.services import ConflictError
from promotions import decisions, feedback
from promotions.admin_lists import BigListAdmin, CheckedListAdmin
from promotions.api.reports import LARGEST_ID, IdFormField
from promotions.database import database_unavailable
from promotions.digests import value_digest
from promotions.dry_run import dry_run_campaign
from promotions.geocoding import GeocodingError, geocode
from promotions.models import (
    ENDED_STAYS_ENDED,
    MAX_OFFER_VALID_DAYS,
    REDEEMABLE,
    ApiKey,
    Beacon,
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryReason,
    DeliveryStatus,
    Gateway,
    LocationBatch,
    OfferCode,
    Ping,
    PresenceEvent,
    Redemption,
    Scope,
    Sighting,
    Store,
    Zone,
    check_campaign_places,
    hold_zone_codes,
    is_storable_text,
    unix_line_breaks,
    zone_loss_refusal,
    zones_lost_by_campaigns,
)
from promotions.offers import (
    TemplateError,
    generate_code,
    normalise_code,
    render_offer,
    sms_encoding,
    sms_segments,
    template_placeholders,
)
from promotions.selectors import (
    get_budget_zone,
    get_campaign_by_store,
    get_campaign_daily,
    get_campaign_stats,
)
from promotions.services import (
    END_IT_INSTEAD,
    Going,
    count_going,
    create_api_key,
    decisions_kept,
    delete_campaigns,
    delete_heard_places,
    delete_stores,
    delete_zones,
    going_with_heard_places,
    going_with_stores,
    going_with_zones,
)
from promotions.times import (
    format_instant_for_people,
    local_day,
    local_day_start,
    offer_last_day,
)


class RefusedDeletionShown(CheckedListAdmin):
    """A deletion its service refuses (ConflictError) is a message on the page, not a 500:
    the delete page counts what it checks, but a campaign may start using a store, or a
    worker record a campaign's first decision, between that page and the deletion, or
    while the POST runs (the deletion waits for it, then checks again). So is one the
    database broke off (see _refusal). Nothing is deleted, nor logged as deleted."""

    # Django's "delete selected" replaced by this class's own; a subclass with actions of
    # its own names it first, where Django lists its own.
    actions = ["delete_selected"]

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict | None = None
    ) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except (ConflictError, DatabaseError) as error:
            self.message_user(request, _refusal(error), messages.ERROR)
            opts = self.opts
            return HttpResponseRedirect(
                reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[object_id])
            )

    @admin.action(permissions=["delete"], description=django_delete_selected.short_description)
    def delete_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """Django's action, its log entries and deletion in one transaction."""
        try:
            with transaction.atomic():
                return django_delete_selected(self, request, queryset)
        except (ConflictError, DatabaseError) as error:
            self.message_user(request, _refusal(error), messages.ERROR)
            return None  # the list again


BROKEN_OFF = "The database could not finish this deletion just now: nothing was deleted. Try again."


def _refusal(error: ConflictError | DatabaseError) -> str:
    """What the page says of a deletion that did not happen: the service's refusal, or a
    database error that passes (database_unavailable: PostgreSQL breaking a deadlock with
    a worker, or going away), as the API answers it 503. Any other database error is a bug,
    raised."""
    if isinstance(error, DatabaseError):
        if not database_unavailable(error):
            raise error
        return BROKEN_OFF
    return str(error)


def protect_from_deletion(deleted: tuple, campaigns: Iterable[str]) -> tuple:
    """`get_deleted_objects`'s answer with the campaigns the deletion would upset, each
    "Campaign <name>: why", as protected objects: the admin then refuses the deletion and
    names them."""
    to_delete, model_count, perms_needed, protected = deleted
    return to_delete, model_count, perms_needed, [*protected, *campaigns]


def campaigns_losing_zones(zone_ids: Iterable[int]) -> list[str]:
    """The campaigns the zones' deletion would leave with no zone to watch (see
    zones_lost_by_campaigns), as protect_from_deletion lists them."""
    return [
        f"Campaign {loss.campaign}: no zone '{loss.code}' would be left {loss.where()}"
        for loss in zones_lost_by_campaigns(dict.fromkeys(zone_ids))
    ]


def counted_deletion(
    objs: Iterable[Store | Zone | Beacon | Gateway],
    going: Going,
    request: HttpRequest,
    admin_site: admin.AdminSite,
) -> tuple:
    """`get_deleted_objects`'s answer for places (stores, zones, beacons, gateways),
    counted: the objects themselves, and how many rows of each kind go with them, a COUNT a
    kind. Django lists every row that goes, and a store's 300,000 presence events took 197 s
    to list, past gunicorn's timeout. A kind the user may not delete is named, as Django
    names it."""
    counts = count_going(going)
    perms_needed = {
        model._meta.verbose_name
        for model in counts
        if admin_site.is_registered(model)
        and not admin_site.get_model_admin(model).has_delete_permission(request)
    }
    model_count = {model._meta.verbose_name_plural: f"{count:,}" for model, count in counts.items()}
    return [_change_link(obj) for obj in objs], model_count, perms_needed, []


def _change_link(obj: models.Model) -> str:
    """An object as Django's delete pages list it: its kind, and a link to its page."""
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return format_html('{}: <a href="{}">{}</a>', capfirst(opts.verbose_name), url, obj)


# What json.loads raises besides a syntax error: RecursionError for lists nested thousands
# deep, ValueError for an integer of over 4,300 digits (Python's limit on converting one).
UNREADABLE_JSON = "Not readable JSON: a number is too long or nesting too deep."


class JsonTextField(forms.JSONField):
    """Django's JSON form field, but no value is an empty field, JSON it cannot read is a
    message on the field, not a 500, and a page shown again with its errors writes a lone
    surrogate ("\\ud800" typed in the text) back escaped: written raw, as Django does, no
    response can encode it, and the marketer gets a 500 instead of the message."""

    def to_python(self, value: Any) -> Any:
        try:
            return super().to_python(value)
        except (RecursionError, ValueError):  # a JSONDecodeError is answered by Django
            raise ValidationError(UNREADABLE_JSON, code="invalid") from None

    def bound_data(self, data: Any, initial: Any) -> Any:
        # The page shown again reads what was typed: unreadable, it is shown as typed.
        try:
            return super().bound_data(data, initial)
        except (RecursionError, ValueError):
            return forms.fields.InvalidJSONInput(data)

    def prepare_value(self, value: Any) -> str:
        # No value (a store fenced by a radius has no polygon) is an empty field to paste
        # into, not the text "null", which an outline pasted after it would make unreadable.
        # Sent back empty, it is read as no value again.
        if value is None:
            return ""
        text = super().prepare_value(value)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(value, cls=self.encoder)
        return text


# The model fields' JSON, written with JsonTextField.
JSON_AS_TEXT = {models.JSONField: {"form_class": JsonTextField}}


class ZoneFormSet(forms.BaseInlineFormSet):
    # Set by ZoneInline.get_formset from the request; refused unless told otherwise.
    may_delete_presence_events = False

    def clean(self) -> None:
        super().clean()
        # The zones as stored: a form's instance holds the code typed in its row, which a
        # marketer may have changed before ticking "Delete". Their rows are locked already
        # (Zone.clean), and their codes held as delete_zones holds them: a deletion of
        # another zone of theirs, in flight, is waited for and seen here.
        going = list(Zone.objects.filter(pk__in=[form.instance.pk for form in self.deleted_forms]))
        if not going:
            return
        hold_zone_codes({zone.code for zone in going})
        lost = zones_lost_by_campaigns(dict.fromkeys(zone.pk for zone in going))
        if lost:
            codes = " and ".join(f"'{zone.code}'" for zone in going)
            doing = f"Deleting zone {codes}" if len(going) == 1 else f"Deleting zones {codes}"
            raise ValidationError(zone_loss_refusal(doing, lost))
        # The zone's own delete page refuses it for the same reason
        # (allow_presence_events_to_go): its presence events would go with it.
        for zone in going:
            if (
                not self.may_delete_presence_events
                and PresenceEvent.objects.filter(zone=zone).exists()
            ):
                raise ValidationError(
                    f"Shoppers entered zone '{zone.code}': its presence events would be "
                    "deleted with it, and your account may not delete presence events."
                )

    def delete_existing(self, obj: Zone, commit: bool = True) -> None:
        if commit:
            delete_zones(zones=[obj])


class ZoneInline(admin.TabularInline):
    model = Zone
    formset = ZoneFormSet
    extra = 0

    def get_queryset(self, request: HttpRequest) -> QuerySet[Zone]:
        # Each row is titled by its zone, named by its store's code (Zone.__str__).
        return super().get_queryset(request).select_related("store")

    def get_formset(self, request: HttpRequest, obj: Store | None = None, **kwargs: Any) -> type:
        formset = super().get_formset(request, obj, **kwargs)
        # A class made for this request (inlineformset_factory makes one each call).
        formset.may_delete_presence_events = request.user.has_perm(
            "promotions.delete_presenceevent"
        )
        return formset


@admin.register(Store)
class StoreAdmin(RefusedDeletionShown):
    list_display = ["code", "name", "address", "radius_m", "timezone"]
    search_fields = ["code", "name", "address"]
    formfield_overrides = JSON_AS_TEXT
    inlines = [ZoneInline]
    # "map" where the store may be placed, "fence_map" where it may only be viewed.
    readonly_fields = ["map", "fence_map"]
    fields = [
        "code",
        "name",
        "address",
        "latitude",
        "longitude",
        "radius_m",
        "polygon",
        "timezone",
        "map",
    ]

    class Media:
        css = {"all": ["leaflet/leaflet.css"]}
        js = ["leaflet/leaflet.js", "promotions/store_map.js"]

    def get_deleted_objects(self, objs: Iterable[Store], request: HttpRequest) -> tuple:
        # A live campaign whose last store went would target every store, and one watching a
        # zone of the store would lose the zone with it.
        going = going_with_stores([store.pk for store in objs])
        deleted = allow_presence_events_to_go(
            counted_deletion(objs, going, request, self.admin_site), request
        )
        targeting = [
            f"Campaign {name}: it targets store {store.code}"
            for store in objs
            for name in store.campaigns_targeting()
        ]
        zones = Zone.objects.filter(store__in=[store.pk for store in objs])
        return protect_from_deletion(
            deleted, [*targeting, *campaigns_losing_zones(zones.values_list("pk", flat=True))]
        )

    def delete_model(self, request: HttpRequest, obj: Store) -> None:
        delete_stores(stores=[obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Store]) -> None:
        delete_stores(stores=list(queryset))

    def get_fields(self, request: HttpRequest, obj: Store | None = None) -> list:
        fields = super().get_fields(request, obj)
        may_place = (
            self.has_add_permission(request)
            if obj is None
            else self.has_change_permission(request, obj)
        )
        if may_place:
            return fields
        # A read-only page has no inputs to move or draw into: its map only shows the fence.
        return ["fence_map" if name == "map" else name for name in fields]

    @admin.display(description="Map")
    def map(self, store: Store) -> str:
        return format_html(
            '<button id="store-geocode" class="button" type="button">Find the address</button> '
            '<button id="store-draw" class="button" type="button">Draw the outline</button> '
            '<button id="store-circle" class="button" type="button">Use a circle</button> '
            "{}",
            self.fence_map(store),
        )

    @admin.display(description="Map")
    def fence_map(self, store: Store) -> str:
        """The map box, with the store as saved: store_map.js draws it from these where the
        page has no inputs (a read-only page), from the inputs as typed otherwise."""
        return format_html(
            '<span id="store-map-status"></span>'
            '<div id="store-map" data-tiles="{}" data-geocode-url="{}" data-latitude="{}" '
            'data-longitude="{}" data-radius="{}" data-polygon="{}" '
            'style="height: 380px; max-width: 720px; margin-top: 8px;"></div>',
            settings.MAP_TILES_URL or "",
            reverse("admin:promotions_store_geocode"),
            _or_empty(store.latitude),
            _or_empty(store.longitude),
            _or_empty(store.radius_m),
            json.dumps(store.polygon) if store.polygon else "",
        )

    def get_urls(self) -> list:
        own = [
            path(
                "geocode/",
                self.admin_site.admin_view(self.geocode_view),
                name="promotions_store_geocode",
            )
        ]
        return own + super().get_urls()

    def geocode_view(self, request: HttpRequest) -> JsonResponse:
        # For whoever places a store; any staff account would otherwise spend the geocoder's
        # quota (the public Nominatim blocks heavy users).
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        try:
            latitude, longitude = geocode(request.GET.get("address", "")[:300])
        except GeocodingError as error:
            return JsonResponse({"error": f"{error} Type the coordinates or move the pin."})
        return JsonResponse({"latitude": latitude, "longitude": longitude})


@admin.register(Zone)
class ZoneAdmin(RefusedDeletionShown):
    list_display = ["store", "code", "name", "rssi_threshold"]
    list_filter = ["store"]

    def get_deleted_objects(self, objs: Iterable[Zone], request: HttpRequest) -> tuple:
        going = going_with_zones([zone.pk for zone in objs])
        deleted = allow_presence_events_to_go(
            counted_deletion(objs, going, request, self.admin_site), request
        )
        return protect_from_deletion(deleted, campaigns_losing_zones(zone.pk for zone in objs))

    def delete_model(self, request: HttpRequest, obj: Zone) -> None:
        delete_zones(zones=[obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Zone]) -> None:
        delete_zones(zones=list(queryset))


class HeardPlaceAdmin(CheckedListAdmin):
    """A beacon or gateway: what it heard goes with it."""

    # A zone is named by its store's code (Zone.__str__): read with it, not a query a row.
    list_select_related = ["store", "zone__store"]

    def formfield_for_foreignkey(
        self, db_field: models.ForeignKey, request: HttpRequest, **kwargs: Any
    ) -> forms.Field | None:
        if db_field.name == "zone":
            kwargs["queryset"] = Zone.objects.select_related("store")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_deleted_objects(self, objs: Iterable[Beacon | Gateway], request: HttpRequest) -> tuple:
        # Counted, as a store's: a busy gateway's sightings, listed, took the page past
        # gunicorn's timeout. They are raw location data the retention purge deletes anyway:
        # whoever may delete the beacon needs no permission on them (marketers have none).
        going = going_with_heard_places(self.model, [place.pk for place in objs])
        return allow_to_go(
            counted_deletion(objs, going, request, self.admin_site),
            Sighting,
            allowed=self.has_delete_permission(request),
        )

    def delete_model(self, request: HttpRequest, obj: Beacon | Gateway) -> None:
        delete_heard_places(model=self.model, ids=[obj.pk])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        delete_heard_places(model=self.model, ids=list(queryset.values_list("pk", flat=True)))


@admin.register(Beacon)
class BeaconAdmin(HeardPlaceAdmin):
    list_display = ["identity", "store", "zone", "measured_power"]
    list_filter = ["store"]
    search_fields = ["identity"]


@admin.register(Gateway)
class GatewayAdmin(HeardPlaceAdmin):
    list_display = ["gateway_id", "store", "zone"]
    list_filter = ["store"]


def sms_preview(template: str, *, store: Store | None, product_name: str, valid_days: int) -> dict:
    """The SMS a sample customer would get at `store`, with what it costs: encoding and
    segments. Its expiry is the day the engine would give her (decisions.customer_timezone):
    she has no time zone of her own, so the store's, or without a store (none created yet)
    the retailer's, `SMS_BUDGET_TIMEZONE`."""
    try:
        template_placeholders(template)
    except TemplateError as error:
        return {"error": str(error)}
    # The page previews what the form holds, a number its validators refuse included: an
    # expiry ten billion days away would overflow the date.
    valid_days = min(max(valid_days, 1), MAX_OFFER_VALID_DAYS)
    zone = ZoneInfo(decisions.customer_timezone(Customer(locale="fr-FR"), store))
    body = render_offer(
        template,
        first_name="Léa",
        store_name=store.name if store else "Passage Rivoli",
        product_name=product_name,
        code=generate_code(),
        expires_at=offer_last_day(timezone.now(), valid_days, zone),
        locale="fr-FR",
    )
    return {
        "body": body,
        "encoding": sms_encoding(body),
        "segments": sms_segments(body),
        "characters": len(body),
    }


class StoreIdsField(forms.ModelMultipleChoiceField):
    """The campaign's stores, as ids: one past a bigint's range (a forged form) is refused as
    any unknown store is. SQLite cannot even bind it in the query that looks them up: a
    500."""

    def clean(self, value: Any) -> QuerySet:
        row_id = IdFormField(min_value=1, max_value=LARGEST_ID)
        for pk in value if isinstance(value, list | tuple) else ():
            try:
                row_id.clean(pk)
            except ValidationError:
                raise ValidationError(
                    self.error_messages["invalid_pk_value"],
                    code="invalid_pk_value",
                    params={"pk": pk},
                ) from None
        return super().clean(value)


def campaign_value(campaign: Campaign, name: str) -> Any:
    """A field's value as the change page compares it: the stores as their ids, in order
    (the page lists them in any order), the others as the campaign holds them."""
    if name == "stores":
        return sorted(store.pk for store in campaign.stores.all()) if campaign.pk else []
    return getattr(campaign, name)


def value_digests(campaign: Campaign, names: Iterable[str]) -> dict[str, str]:
    """A short digest of each named field's value: what the change page carries of the
    campaign it was opened on, to tell later which fields someone else changed meanwhile.
    Digests of the values themselves, so that every way of saving a campaign (this page, the
    list's actions, the API's PUT and PATCH) changes them with no counter to keep."""
    # Six bytes, as the page carries one a field: a change that keeps a field's digest is one
    # chance in 2**48.
    return {name: value_digest(campaign_value(campaign, name), size=6) for name in names}


def _shown_value(campaign: Campaign, name: str) -> str:
    """A saved value in the words of a message on the change page."""
    value = getattr(campaign, name)
    if name == "stores":
        stores = sorted(str(store) for store in campaign.stores.all())
        if not stores:
            return "none (every store)"
        more = f" and {len(stores) - 5} more" if len(stores) > 5 else ""
        return ", ".join(stores[:5]) + more
    if campaign._meta.get_field(name).choices:
        return str(getattr(campaign, f"get_{name}_display")())
    if value is None or value in ("", []):
        return "empty"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return format_instant_for_people(value)
    if isinstance(value, time):
        return f"{value:%H:%M}"
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str):
        return f'"{value if len(value) <= 80 else value[:79] + "…"}"'
    return str(value)


class CampaignForm(forms.ModelForm):
    # A digest of each field's value when the change page was opened (value_digests). The
    # page posts every field: a page opened before someone else's save would otherwise put
    # back what they changed, the old SMS or a paused campaign live again, its SMS going out.
    loaded_values = forms.CharField(widget=forms.HiddenInput, required=False)

    class Meta:
        field_classes = {"stores": StoreIdsField}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.initial["loaded_values"] = json.dumps(
                value_digests(self.instance, self._compared_fields())
            )

    def _compared_fields(self) -> list[str]:
        return [name for name in self.fields if name != "loaded_values"]

    def _post_clean(self) -> None:
        super()._post_clean()
        self._check_unchanged_since_loaded()
        self._check_trigger_zone()

    def _check_unchanged_since_loaded(self) -> None:
        """A field someone else changed since the page was opened is kept unless the page
        sets it to that same value: nothing is saved, and the page names each such field
        with its value now. The page shown again carries those values as its loaded ones:
        saved again, as the marketer has now set it, it saves. A post without the loaded
        values (not from the page) is not checked."""
        loaded = self._loaded_digests()
        if self.instance.pk is None or loaded is None:
            return
        # Locked until the admin's save commits (it saves in one transaction, as the API
        # does): a change committed after this read waits for the save, and is not undone.
        stored = Campaign.objects.select_for_update(no_key=True).filter(pk=self.instance.pk).first()
        if stored is None:
            return
        # Fields the page failed to read are left for the next save to compare.
        compared = [name for name in self._compared_fields() if name in self.cleaned_data]
        now = value_digests(stored, compared)
        changed = [
            name
            for name in compared
            if loaded.get(name) != now[name]
            and self._posted_value(name) != campaign_value(stored, name)
        ]
        if not changed:
            return
        for name in changed:
            self.add_error(
                name, f"Changed since you opened this page, now: {_shown_value(stored, name)}."
            )
        self.add_error(
            None,
            "Someone else changed this campaign since you opened this page: "
            f"{', '.join(str(self.fields[name].label) for name in changed)}. Nothing was "
            "saved. Your values are kept below, and each field named says what is saved "
            "now: set it as it should be and save again.",
        )
        data = self.data.copy()
        data["loaded_values"] = json.dumps({**loaded, **now})
        self.data = data

    def _loaded_digests(self) -> dict[str, str] | None:
        try:
            loaded = json.loads(self.cleaned_data.get("loaded_values") or "null")
        except ValueError:
            return None
        return loaded if isinstance(loaded, dict) else None

    def _posted_value(self, name: str) -> Any:
        """The page's value of a field as the campaign would hold it once saved (its line
        breaks and quiet hours as Campaign.clean normalises them)."""
        if name == "stores":
            return sorted(store.pk for store in self.cleaned_data["stores"])
        return getattr(self.instance, name)

    def _check_trigger_zone(self) -> None:
        """After the model's rules, the one that reads the chosen stores, which are saved
        after the campaign, and holds them and the watched zone until the save commits
        (check_campaign_places). Here, not in clean(): an error added there takes its field's
        value out of the campaign the model then checks (as Django's UserCreationForm
        checks a password once the user is built)."""
        if "stores" not in self.cleaned_data or any(
            self.has_error(name) for name in ("trigger_type", "trigger_zone")
        ):
            return  # the stores or the trigger are not known, or the zone is wrong already
        try:
            check_campaign_places(
                status=self.instance.status,
                trigger_type=self.instance.trigger_type,
                trigger_zone=self.instance.trigger_zone,
                stores=self.cleaned_data["stores"],
            )
        except ValidationError as error:
            self._update_errors(error)


@admin.register(Campaign)
class CampaignAdmin(RefusedDeletionShown):
    form = CampaignForm
    formfield_overrides = JSON_AS_TEXT
    list_display = [
        "name",
        "status",
        "trigger_type",
        "priority",
        "starts_at",
        "ends_at",
        "results_link",
    ]
    list_filter = ["status", "trigger_type"]
    search_fields = ["name"]
    filter_horizontal = ["stores"]
    actions = [
        "delete_selected",
        "activate",
        "pause",
        "duplicate",
        "dry_run_last_week",
        "dry_run_last_month",
    ]
    readonly_fields = ["preview"]
    fieldsets = [
        (
            None,
            {
                # loaded_values: hidden, see CampaignForm.
                "fields": [
                    "name",
                    "status",
                    "loaded_values",
                    "priority",
                    "starts_at",
                    "ends_at",
                    "stores",
                ]
            },
        ),
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
        ("Offer", {"fields": ["offer_template", "offer_valid_days", "preview"]}),
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

    class Media:
        js = ["promotions/campaign_preview.js"]

    def get_fieldsets(self, request: HttpRequest, obj: Campaign | None = None) -> list:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        # Read-only, the page saves nothing: its loaded values would show as an empty row.
        return [
            (name, {**options, "fields": [f for f in options["fields"] if f != "loaded_values"]})
            for name, options in fieldsets
        ]

    def get_deleted_objects(self, objs: Iterable[Campaign], request: HttpRequest) -> tuple:
        # A campaign's deliveries are its results (Delivery.campaign is PROTECT). Counted
        # first: Django would load every one of them, a million for a national campaign, to
        # say the campaign cannot go, and the page would never answer.
        decided = dict(
            Delivery.objects.filter(campaign__in=[campaign.pk for campaign in objs])
            .values_list("campaign")
            .annotate(count=models.Count("pk"))
        )
        if not decided:
            return super().get_deleted_objects(objs, request)
        protected = [
            f"Campaign {campaign.name}: {decisions_kept(decided[campaign.pk])}. {END_IT_INSTEAD}"
            for campaign in objs
            if campaign.pk in decided
        ]
        return [], {}, set(), protected

    def delete_model(self, request: HttpRequest, obj: Campaign) -> None:
        delete_campaigns(campaigns=[obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        delete_campaigns(campaigns=list(queryset))

    @admin.display(description="SMS preview (sample customer Léa)")
    def preview(self, campaign: Campaign) -> str:
        store_ids = list(campaign.stores.values_list("pk", flat=True)) if campaign.pk else []
        preview = sms_preview(
            campaign.offer_template or "",
            store=_sample_store(store_ids),
            product_name=_sample_product(campaign.intent_skus, campaign.intent_categories),
            valid_days=campaign.offer_valid_days or 7,
        )
        return format_html(
            '<div id="sms-preview" data-url="{}">{}</div>',
            reverse("admin:promotions_campaign_preview"),
            _preview_html(preview),
        )

    @admin.display(description="Results")
    def results_link(self, campaign: Campaign) -> str:
        url = reverse("admin:promotions_campaign_results", args=[campaign.pk])
        return format_html('<a href="{}">Results</a>', url)

    def get_urls(self) -> list:
        own = [
            path(
                "preview/",
                self.admin_site.admin_view(self.preview_view),
                name="promotions_campaign_preview",
            ),
            path(
                "<int:object_id>/results/",
                self.admin_site.admin_view(self.results_view),
                name="promotions_campaign_results",
            ),
        ]
        return own + super().get_urls()

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """The live preview the change page asks for as the marketer types. Posted as a
        form: a campaign in hundreds of stores makes a query string longer than servers
        take in a request line (gunicorn refuses one over 4,094 bytes)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        # It renders any store's name and address: for whoever writes campaigns. Refused in
        # words the page can show in place of the preview.
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            return JsonResponse({"error": "Your account may not write campaigns."}, status=403)
        form = request.POST
        try:
            valid_days = int(form.get("valid_days") or 7)
        except ValueError:
            valid_days = 7
        # The store and product the page holds, unsaved, as the first render reads them saved:
        # every store chosen (a form holds at most DATA_UPLOAD_MAX_NUMBER_FIELDS), or the
        # first by code could be left out.
        store_ids = [
            int(pk)
            for pk in form.getlist("store")
            if pk.isascii() and pk.isdigit() and len(pk) <= 18  # a bigint holds them
        ]
        preview = sms_preview(
            # As the campaign will be saved: a template sent with CRLF line breaks costs
            # what it will cost once they are LF.
            unix_line_breaks(form.get("template", "")[:2000]),
            store=_sample_store(store_ids),
            product_name=_sample_product(
                _json_list(form.get("skus", "")), _json_list(form.get("categories", ""))
            ),
            valid_days=valid_days,
        )
        return JsonResponse({**preview, "html": _preview_html(preview)})

    def results_view(self, request: HttpRequest, object_id: int) -> TemplateResponse:
        campaign = get_object_or_404(Campaign, pk=object_id)
        if not self.has_view_permission(request, campaign):
            raise PermissionDenied
        # Days as the daily budget counts them, whatever the stores' zones: a day's figures
        # read against the budget that capped them, and add up across the stores.
        zone = get_budget_zone()
        today = local_day(timezone.now(), zone)
        daily = get_campaign_daily(campaign=campaign, days=30, today=today)
        peak = max([1, *(max(d["sent"], d["redeemed"]) for d in daily)])
        deliveries = reverse("admin:promotions_delivery_changelist")
        for n, day in enumerate(daily):
            # The deliveries list's date drill-down is in UTC: the day's link names its own
            # bounds, so that it lists the decisions the row counts.
            day["deliveries_url"] = f"{deliveries}?" + urlencode(
                {
                    "campaign__id__exact": campaign.pk,
                    "created_at__gte": local_day_start(day["day"], zone).isoformat(),
                    "created_at__lt": local_day_start(
                        day["day"] + timedelta(days=1), zone
                    ).isoformat(),
                }
            )
            day["x"] = 40 + n * 22
            day["sent_h"] = round(160 * day["sent"] / peak)
            day["redeemed_h"] = round(160 * day["redeemed"] / peak)
            day["sent_y"] = 180 - day["sent_h"]
            day["redeemed_y"] = 180 - day["redeemed_h"]
        stats = get_campaign_stats(campaign=campaign)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Results: {campaign.name}",
            "campaign": campaign,
            "opts": self.model._meta,
            "stats": stats,
            # In the words the deliveries list and its filters use.
            "by_status": [
                (DeliveryStatus(status).label, count)
                for status, count in stats["decisions"]["by_status"].items()
            ],
            "by_reason": [
                (_lowered(DeliveryReason(reason).label), count)
                for reason, count in stats["decisions"]["by_reason"].items()
                if count
            ],
            "daily": daily,
            "day_zone": zone.key,
            "peak": peak,
            "by_store": get_campaign_by_store(campaign=campaign),
        }
        return TemplateResponse(request, "admin/promotions/campaign/results.html", context)

    @admin.action(description="Activate the selected campaigns", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        changed = 0
        for campaign in self._leave_ended(request, queryset):
            campaign.status = CampaignStatus.ACTIVE
            try:
                campaign.full_clean()
                check_campaign_places(
                    status=campaign.status,
                    trigger_type=campaign.trigger_type,
                    trigger_zone=campaign.trigger_zone,
                    stores=campaign.stores.all(),
                )
            except ValidationError as error:
                self.message_user(
                    request,
                    f"{campaign.name} cannot go live: {_first_error(error)}",
                    messages.ERROR,
                )
                continue
            campaign.save(update_fields=["status", "updated_at"])
            changed += 1
        self.message_user(request, f"{changed} campaign(s) activated.", messages.SUCCESS)

    @admin.action(description="Pause the selected campaigns", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        count = 0
        # Saved one by one, as activate does: the save's signal tells workers to rebuild.
        for campaign in self._leave_ended(request, queryset):
            campaign.status = CampaignStatus.PAUSED
            campaign.save(update_fields=["status", "updated_at"])
            count += 1
        self.message_user(request, f"{count} campaign(s) paused.", messages.SUCCESS)

    def _leave_ended(
        self, request: HttpRequest, queryset: QuerySet[Campaign]
    ) -> QuerySet[Campaign]:
        """The selected campaigns but the ended ones, which the marketer is told were left
        alone. An ended campaign stays ended: stores and zones only ended campaigns use can
        be deleted, so one brought back could run without them, in every store if it lost
        all of its own."""
        ended = sorted(queryset.filter(status=CampaignStatus.ENDED).values_list("name", flat=True))
        if ended:
            self.message_user(
                request,
                f"Left as they were: {', '.join(ended)}. {ENDED_STAYS_ENDED}",
                messages.WARNING,
            )
        return queryset.exclude(status=CampaignStatus.ENDED)

    @admin.action(description="Duplicate as a draft", permissions=["add"])
    def duplicate(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        """A draft with the campaign's settings and stores, to run again what ended (an
        ended campaign stays ended), without its start and end dates. Its results,
        deliveries and code pool stay with the original."""
        copies = []
        pooled = []
        for campaign in queryset.prefetch_related("stores"):
            copy = Campaign(
                **{
                    field.attname: getattr(campaign, field.attname)
                    for field in Campaign._meta.concrete_fields
                    if field.editable and not field.primary_key
                }
            )
            suffix = " (copy)"
            copy.name = campaign.name[: Campaign._meta.get_field("name").max_length - len(suffix)]
            copy.name += suffix
            copy.status = CampaignStatus.DRAFT
            # The original's dates are its own run's: an end already past would leave the
            # copy unable to go live.
            copy.starts_at = copy.ends_at = None
            copy.save()
            copy.stores.set(campaign.stores.all())
            copies.append(copy)
            if campaign.code_pool.exists():
                pooled.append(copy)
        if copies:
            self.message_user(
                request,
                f"{len(copies)} draft(s) created: {', '.join(c.name for c in copies)}. They "
                "have no start or end date: set the dates of the new run. Check their stores "
                "before activating: none selected means every store, and the stores deleted "
                "since are not among them.",
                messages.SUCCESS,
            )
        if pooled:
            # A pool's codes were each printed or loaded in a till once: they cannot be shared.
            self.message_user(
                request,
                f"{', '.join(c.name for c in pooled)}: the original drew its codes from an "
                "uploaded pool, which stays with it. Upload a pool to the copy, or it "
                "generates its own codes.",
                messages.WARNING,
            )

    @admin.action(description="Dry run over the last 7 days (sends nothing)")
    def dry_run_last_week(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._dry_run(request, queryset, days=7)

    @admin.action(description="Dry run over the last 30 days (sends nothing)")
    def dry_run_last_month(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        self._dry_run(request, queryset, days=30)

    def _dry_run(self, request: HttpRequest, queryset: QuerySet[Campaign], *, days: int) -> None:
        until = timezone.now()
        for campaign in queryset.prefetch_related("stores"):
            since = until - timedelta(days=days)
            result = dry_run_campaign(campaign=campaign, since=since, until=until)
            self.message_user(request, _dry_run_summary(campaign.name, days, result), messages.INFO)


def _dry_run_summary(name: str, days: int, result: dict) -> str:
    """A dry run's figures (promotions.dry_run.dry_run_campaign) as the marketer reads them:
    the visits it did not decide, and what it cannot count, only when there are some."""
    held = (
        ", ".join(
            f"{_lowered(DeliveryReason(reason).label)} {count}"
            for reason, count in result["by_reason"].items()
            if count
        )
        or "none"
    )
    sentences = [
        f"{name}, last {days} days: {result['would_send']} SMS to "
        f"{result['customers_reached']} customers from {result['presence_events']} presence "
        f"events; held back: {held}."
    ]
    if late := result["arrived_too_late"]:
        minutes = round(settings.SMS_VALIDITY_SECONDS / 60)
        sentences.append(
            f"{_visits(late)} reached Passage over {minutes} minute{'' if minutes == 1 else 's'} "
            "after the fact, too late to text: skipped, as they are when the campaign is live."
        )
    if outranked := result["outranked"]:
        sentences.append(
            f"{_visits(outranked)} went to a campaign that ranks above this one (by priority, "
            "then by how strongly the customer showed interest): a visit gets one SMS at most."
        )
    return " ".join([*sentences, *result["warnings"]])


def _visits(count: int) -> str:
    return f"{count} visit{'' if count == 1 else 's'}"


def _lowered(label: str) -> str:
    """A label inside a sentence: "No SMS consent" as "no SMS consent"."""
    return label[:1].lower() + label[1:]


def _sample_store(store_ids: list[int]) -> Store | None:
    """The preview's store: the campaign's first (by code), or any for an every-store one."""
    stores = Store.objects.filter(pk__in=store_ids) if store_ids else Store.objects.all()
    return stores.order_by("code").first()


def _sample_product(skus: object, categories: object) -> str:
    """What {product_name} renders for the campaign's intent condition. The lists are what
    the marketer typed, maybe half typed or refused by validation: only text a database can
    store counts. PostgreSQL cannot compare a NUL, and no page can show a lone surrogate."""
    sku, category = _first_text(skus), _first_text(categories)
    if sku:
        product = Product.objects.filter(sku=sku[:100]).first()
        return product.display_name if product else sku
    if category:
        return f"{category} (the customer's favourite)"
    return "X200 headphones"


def _first_text(value: object) -> str:
    items = value if isinstance(value, list) else []
    return next(
        (
            item
            for item in items
            if isinstance(item, str) and item.strip() and is_storable_text(item)
        ),
        "",
    )


def _json_list(text: str) -> list:
    """A JSON list field's text as the page holds it; [] for anything else (half typed)."""
    try:
        value = json.loads(text[:10_000])
    except (ValueError, RecursionError):  # see UNREADABLE_JSON
        return []
    return value if isinstance(value, list) else []


def _preview_html(preview: dict) -> str:
    if "error" in preview:
        return format_html('<p class="errornote">{}</p>', preview["error"])
    return format_html(
        '<pre style="white-space: pre-wrap; max-width: 40em; padding: 8px; '
        'background: var(--darkened-bg); border-radius: 4px;">{}</pre>'
        "<p>{} · {} segment{} · {} characters</p>",
        preview["body"],
        preview["encoding"],
        preview["segments"],
        "" if preview["segments"] == 1 else "s",
        preview["characters"],
    )


def _or_empty(value: object) -> object:
    return "" if value is None else value


def _first_error(error: ValidationError) -> str:
    messages_by_field = error.message_dict if hasattr(error, "error_dict") else {"": error.messages}
    return "; ".join(message for messages in messages_by_field.values() for message in messages)


class ReadOnlyAdmin(CheckedListAdmin):
    """Records the engine writes: marketers read them, nobody edits history by hand. Nor
    adds location data: a ping or sighting stored here is in no location batch, so no
    worker would ever process it."""

    def has_add_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False


class HistoryAdmin(ReadOnlyAdmin):
    """What the engine decided and the tills redeemed, which results and caps count: not
    deleted by hand either. A delivery deleted would hand its pool code, already in a
    customer's SMS, to the next customer, and take its redemption and its place in the
    customer's frequency caps with it; a presence event deleted could be announced again.
    (Erasing a customer is the way their data goes.)"""

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False


def allow_to_go(deleted: tuple, model: type[models.Model], *, allowed: bool) -> tuple:
    """`get_deleted_objects`'s answer with the rows of `model` that cascade no longer asking
    for a permission to delete them, when `allowed`: the admin would otherwise refuse the
    deletion for them."""
    to_delete, model_count, perms_needed, protected = deleted
    if allowed:
        perms_needed = perms_needed - {model._meta.verbose_name}
    return to_delete, model_count, perms_needed, protected


def allow_presence_events_to_go(deleted: tuple, request: HttpRequest) -> tuple:
    """`get_deleted_objects`'s answer for a store or zone: its presence events go with it,
    as through the API, for whoever may delete presence events (HistoryAdmin refuses to
    delete them one by one, and the admin would refuse the store for that)."""
    return allow_to_go(
        deleted, PresenceEvent, allowed=request.user.has_perm("promotions.delete_presenceevent")
    )


@admin.register(Ping)
class PingAdmin(BigListAdmin, ReadOnlyAdmin):
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
    # A device's pings, by its id (found by the unique constraints, which lead with it).
    search_fields = ["device__device_id"]
    search_help_text = "A device's id, whole."
    date_hierarchy = "recorded_at"
    # Newest first by the drill-down's date: a day or month chosen is then a page of its
    # index, where by id a month long past read every newer ping first.
    ordering = ["-recorded_at"]


@admin.register(LocationBatch)
class LocationBatchAdmin(BigListAdmin, ReadOnlyAdmin):
    """What ingest handed the workers: the unprocessed ones are the backlog."""

    list_display = ["id", "received_at", "processed_at", "pings", "sightings"]
    list_filter = [("processed_at", admin.EmptyFieldListFilter)]
    date_hierarchy = "received_at"
    ordering = ["-received_at"]  # as PingAdmin's

    @admin.display(description="pings")
    def pings(self, batch: LocationBatch) -> int:
        return len(batch.ping_ids)

    @admin.display(description="sightings")
    def sightings(self, batch: LocationBatch) -> int:
        return len(batch.sighting_ids)


@admin.register(Sighting)
class SightingAdmin(BigListAdmin, ReadOnlyAdmin):
    list_display = ["device", "source", "store", "zone", "rssi", "seen_at"]
    # Listed, related rows are no longer joined unless named: the device too.
    list_select_related = ["device", "store", "zone__store"]
    list_filter = ["source", "store"]
    raw_id_fields = ["device", "beacon", "gateway"]
    search_fields = ["device__device_id"]
    search_help_text = "A device's id, whole."
    date_hierarchy = "seen_at"
    ordering = ["-seen_at"]  # as PingAdmin's


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple, required=True
    )

    class Meta:
        model = ApiKey
        fields = ["name", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(CheckedListAdmin):
    """Keys are created here and shown once; only their hash is kept, and never displayed."""

    form = ApiKeyForm
    list_display = ["name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return ["name", "scopes"]
        return ["name", "prefix", "scopes", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return []
        return ["prefix", "scopes", "created_at", "last_used_at", "revoked_at"]

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # The changelist filters by any field of the model from its address: by the hash,
        # ?key_hash__startswith= would read it out a character at a time.
        if lookup.split("__")[0] == "key_hash":
            return False
        return super().lookup_allowed(lookup, value, request)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: ApiKeyForm, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        created, key = create_api_key(name=obj.name, scopes=form.cleaned_data["scopes"])
        obj.pk = created.pk
        obj.refresh_from_db()
        self.message_user(
            request,
            f"The key for {created.name}, shown this once (only its hash is kept): {key}",
            messages.WARNING,
        )

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = queryset.filter(revoked_at=None).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} key(s) revoked.", messages.SUCCESS)


@admin.register(PresenceEvent)
class PresenceEventAdmin(BigListAdmin, HistoryAdmin):
    list_display = ["customer", "kind", "store", "zone", "minutes", "distance_m", "occurred_at"]
    list_select_related = ["customer", "store", "zone__store"]
    list_filter = ["kind", "store"]
    raw_id_fields = ["customer", "ping", "sighting"]
    # A customer's visits (presence_event_unique leads with the customer).
    search_fields = ["customer__external_id"]
    search_help_text = "A customer's external id, whole."
    date_hierarchy = "occurred_at"


class SentFilter(admin.SimpleListFilter):
    """The results page's "SMS sent" as a filter: sent, then delivered or not."""

    title = "SMS sent"
    parameter_name = "sent"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list:
        return [("yes", "Sent (any outcome)"), ("no", "Not sent")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(status__in=REDEEMABLE)
        if self.value() == "no":
            return queryset.exclude(status__in=REDEEMABLE)
        return queryset


class FindsCodesAsTheTill(CheckedListAdmin):
    """A code searched as the till looks it up (case, spaces and dashes do not count): a
    marketer types what the customer reads out, JJ6PKR7R for JJ6P-KR7R."""

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        code_key = normalise_code(search_term)
        if code_key:
            found |= queryset.filter(code_key=code_key)
        return found, may_have_duplicates


@admin.register(Delivery)
class DeliveryAdmin(FindsCodesAsTheTill, BigListAdmin, HistoryAdmin):
    list_display = ["created_at", "campaign", "customer", "store", "status", "reason", "code"]
    list_select_related = ["campaign", "customer", "store"]
    list_filter = [SentFilter, "status", "reason", "campaign", "store"]
    # The code is found by its till key (FindsCodesAsTheTill); each of these by an index.
    search_fields = ["customer__external_id", "twilio_sid"]
    search_help_text = (
        "An offer code as the customer reads it, a customer's external id or a Twilio SID, whole."
    )
    date_hierarchy = "created_at"
    # The stored trace is shown formatted, as the decision trace.
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "campaign",
                    "customer",
                    "presence",
                    "store",
                    "status",
                    "reason",
                    "decision_trace",
                ]
            },
        ),
        (
            "SMS",
            {
                "fields": [
                    "to",
                    "body",
                    "code",
                    "valid_until",
                    "encoding",
                    "segments",
                    "product_sku",
                    "intent_score",
                ]
            },
        ),
        ("Sending", {"fields": ["twilio_sid", "error_code", "error_message", "attempts"]}),
        (
            "Times (UTC)",
            {
                "fields": [
                    "created_at",
                    "send_after",
                    "claimed_at",
                    "sent_at",
                    "status_updated_at",
                    "expires_at",
                ]
            },
        ),
    ]
    readonly_fields = ["presence", "valid_until", "decision_trace"]

    @admin.display(description="Presence event")
    def presence(self, delivery: Delivery) -> str:
        event = delivery.presence_event
        if event is None:
            return "-"
        return format_html(
            '<a href="{}">{} {} ({}), {}</a>',
            reverse("admin:promotions_presenceevent_change", args=[event.pk]),
            event.get_kind_display(),
            event.store.name,
            event.store.code,
            _admin_time(event.occurred_at),
        )

    @admin.display(description="Valid until, as its SMS says")
    def valid_until(self, delivery: Delivery) -> str:
        """The code's last moment as its SMS gave it: in the time zone the offer went by,
        as recorded when it was written (an offer written before that was recorded: the
        customer's zone as it is now)."""
        if delivery.expires_at is None:
            return "-"
        if delivery.customer is None:  # erased: their time zone went with them
            return _admin_time(delivery.expires_at)
        zone = (delivery.trace or {}).get("offer_timezone") or decisions.customer_timezone(
            delivery.customer, delivery.store
        )
        local = delivery.expires_at.astimezone(ZoneInfo(zone))
        return f"{date_format(local, 'DATETIME_FORMAT')} ({zone})"

    @admin.display(description="Decision trace")
    def decision_trace(self, delivery: Delivery) -> str:
        """Which presence event, which browsing, which rule and limit: why it went or not."""
        trace = delivery.trace or {}
        event = trace.get("event", {})
        rows = [
            (
                "Presence",
                f"{event.get('kind', '?')} at {event.get('store', '?')}"
                f"{' / ' + event['zone'] if event.get('zone') else ''}, "
                f"{_trace_time(event.get('at', ''))}",
            ),
            (
                "Evidence",
                event.get("why", "")
                + (f" (ping {event['ping']})" if event.get("ping") else "")
                + (f" (sighting {event['sighting']})" if event.get("sighting") else ""),
            ),
            ("Intent", trace.get("intent", "")),
            ("Rank", _trace_rank(trace)),
            ("Limits", _trace_limits(delivery, trace.get("limits", ""), trace.get("limit", ""))),
        ]
        return format_html(
            "<table>{}</table>",
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
        )


def _admin_time(moment: datetime) -> str:
    """A time as the admin shows its others, with the zone it is in (the admin's, UTC)."""
    shown = date_format(timezone.localtime(moment), "DATETIME_FORMAT")
    return f"{shown} {timezone.get_current_timezone_name()}"


def _trace_time(text: str) -> str:
    try:
        return _admin_time(datetime.fromisoformat(text))
    except (TypeError, ValueError):  # a trace recorded without its time
        return str(text)


def _trace_rank(trace: dict) -> str:
    """The campaigns the visit matched, best first, by name: "1 of 2: X200 walk-by, Soldes"."""
    rank = trace.get("rank", "?")
    ranked = [pk for pk in trace.get("ranked", []) if isinstance(pk, int)]
    if not ranked:
        return str(rank)
    names = Campaign.objects.in_bulk(ranked)
    listed = ", ".join(
        names[pk].name if pk in names else f"campaign {pk} (deleted)" for pk in ranked
    )
    return f"{rank} of {len(ranked)}: {listed}"


# What a delivery the decision queued can end as without reaching the customer: held back
# or failed at its turn to send (promotions.sending), or failed at the provider.
NOT_SENT_AFTER_ALL = (DeliveryStatus.SUPPRESSED, DeliveryStatus.FAILED)


def _trace_limits(delivery: Delivery, decided: str, limit: str = "") -> str:
    """The limits as the decision found them (the one that held it, in words) and, for an
    SMS that did not go after all, why, as the delivery records it now: the trace is written
    once, when the decision is made."""
    if decided in DeliveryReason.values:
        decided = DeliveryReason(decided).label + (f": {limit}" if limit else "")
    if decided != "all passed" or delivery.status not in NOT_SENT_AFTER_ALL:
        return decided
    why = [DeliveryReason(delivery.reason).label] if delivery.reason else []
    if delivery.error_message:
        why.append(delivery.error_message)
    elif delivery.error_code:
        why.append(f"error {delivery.error_code}")
    status = _lowered(DeliveryStatus(delivery.status).label)
    when = "at its turn to send" if delivery.sent_at is None else "at the SMS provider"
    return (
        f"all passed when decided; then {status} {when}: {'; '.join(why) or 'no reason recorded'}"
    )


@admin.register(Redemption)
class RedemptionAdmin(HistoryAdmin):
    list_display = ["redeemed_at", "delivery", "store", "amount"]
    list_select_related = ["delivery", "store"]
    list_filter = ["store"]
    raw_id_fields = ["delivery"]


class OfferCodeForm(forms.ModelForm):
    class Meta:
        model = OfferCode
        fields = ["campaign", "code"]

    def clean(self) -> dict[str, Any]:
        """A code added here is checked as an uploaded one is: one the till could not tell
        apart from another code is refused."""
        cleaned = super().clean()
        campaign, code = cleaned.get("campaign"), cleaned.get("code")
        if self.instance.pk is None and campaign and code:
            try:
                feedback.check_pool_codes(campaign=campaign, codes=[code])
            except feedback.InvalidInputError as error:
                self.add_error("code", str(error))
        return cleaned


@admin.register(OfferCode)
class OfferCodeAdmin(FindsCodesAsTheTill, RefusedDeletionShown):
    form = OfferCodeForm
    list_display = ["code", "campaign", "delivery"]
    list_select_related = ["campaign", "delivery"]
    list_filter = ["campaign"]
    search_fields = ["code"]

    def get_readonly_fields(self, request: HttpRequest, obj: OfferCode | None = None) -> list:
        # The engine hands a code to a delivery, and the delivery carries it from then on: a
        # link undone by hand would let the code go out twice. Nor is a code another
        # delivery may carry renamed or moved to another campaign.
        return ["campaign", "code", "delivery"] if obj else ["delivery"]

    def get_deleted_objects(self, objs: Iterable[OfferCode], request: HttpRequest) -> tuple:
        carried = [code.code for code in objs if code.delivery_id is not None]
        kept = [f"Code {code}: an SMS carried it, kept as the record it went" for code in carried]
        return protect_from_deletion(super().get_deleted_objects(objs, request), kept)

    def delete_model(self, request: HttpRequest, obj: OfferCode) -> None:
        feedback.delete_pool_codes(codes=[obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[OfferCode]) -> None:
        feedback.delete_pool_codes(codes=list(queryset))


# Staff accounts: Django's own admins, reading their lists' addresses and selections as every
# list here does (CheckedListAdmin), where `?username=%00` was a server error on PostgreSQL.
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class StaffUserAdmin(CheckedListAdmin, UserAdmin):
    pass


@admin.register(Group)
class StaffGroupAdmin(CheckedListAdmin, GroupAdmin):
    pass
