"""Writes for people, devices, consent and browsing. Views and tasks call these; they hold
the rules, and take keyword arguments so that call sites read as sentences."""

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone

from customers import intent
from customers.models import (
    BrowsingEvent,
    CartIntent,
    CategoryIntent,
    ConsentChange,
    Customer,
    Device,
    OptedOutNumber,
    Product,
    ProductIntent,
    RepliedStartNumber,
    SmsConsent,
    Visitor,
    opted_out_number_keys,
)
from customers.selectors import get_admin_history, opted_out_number, replied_start_at
from promotions import sms, tracking
from promotions.ingest import (
    IngestResult,
    ValidItems,
    delete_location_history,
    hold_devices_from_ingest,
    insert_new_rows,
)
from promotions.models import Delivery, DeviceTrack
from promotions.times import format_instant_for_api


class ConflictError(Exception):
    """The request contradicts what is stored; the message says how. The API answers 409."""


# --- Customers and consent --------------------------------------------------------------


def set_sms_consent(
    *,
    customer: Customer,
    consent: str,
    source: str,
    note: str = "",
    at: datetime | None = None,
    reply_from: str = "",
) -> bool:
    """Change the customer's consent and log it; returns False when it was already so.
    `reply_from`: the number whose own reply to our SMS said so (logged `by_reply`, with the
    number's key). The caller saves the customer."""
    if consent == customer.sms_consent:
        return False
    at = at or timezone.now()
    ConsentChange.objects.create(
        customer=customer,
        previous=customer.sms_consent,
        consent=consent,
        source=source,
        note=note,
        changed_at=at,
        by_reply=bool(reply_from),
        reply_number_key=opted_out_number_keys(reply_from)[0] if reply_from else None,
    )
    customer.sms_consent = consent
    customer.consent_source = source
    customer.consent_updated_at = at
    return True


def upsert_customer(*, external_id: str, values: dict[str, Any]) -> tuple[Customer, bool]:
    """Create or update a customer from the fields present in `values`; fields left out
    keep their value. Returns (customer, created)."""
    with transaction.atomic():
        if values.get("phone"):
            # Before the customer's row, as feedback takes them: a reply from the number in
            # flight commits first and is seen below, or sees this customer at it.
            lock_number(phone=values["phone"])
        customer = Customer.objects.select_for_update().filter(external_id=external_id).first()
        created = customer is None
        if created:
            try:
                with transaction.atomic():
                    customer = Customer.objects.create(external_id=external_id)
            except IntegrityError:  # created by a concurrent request: update it instead
                customer = Customer.objects.select_for_update().get(external_id=external_id)
                created = False
        if values.get("sms_consent") == SmsConsent.OPTED_IN:
            # Read with the row locked, as feedback records replies: one in flight commits
            # first and is seen here. Before anything is applied: a refusal stores nothing.
            phone = (values["phone"] or "") if "phone" in values else customer.phone
            _refuse_opt_in_over_reply(customer=customer, phone=phone)
        _apply_customer_values(customer, values, created=created)
        customer.save()
    return customer, created


def _refuse_opt_in_over_reply(*, customer: Customer, phone: str) -> None:
    """Raise ConflictError when the number the customer is to have (`phone`) opted out by
    replying to our SMS and has not replied START since, whether the customer replied from
    it or anyone did: only that number's reply can lift it, and a source that still holds
    the old consent (a CRM's sync, a duplicate record, a re-import, the person stored again
    after their erasure) would have it texted again, under Passage's own stop words (ARRET,
    BAJA...) and from a new sender where Twilio does not block it either. A STOP from a
    number the customer gives up holds no other: consent is given for a number, and a new
    one has its own. An opt-out stated through the API stays the API's to lift. Read from
    the consent log and the opted-out numbers, so that stating unknown or opted_out first
    opens no way around it."""
    opted_out_at = [_reply_opt_out_at(customer, phone=phone)]
    number = opted_out_number(phone=phone)
    if number is not None:
        opted_out_at.append(number.opted_out_at)
    latest = max((at for at in opted_out_at if at is not None), default=None)
    if latest is not None:
        raise ConflictError(
            "This number opted out by replying to an SMS on "
            f"{format_instant_for_api(latest)}; only its own reply (START, sent from this "
            "number) opts it back in."
        )


def _reply_opt_out_at(customer: Customer, *, phone: str) -> datetime | None:
    """When the customer opted out by a reply from `phone`, if no reply of theirs from it
    opted them in since."""
    last_reply = (
        ConsentChange.objects.filter(
            _replied_from(phone),
            customer=customer,
            consent__in=[SmsConsent.OPTED_IN, SmsConsent.OPTED_OUT],
        )
        .order_by("-changed_at", "-id")
        .first()
    )
    if last_reply is not None and last_reply.consent == SmsConsent.OPTED_OUT:
        return last_reply.changed_at
    return None


def _replied_from(phone: str) -> models.Q:
    """The consent log's replies from `phone`: a STOP or START it sent us, or Twilio's 21610
    (it replied STOP to that sender), as promotions.feedback logs them. One logged without
    its number (none is since migration 0011) is taken as from its customer's current one."""
    keys = opted_out_number_keys(phone) if phone else []
    return models.Q(by_reply=True) & (
        models.Q(reply_number_key__in=keys) | models.Q(reply_number_key=None, customer__phone=phone)
    )


def _apply_customer_values(customer: Customer, values: dict[str, Any], *, created: bool) -> None:
    source = values.get("consent_source") or "api"
    old_phone = customer.phone
    for name in ("phone", "first_name", "timezone", "locale"):
        if name in values:
            setattr(customer, name, values[name] or "")
    # Consent was given for the old number, even when the request states it again: then
    # the log says the number changed, and that consent was given for the new one, there.
    forget_consent_of_old_phone(customer=customer, old_phone=old_phone, source=source)
    if "sms_consent" in values:
        set_sms_consent(customer=customer, consent=values["sms_consent"], source=source)
    if created and values.get("consent_source"):
        # A new customer's consent ("unknown" too) was stated there, though it changed
        # nothing for set_sms_consent to record.
        customer.consent_source = values["consent_source"]


# What only the customer's own word (a reply, the API) changes: a page's copy of it is stale.
CONSENT_FIELDS = ("sms_consent", "consent_source", "consent_updated_at")


def save_customer_edit(*, customer: Customer, source: str) -> bool:
    """Save an edit of a customer's details made on a copy read earlier (the admin's page,
    read at the start of its request), as upsert_customer saves one: the number, then the
    row, locked first, and the consent as committed kept. A STOP or START replied while the
    copy was edited is neither undone nor, for a new number, missed. A new number forgets
    the consent given for the number stored. False, and nothing saved, when the customer was
    erased meanwhile: saved, the copy would bring them back."""
    with transaction.atomic():
        if customer.phone:
            lock_number(phone=customer.phone)
        stored = (
            Customer.objects.select_for_update()
            .filter(pk=customer.pk)
            .values("phone", *CONSENT_FIELDS)
            .first()
        )
        if stored is None:
            return False
        for name in CONSENT_FIELDS:
            setattr(customer, name, stored[name])
        forget_consent_of_old_phone(customer=customer, old_phone=stored["phone"], source=source)
        customer.save()
    return True


def forget_consent_of_old_phone(*, customer: Customer, old_phone: str, source: str) -> None:
    """After a change of phone number: consent was given for the old number, and its new
    owner may not have given it; a number that opted out by reply has refused it, and no one
    stands opted in at it. The caller saves the customer."""
    if customer.phone == old_phone or customer.sms_consent != SmsConsent.OPTED_IN:
        return
    number = opted_out_number(phone=customer.phone)
    if number is not None:
        set_sms_consent(
            customer=customer,
            consent=SmsConsent.OPTED_OUT,
            source=source,
            note="This number opted out by replying to an SMS on "
            f"{format_instant_for_api(number.opted_out_at)}; only its own reply (START) opts "
            "it back in.",
        )
    elif old_phone:
        set_sms_consent(
            customer=customer,
            consent=SmsConsent.UNKNOWN,
            source=source,
            note="Phone number changed; consent must be given again.",
        )


def erase_customer(*, customer: Customer) -> None:
    """Remove the customer's personal data, location history and intent, the admin's
    history of changes to them, and what the SMS backend keeps of their messages (the
    `file` backend's lines). Their deliveries stay, anonymised, so campaign results
    still add up; so does their number's opt-out by reply, if any (OptedOutNumber): a keyed
    hash of the number, kept so that no later record of it is texted before it replies
    START; and when it last replied START (RepliedStartNumber), which outdates a 21610 for
    an SMS another record at the number was sent before it."""
    with transaction.atomic():
        # Event ingest locks a batch's visitors, then its customers (_hold_customers):
        # taken in that order here, a batch storing what this customer's browser sent
        # commits first, and its events are deleted below, rather than each waiting for
        # the other.
        list(Visitor.objects.select_for_update().filter(customer=customer).order_by("pk"))
        # Decision workers record deliveries while holding their customers' row locks
        # (promotions.tracking locks them): taken first, the lock makes a delivery being
        # recorded commit before the UPDATE below, which then anonymises it too.
        if not Customer.objects.select_for_update().filter(pk=customer.pk).exists():
            return  # erased meanwhile by another request
        deliveries = Delivery.objects.filter(customer=customer)
        # The SMS backend's own copies of their messages (the file backend's lines: number
        # and text), once the erasure has committed.
        sent = {str(pk) for pk in deliveries.exclude(to="").values_list("pk", flat=True)}
        if sent:
            transaction.on_commit(lambda: sms.get_backend().forget(sent))
        deliveries.update(
            customer=None,
            erased_as=uuid.uuid4(),
            to="",
            body="",
            trace={},
            presence_event=None,
            # The provider's error text can quote the number (Twilio 21211); its code stays
            # for the campaign's results.
            error_message="",
        )
        # Their events, and any their identified browser sent without naming them; not those
        # another customer sent from the same browser (a shared computer): those stay theirs,
        # and lose only the visitor, which goes with the customer.
        BrowsingEvent.objects.filter(
            models.Q(customer=customer) | models.Q(customer=None, visitor__customer=customer)
        ).delete()
        _forget_admin_history(customer=customer)
        # Their devices' pings and sightings go first, each in one statement: the cascade
        # below would load every ping into Python while holding the devices' locks, which
        # their ingest waits for (see delete_location_history). Then the devices cascade to
        # what is left, and the customer to presence.
        delete_location_history(device_pks=list(customer.devices.values_list("pk", flat=True)))
        customer.delete()


def _forget_admin_history(*, customer: Customer) -> None:
    """The admin's history of changes names each row it changed (a customer by their
    external_id, a device by its device_id, a visitor by its visitor_id) and says what
    changed: it goes with the rows, read before the customer's deletion takes their devices
    and visitors along. The export lists the same entries (one selection for both)."""
    get_admin_history(customer).delete()


# --- Numbers that opted out by reply -----------------------------------------------------

# The first key of the PostgreSQL advisory locks on numbers: their two-key space is apart
# from the one-key locks promotions.ingest takes.
NUMBER_LOCKS = 0x4E4F  # "NO"


def lock_number(*, phone: str) -> None:
    """Hold a lock on the number until the transaction ends. A reply from it that opts it
    out or in, and a request that gives it to a customer, take it before any customer's
    row: whichever commits second sees what the first did (the request the reply's opt-out,
    the reply the customer now at the number). PostgreSQL only; SQLite, for development,
    runs one writer at a time."""
    if connection.vendor != "postgresql":
        return
    key = int(opted_out_number_keys(phone)[0][:8], 16) - 2**31  # 32 bits of it, signed
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [NUMBER_LOCKS, key])


def record_number_opted_out(*, phone: str, source: str, at: datetime) -> bool:
    """The number replied STOP (`source` sms), or Twilio says it did (twilio): until it
    replies START, no customer stands opted in at it, whoever their record. Call it before
    changing the consent of the customers at the number, in the same transaction. Whether
    the number was not opted out already."""
    lock_number(phone=phone)
    current, *rotated = opted_out_number_keys(phone)
    OptedOutNumber.objects.filter(number_key__in=rotated).delete()  # keyed before a rotation
    _, created = OptedOutNumber.objects.update_or_create(
        number_key=current, defaults={"opted_out_at": at, "source": source}
    )
    return created


def record_number_replied_start(*, phone: str, at: datetime) -> None:
    """The number replied START: Twilio's block on it is lifted, and its customers may stand
    opted in again. Its reply is remembered whether or not it changes anyone's consent (their
    STOP may never have reached us), for replied_start_since. Call it before changing the
    customers' consent, in the same transaction."""
    lock_number(phone=phone)
    keys = opted_out_number_keys(phone)
    OptedOutNumber.objects.filter(number_key__in=keys).delete()
    current, *rotated = keys
    RepliedStartNumber.objects.filter(number_key__in=rotated).delete()  # keyed before a rotation
    RepliedStartNumber.objects.update_or_create(number_key=current, defaults={"replied_at": at})


def replied_start_since(*, phone: str, since: datetime) -> bool:
    """Whether the number replied START after `since`, whatever that changed."""
    replied_at = replied_start_at(phone=phone)
    return replied_at is not None and replied_at > since


# --- Devices and visitors ---------------------------------------------------------------


class Keep(Enum):
    """A value a request left out: the stored one stays as it is."""

    KEEP = "keep"


KEEP = Keep.KEEP


def register_device(
    *,
    device_id: str,
    customer: Customer,
    platform: str | Keep = KEEP,
    ble_identity: str | Keep | None = KEEP,
) -> tuple[Device, bool]:
    """Link an app install (or tag) to a customer; returns (device, created).

    `platform` and `ble_identity` left out (KEEP) keep their stored values, or the defaults
    for a new device (`other`, no identity); `ble_identity=None` removes the identity. An
    identity another device or a store beacon advertises raises ConflictError; a customer
    erased meanwhile, Customer.DoesNotExist."""
    values: dict[str, Any] = {"customer": customer}
    if platform is not KEEP:
        values["platform"] = platform
    if ble_identity is not KEEP:
        values["ble_identity"] = ble_identity
    with transaction.atomic():
        if ble_identity is not KEEP and ble_identity is not None:
            held = Device.objects.filter(ble_identity=ble_identity).exclude(device_id=device_id)
            if held.exists():
                raise ConflictError("Another device already advertises this BLE identity.")
            try:
                Device(ble_identity=ble_identity).clean()
            except ValidationError as error:
                raise ConflictError(" ".join(error.messages)) from None
        try:
            with transaction.atomic():
                device, created = Device.objects.get_or_create(device_id=device_id, defaults=values)
                if not created:
                    for name, value in values.items():
                        setattr(device, name, value)
                    save_device(device=device)
        except IntegrityError:
            # Another request gave the identity to its device after the check above.
            if ble_identity is KEEP or ble_identity is None:
                raise
            raise ConflictError("Another device already advertises this BLE identity.") from None
    return device, created


def save_device(*, device: Device) -> None:
    """Save a device. One that changes customer loses its pings, sightings and track first,
    in the same transaction: they are the previous owner's location history, which the new
    owner must not read (their export, their presence) and erasing the previous owner must
    remove. What the app recorded before the change and uploads after it is theirs too:
    the device's `owner_since` tells ingest to refuse it. The admin saves devices through
    this too."""
    with transaction.atomic():
        stored_owner, stored_id = (
            Device.objects.filter(pk=device.pk).values_list("customer_id", "device_id").first()
            if device.pk
            else None
        ) or (None, None)
        if stored_owner is not None and stored_owner != device.customer_id:
            # Both owners locked now, in the location worker's order (customers by id, before
            # anything else): the new one left to its foreign key's check, at commit, was
            # waited for there while holding the previous one, which a worker locking both
            # could hold the new one and wait for: a deadlock, the worker's batch cancelled.
            held = tracking.lock_customers(
                Customer.objects.filter(pk__in=[stored_owner, device.customer_id])
            )
            if device.customer_id not in held:
                raise Customer.DoesNotExist(f"Customer {device.customer_id} was erased.")
            device.owner_since = _delete_location_history(
                device_pk=device.pk, owner_pk=stored_owner
            )
        elif stored_id is not None and stored_id != device.device_id:
            # A rename: pings in flight under the old id are stored first, where a deletion
            # of the device's history (which locks by its current id) will find them.
            hold_devices_from_ingest(device_pks=[device.pk])
        device.save()


def _delete_location_history(*, device_pk: int, owner_pk: int) -> datetime:
    """Returns when the device changed hands: read with the locks below held, once ingest
    in flight has committed (its rows are deleted here), and before any that waits on them
    reads the device. The caller holds the owner locked."""
    # Locks in the order the writers of this history take them, so that none is left
    # behind by one in flight and none deadlocks with this: the owner first, by the caller
    # (the location worker locks customers, then writes tracks); then the device's row and
    # its advisory lock, which sighting and ping ingest hold (see delete_location_history).
    delete_location_history(device_pks=[device_pk])
    DeviceTrack.objects.filter(device_id=device_pk).delete()
    # Nor does the device hold its previous owner in a store any more: a visit it alone
    # held ends now, with no dwell announced on a phone in someone else's pocket.
    now = timezone.now()
    tracking.release_device(customer_id=owner_pk, device_id=device_pk, now=now)
    return now


def identify_visitor(*, visitor_id: str, customer: Customer) -> tuple[Visitor, int]:
    """Link an anonymous visitor to a customer so that its past and future events count as
    theirs. Returns the visitor and how many past events were attributed now. Raises
    Customer.DoesNotExist when the customer was erased meanwhile."""
    with transaction.atomic():
        visitor, _ = Visitor.objects.select_for_update().get_or_create(visitor_id=visitor_id)
        if visitor.customer_id == customer.pk:
            return visitor, 0
        if visitor.customer_id is not None:
            raise ConflictError("This visitor is already identified as another customer.")
        # Held until the link commits, after the visitor, as an event batch holds its
        # customers: an erasure under way is waited for, and the customer then found gone;
        # one that comes after waits for the link, and takes the visitor and its events
        # along. Unheld, the two deadlocked over the intent rows credited here.
        if not _hold_customers({customer.pk}):
            raise Customer.DoesNotExist(f"Customer {customer.external_id!r} was erased.")
        visitor.customer = customer
        visitor.identified_at = timezone.now()
        visitor.save(update_fields=["customer", "identified_at"])
        events = list(
            BrowsingEvent.objects.select_for_update().filter(visitor=visitor, customer=None)
        )
        for event in events:
            event.customer = customer
        BrowsingEvent.objects.bulk_update(events, ["customer"])
        _apply_to_intent(events)
    return visitor, len(events)


# --- Browsing events and intent ---------------------------------------------------------


def record_browsing_events(*, items: ValidItems, result: IngestResult, now: datetime) -> None:
    """Store a batch of validated events and fold them into intent, all or nothing."""
    customer_ids = {values["customer_id"] for _, values in items if values.get("customer_id")}
    customers = _by_key(Customer, "external_id", customer_ids)
    events, visitor_ids, named = [], [], []
    for index, values in items:
        customer_id = values.get("customer_id")
        if customer_id and customer_id not in customers:
            result.reject(index, unknown_customer_errors(customer_id))
            continue
        events.append(
            BrowsingEvent(
                event_id=values["event_id"],
                customer=customers.get(customer_id),
                type=values["type"],
                sku=values.get("sku") or "",
                product_name=values.get("product_name") or "",
                category=values.get("category") or "",
                url=values.get("url") or "",
                occurred_at=values["occurred_at"],
                received_at=now,
            )
        )
        visitor_ids.append(values.get("visitor_id"))
        named.append((index, customer_id))
    with transaction.atomic():
        _attach_visitors(events, visitor_ids)
        # Held until the batch commits, after its visitors, as erase_customer takes them: an
        # erasure waits for the batch and deletes its events, or the batch for the erasure,
        # and then refuses the events naming the customer it took.
        held = _hold_customers({event.customer_id for event in events if event.customer_id})
        kept = []
        for event, (index, customer_id) in zip(events, named, strict=True):
            if event.customer_id is not None and event.customer_id not in held:
                if customer_id:
                    result.reject(index, unknown_customer_errors(customer_id))
                    continue
                event.customer = None
            kept.append(event)
        # Inserted in key order, for the reason _attach_visitors inserts visitors so: two
        # batches holding some of the same events (a retry sent with the queue it was in)
        # in other orders each waited for an event the other had inserted, a deadlock.
        events = sorted(kept, key=lambda event: event.event_id)
        stored, duplicates = insert_new_rows(
            BrowsingEvent,
            events,
            keys_of=lambda event: [event.event_id],
            stored_keys=lambda rows: set(
                BrowsingEvent.objects.filter(
                    event_id__in=[row.event_id for row in rows]
                ).values_list("event_id", flat=True)
            ),
        )
        _update_catalogue(stored)
        _apply_to_intent(stored)
    result.add_stored(len(stored), duplicates)


def unknown_customer_errors(customer_id: str) -> dict[str, list[str]]:
    """The API's errors for a customer_id that names no customer, in a batch or alone."""
    return {"customer_id": [f"Unknown customer '{customer_id}'."]}


def _hold_customers(pks: set[int]) -> set[int]:
    """Those of the customers that still exist, held until the transaction commits (a key
    share, as the foreign keys to them take at commit, and taken now): an erasure waits
    for what this transaction stores about them, rather than deleting them under it, which
    would make its commit fail. Concurrent batches about the same customers do not wait
    for each other: a key share is shared."""
    if not pks:
        return set()
    rows = Customer.objects.filter(pk__in=pks).order_by("pk").values_list("pk")
    if connection.vendor != "postgresql":
        return {pk for (pk,) in rows}
    sql, params = rows.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} FOR KEY SHARE", params)
        return {pk for (pk,) in cursor.fetchall()}


def _by_key(model: type[models.Model], field: str, keys: set[str]) -> dict[str, Any]:
    if not keys:
        return {}
    return {getattr(row, field): row for row in model.objects.filter(**{f"{field}__in": keys})}


def _attach_visitors(events: list[BrowsingEvent], visitor_ids: list[str | None]) -> None:
    """Give each event its visitor (created when new); an identified visitor's event counts
    as its customer's."""
    keys = {key for key in visitor_ids if key}
    if not keys:
        return
    visitors = _locked_visitors(keys)
    missing = keys - visitors.keys()
    if missing:
        # Inserted in key order, as a concurrent batch inserts them: in any other, two batches
        # could each wait for a key the other has inserted.
        Visitor.objects.bulk_create(
            [Visitor(visitor_id=key) for key in sorted(missing)], ignore_conflicts=True
        )
        visitors = _locked_visitors(keys)
    for event, key in zip(events, visitor_ids, strict=True):
        if key:
            event.visitor = visitors[key]
            if event.customer_id is None and event.visitor.customer_id is not None:
                event.customer_id = event.visitor.customer_id


def _locked_visitors(keys: set[str]) -> dict[str, Visitor]:
    """The visitors, locked until the batch commits, in primary-key order (concurrent batches
    queue instead of deadlocking). identify_visitor locks its visitor too: a visitor being
    identified makes the batch wait and then read its customer, and a batch in flight makes
    identify wait and then find the batch's events to credit. Read unlocked, an event could
    miss both and never count."""
    rows = Visitor.objects.select_for_update().filter(visitor_id__in=keys).order_by("pk")
    return {row.visitor_id: row for row in rows}


def _update_catalogue(events: list[BrowsingEvent]) -> None:
    """Keep, per SKU, the product name and the category sent with its latest event naming
    each: a late event does not undo a newer one."""
    latest_named: dict[str, BrowsingEvent] = {}
    latest_categorised: dict[str, BrowsingEvent | None] = {}
    for event in sorted(events, key=lambda e: e.occurred_at):
        if not event.sku:
            continue
        latest_categorised.setdefault(event.sku, None)
        if event.category:
            latest_categorised[event.sku] = event
        if event.product_name:
            latest_named[event.sku] = event
    if not latest_categorised:
        return

    def locked() -> dict[str, Product]:
        rows = Product.objects.select_for_update().filter(sku__in=latest_categorised)
        return {product.sku: product for product in rows.order_by("pk")}

    products = locked()
    missing = latest_categorised.keys() - products.keys()
    if missing:
        # Inserted bare, then filled as a stored row is: inserted with this batch's name and
        # category, a row a concurrent batch inserted first would drop them as a conflict,
        # however much newer. In key order, for the reason _attach_visitors inserts
        # visitors so.
        Product.objects.bulk_create(
            [Product(sku=sku) for sku in sorted(missing)], ignore_conflicts=True
        )
        products = locked()
    for sku, categorised in latest_categorised.items():
        named = latest_named.get(sku)
        product = products[sku]
        if named and _replaces(named.occurred_at, product.named_at):
            product.name, product.named_at = named.product_name, named.occurred_at
        if categorised and _replaces(categorised.occurred_at, product.categorised_at):
            product.category, product.categorised_at = categorised.category, categorised.occurred_at
    Product.objects.bulk_update(
        products.values(), ["name", "named_at", "category", "categorised_at"]
    )


def _replaces(at: datetime | None, stored_at: datetime | None) -> bool:
    """Whether a name or category an event gave at `at` replaces the one stored, given at
    `stored_at`. A row stored before these times were kept has none: any event replaces it."""
    return stored_at is None or (at is not None and at >= stored_at)


def _apply_to_intent(events: Iterable[BrowsingEvent]) -> None:
    events = sorted((e for e in events if e.customer_id), key=lambda e: e.occurred_at)
    if not events:
        return
    half_life = settings.INTENT_HALF_LIFE_DAYS * 86400
    window_start = int((timezone.now() - timedelta(days=settings.INTENT_WINDOW_DAYS)).timestamp())
    products = _locked_intent_rows(
        ProductIntent, "sku", {(e.customer_id, e.sku) for e in events if e.sku}
    )
    event_categories = _categories_of(events, products)
    categories = _locked_intent_rows(
        CategoryIntent,
        "category",
        {(e.customer_id, c) for e, (c, _) in zip(events, event_categories, strict=True) if c},
    )
    for event, (category, categorised_at) in zip(events, event_categories, strict=True):
        category_row = categories[(event.customer_id, category)] if category else None
        if event.sku:
            row = products[(event.customer_id, event.sku)]
            if category_row and not row.category:
                # Until now no event of the SKU named its category, so the row's events
                # counted towards none: they count towards the first one it is given, as they
                # would have had it been known when they came. A row keeps its category once
                # given one, so no event is counted twice.
                _fold_intent(category_row, row, half_life, window_start)
            _fold_event(row, event, half_life, window_start)
            if category:
                # Read before the category below moves on: its earlier events counted there.
                row.categories = intent.with_category(row.categories, row.category, category)
            if category and _replaces(categorised_at, row.categorised_at):
                row.category, row.categorised_at = category, categorised_at
        if category_row:
            _fold_event(category_row, event, half_life, window_start)
    # A cart event naming neither a SKU nor a category is about the whole cart (the usual
    # cart-level abandonment, and the add to cart that restores it); a view naming nothing
    # is about nothing.
    whole_cart = [
        e for e in events if not e.sku and not e.category and e.type in intent.CART_EVENTS
    ]
    carts = _locked_cart_rows({e.customer_id for e in whole_cart})
    for event in whole_cart:
        _fold_event(carts[event.customer_id], event, half_life, window_start)
    fields = ["last_seen_at", "cart_state", "cart_updated_at", "score", "score_at"]
    ProductIntent.objects.bulk_update(
        products.values(), [*fields, "view_times", "category", "categorised_at", "categories"]
    )
    CategoryIntent.objects.bulk_update(categories.values(), [*fields, "view_times"])
    CartIntent.objects.bulk_update(carts.values(), fields)


Categorised = tuple[str, datetime | None]
NO_CATEGORY: Categorised = ("", None)


def _categories_of(
    events: list[BrowsingEvent], products: dict[tuple[int, str], ProductIntent]
) -> list[Categorised]:
    """The category each event counts towards ("" for none), with when the event that named
    it occurred, for events in the order they occurred. Clients often send the category with
    only some of a product's events: one without it counts towards its SKU's current
    category, the customer's (their product intent, or an event of the batch) or else the
    catalogue's, so that category intent counts every view of the product. A late event
    naming another category counts towards that one but leaves the SKU's in place. At most
    one query a batch."""
    known = {
        key: (row.category, row.categorised_at) for key, row in products.items() if row.category
    }
    unknown = {
        e.sku for e in events if e.sku and not e.category and (e.customer_id, e.sku) not in known
    }
    catalogue = (
        {
            sku: (category, categorised_at)
            for sku, category, categorised_at in Product.objects.filter(sku__in=unknown)
            .exclude(category="")
            .values_list("sku", "category", "categorised_at")
        }
        if unknown
        else {}
    )
    categories = []
    for event in events:
        key = (event.customer_id, event.sku)
        if event.category:
            named = (event.category, event.occurred_at)
            if event.sku and _replaces(event.occurred_at, known.get(key, NO_CATEGORY)[1]):
                known[key] = named
            categories.append(named)
        elif event.sku:
            if key not in known and event.sku in catalogue:
                known[key] = catalogue[event.sku]  # what the customer's product intent takes
            categories.append(known.get(key, NO_CATEGORY))
        else:
            categories.append(NO_CATEGORY)
    return categories


def _fold_event(row: Any, event: BrowsingEvent, half_life: float, window_start: int) -> None:
    at = event.occurred_at
    row.score, row.score_at = intent.add_to_score(
        row.score, row.score_at, intent.EVENT_WEIGHTS[event.type], at, half_life
    )
    row.last_seen_at = intent.latest(row.last_seen_at, at)
    if event.type == intent.VIEW_EVENT:
        row.view_times = intent.add_view_time(row.view_times, int(at.timestamp()), window_start)
    row.cart_state, row.cart_updated_at = intent.cart_after(
        row.cart_state, row.cart_updated_at, event.type, at
    )


def _fold_intent(row: Any, other: Any, half_life: float, window_start: int) -> None:
    """Add to an intent row the events another holds, as _fold_event would one by one."""
    row.score, row.score_at = intent.merge_scores(
        row.score, row.score_at, other.score, other.score_at, half_life
    )
    if other.last_seen_at is not None:
        row.last_seen_at = intent.latest(row.last_seen_at, other.last_seen_at)
    row.view_times = intent.merge_view_times(row.view_times, other.view_times, window_start)
    row.cart_state, row.cart_updated_at = intent.merge_carts(
        row.cart_state, row.cart_updated_at, other.cart_state, other.cart_updated_at
    )


def _locked_cart_rows(customer_ids: set[int]) -> dict[int, CartIntent]:
    """The customers' whole-cart rows, created when missing and locked as
    _locked_intent_rows locks its rows (after them: every batch takes them in that order)."""
    if not customer_ids:
        return {}

    def load() -> dict[int, CartIntent]:
        rows = (
            CartIntent.objects.select_for_update()
            .filter(customer_id__in=customer_ids)
            .order_by("pk")
        )
        return {row.customer_id: row for row in rows}

    rows = load()
    missing = customer_ids - rows.keys()
    if missing:
        CartIntent.objects.bulk_create(
            [CartIntent(customer_id=c) for c in sorted(missing)], ignore_conflicts=True
        )
        rows = load()
    return rows


def _locked_intent_rows(
    model: type[ProductIntent] | type[CategoryIntent], field: str, keys: set[tuple[int, str]]
) -> dict[tuple[int, str], Any]:
    """The intent rows for (customer, key) pairs, created when missing, locked for update in
    primary-key order so that concurrent batches queue instead of deadlocking."""
    if not keys:
        return {}

    def load() -> dict[tuple[int, str], Any]:
        rows = (
            model.objects.select_for_update()
            .filter(customer_id__in={c for c, _ in keys}, **{f"{field}__in": {k for _, k in keys}})
            .order_by("pk")
        )
        return {(row.customer_id, getattr(row, field)): row for row in rows}

    rows = load()
    missing = keys - rows.keys()
    if missing:
        # In key order, for the reason _attach_visitors inserts visitors so.
        model.objects.bulk_create(
            [model(customer_id=c, **{field: k}) for c, k in sorted(missing)],
            ignore_conflicts=True,
        )
        rows = load()
    return rows
