"""Results and what comes back from the till: redemptions, deliveries, campaign statistics,
and code pools."""

import re
from datetime import datetime
from typing import Any

import django_filters
from django import forms
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from customers.models import EXTERNAL_ID_MAX_LENGTH
from promotions import feedback, selectors
from promotions.api.batch import BadRequest, ErrorSerializer
from promotions.api.fields import AmountField, InstantField, KnownFieldsOnly, RecentInstantField
from promotions.api.filtering import StatusFilter
from promotions.api.pagination import KeysFirstPagination
from promotions.models import (
    Campaign,
    Delivery,
    DeliveryReason,
    DeliveryStatus,
    OfferCode,
    Scope,
)

# --- Redemptions ------------------------------------------------------------------------


class RedemptionSerializer(KnownFieldsOnly, serializers.Serializer):
    code = serializers.CharField(
        max_length=60,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text='The code the customer shows at the till. Null or "": none, as left out.',
    )
    customer_id = serializers.CharField(
        max_length=100,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text=(
            "Instead of a code: the customer's external id, from a loyalty card. The purchase "
            "is tied to their latest unexpired offer not yet redeemed, a holdout one "
            "included, which is how the holdout group's purchases count for lift. Null or "
            '"": none, as left out.'
        ),
    )
    store_code = serializers.CharField(max_length=32)
    amount = AmountField(required=False, allow_null=True)
    redeemed_at = RecentInstantField()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A till's encoder writes the one it has no value for as null, or as "".
        attrs = {
            name: value
            for name, value in attrs.items()
            if not (name in ("code", "customer_id") and value in (None, ""))
        }
        if bool(attrs.get("code")) == bool(attrs.get("customer_id")):
            raise ValidationError({"code": ["Give the code, or else the customer_id."]})
        return attrs


class RedemptionResultSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    code = serializers.CharField(source="delivery.code", allow_null=True)
    store_code = serializers.CharField(source="store.code")
    amount = AmountField(allow_null=True)
    redeemed_at = InstantField()
    delivery = serializers.IntegerField(source="delivery_id")
    campaign = serializers.IntegerField(source="delivery.campaign_id")


class RedemptionView(APIView):
    required_scope = Scope.REDEMPTIONS

    @extend_schema(
        request=RedemptionSerializer,
        responses={
            201: RedemptionResultSerializer,
            400: BadRequest,
            404: ErrorSerializer,
            409: ErrorSerializer,
        },
        description=(
            "A code used at a till (case, spaces and dashes aside): 201; 404 for an unknown "
            "code; 409 when it was redeemed before, had expired by `redeemed_at` (by the time "
            "it was received, when `redeemed_at` is later: the till's clock is fast), or is "
            "typed like two codes sent (enter it as the SMS shows it). By loyalty card: 404 when "
            "the customer has no current offer, 409 when every one was redeemed. 400 on "
            "`redeemed_at` when that is before the code was issued (a till's clock may be up to "
            f"{feedback.TILL_CLOCK_SKEW.total_seconds() / 60:g} minutes behind ours)."
        ),
    )
    def post(self, request: Request) -> Response:
        body = RedemptionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            redemption = feedback.redeem(
                code=body.validated_data.get("code"),
                customer_id=body.validated_data.get("customer_id"),
                store_code=body.validated_data["store_code"],
                amount=body.validated_data.get("amount"),
                redeemed_at=body.validated_data["redeemed_at"],
                now=timezone.now(),
            )
        except feedback.InvalidInputError as error:
            raise ValidationError({error.field: [str(error)]}) from None
        except feedback.UnknownCodeError as error:
            raise NotFound(str(error)) from None
        return Response(RedemptionResultSerializer(redemption).data, status=status.HTTP_201_CREATED)


# --- Deliveries -------------------------------------------------------------------------


class DeliverySerializer(serializers.ModelSerializer):
    customer_id = serializers.CharField(
        source="customer.external_id", allow_null=True, help_text="Null once erased."
    )
    store = serializers.CharField(source="store.code", allow_null=True)
    reason = serializers.SerializerMethodField(help_text="Why it was not sent; null if sent.")
    twilio_sid = serializers.SerializerMethodField()
    created_at = InstantField()
    sent_at = InstantField(allow_null=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "customer_id",
            "campaign",
            "store",
            "status",
            "reason",
            "code",
            "body",
            "twilio_sid",
            "error_code",
            "created_at",
            "sent_at",
        ]

    @extend_schema_field(serializers.ChoiceField(choices=DeliveryReason.choices, allow_null=True))
    def get_reason(self, delivery: Delivery) -> str | None:
        return delivery.reason or None

    def get_twilio_sid(self, delivery: Delivery) -> str | None:
        return delivery.twilio_sid or None


# Ids are PostgreSQL bigints (BigAutoField) and start at 1.
LARGEST_ID = 2**63 - 1


class IdFormField(forms.IntegerField):
    """A row id written as plain ASCII digits. Django's IntegerField also reads "1.0" as 1,
    and int() takes full-width and other Unicode digits."""

    def to_python(self, value: Any) -> int | None:
        if value in self.empty_values:
            return None
        text = str(value).strip()
        if not (text.isascii() and text.isdigit()):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return int(text)


class IdFilter(django_filters.NumberFilter):
    """A filter on a row id. NumberFilter reads a decimal: 1.5 would find id 1, and 1e19
    would reach the database as a number its integer column cannot hold (a 500)."""

    field_class = IdFormField

    def __init__(self, *, noun: str, **kwargs: Any) -> None:
        message = f"A {noun} id is a whole number from 1 to {LARGEST_ID}."
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", LARGEST_ID)
        kwargs.setdefault(
            "error_messages", {"invalid": message, "min_value": message, "max_value": message}
        )
        super().__init__(**kwargs)
        # Documented on the filter itself, with its noun: a schema set on the class (its
        # range) is all the schema gives a filter, with no description.
        schema = {"type": "integer", "minimum": 1, "maximum": LARGEST_ID}
        description = f"The {noun}'s id (the `id` its resource gives)."
        extend_schema_field({**schema, "description": description})(self)


# A time, then a space where its offset's sign was: "10:00:00 01:00".
PLUS_READ_AS_SPACE = re.compile(r"(\S+T[\d:.,]+) (\d\d(?::?\d\d)?)")


class InstantFormField(forms.Field):
    """An ISO 8601 instant that names its UTC offset, as the API's InstantField reads one.
    Django's datetime fields would read a time without one in the server's time zone.

    A query string reads '+' as a space, so an offset typed "+01:00" in a URL (curl, a
    browser, a link built by hand) arrives as " 01:00": that is the offset, not a time
    without one ('-' and 'Z' come through as typed)."""

    default_error_messages = {
        "invalid": "Expected an ISO 8601 time with a UTC offset, e.g. 2026-11-22T10:15:00Z.",
    }

    def to_python(self, value: Any) -> datetime | None:
        if value in self.empty_values:
            return None
        if isinstance(value, str) and (plus := PLUS_READ_AS_SPACE.fullmatch(value.strip())):
            value = "+".join(plus.groups())
        try:
            return InstantField().to_internal_value(value)
        except serializers.ValidationError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None


class InstantFilter(django_filters.IsoDateTimeFilter):
    """A filter on an instant (documented as a date-time), its UTC offset required."""

    field_class = InstantFormField


# An export pins its set with created_before (the page numbers then stay put while new
# deliveries are decided: the list is newest first) and carries on from there next time
# with created_after set to the same instant.
PIN_HELP = (
    " An instant with its UTC offset. To page through a fixed set while deliveries keep "
    "coming, pin created_before to a time a minute ago (a delivery being decided is dated "
    "when decided, and stored a moment later); the next export carries on with created_after "
    "set to that same time."
)


class DeliveryFilterForm(forms.Form):
    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        after, before = cleaned.get("created_after"), cleaned.get("created_before")
        # Swapped pins select nothing: an export would take the empty list for an answer.
        if after is not None and before is not None and before <= after:
            self.add_error(
                "created_before",
                "Must be after created_after: no delivery is decided at or after created_after "
                "and before this.",
            )
        return cleaned


class DeliveryFilter(django_filters.FilterSet):
    customer_id = django_filters.CharFilter(
        field_name="customer__external_id",
        max_length=EXTERNAL_ID_MAX_LENGTH,
        help_text="The customer's external id.",
    )
    campaign = IdFilter(field_name="campaign_id", noun="campaign")
    status = StatusFilter(choices=DeliveryStatus.choices)
    created_after = InstantFilter(
        field_name="created_at",
        lookup_expr="gte",
        help_text="Deliveries decided at or after this instant." + PIN_HELP,
    )
    created_before = InstantFilter(
        field_name="created_at",
        lookup_expr="lt",
        help_text="Deliveries decided before this instant (after created_after, given both)."
        + PIN_HELP,
    )

    class Meta:
        model = Delivery
        fields = ["customer_id", "campaign", "status", "created_after", "created_before"]
        form = DeliveryFilterForm


class DeliveryListView(generics.ListAPIView):
    required_scope = Scope.REPORTS
    serializer_class = DeliverySerializer
    filterset_class = DeliveryFilter
    pagination_class = KeysFirstPagination

    def get_queryset(self) -> Any:
        return selectors.list_deliveries()


# --- Campaign results and code pools ----------------------------------------------------


@extend_schema_field(
    {"type": "string", "format": "decimal", "pattern": r"^\d{0,12}(?:\.\d{0,2})?$"}
)
class RevenueField(serializers.DecimalField):
    """A total of amounts (AmountField): 0 or more, to the cent, with the 12 digits before
    the point that a sum of them may need (an amount has at most 10)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_digits=14, decimal_places=2, min_value=0, **kwargs)


class GroupSerializer(serializers.Serializer):
    customers = serializers.IntegerField()
    redeemed = serializers.IntegerField()
    rate = serializers.FloatField(allow_null=True, help_text="Redeemed / customers.")
    revenue = RevenueField()


class DecisionCountsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())
    by_reason = serializers.DictField(child=serializers.IntegerField())


class CampaignStatsSerializer(serializers.Serializer):
    campaign = serializers.IntegerField()
    presence_events_matched = serializers.IntegerField(
        help_text="Presence events the campaign was judged for, one decision each: those that "
        "triggered it and met its intent condition, but for those a campaign ranked before it "
        "texted the customer for, or held them out for (one SMS an event). A campaign ranked "
        "before it that could not send (a cap, quiet hours, its budget) leaves the event to the "
        "next, and both count it."
    )
    decisions = DecisionCountsSerializer()
    sent = serializers.IntegerField(help_text="Handed to the carrier: sent, then delivered or not.")
    delivered = serializers.IntegerField()
    failed = serializers.IntegerField()
    redeemed = serializers.IntegerField(help_text="Codes redeemed from SMS that went out.")
    treated = GroupSerializer()
    holdout = GroupSerializer()
    lift = serializers.FloatField(
        allow_null=True, help_text="(treated rate - holdout rate) / holdout rate."
    )
    revenue = RevenueField(help_text="Spent with codes from SMS that went out.")


class CampaignStatsView(APIView):
    required_scope = Scope.REPORTS

    @extend_schema(responses={200: CampaignStatsSerializer, 404: ErrorSerializer})
    def get(self, request: Request, pk: int) -> Response:
        campaign = Campaign.objects.filter(pk=pk).first()
        if campaign is None:
            raise NotFound("No such campaign.")
        return Response(selectors.get_campaign_stats(campaign=campaign))


MAX_POOL_UPLOAD = 10_000


class CodePoolSerializer(KnownFieldsOnly, serializers.Serializer):
    codes = serializers.ListField(
        child=serializers.CharField(max_length=feedback.MAX_CODE_LENGTH),
        min_length=1,
        max_length=MAX_POOL_UPLOAD,
    )


class CodePoolResultSerializer(serializers.Serializer):
    added = serializers.IntegerField()
    pool_size = serializers.IntegerField()
    unused = serializers.IntegerField()


class CampaignCodesView(APIView):
    """Upload codes the retailer's tills know; the campaign then draws from them."""

    required_scope = Scope.CONFIG

    @extend_schema(
        request=CodePoolSerializer,
        responses={
            201: CodePoolResultSerializer,
            400: BadRequest,
            404: ErrorSerializer,
            409: ErrorSerializer,
        },
        description=(
            "Codes already in the pool are skipped, so an upload can be sent again. 409 when "
            "other uploads kept committing codes while this one was checked: send it again."
        ),
    )
    def post(self, request: Request, pk: int) -> Response:
        campaign = Campaign.objects.filter(pk=pk).first()
        if campaign is None:
            raise NotFound("No such campaign.")
        body = CodePoolSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            added = feedback.add_pool_codes(campaign=campaign, codes=body.validated_data["codes"])
        except feedback.InvalidInputError as error:
            raise ValidationError({error.field: [str(error)]}) from None
        pool = OfferCode.objects.filter(campaign=campaign)
        return Response(
            {
                "added": added,
                "pool_size": pool.count(),
                "unused": pool.drawable().count(),
            },
            status=status.HTTP_201_CREATED,
        )
