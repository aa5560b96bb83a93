from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from customers import services
from customers.api.serializers import (
    BrowsingEventSerializer,
    CustomerExportSerializer,
    CustomerInputSerializer,
    CustomerSerializer,
    DeviceInputSerializer,
    DeviceSerializer,
    IdentifiedSerializer,
    IdentifySerializer,
)
from customers.models import (
    EXTERNAL_ID_MAX_LENGTH,
    Customer,
    validate_external_id,
    validate_external_id_lookup,
)
from customers.selectors import get_customer_export
from promotions.api.batch import BadRequest, BatchIngestView, ErrorSerializer, documented_batch
from promotions.ingest import IngestResult, ValidItems
from promotions.models import Scope

# The route's converter lets an id span path segments (customers.api.urls); to a client
# it is one string, percent-encoded as any other path parameter. Stated here, the schema
# does not carry the converter's regex as a pattern.
EXTERNAL_ID = OpenApiParameter("external_id", OpenApiTypes.STR, OpenApiParameter.PATH)


def _customer_or_404(external_id: str) -> Customer:
    # An id no customer can have names none, and is not sent to the database: PostgreSQL
    # refuses a query with a NUL in it (a 400 there, where SQLite would answer 404). An id
    # with whitespace around it is looked up: one stored before such ids were refused can
    # still be read, exported and erased.
    try:
        validate_external_id_lookup(external_id)
        return Customer.objects.get(external_id=external_id)
    except (DjangoValidationError, Customer.DoesNotExist):
        raise NotFound("No such customer.") from None


def _customer_or_400(external_id: str) -> Customer:
    customer = Customer.objects.filter(external_id=external_id).first()
    if customer is None:
        raise _unknown_customer(external_id)
    return customer


def _unknown_customer(external_id: str) -> serializers.ValidationError:
    return serializers.ValidationError(services.unknown_customer_errors(external_id))


class CustomerView(APIView):
    required_scope = Scope.CUSTOMERS

    @extend_schema(
        parameters=[EXTERNAL_ID], responses={200: CustomerSerializer, 404: ErrorSerializer}
    )
    def get(self, request: Request, external_id: str) -> Response:
        return Response(CustomerSerializer(_customer_or_404(external_id)).data)

    @extend_schema(
        parameters=[EXTERNAL_ID],
        request=CustomerInputSerializer,
        responses={
            200: CustomerSerializer,
            201: CustomerSerializer,
            400: BadRequest,
            409: ErrorSerializer,
        },
        description=(
            "Create (201) or update (200) the customer; fields left out are kept. 400 on "
            f"`external_id` for an id over {EXTERNAL_ID_MAX_LENGTH} characters, holding a "
            "control character or a `/`, blank, or with whitespace at either end. 409, and "
            "nothing of the request stored, for `sms_consent: opted_in` when the number the "
            "customer is to have opted out by replying to an SMS (STOP, ARRET, BAJA...): "
            "only a START from that number opts it back in; a new number is opted in with "
            "its own consent."
        ),
    )
    def put(self, request: Request, external_id: str) -> Response:
        try:
            validate_external_id(external_id)
        except DjangoValidationError as error:
            raise serializers.ValidationError({"external_id": error.messages}) from None
        stored = Customer.objects.filter(external_id=external_id).first()
        serializer = CustomerInputSerializer(data=request.data, context={"customer": stored})
        serializer.is_valid(raise_exception=True)
        customer, created = services.upsert_customer(
            external_id=external_id, values=serializer.validated_data
        )
        return Response(
            CustomerSerializer(customer).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        parameters=[EXTERNAL_ID],
        responses={204: None, 404: ErrorSerializer},
        description=(
            "Erase the customer: personal data, location history and intent. A number that "
            "opted out by replying to an SMS stays on a suppression list, as a keyed hash, "
            "until it replies START: a customer stored again with it is refused `opted_in`."
        ),
    )
    def delete(self, request: Request, external_id: str) -> Response:
        services.erase_customer(customer=_customer_or_404(external_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class CustomerExportView(APIView):
    required_scope = Scope.CUSTOMERS

    @extend_schema(
        parameters=[EXTERNAL_ID],
        responses={
            200: OpenApiResponse(
                CustomerExportSerializer, description="Everything held about the customer."
            ),
            404: ErrorSerializer,
        },
    )
    def get(self, request: Request, external_id: str) -> Response:
        return Response(get_customer_export(_customer_or_404(external_id)))


class DeviceView(APIView):
    required_scope = Scope.INGEST

    @extend_schema(
        request=DeviceInputSerializer,
        responses={
            200: DeviceSerializer,
            201: DeviceSerializer,
            400: BadRequest,
            409: ErrorSerializer,
        },
        description=(
            "Link a device to a customer: 201 when new, 200 when updated. A platform or "
            "identity left out keeps its stored value; an identity sent as null is removed. "
            "409 for a BLE identity another device or a store beacon advertises."
        ),
    )
    def post(self, request: Request) -> Response:
        serializer = DeviceInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        try:
            device, created = services.register_device(
                device_id=values["device_id"],
                customer=_customer_or_400(values["customer_id"]),
                platform=values.get("platform", services.KEEP),
                ble_identity=values.get("ble_identity", services.KEEP),
            )
        except Customer.DoesNotExist:  # erased while this request waited for it
            raise _unknown_customer(values["customer_id"]) from None
        return Response(
            DeviceSerializer(device).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class IdentifyView(APIView):
    required_scope = Scope.INGEST

    @extend_schema(
        request=IdentifySerializer,
        responses={200: IdentifiedSerializer, 400: BadRequest, 409: ErrorSerializer},
        description="Link a web visitor to a customer; its past and future events count "
        "as the customer's.",
    )
    def post(self, request: Request) -> Response:
        serializer = IdentifySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        customer = _customer_or_400(values["customer_id"])
        try:
            _, attributed = services.identify_visitor(
                visitor_id=values["visitor_id"], customer=customer
            )
        except Customer.DoesNotExist:  # erased while this request waited for it
            raise _unknown_customer(values["customer_id"]) from None
        return Response(
            {
                "visitor_id": values["visitor_id"],
                "customer_id": customer.external_id,
                "events_attributed": attributed,
            }
        )


@documented_batch
class EventBatchView(BatchIngestView):
    items_key = "events"
    item_serializer = BrowsingEventSerializer

    def store(self, valid: ValidItems, result: IngestResult, **kwargs: Any) -> None:
        services.record_browsing_events(items=valid, result=result, now=kwargs["now"])
