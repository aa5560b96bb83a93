"""Handing a queued delivery to the SMS backend, once.

The send claims its row with a conditional UPDATE that also checks the customer's consent,
so two workers never send the same delivery, and a STOP that arrived while the SMS waited
in the queue wins. A claimed row is never claimed again, so a worker that dies after the
provider accepted the message, or a provider whose answer never comes, does not make a
second SMS: the delivery stays queued with its claim until the provider's status callback,
or the provider asked once its offer has expired (settle_claimed_sends), says what became
of it.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Exists, F, OuterRef, Q, Value, When

from customers.models import Customer, SmsConsent
from customers.services import set_sms_consent
from promotions import decisions, rules, sms
from promotions.models import CampaignStatus, Delivery, DeliveryReason, DeliveryStatus

# Twilio: the recipient replied STOP to this sender; texting them again is refused.
TWILIO_UNSUBSCRIBED = 21610
CAMPAIGN_STOPPED = "Not sent: its campaign was paused or ended before its turn came."


@dataclass(frozen=True)
class SendOutcome:
    status: str  # the delivery's status after the attempt, or "skipped"
    detail: str = ""


def send_delivery(*, delivery_id: int, now: datetime, final_attempt: bool = True) -> SendOutcome:
    """Send a queued delivery. A transient provider error releases the claim and is raised
    for the task to retry, unless this is the final attempt: then the delivery fails with it."""
    delivery = (
        Delivery.objects.select_related("presence_event", "campaign", "customer")
        .filter(id=delivery_id)
        .first()
    )
    if delivery is None or delivery.status != DeliveryStatus.QUEUED or delivery.claimed_at:
        return SendOutcome("skipped", "not queued, or already claimed")
    event_at = delivery.presence_event.occurred_at if delivery.presence_event else None
    if event_at and now - event_at > timedelta(seconds=settings.SMS_VALIDITY_SECONDS):
        _finish(delivery_id, now, status=DeliveryStatus.FAILED, message="Expired before sending.")
        return SendOutcome(DeliveryStatus.FAILED, "expired")
    campaign = delivery.campaign
    if campaign.status != CampaignStatus.ACTIVE or (campaign.ends_at and campaign.ends_at <= now):
        # A marketer who pauses a campaign expects its texts to stop, the queued ones too.
        _finish(delivery_id, now, status=DeliveryStatus.FAILED, message=CAMPAIGN_STOPPED)
        return SendOutcome(DeliveryStatus.FAILED, "campaign stopped")
    customer = delivery.customer
    if customer and rules.quiet_for(
        decisions.campaign_rule(campaign), decisions.global_limits(), customer.timezone, now
    ):
        # Decided just before quiet hours, its paced slot fell inside them.
        return _suppress(delivery_id, now, DeliveryReason.QUIET_HOURS)

    if not claim(delivery_id, now=now, attempts=delivery.attempts + 1):
        # Opted out (or erased) since the decision.
        return _suppress(delivery_id, now, DeliveryReason.NO_CONSENT)

    message = sms.OutgoingSms(to=delivery.to, body=delivery.body, reference=str(delivery_id))
    try:
        sent = sms.get_backend().send(message)
    except sms.TransientSmsError as error:
        if not final_attempt:
            # Nothing was accepted: give the row back for the retry.
            Delivery.objects.filter(id=delivery_id).update(
                claimed_at=None, error_code=error.code, error_message=str(error)[:300]
            )
            raise
        _finish(delivery_id, now, status=DeliveryStatus.FAILED, error=error)
        return SendOutcome(DeliveryStatus.FAILED, str(error))
    except sms.PermanentSmsError as error:
        _finish(delivery_id, now, status=DeliveryStatus.FAILED, error=error)
        if error.code == TWILIO_UNSUBSCRIBED:
            _opt_out(delivery_id, now)
        return SendOutcome(DeliveryStatus.FAILED, str(error))
    except sms.UncertainSmsError as error:
        # Keeps its claim: never sent again, settled by a callback or settle_claimed_sends.
        Delivery.objects.filter(id=delivery_id).update(error_message=str(error)[:300])
        return SendOutcome(DeliveryStatus.QUEUED, str(error))

    # A status callback may have overtaken this line (it finds the delivery by the id in its
    # URL) and moved it on: the sid and the time are recorded whatever the status, and
    # "sent" replaces only "queued".
    still_queued = Q(status=DeliveryStatus.QUEUED)
    Delivery.objects.filter(id=delivery_id).update(
        twilio_sid=sent.sid,
        sent_at=now,
        status=Case(When(still_queued, then=Value(DeliveryStatus.SENT)), default=F("status")),
        status_updated_at=Case(When(still_queued, then=Value(now)), default=F("status_updated_at")),
    )
    return SendOutcome(DeliveryStatus.SENT, sent.sid)


# What the provider reports of a message found, as a delivery status; any other status
# (queued, sending, accepted...) means it was handed over: sent.
FOUND_STATUSES = {
    "delivered": DeliveryStatus.DELIVERED,
    "undelivered": DeliveryStatus.UNDELIVERED,
    "failed": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.FAILED,
}
# How long after its offer expires a claimed send is settled: a send in progress has
# finished by then (SMS_HTTP_TIMEOUT_SECONDS is at most two minutes), and so has Twilio
# with anything it held past the validity period.
SETTLE_AFTER_EXPIRY = timedelta(minutes=5)
NEVER_SENT = "The SMS provider has no record of it: never sent, and not resent (the offer expired)."
UNKNOWN_ERASED = "Its send was cut short and its customer erased since: whether it went is unknown."


def settle_claimed_sends(*, now: datetime, limit: int = 100) -> int:
    """Deliveries claimed for sending whose outcome was never recorded (the worker died
    between its claim and the provider's answer, or the answer never came), once their
    offer has expired: the provider is asked whether it took the message. Its sid and status
    are recorded, or the delivery fails as never sent; nothing is sent again. Returns how
    many were settled; a provider that cannot be asked now leaves the rest for the next run."""
    expired = now - timedelta(seconds=settings.SMS_VALIDITY_SECONDS) - SETTLE_AFTER_EXPIRY
    unsettled = Delivery.objects.filter(
        status=DeliveryStatus.QUEUED, twilio_sid="", claimed_at__lt=expired
    ).order_by("claimed_at")[:limit]
    backend = sms.get_backend()
    settled = 0
    for delivery in unsettled:
        # Only if nothing, a status callback for one, got there first.
        still_unsettled = Delivery.objects.filter(
            id=delivery.id, status=DeliveryStatus.QUEUED, twilio_sid=""
        )
        if not delivery.to:
            # Its customer was erased, number and text with them: nothing left to ask by.
            settled += still_unsettled.update(
                status=DeliveryStatus.FAILED, error_message=UNKNOWN_ERASED, status_updated_at=now
            )
            continue
        message = sms.OutgoingSms(to=delivery.to, body=delivery.body, reference=str(delivery.id))
        found = backend.find(message, since=delivery.claimed_at)
        if found is None:
            settled += still_unsettled.update(
                status=DeliveryStatus.FAILED, error_message=NEVER_SENT, status_updated_at=now
            )
        else:
            settled += still_unsettled.update(
                status=FOUND_STATUSES.get(found.status, DeliveryStatus.SENT),
                twilio_sid=found.sid,
                sent_at=delivery.claimed_at,
                status_updated_at=now,
            )
    return settled


def claim(delivery_id: int, *, now: datetime, attempts: int) -> bool:
    """Take a queued delivery for sending, if no one has and its customer still consents.
    Every condition is on the delivery's own row (consent through a correlated EXISTS): a
    join would make Django update `WHERE id IN (SELECT ...)`, and PostgreSQL, re-checking
    a row another worker claimed meanwhile, would find its id still in that list and let
    both workers send."""
    consents = Customer.objects.filter(pk=OuterRef("customer_id"), sms_consent=SmsConsent.OPTED_IN)
    claimed = Delivery.objects.filter(
        Exists(consents), id=delivery_id, status=DeliveryStatus.QUEUED, claimed_at__isnull=True
    ).update(claimed_at=now, attempts=attempts)
    return bool(claimed)


def _suppress(delivery_id: int, now: datetime, reason: str) -> SendOutcome:
    """The queued decision becomes a suppression for `reason`, unless a worker claimed it."""
    if Delivery.objects.filter(
        id=delivery_id, status=DeliveryStatus.QUEUED, claimed_at__isnull=True
    ).update(status=DeliveryStatus.SUPPRESSED, reason=reason, status_updated_at=now):
        return SendOutcome(DeliveryStatus.SUPPRESSED, reason)
    return SendOutcome("skipped", "claimed by another worker")


def _finish(
    delivery_id: int,
    now: datetime,
    *,
    status: str,
    error: sms.SmsError | None = None,
    message: str = "",
) -> None:
    Delivery.objects.filter(id=delivery_id, status=DeliveryStatus.QUEUED).update(
        status=status,
        error_code=error.code if error else None,
        error_message=(str(error) if error else message)[:300],
        status_updated_at=now,
    )


def _opt_out(delivery_id: int, now: datetime) -> None:
    customer_id = Delivery.objects.filter(id=delivery_id).values_list("customer_id", flat=True)
    with transaction.atomic():
        customer = Customer.objects.select_for_update().filter(id__in=customer_id).first()
        if customer and set_sms_consent(
            customer=customer,
            consent=SmsConsent.OPTED_OUT,
            source="twilio",
            note=f"Twilio error {TWILIO_UNSUBSCRIBED}: the recipient unsubscribed.",
            at=now,
        ):
            customer.save(update_fields=["sms_consent", "consent_source", "consent_updated_at"])
