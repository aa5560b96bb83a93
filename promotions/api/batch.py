"""The batch ingest contract: an envelope of up to INGEST_MAX_BATCH items, each validated
alone, answered 202 with `{accepted, duplicates, rejected: [{index, errors}]}`."""

from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from promotions.api.parsers import RequestTooLarge
from promotions.api.serializers import ItemJudge
from promotions.ingest import IngestResult, ValidItems
from promotions.models import Scope


def batch_items(data: Any, key: str) -> list[Any]:
    """The list under `key`, or a 400/413 that stores nothing."""
    if not isinstance(data, dict):
        raise ParseError(f"Body must be a JSON object with a '{key}' list.")
    items = data.get(key)
    if not isinstance(items, list):
        raise ParseError(f"Body must be a JSON object with a '{key}' list.")
    check_batch_size(items, key)
    return items


def check_batch_size(items: list[Any], key: str) -> None:
    if len(items) > settings.INGEST_MAX_BATCH:
        raise RequestTooLarge(
            f"{len(items)} {key} in one request; the limit is {settings.INGEST_MAX_BATCH}."
        )


def validate_items(
    items: list[Any], serializer_class: type[serializers.Serializer], context: dict[str, Any]
) -> tuple[ValidItems, IngestResult]:
    valid: ValidItems = []
    result = IngestResult()
    judge = ItemJudge(serializer_class, context)
    for index, item in enumerate(items):
        values, errors = judge(item)
        if errors is None:
            valid.append((index, values))
        else:
            result.reject(index, errors)
    return valid, result


BatchResultSerializer = inline_serializer(
    "BatchResult",
    {
        "accepted": serializers.IntegerField(),
        "duplicates": serializers.IntegerField(),
        "rejected": inline_serializer(
            "RejectedItem",
            {"index": serializers.IntegerField(), "errors": serializers.DictField()},
            many=True,
        ),
    },
)


class BatchIngestView(APIView):
    """POST `{<items_key>: [...]}`; subclasses say how to store the valid items."""

    required_scope = Scope.INGEST
    items_key: str
    item_serializer: type[serializers.Serializer]

    def store(self, valid: ValidItems, result: IngestResult, **kwargs: Any) -> None:
        raise NotImplementedError

    def validate(self, data: Any, now: datetime) -> tuple[ValidItems, IngestResult]:
        items = batch_items(data, self.items_key)
        return validate_items(items, self.item_serializer, {"now": now})

    def post(self, request: Request, **kwargs: Any) -> Response:
        # One clock reading per batch, so every item is judged against the same "now".
        now = timezone.now()
        valid, result = self.validate(request.data, now)
        self.store(valid, result, now=now, **kwargs)
        return Response(result.as_response(), status=status.HTTP_202_ACCEPTED)


ErrorSerializer = inline_serializer("Error", {"detail": serializers.CharField()})
# A 400 names each invalid field with its messages ({"phone": ["..."]}), or says what is
# wrong with the body as a whole ({"detail": "..."}).
BadRequest = OpenApiResponse(
    response=OpenApiTypes.OBJECT,
    description='Invalid input: {"<field>": ["<message>", ...]} or {"detail": "<message>"}.',
)


def documented_batch(view_class: type[BatchIngestView]) -> type[BatchIngestView]:
    """Class decorator: describe a batch view's POST in the OpenAPI schema."""
    envelope = inline_serializer(
        f"{view_class.__name__.removesuffix('View')}Body",
        {view_class.items_key: view_class.item_serializer(many=True)},
    )
    described = extend_schema(
        request=envelope,
        responses={
            202: BatchResultSerializer,
            400: BadRequest,
        },
        description=(
            f"Up to {settings.INGEST_MAX_BATCH} {view_class.items_key} a request. Valid items "
            "are stored before the answer; invalid ones are listed by index with their "
            "errors; duplicates are counted and not stored twice."
        ),
    )
    return extend_schema_view(post=described)(view_class)
