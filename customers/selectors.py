"""Reads about customers that are more than a lookup."""

from datetime import UTC, datetime
from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import Model, Q, QuerySet

from customers.models import (
    CartIntent,
    Customer,
    Device,
    OptedOutNumber,
    RepliedStartNumber,
    Visitor,
    opted_out_number_keys,
)
from promotions.beacons import identity_of_stored_key
from promotions.models import DeviceTrack, Ping, Redemption, Sighting

# Related rows are named as the rest of the API names them: a store by its code, a device
# by its device_id, not by the ORM's lookups (store__code).
API_NAMES = {
    "device__device_id": "device_id",
    "store__code": "store",
    "zone__code": "zone",
    "campaign_id": "campaign",
    "campaign__name": "campaign_name",
    "delivery__code": "code",
    "gateway__gateway_id": "gateway",
    "visitor__visitor_id": "visitor_id",
}
# What an intent row holds, for a product or a category.
INTENT_FIELDS = (
    "view_times",
    "last_seen_at",
    "cart_state",
    "cart_updated_at",
    "score",
    "score_at",
)


# The rows of a customer's that the admin's history names, and the field the API names each
# by.
ADMIN_HISTORY_OBJECTS: dict[type[Model], str] = {
    Customer: "external_id",
    Device: "device_id",
    Visitor: "visitor_id",
}
ADMIN_ACTIONS = {ADDITION: "added", CHANGE: "changed", DELETION: "deleted"}


def _named(rows: Any) -> list[dict[str, Any]]:
    return [{API_NAMES.get(name, name): value for name, value in row.items()} for row in rows]


def opted_out_number(*, phone: str) -> OptedOutNumber | None:
    """The number's opt-out by reply, while it stands."""
    if not phone:
        return None
    keys = opted_out_number_keys(phone)
    return OptedOutNumber.objects.filter(number_key__in=keys).order_by("-opted_out_at").first()


def replied_start_at(*, phone: str) -> datetime | None:
    """When the number last replied START, whatever that changed; None if it never has."""
    if not phone:
        return None
    keys = opted_out_number_keys(phone)
    return (
        RepliedStartNumber.objects.filter(number_key__in=keys)
        .order_by("-replied_at")
        .values_list("replied_at", flat=True)
        .first()
    )


def get_customer_export(customer: Customer) -> dict[str, Any]:
    """Everything held about a customer, for a data-subject access request."""
    devices = list(customer.devices.order_by("created_at"))
    device_ids = [device.pk for device in devices]
    number = opted_out_number(phone=customer.phone)
    return {
        "customer": {
            "external_id": customer.external_id,
            "phone": customer.phone,
            "first_name": customer.first_name,
            "timezone": customer.timezone,
            "locale": customer.locale,
            "sms_consent": customer.sms_consent,
            "consent_source": customer.consent_source,
            "consent_updated_at": customer.consent_updated_at,
            "created_at": customer.created_at,
            "updated_at": customer.updated_at,
        },
        "consent_log": list(
            customer.consent_log.values(
                "previous", "consent", "source", "note", "changed_at", "by_reply"
            )
        ),
        # Kept for the number, not the customer (it outlives their erasure), and what
        # refuses their opt-in through the API until the number replies START.
        "opted_out_number": {"opted_out_at": number.opted_out_at, "source": number.source}
        if number is not None
        else None,
        # Kept for the number too: what outdates a 21610 for an SMS sent before it.
        "number_replied_start_at": replied_start_at(phone=customer.phone),
        "devices": [
            {
                "device_id": device.device_id,
                "platform": device.platform,
                "ble_identity": _stored_identity(device.ble_identity),
                "owner_since": device.owner_since,
                "created_at": device.created_at,
                "updated_at": device.updated_at,
            }
            for device in devices
        ],
        "visitors": list(
            customer.visitors.order_by("created_at").values(
                "visitor_id", "identified_at", "created_at"
            )
        ),
        "browsing_events": _named(
            customer.events.order_by("occurred_at").values(
                "event_id",
                "visitor__visitor_id",
                "type",
                "sku",
                "product_name",
                "category",
                "url",
                "occurred_at",
                "received_at",
            )
        ),
        "product_intent": [
            _with_view_instants(row)
            for row in customer.productintent_set.order_by("sku").values(
                "sku", "category", "categorised_at", "categories", *INTENT_FIELDS
            )
        ],
        "category_intent": [
            _with_view_instants(row)
            for row in customer.categoryintent_set.order_by("category").values(
                "category", *INTENT_FIELDS
            )
        ],
        # One row at most; it counts no views.
        "cart_intent": CartIntent.objects.filter(customer=customer)
        .values(*(name for name in INTENT_FIELDS if name != "view_times"))
        .first(),
        "pings": _named(
            Ping.objects.filter(device_id__in=device_ids)
            .order_by("recorded_at")
            .values(
                "id",
                "device__device_id",
                "ping_id",
                "latitude",
                "longitude",
                "accuracy",
                "speed",
                "mocked",
                "suspicious",
                "recorded_at",
                "received_at",
            )
        ),
        "device_tracks": _named(
            DeviceTrack.objects.filter(device_id__in=device_ids)
            .order_by("device__device_id")
            .values(
                "device__device_id",
                "latitude",
                "longitude",
                "accuracy",
                "at",
                "jump_latitude",
                "jump_longitude",
                "jump_accuracy",
                "jump_at",
            )
        ),
        "presence": _named(
            customer.presences.order_by("place_key").values(
                "store__code", "zone__code", "place_key", "inside", "state", "updated_at"
            )
        ),
        "presence_events": _named(
            customer.presence_events.order_by("occurred_at", "id").values(
                "id",
                "kind",
                "place_key",
                "store__code",
                "zone__code",
                "minutes",
                "distance_m",
                "occurred_at",
                "ping",
                "sighting",
                "evidence",
                "created_at",
            )
        ),
        "deliveries": _named(
            customer.deliveries.order_by("created_at").values(
                "id",
                "campaign_id",
                "campaign__name",
                "presence_event",
                "store__code",
                "status",
                "reason",
                "to",
                "body",
                "encoding",
                "segments",
                "code",
                "expires_at",
                "product_sku",
                "intent_score",
                "trace",
                "twilio_sid",
                "error_code",
                "error_message",
                "attempts",
                "created_at",
                "sent_at",
                "status_updated_at",
            )
        ),
        "redemptions": [
            # Money as text, as the redemptions API writes it: no float rounding.
            {**row, "amount": None if row["amount"] is None else str(row["amount"])}
            for row in _named(
                Redemption.objects.filter(delivery__customer=customer)
                .order_by("redeemed_at")
                .values("delivery__code", "store__code", "amount", "redeemed_at", "created_at")
            )
        ],
        "sightings": [
            _with_beacon_identity(row)
            for row in _named(
                Sighting.objects.filter(device_id__in=device_ids)
                .order_by("seen_at")
                .values(
                    "id",
                    "device__device_id",
                    "source",
                    "store__code",
                    "zone__code",
                    "beacon__identity",
                    "gateway__gateway_id",
                    "rssi",
                    "mac",
                    "seen_at",
                    "received_at",
                )
            )
        ],
        "admin_history": _admin_history_export(customer),
    }


def get_admin_history(customer: Customer) -> QuerySet[LogEntry]:
    """The admin's history of changes to the customer, their devices and their browsers
    (django.contrib.admin's LogEntry): what their export gives, and what erasing them
    removes as theirs."""
    return _admin_history(_admin_history_objects(customer))


def _admin_history_objects(customer: Customer) -> dict[tuple[int, str], tuple[str, str]]:
    """The customer's rows as the admin's history keys them, (content type id, object_id as
    text), each with its type and the id the API names it by. A device or browser now
    another customer's is theirs, and so is its history."""
    objects = {}
    for model, api_id in ADMIN_HISTORY_OBJECTS.items():
        content_type = ContentType.objects.get_for_model(model)
        rows = (
            [(customer.pk, customer.external_id)]
            if model is Customer
            else model.objects.filter(customer=customer).values_list("pk", api_id)
        )
        for pk, name in rows:
            objects[(content_type.pk, str(pk))] = (model._meta.model_name, name)
    return objects


def _admin_history(objects: dict[tuple[int, str], tuple[str, str]]) -> QuerySet[LogEntry]:
    object_ids: dict[int, list[str]] = {}
    for content_type_id, object_id in objects:
        object_ids.setdefault(content_type_id, []).append(object_id)
    named = Q()
    for content_type_id, ids in object_ids.items():
        named |= Q(content_type_id=content_type_id, object_id__in=ids)
    return LogEntry.objects.filter(named)


def _admin_history_export(customer: Customer) -> list[dict[str, Any]]:
    objects = _admin_history_objects(customer)
    entries = _admin_history(objects).select_related("user").order_by("action_time", "pk")
    return [
        {
            "action_time": entry.action_time,
            "action": ADMIN_ACTIONS[entry.action_flag],
            "object_type": objects[(entry.content_type_id, entry.object_id)][0],
            "object_id": objects[(entry.content_type_id, entry.object_id)][1],
            "object_repr": entry.object_repr,
            # The admin's own wording ("Changed First name."), as its history page shows it.
            "change_message": entry.get_change_message(),
            "user": entry.user.get_username(),
        }
        for entry in entries
    ]


def _with_beacon_identity(row: dict[str, Any]) -> dict[str, Any]:
    # The beacon an app ranged, named as the API names beacons: by its identity.
    key = row.pop("beacon__identity")
    return {**row, "beacon": _stored_identity(key)}


def _stored_identity(key: str | None) -> dict[str, Any] | None:
    """A stored BLE identity as the API names it, or, left as typed and naming none (see
    identity_of_stored_key), as it is stored: the export holds what is held."""
    if not key:
        return None
    return identity_of_stored_key(key) or {"stored_as": key}


def _with_view_instants(row: dict[str, Any]) -> dict[str, Any]:
    # Intent keeps view times as epoch seconds, for matching; the API writes times as ISO 8601.
    return {
        **row,
        "view_times": [datetime.fromtimestamp(at, tz=UTC) for at in row["view_times"]],
    }
