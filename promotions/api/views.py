from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import django_filters
from django import forms
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404
from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.exceptions import NotFound
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from promotions import dry_run, services, tasks
from promotions.api.batch import (
    BadRequest,
    BatchIngestView,
    ErrorSerializer,
    check_batch_size,
    documented_batch,
)
from promotions.api.conditional import ConditionalWrites
from promotions.api.filtering import StatusFilter
from promotions.api.identity import IdentityFilters
from promotions.api.parsers import PingBatchParser
from promotions.api.ping_batch import PingBatchIn, validate_ping_batch
from promotions.api.serializers import (
    BeaconSerializer,
    CampaignReplaceSerializer,
    CampaignSerializer,
    DryRunResultSerializer,
    DryRunSerializer,
    GatewaySerializer,
    GatewaySightingSerializer,
    PingSerializer,
    SightingSerializer,
    StoreSerializer,
    ZoneSerializer,
)
from promotions.ingest import IngestResult, ValidItems
from promotions.models import (
    Beacon,
    Campaign,
    CampaignStatus,
    Gateway,
    Scope,
    Store,
    Zone,
    code_validator,
    no_such_key,
    zone_id_hint,
)

# --- Configuration ----------------------------------------------------------------------


class ConfigViewSet(ConditionalWrites, viewsets.ModelViewSet):
    """Each write is one transaction, so that a failure part way (the database gone between a
    campaign's row and its stores' rows) leaves nothing behind: a campaign committed without
    its stores would run in every store, and a worker could read it in between.

    An update or a deletion reads its row under a lock, before validating: a PATCH writes
    back every column of the row it read, so a pause made meanwhile in the admin, or another
    PATCH validated against the same old state, would otherwise be undone."""

    required_scope = Scope.CONFIG

    def get_queryset(self) -> QuerySet:
        queryset = super().get_queryset()
        if self.action in ("update", "partial_update", "destroy"):
            # The row alone, read without the store or zone it joins for display: a write
            # waited on that moved it to another store or zone would make PostgreSQL drop
            # the joined row once it commits, a 404 for a row that is there.
            # If-Match is compared with this row (ConditionalWrites): the version written.
            # FOR NO KEY UPDATE: a row that others' inserts point at (a campaign's stores, a
            # delivery's store) is not waited on by them, so no deadlock with a campaign
            # write adding this store.
            return queryset.select_related(None).select_for_update(no_key=True, of=("self",))
        return queryset

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        with transaction.atomic():
            return super().create(request, *args, **kwargs)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        with transaction.atomic():  # partial_update too: it calls update
            return super().update(request, *args, **kwargs)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        with transaction.atomic():
            return super().destroy(request, *args, **kwargs)


class CodeKeyedViewSet(ConfigViewSet):
    """Objects addressed by a code that `code_validator` checked on the way in."""

    lookup_value_regex = "[^/]+"
    key_label = "code"  # what messages call the key

    def get_object(self) -> Any:
        # A key that is no valid code names nothing; sent to the database anyway, a NUL in it
        # would make PostgreSQL refuse the query.
        key = self.kwargs[self.lookup_field]
        try:
            code_validator(key)
        except DjangoValidationError:
            raise NotFound() from None
        try:
            return super().get_object()
        except Http404:
            model = self.queryset.model
            if model.objects.filter(**{self.lookup_field: key}).exists():
                raise  # there, but not among those the list's filters pick
            message = no_such_key(model, self.lookup_field, key, label=self.key_label)
            raise NotFound(message) from None


class IdKeyedViewSet(ConfigViewSet):
    """Objects addressed by their row id, which their resource shows as `id`."""

    # A key that is no id says so, rather than a bare "Not found." that reads as an object
    # deleted: a zone addressed by the code beacons and gateways name it by, a beacon by its
    # identity, a campaign by its name.
    def get_object(self) -> Any:
        key = self.kwargs[self.lookup_url_kwarg or self.lookup_field]
        if not (key.isascii() and key.isdigit()):
            noun = self.queryset.model._meta.verbose_name
            raise NotFound(
                f"A {noun} is addressed by its id, a whole number (the `id` the "
                f"{self.basename}s list gives){self.found_otherwise(key)}."
            )
        return super().get_object()

    def found_otherwise(self, key: str) -> str:
        """How to find what `key`, which is no id, may name: a clause, or "" for no way."""
        return ""


# Refused while a live campaign targets the store or watches the zone.
DESTROY_OR_CONFLICT = extend_schema_view(
    destroy=extend_schema(responses={204: None, 409: ErrorSerializer})
)


@DESTROY_OR_CONFLICT
class StoreViewSet(CodeKeyedViewSet):
    queryset = Store.objects.all()
    serializer_class = StoreSerializer
    lookup_field = "code"

    def perform_destroy(self, instance: Store) -> None:
        services.delete_stores(stores=[instance])


class PlaceFilter(django_filters.FilterSet):
    store = django_filters.CharFilter(field_name="store__code", help_text="Store code.")


class ZoneFilter(PlaceFilter):
    # How a zone named by its code, as beacons, gateways and triggers name it, is found.
    code = django_filters.CharFilter(
        help_text="Zone code (in every store, unless `store` is given)."
    )

    class Meta:
        model = Zone
        fields = ["store", "code"]


@DESTROY_OR_CONFLICT
class ZoneViewSet(IdKeyedViewSet):
    queryset = Zone.objects.select_related("store")
    serializer_class = ZoneSerializer
    filterset_class = ZoneFilter

    def found_otherwise(self, key: str) -> str:
        try:
            code_validator(key)
        except DjangoValidationError:
            return ""
        query = urlencode({"code": key})
        return (
            f", not by its code: {reverse('zone-list')}?{query} lists the zones of that code, "
            "with their ids"
        )

    def perform_destroy(self, instance: Zone) -> None:
        services.delete_zones(zones=[instance])


class ZoneCodeFormField(forms.CharField):
    def validate(self, value: str) -> None:
        super().validate(value)
        # A zone's id where its code belongs would select nothing: an empty list read as
        # "no beacons in this zone". Refused only when no zone has that code.
        hint = zone_id_hint(value)
        if hint and not Zone.objects.filter(code=value).exists():
            raise forms.ValidationError(f"No zone has the code '{value}'.{hint}")


class ZoneCodeFilter(django_filters.CharFilter):
    field_class = ZoneCodeFormField


class HeardPlaceFilter(PlaceFilter):
    """Beacons and gateways: both name their zone by its code, and are filtered by it alike."""

    zone = ZoneCodeFilter(
        field_name="zone__code", help_text="Zone code (in every store, unless `store` is given)."
    )


class BeaconFilter(HeardPlaceFilter, IdentityFilters):
    class Meta:
        model = Beacon
        fields = ["store", "zone", *IdentityFilters.base_filters]


class BeaconViewSet(IdKeyedViewSet):
    queryset = Beacon.objects.select_related("store", "zone")
    serializer_class = BeaconSerializer
    filterset_class = BeaconFilter

    def perform_destroy(self, instance: Beacon) -> None:
        services.delete_heard_places(model=Beacon, ids=[instance.pk])


class GatewayFilter(HeardPlaceFilter):
    class Meta:
        model = Gateway
        fields = ["store", "zone"]


class GatewayViewSet(CodeKeyedViewSet):
    queryset = Gateway.objects.select_related("store", "zone")
    serializer_class = GatewaySerializer
    filterset_class = GatewayFilter
    lookup_field = "gateway_id"
    key_label = "id"

    def perform_destroy(self, instance: Gateway) -> None:
        services.delete_heard_places(model=Gateway, ids=[instance.pk])


class CampaignFilter(django_filters.FilterSet):
    status = StatusFilter(choices=CampaignStatus.choices)

    class Meta:
        model = Campaign
        fields = ["status"]


@extend_schema_view(
    destroy=extend_schema(
        responses={204: None, 409: ErrorSerializer},
        description="409 once the campaign has made decisions: end it instead.",
    ),
    update=extend_schema(
        request=CampaignReplaceSerializer,
        description="The campaign given whole: what the body leaves out is as a create sets "
        "it, but for the status, start, end, stores, intent and limits, which it must send "
        "(null, [] or {} for none or every store): one left out is a 400 naming it.",
    ),
)
class CampaignViewSet(IdKeyedViewSet):
    queryset = Campaign.objects.prefetch_related("stores")
    serializer_class = CampaignSerializer
    filterset_class = CampaignFilter

    def perform_destroy(self, instance: Campaign) -> None:
        services.delete_campaigns(campaigns=[instance])


class CampaignDryRunView(APIView):
    """What a campaign would have sent over stored presence history; sends nothing."""

    required_scope = Scope.REPORTS

    @extend_schema(
        request=DryRunSerializer,
        responses={200: DryRunResultSerializer, 400: BadRequest, 404: ErrorSerializer},
    )
    def post(self, request: Request, pk: int) -> Response:
        campaign = get_object_or_404(Campaign.objects.prefetch_related("stores"), pk=pk)
        body = DryRunSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = dry_run.dry_run_campaign(campaign=campaign, **body.validated_data)
        return Response(DryRunResultSerializer(result).data)


# --- Location data ----------------------------------------------------------------------


@documented_batch
class PingBatchView(BatchIngestView):
    items_key = "pings"
    item_serializer = PingSerializer
    parser_classes = [PingBatchParser]

    def validate(self, data: Any, now: datetime) -> tuple[ValidItems, IngestResult]:
        if isinstance(data, PingBatchIn):
            check_batch_size(data.pings, self.items_key)
            return validate_ping_batch(data.pings, now)
        return super().validate(data, now)

    def store(self, valid: ValidItems, result: IngestResult, **kwargs: Any) -> None:
        tasks.enqueue_location_batch(
            services.record_pings(items=valid, result=result, now=kwargs["now"])
        )


@documented_batch
class SightingBatchView(BatchIngestView):
    items_key = "sightings"
    item_serializer = SightingSerializer

    def store(self, valid: ValidItems, result: IngestResult, **kwargs: Any) -> None:
        tasks.enqueue_location_batch(
            services.record_app_sightings(items=valid, result=result, now=kwargs["now"])
        )


@documented_batch
class GatewaySightingBatchView(BatchIngestView):
    items_key = "sightings"
    item_serializer = GatewaySightingSerializer

    def store(self, valid: ValidItems, result: IngestResult, **kwargs: Any) -> None:
        tasks.enqueue_location_batch(
            services.record_gateway_sightings(
                gateway_id=kwargs["gateway_id"], items=valid, result=result, now=kwargs["now"]
            )
        )
