"""Handing a queued delivery to the SMS backend, once.

The send claims its row with a conditional UPDATE that also checks the customer's consent
and number, so two workers never send the same delivery, and a STOP or a new phone number
that arrived while the SMS waited in the queue wins. A claimed row is never claimed again,
so a worker that dies after the provider accepted the message, or a provider whose answer
never comes, does not make a second SMS: the delivery stays queued with its claim until the
provider's status callback, or the provider asked once its offer has expired
(settle_claimed_sends), says what became of it.

A delivery that ends before the provider took its SMS (suppressed, stale, its campaign
stopped or its store taken out of the campaign, refused by the provider) gives the code it
drew from its campaign's pool back: no one saw it, and a pool used up by SMS that never went
turns the next customers away.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Exists, F, IntegerField, OuterRef, Q, Value, When
from django.db.models.functions import Coalesce, Least

from customers.models import Customer, SmsConsent
from promotions import decisions, feedback, offers, rules, sms
from promotions.models import (
    CampaignStatus,
    Delivery,
    DeliveryReason,
    DeliveryStatus,
    OfferCode,
)

# Why a queued SMS was not sent, besides offers.why_past_due's STALE and OFFER_EXPIRED:
CAMPAIGN_STOPPED = "Not sent: its campaign was paused, ended or postponed before its turn came."
STORE_DELETED = "Not sent: its store was deleted before its turn came."
STORE_REMOVED = "Not sent: its store was taken out of its campaign before its turn came."
PHONE_CHANGED = "Not sent: its customer's phone number changed after the decision."
TOO_LONG = "Not sent: its text is {length} characters, and Twilio takes at most {limit}."
# A throttled send's row, given back for its retry, is not sent by a copy of its task before
# this: schedule_retry books the retry's own slot well within it.
RETRY_HOLD = timedelta(seconds=5)
# The longest a send waits before its retry, whatever the provider's Retry-After says.
MAX_SEND_BACKOFF_SECONDS = 60


@dataclass(frozen=True)
class SendOutcome:
    status: str  # the delivery's status after the attempt, or "skipped"
    detail: str = ""


def delivery_visited_at() -> Coalesce:
    """When the shopper a delivery is for was there, as its offer's freshness counts it, as a
    query expression: its presence event's time, or when we learned of the event if that
    was earlier. Ingest takes an event stamped up to INGEST_MAX_CLOCK_SKEW_SECONDS ahead of
    our clock, and a phone clock running fast must not keep an offer fresh after its shopper
    has gone. An event goes with its deleted store: the decision's own time stands in.
    (delivery_event_time is the event's own time, by which a dry run replays it.)"""
    return Coalesce(
        Least("presence_event__occurred_at", "presence_event__created_at"), "created_at"
    )


def send_delivery(
    *, delivery_id: int, now: datetime, final_attempt: bool = True, retry: bool = False
) -> SendOutcome:
    """Send a queued delivery. A transient provider error is raised for the task to retry
    (schedule_retry books when), unless this is the final attempt: then the delivery fails
    with it. `retry`: this is the retry schedule_retry booked, not a first attempt."""
    delivery = (
        Delivery.objects.select_related("campaign", "customer", "store")
        .annotate(visited_at=delivery_visited_at())
        .filter(id=delivery_id)
        .first()
    )
    if delivery is None or delivery.status != DeliveryStatus.QUEUED or delivery.claimed_at:
        return SendOutcome("skipped", "not queued, or already claimed")
    if not retry and delivery.attempts and delivery.send_after and now < delivery.send_after:
        # A copy of a throttled send's first task (the broker delivered it twice): its retry
        # is booked for later, after the wait the provider asked for, at the sender's pace.
        return SendOutcome("skipped", "waiting for its retry")
    validity = timedelta(seconds=settings.SMS_VALIDITY_SECONDS)
    # Its slot or its retry came too late: the shopper has gone, or (decided just before the
    # offer's last day ended) its "until" day has passed and the till would refuse its code.
    past_due = offers.why_past_due(
        now, visited_at=delivery.visited_at, expires_at=delivery.expires_at, validity=validity
    )
    if past_due:
        return _fail_unclaimed(delivery_id, now, past_due, past_due)
    if delivery.store is None:
        # Its text names a store that is closed now.
        return _fail_unclaimed(delivery_id, now, STORE_DELETED, "store deleted")
    campaign = delivery.campaign
    if campaign.status != CampaignStatus.ACTIVE or not rules.runs_at(
        campaign.starts_at, campaign.ends_at, now
    ):
        # A marketer who pauses a campaign expects its texts to stop, the queued ones too;
        # so does one who moves its start to later (it went live too soon).
        return _fail_unclaimed(delivery_id, now, CAMPAIGN_STOPPED, "campaign stopped")
    rule = decisions.campaign_rule(campaign)
    if rule.stores and delivery.store_id not in rule.stores:
        # The campaign runs on elsewhere: its marketer no longer wants it texting from this
        # store, the SMS already waiting for their turn included. (No stores: every store.)
        return _fail_unclaimed(delivery_id, now, STORE_REMOVED, "store removed")
    if len(delivery.body) > offers.MAX_BODY_CHARACTERS:
        # Templates are checked against the limit when saved; one saved before that check
        # could still render too long, and Twilio would refuse it (error 21617).
        message = TOO_LONG.format(length=len(delivery.body), limit=offers.MAX_BODY_CHARACTERS)
        return _fail_unclaimed(delivery_id, now, message, "too long")
    customer = delivery.customer
    if customer and rules.quiet_for(
        rule,
        decisions.global_limits(),
        decisions.customer_timezone(customer, delivery.store),
        now,
    ):
        # Decided just before quiet hours, its paced slot fell inside them.
        return _suppress(delivery_id, now, DeliveryReason.QUIET_HOURS)

    if not claim(delivery_id, now=now, attempts=delivery.attempts + 1):
        # Opted out, erased or given another number since the decision, or claimed by
        # another worker, which may have given it back for a retry since.
        phone = (
            Customer.objects.filter(id=delivery.customer_id, sms_consent=SmsConsent.OPTED_IN)
            .values_list("phone", flat=True)
            .first()
        )
        if phone and phone == delivery.to:
            return SendOutcome("skipped", "claimed by another worker")
        if phone is not None and phone != delivery.to:
            return _suppress(delivery_id, now, DeliveryReason.NO_PHONE, message=PHONE_CHANGED)
        return _suppress(delivery_id, now, DeliveryReason.NO_CONSENT)

    # Twilio is told what is left of the offer's validity, not all of it: a message it holds
    # in its queue must not arrive after the offer has gone stale, or expired. 1 s is its
    # minimum.
    left = validity - (now - delivery.visited_at)
    if delivery.expires_at is not None:
        left = min(left, delivery.expires_at - now)
    message = sms.OutgoingSms(
        to=delivery.to,
        body=delivery.body,
        reference=str(delivery_id),
        validity_seconds=max(1, int(min(left, validity).total_seconds())),
    )
    try:
        sent = sms.get_backend().send(message)
    except sms.TransientSmsError as error:
        if not final_attempt:
            # Nothing was accepted. The claim goes back with the row held a moment ahead, in
            # one statement: a copy of this task does not send it at once before
            # schedule_retry books the retry's slot, and should this worker die first, the
            # sweep of lost sends still finds it.
            Delivery.objects.filter(id=delivery_id).update(
                claimed_at=None,
                send_after=now + RETRY_HOLD,
                error_code=error.code,
                error_message=_error_text(error, message),
            )
            raise
        _fail_refused(delivery_id, now, error, message)
        return SendOutcome(DeliveryStatus.FAILED, str(error))
    except sms.PermanentSmsError as error:
        _fail_refused(delivery_id, now, error, message)
        if error.code == feedback.TWILIO_UNSUBSCRIBED:
            feedback.opt_out_unsubscribed(phone=message.to, now=now)
        return SendOutcome(DeliveryStatus.FAILED, str(error))
    except sms.UncertainSmsError as error:
        # Keeps its claim: never sent again, settled by a callback or settle_claimed_sends.
        # A callback that overtook this answer (it gave the row its sid) has said what became
        # of the SMS, and its error code stands.
        Delivery.objects.filter(id=delivery_id, status=DeliveryStatus.QUEUED, twilio_sid="").update(
            error_code=error.code, error_message=_error_text(error, message)
        )
        return SendOutcome(DeliveryStatus.QUEUED, str(error))

    # A status callback may have overtaken this line (it finds the delivery by the id in its
    # URL) and moved it on: the sid and the time are recorded whatever the status, and
    # "sent" replaces only "queued". The error of an earlier attempt (a 429) is history once
    # the provider took the message; an error code the callback brought is kept.
    still_queued = Q(status=DeliveryStatus.QUEUED)
    Delivery.objects.filter(id=delivery_id).update(
        twilio_sid=sent.sid,
        sent_at=now,
        status=Case(When(still_queued, then=Value(DeliveryStatus.SENT)), default=F("status")),
        status_updated_at=Case(When(still_queued, then=Value(now)), default=F("status_updated_at")),
        error_code=Case(
            When(still_queued, then=Value(None)),
            default=F("error_code"),
            output_field=IntegerField(),
        ),
        error_message="",
    )
    return SendOutcome(DeliveryStatus.SENT, sent.sid)


def retry_wait(retries: int, retry_after: float | None, *, jitter: float) -> timedelta:
    """How long a send that met a transient error waits before its retry, `retries` retries
    in: the wait the provider asked for (a 429's Retry-After), or else one doubling with
    each retry, at most MAX_SEND_BACKOFF_SECONDS, plus `jitter` seconds (a random fraction
    of a second from the caller), so that a fleet of retries does not hit the provider in
    step."""
    wait = 2**retries if retry_after is None else retry_after
    return timedelta(seconds=min(wait, MAX_SEND_BACKOFF_SECONDS) + jitter)


def schedule_retry(*, delivery_id: int, now: datetime, backoff: timedelta) -> datetime:
    """When a send that met a transient error is tried again: at the sender's first free
    slot after its backoff, booked as a new send books one, so the retries of a throttled
    burst keep to the sender's pace, and the SMS booked while they wait come after them, not
    in their seconds. Recorded as the delivery's send_after, which the sweep of lost sends
    goes by, and before which a copy of its first task does not send it."""
    with transaction.atomic():
        decisions.pace_sends([delivery_id], now=now, not_before=now + backoff)
        # Failed as past due rather than booked, it keeps the hold send_delivery gave it.
        slot = Delivery.objects.values_list("send_after", flat=True).get(id=delivery_id)
    return max(slot, now + backoff)


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
    offer has expired: the provider is asked whether it took the message. Its sid, status and
    error code are recorded (a 21610 opts the number out, as a status callback's does), or the
    delivery fails as never sent; nothing is sent again. Returns how
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
            continue
        # Twilio's word on the message replaces what the send wrote ("may have been sent", a
        # gateway's 504), as a status callback's does: its error code, or none, stands alone.
        status = FOUND_STATUSES.get(found.status, DeliveryStatus.SENT)
        moved = still_unsettled.update(
            status=status,
            twilio_sid=found.sid,
            # Handed over at its claim, as near as we know; a message Twilio failed went
            # nowhere, and has no sending time (as from a status callback).
            sent_at=None if status == DeliveryStatus.FAILED else delivery.claimed_at,
            error_code=found.error_code,
            error_message="",
            status_updated_at=now,
        )
        settled += moved
        if moved and found.error_code == feedback.TWILIO_UNSUBSCRIBED:
            feedback.opt_out_unsubscribed(
                phone=delivery.to, now=now, message_at=delivery.claimed_at
            )
    return settled


def claim(delivery_id: int, *, now: datetime, attempts: int) -> bool:
    """Take a queued delivery for sending, if no one has and its customer still consents at
    the number it is for (a customer who changed numbers while it waited would have it go
    to the old one, maybe someone else's now). Every condition is on the delivery's own row
    (consent and number through a correlated EXISTS): a join would make Django update
    `WHERE id IN (SELECT ...)`, and PostgreSQL, re-checking a row another worker claimed
    meanwhile, would find its id still in that list and let both workers send."""
    consents = Customer.objects.filter(
        pk=OuterRef("customer_id"), sms_consent=SmsConsent.OPTED_IN, phone=OuterRef("to")
    )
    claimed = Delivery.objects.filter(
        Exists(consents), id=delivery_id, status=DeliveryStatus.QUEUED, claimed_at__isnull=True
    ).update(claimed_at=now, attempts=attempts)
    return bool(claimed)


def _suppress(delivery_id: int, now: datetime, reason: str, *, message: str = "") -> SendOutcome:
    """The queued decision becomes a suppression for `reason`, unless a worker claimed it."""
    with transaction.atomic():
        if Delivery.objects.filter(
            id=delivery_id, status=DeliveryStatus.QUEUED, claimed_at__isnull=True
        ).update(
            status=DeliveryStatus.SUPPRESSED,
            reason=reason,
            error_message=message,
            status_updated_at=now,
        ):
            _return_pool_codes({delivery_id})
            return SendOutcome(DeliveryStatus.SUPPRESSED, reason)
    return SendOutcome("skipped", "claimed by another worker")


def fail_unsent(delivery_ids: Iterable[int], *, now: datetime, why: str) -> None:
    """Fail queued SMS before their send, as their send would, `why` saying why (STALE,
    OFFER_EXPIRED): their pool codes go back, since no one saw them. A few statements for
    the lot: a burst past the sender's pace fails thousands at once, in the transaction that
    holds their customers. One a worker claimed meanwhile is being sent, and keeps its code."""
    with transaction.atomic():
        unclaimed = Delivery.objects.select_for_update().filter(
            id__in_batch=set(delivery_ids), status=DeliveryStatus.QUEUED, claimed_at__isnull=True
        )
        failed = set(unclaimed.values_list("id", flat=True))
        if not failed:
            return
        Delivery.objects.filter(id__in_batch=failed).update(
            status=DeliveryStatus.FAILED, error_message=why, status_updated_at=now
        )
        _return_pool_codes(failed)


def lost_sends(*, swept_at: datetime, now: datetime) -> list[int]:
    """Queued SMS whose task was lost with a broker's queue: no worker claimed them, and
    their slot passed more than SWEEP_AFTER_SECONDS before `swept_at` (when the sweep asking
    began: the sends it queued itself are not lost). Returns the ids found, to enqueue again.

    Each is booked a new slot at the sender, as a new send is (decisions.pace_sends): its
    task enqueued again waits for that slot, and until it is SWEEP_AFTER_SECONDS past, the
    next beats' sweeps leave it to that task, where they enqueued another copy at every beat
    while workers behind had not reached it. A thousand lost sends also go at the sender's
    pace, not all at once. Those whose slot would come when they can no longer go are
    failed here, as their send would fail them, without a send task each: after a worker
    outage, thousands; the failed ones are no longer queued."""
    lost = decisions.stranded_deliveries(
        due_before=swept_at - timedelta(seconds=settings.SWEEP_AFTER_SECONDS)
    )
    with transaction.atomic():
        decisions.pace_sends(lost, now=now)
    return lost


def queued_send_slots(delivery_ids: Iterable[int]) -> list[tuple[int, datetime | None]]:
    """Of these deliveries, the ones still queued, with the paced slot each is sent at."""
    # A delivery failed while its slot was booked (expired before any slot) has none to keep.
    queued = Delivery.objects.filter(id__in=list(delivery_ids), status=DeliveryStatus.QUEUED)
    return list(queued.values_list("id", "send_after"))


def _fail_unclaimed(delivery_id: int, now: datetime, message: str, detail: str) -> SendOutcome:
    """The queued decision fails before its send, unless a worker claimed it meanwhile: that
    worker is sending it, and its code must stay with it."""
    with transaction.atomic():
        if _finish(delivery_id, now, status=DeliveryStatus.FAILED, message=message, claimed=False):
            _return_pool_codes({delivery_id})
            return SendOutcome(DeliveryStatus.FAILED, detail)
    return SendOutcome("skipped", "claimed by another worker")


def _fail_refused(
    delivery_id: int, now: datetime, error: sms.SmsError, message: sms.OutgoingSms
) -> None:
    """The claimed delivery fails with the provider's refusal: it took nothing."""
    with transaction.atomic():
        if _finish(delivery_id, now, status=DeliveryStatus.FAILED, error=error, outgoing=message):
            _return_pool_codes({delivery_id})


def _return_pool_codes(delivery_ids: set[int]) -> None:
    """Put the pool codes of deliveries whose SMS never reached the provider back in the pool,
    and take them off the deliveries: Delivery.code is unique, and the next delivery to draw one
    must be able to carry it. A keyless pool code (one of two the till cannot tell apart,
    drawn before migration 0015) is not handed out again. Called in the transaction that
    ended the delivery.

    An SMS the provider took keeps its code whatever became of it (failed, undelivered, or
    settled from the provider after its worker died): it may have reached the phone, and
    the till must credit that customer with it, no one else.

    The text goes with the code: it quotes the code, which is the next customer's now, and
    the delivery's text shows wherever the delivery does (the deliveries' API, the customer's
    export). Blanked, it reads as what it was: nothing sent."""
    drawn = OfferCode.objects.filter(delivery_id__in_batch=delivery_ids, code_key__isnull=False)
    released = set(drawn.values_list("delivery_id", flat=True))
    if released:
        drawn.update(delivery=None)
        Delivery.objects.filter(id__in_batch=released).update(
            code=None, code_key=None, body="", encoding="", segments=0
        )


def _finish(
    delivery_id: int,
    now: datetime,
    *,
    status: str,
    error: sms.SmsError | None = None,
    outgoing: sms.OutgoingSms | None = None,
    message: str = "",
    claimed: bool = True,
) -> bool:
    """`error`: the provider's, for the `outgoing` SMS; else `message` says why. `claimed`:
    this worker holds the delivery's claim; else it ends only a delivery no one claimed.
    Whether it ended the delivery."""
    queued = Delivery.objects.filter(id=delivery_id, status=DeliveryStatus.QUEUED)
    if not claimed:
        queued = queued.filter(claimed_at__isnull=True)
    return bool(
        queued.update(
            status=status,
            # An end with no error of its own (expired, campaign stopped) keeps the code of the
            # attempt before (Twilio's 20429): the operator still sees why it never went.
            error_code=error.code if error else F("error_code"),
            error_message=_error_text(error, outgoing) if error and outgoing else message[:300],
            status_updated_at=now,
        )
    )


def _error_text(error: sms.SmsError, message: sms.OutgoingSms) -> str:
    """The provider's error as stored: without the phone number it may quote (Twilio's 21211
    does). The number is the delivery's `to`, which erasing the customer blanks; a send in
    flight during the erasure must not write it back here."""
    text = str(error)
    for spelling in (message.to, message.to.lstrip("+")):
        if spelling:
            text = text.replace(spelling, "[phone number]")
    return text[:300]
