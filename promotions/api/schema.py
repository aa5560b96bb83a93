"""The OpenAPI schema says what clients really get back, beyond what each view declares.

`AutoSchema` adds to each operation the errors the API's machinery can answer it with:
authentication and scopes, the ingest rate limit, the JSON body parser, filters (and the
query parameters a list refuses), pagination, object lookup and an unavailable database. A
view declares only its own errors (a 409, the 404 of a lookup it makes itself).

`require_response_fields` marks every field of a response component required: a response
always carries them, null included, and generated clients read an optional field as one they
must be ready to miss ("intent": null is not the same as no intent field).

`KnownFieldsOnlySchema` closes each request body the API checks field by field
(`additionalProperties: false`): a field it does not know is a 400, not dropped. A batch
item stays open, and says which other keys it refuses (those that look like a mock flag).

A config resource's answers carry its `ETag`, and its PUT, PATCH and DELETE take `If-Match`
and may answer 412 (ConditionalWrites): documented on every such operation here.

A PATCH body's nested objects are partial too (`PatchedOfferRequest`), as DRF reads them;
a BLE identity alone is given whole."""

import copy
from typing import Any

from django.conf import settings
from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import get_doc, is_serializer
from rest_framework.generics import GenericAPIView

from promotions.api.auth import HasScope
from promotions.api.batch import ErrorSerializer
from promotions.api.conditional import ConditionalWrites
from promotions.api.fields import AccuracyField, IntentWindowDaysField, KnownFieldsOnly
from promotions.api.identity import WholeIdentitySerializer
from promotions.api.parsers import ACCEPTED_ENCODINGS
from promotions.api.throttles import IngestRateThrottle
from promotions.models import Scope

INVALID_INPUT = {"type": "object", "additionalProperties": {}}
RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer"},
        "description": "Seconds to wait before retrying.",
    }
}

ETAG = {
    "ETag": {
        "schema": {"type": "string"},
        "description": (
            "The version of the resource this answer holds (a strong entity tag): send it back "
            "in If-Match to write only while the resource is unchanged."
        ),
    }
}
IF_MATCH = {
    "in": "header",
    "name": "If-Match",
    "required": False,
    "schema": {"type": "string"},
    "description": (
        'An ETag this API gave for the resource, quotes included ("..."), several separated '
        "by commas, or *: the request is done only while the resource still has one of those "
        "versions, a 412 otherwise. A weak tag (W/...) never matches. Without it, the request "
        "is done whatever changed since the copy it was made from was read."
    ),
}

ACCEPT_ENCODING = {
    "Accept-Encoding": {
        "schema": {"type": "string"},
        "description": f"The codings a body may be sent in: {ACCEPTED_ENCODINGS}.",
    }
}


class AutoSchema(openapi.AutoSchema):
    def get_operation(
        self,
        path: str,
        path_regex: str,
        path_prefix: str,
        method: str,
        registry: Any,
    ) -> dict[str, Any] | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation["responses"]
        for code, response in self._machinery_errors(has_body="requestBody" in operation).items():
            declared = responses.setdefault(code, response)
            declared["description"] = declared.get("description") or response["description"]
            if "headers" in response:
                declared.setdefault("headers", response["headers"])
        self._document_versions(operation)
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _document_versions(self, operation: dict[str, Any]) -> None:
        """The ETag of a config resource's answers, and the If-Match its writes take."""
        view = self.view
        if not isinstance(view, ConditionalWrites):
            return
        responses = operation["responses"]
        if view.action in view.answering_a_resource:
            for code, response in responses.items():
                if code.startswith("2"):
                    response.setdefault("headers", {}).update(ETAG)
        if view.action in view.writing_to_a_resource:
            operation.setdefault("parameters", []).append(IF_MATCH)
            responses["412"] = self._error(
                "If-Match names no current version of the resource (it changed since that "
                "copy was read, or the tag is weak or malformed): nothing was changed."
            )

    def _map_serializer_field(
        self, field: Any, direction: str, bypass_extensions: bool = False
    ) -> dict[str, Any]:
        # DRF skips a required field left out anywhere under a partial root, so a PATCH may
        # name part of a nested object ({"offer": {"valid_days": 3}}); drf-spectacular makes
        # only the root's component a Patched one. An identity is given whole even so.
        if (
            direction == "request"
            and self.method == "PATCH"
            and is_serializer(field)
            and not isinstance(field, WholeIdentitySerializer)
        ):
            field = copy.copy(field)
            field.partial = True
        return super()._map_serializer_field(field, direction, bypass_extensions)

    def _machinery_errors(self, *, has_body: bool) -> dict[str, dict[str, Any]]:
        view = self.view
        looks_up = self._looks_up_an_object()
        lists = self._lists_a_page()
        errors: dict[str, dict[str, Any]] = {}
        bad_input = []
        if has_body:
            bad_input.append("a malformed or invalid body")
        if getattr(view, "filterset_class", None) is not None and (looks_up or lists):
            # DRF filters the queryset an object is looked up in too, so a detail answers a
            # bad filter value as a list does.
            bad_input.append("a bad filter value")
        if lists:
            # KnownFiltersBackend
            bad_input.append(
                "a query parameter that names no filter or is given twice, or a page that is "
                "no page number"
            )
        if bad_input:
            errors["400"] = self._error(
                f"Invalid input ({' or '.join(bad_input)}): "
                '{"<field>": ["<message>", ...]} or {"detail": "<message>"}.',
                schema=INVALID_INPUT,
            )
        if any(isinstance(permission, HasScope) for permission in view.get_permissions()):
            errors["401"] = self._error("No API key, or an unknown or revoked one.")
            errors["403"] = self._error("The API key lacks the scope this operation needs.")
        not_found = []
        if looks_up:
            queryset = getattr(view, "queryset", None)
            thing = queryset.model._meta.verbose_name if queryset is not None else "object"
            not_found.append(f"No such {thing}.")
        if lists:
            not_found.append("No such page.")
        if not_found:
            errors["404"] = self._error(" ".join(not_found))
        if has_body:
            errors["411"] = self._error(
                "A chunked body without Content-Length, to a server that does not decode "
                "chunks itself (gunicorn does)."
            )
            errors["413"] = self._error("The body is over the size limit.")
            errors["415"] = self._error(
                f"A Content-Encoding other than {ACCEPTED_ENCODINGS}.",
                headers=ACCEPT_ENCODING,
            )
        if self._can_be_throttled():
            errors["429"] = self._error(
                "Over the API key's rate limit for this endpoint.", headers=RETRY_AFTER
            )
        # Every operation reads the database, if only to check the API key.
        errors["503"] = self._error(
            "The database is unavailable; retry after Retry-After seconds.", headers=RETRY_AFTER
        )
        return errors

    def _error(
        self,
        description: str,
        *,
        schema: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if schema is None:
            schema = self.resolve_serializer(ErrorSerializer, "response").ref
        response: dict[str, Any] = {
            "content": {"application/json": {"schema": schema}},
            "description": description,
        }
        if headers:
            response["headers"] = headers
        return response

    def _looks_up_an_object(self) -> bool:
        """Whether the operation finds its object by a path parameter with get_object()."""
        if not isinstance(self.view, GenericAPIView):
            return False
        kwarg = self.view.lookup_url_kwarg or self.view.lookup_field
        return f"(?P<{kwarg}>" in self.path_regex

    def _lists_a_page(self) -> bool:
        view = self.view
        return (
            self.method == "GET"
            and isinstance(view, GenericAPIView)
            and view.pagination_class is not None
            and not self._looks_up_an_object()
        )

    def _can_be_throttled(self) -> bool:
        for throttle in self.view.get_throttles():
            if not isinstance(throttle, IngestRateThrottle):
                return True
            # It counts only the views whose required scope is ingest (see its docstring).
            if getattr(self.view, "required_scope", None) == Scope.INGEST:
                return True
        return False


class AccuracyFieldSchema(OpenApiSerializerFieldExtension):
    """AccuracyField's bounds: above 0, and the configured limit, read as the schema is
    generated."""

    target_class = AccuracyField

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        return {
            **schema,
            "minimum": 0,
            "exclusiveMinimum": True,
            "maximum": settings.INGEST_MAX_ACCURACY_M,
        }


class IntentWindowDaysFieldSchema(OpenApiSerializerFieldExtension):
    """IntentWindowDaysField's maximum: INTENT_WINDOW_DAYS, read as the schema is generated."""

    target_class = IntentWindowDaysField

    def map_serializer_field(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        return {**schema, "maximum": settings.INTENT_WINDOW_DAYS}


class KnownFieldsOnlySchema(OpenApiSerializerExtension):
    """A request to a serializer with KnownFieldsOnly holds its fields and no others:
    `additionalProperties: false`. Its read-only fields, which a resource read and sent back
    carries, are taken and ignored, but not listed: drf-spectacular keeps read-only
    properties out of request components, and a client need never send them.

    A batch item, which ignores keys it does not know (`extra_keys_ignored`), takes other
    properties; its description says which it refuses. OpenAPI 3.0 has no way to say
    "no property whose name contains mock" (3.1's propertyNames would)."""

    target_class = KnownFieldsOnly
    match_subclasses = True

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if schema.get("description") == get_doc(KnownFieldsOnly):
            del schema["description"]  # the mixin's docstring, not the serializer's
        if direction != "request":
            return schema
        if not self.target.extra_keys_ignored:
            schema["additionalProperties"] = False
            return schema
        refused = (
            'Keys other than these are ignored, but for one whose name contains "mock" '
            "(is_mock, isFromMockProvider...): the item is then rejected, "
            f'"{self.target.mock_flag_message}"'
        )
        described = schema.get("description")
        schema["description"] = f"{described}\n\n{refused}" if described else refused
        return schema


# Fields a response leaves out: a trigger carries only the detail of its type (minutes for
# dwell, distance_m for near, zone for beacon_zone).
FIELDS_A_RESPONSE_MAY_LEAVE_OUT = {"Trigger": {"minutes", "distance_m", "zone"}}


def require_response_fields(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """Postprocessing hook: every property of a component that responses use is required,
    but for FIELDS_A_RESPONSE_MAY_LEAVE_OUT. Request components (COMPONENT_SPLIT_REQUEST
    keeps them apart) keep their own rules: a field a client may leave out stays optional."""
    schemas = result.get("components", {}).get("schemas", {})
    in_requests = _components_reached(
        [
            part
            for operation in _operations(result)
            for part in (operation.get("requestBody"), operation.get("parameters"))
        ],
        schemas,
    )
    in_responses = _components_reached(
        [operation.get("responses") for operation in _operations(result)], schemas
    )
    for name in in_responses - in_requests:
        component = schemas[name]
        if "properties" not in component:
            continue
        left_out = FIELDS_A_RESPONSE_MAY_LEAVE_OUT.get(name, set())
        component["required"] = sorted(set(component["properties"]) - left_out)
    return result


def _operations(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [operation for path in result.get("paths", {}).values() for operation in path.values()]


def _components_reached(roots: list[Any], schemas: dict[str, Any]) -> set[str]:
    """The names of the components that `roots` refer to, directly or through others."""
    reached: set[str] = set()
    pending = list(roots)
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[1]
                if name not in reached:
                    reached.add(name)
                    pending.append(schemas.get(name))
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return reached
