"""Conditional writes (RFC 9110, 13.1.1): a copy read before someone else's change does not
put back what it held.

A resource read, created or updated is answered with an `ETag`, a digest of the
representation in the answer. A PUT, PATCH or DELETE that sends it back in `If-Match` is done
only while the resource still has that representation; otherwise it is a 412 and writes
nothing. Without the condition a client that read a campaign, then sent its copy back with
one change, would set it live again had someone paused it meanwhile.

The condition is checked on the row the write has read under its lock (ConfigViewSet's
queryset): a change committed before is seen, one sent after waits for this write to
commit, so two writes sent with the same ETag cannot both pass. A write without `If-Match`
is done as before: the SPEC's clients send none."""

from collections.abc import Mapping
from typing import Any

from django.utils.http import parse_etags
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from promotions.digests import value_digest

# Sixteen bytes, where the admin's page carries six a field: a client may keep an ETag as long
# as it likes, and a stale copy passes only if its version and the current one share a digest.
ETAG_DIGEST_BYTES = 16


def entity_tag(representation: Mapping[str, Any]) -> str:
    """The strong ETag of a resource's representation, quoted as the header carries it."""
    return f'"{value_digest(representation, size=ETAG_DIGEST_BYTES)}"'


class PreconditionFailed(APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_code = "precondition_failed"


def check_if_match(if_match: str, current: str, *, thing: str) -> None:
    """Raise PreconditionFailed unless the If-Match header's value is `*` or lists the
    `current` ETag. The strong comparison a write's condition needs: a weak tag (`W/"..."`)
    never matches, nor does a malformed one."""
    tags = parse_etags(if_match)
    if tags == ["*"] or current in tags:
        return
    if not any(tag.startswith('"') for tag in tags):
        raise PreconditionFailed(
            "If-Match names no version of this resource: send the ETag it came with, as it "
            'came (quotes included; a weak W/"..." tag never matches a write), or *. Nothing '
            "was changed."
        )
    raise PreconditionFailed(
        f"This {thing} has changed since the copy If-Match names was read: nothing was "
        "changed. Read it again, and send the ETag it comes with."
    )


class ConditionalWrites(GenericViewSet):
    """A model viewset's answers carry their resource's ETag, and its writes to a resource
    honour If-Match. Its queryset for those writes must lock the row (select_for_update): the
    condition is checked on the row get_object() reads."""

    # The actions answered with one resource whole, and those that write to one.
    answering_a_resource = frozenset({"retrieve", "create", "update", "partial_update"})
    writing_to_a_resource = frozenset({"update", "partial_update", "destroy"})

    def get_object(self) -> Any:
        instance = super().get_object()
        if_match = self.request.headers.get("If-Match")
        if if_match is not None and self.action in self.writing_to_a_resource:
            current = entity_tag(self.get_serializer(instance).data)
            check_if_match(if_match, current, thing=instance._meta.verbose_name)
        return instance

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        if self.action in self.answering_a_resource and status.is_success(response.status_code):
            response["ETag"] = entity_tag(response.data)
        return super().finalize_response(request, response, *args, **kwargs)
