"""What comes back after a send: Twilio's status callbacks, customers' replies, redemptions
at the till, and code pools uploaded for campaigns."""

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Q

from customers.models import Customer, SmsConsent
from customers.phones import PhoneError, normalise_phone
from customers.services import ConflictError, set_sms_consent
from promotions.models import Campaign, Delivery, DeliveryStatus, OfferCode, Redemption, Store
from promotions.sending import TWILIO_UNSUBSCRIBED

# Twilio's statuses that move ours, and from which of ours each may move: forward only, and
# never out of a terminal status, so late and duplicate callbacks are harmless.
TERMINAL = (DeliveryStatus.DELIVERED, DeliveryStatus.UNDELIVERED, DeliveryStatus.FAILED)
STATUS_MOVES = {
    "sent": (DeliveryStatus.SENT, (DeliveryStatus.QUEUED,)),
    "delivered": (DeliveryStatus.DELIVERED, (DeliveryStatus.QUEUED, DeliveryStatus.SENT)),
    "undelivered": (DeliveryStatus.UNDELIVERED, (DeliveryStatus.QUEUED, DeliveryStatus.SENT)),
    "failed": (DeliveryStatus.FAILED, (DeliveryStatus.QUEUED, DeliveryStatus.SENT)),
}

# Carriers' and Twilio's standard keywords, plus French ones (ARRET is the French STOP).
OPT_OUT_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "ARRET"}
# Twilio answers these itself (Advanced Opt-Out); a second confirmation would be noise.
TWILIO_CONFIRMS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
OPT_IN_WORDS = {"START", "YES", "UNSTOP"}
HELP_WORDS = {"HELP", "INFO", "AIDE"}
HELP_TEXT = "Passage offers by SMS. Reply STOP to opt out, START to opt back in."
OPTED_OUT_TEXT = "You will receive no more offers by SMS. Reply START to opt back in."
OPTED_IN_TEXT = "You will receive our offers by SMS again. Reply STOP to opt out."


class UnknownCodeError(Exception):
    """No redeemable delivery carries this code (the API answers 404)."""


class InvalidInputError(ValueError):
    """The request names something that does not exist (the API answers 400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def apply_status_callback(
    *, sid: str, status: str, error_code: int | None, now: datetime, delivery_id: int | None = None
) -> Delivery | None:
    """Move the delivery Twilio reports on forward; returns it, or None when nothing moved.
    `delivery_id` comes from the callback's URL: Twilio may call back before the send task
    has recorded the sid, and the delivery is then found by its id (and given its sid)."""
    move = STATUS_MOVES.get(status)
    if not sid or move is None:
        return None
    new_status, allowed_from = move
    reported = Q(twilio_sid=sid)
    if delivery_id is not None:
        reported |= Q(id=delivery_id, twilio_sid="")
    moved = Delivery.objects.filter(reported, status__in=allowed_from).update(
        status=new_status,
        twilio_sid=sid,
        error_code=error_code,
        status_updated_at=now,
    )
    delivery = Delivery.objects.filter(twilio_sid=sid).select_related("customer").first()
    if delivery and error_code == TWILIO_UNSUBSCRIBED and delivery.customer:
        _change_consent(
            [delivery.customer_id],
            SmsConsent.OPTED_OUT,
            source="twilio",
            note=f"Twilio error {TWILIO_UNSUBSCRIBED}: the recipient unsubscribed.",
            now=now,
        )
    return delivery if moved else None


def keyword(body: str) -> str:
    """The reply as a keyword when it is one word: case, accents and punctuation ignored."""
    plain = unicodedata.normalize("NFKD", body).encode("ascii", "ignore").decode()
    words = re.sub(r"[^A-Za-z]+", " ", plain).split()
    return words[0].upper() if len(words) == 1 else ""


def handle_inbound_sms(*, from_number: str, body: str, now: datetime) -> str:
    """Act on a customer's reply; returns the text to answer ("" for none)."""
    word = keyword(body)
    try:
        phone = normalise_phone(from_number)
    except PhoneError:
        return HELP_TEXT if word in HELP_WORDS else ""
    customers = list(Customer.objects.filter(phone=phone).values_list("id", flat=True))
    if word in OPT_OUT_WORDS:
        changed = _change_consent(customers, SmsConsent.OPTED_OUT, "sms", f"Replied {word}", now)
        return OPTED_OUT_TEXT if changed and word not in TWILIO_CONFIRMS else ""
    if word in OPT_IN_WORDS:
        changed = _change_consent(customers, SmsConsent.OPTED_IN, "sms", f"Replied {word}", now)
        return OPTED_IN_TEXT if changed else ""
    if word in HELP_WORDS:
        return HELP_TEXT
    return ""


def _change_consent(
    customer_ids: list[int], consent: str, source: str, note: str, now: datetime
) -> bool:
    changed = False
    with transaction.atomic():
        for customer in Customer.objects.select_for_update().filter(id__in=customer_ids):
            if set_sms_consent(
                customer=customer, consent=consent, source=source, note=note, at=now
            ):
                customer.save(update_fields=["sms_consent", "consent_source", "consent_updated_at"])
                changed = True
    return changed


# What a till may redeem: a code that reached the customer.
REDEEMABLE = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.UNDELIVERED)
# A till's clock and ours disagree by a little: a code shown the minute its SMS arrived may
# be stamped a few minutes before we recorded it, and that purchase is genuine.
TILL_CLOCK_SKEW = timedelta(minutes=5)


def normalise_code(code: str) -> str:
    """Codes are printed K7Q2-M9XB; a cashier may type k7q2 m9xb or K7Q2M9XB."""
    return re.sub(r"[\s-]", "", code).upper()


def redeem(
    *,
    code: str | None,
    customer_id: str | None,
    store_code: str,
    amount: Decimal | None,
    redeemed_at: datetime,
) -> Redemption:
    """Record a purchase with an offer: by the code it carried, or, from a loyalty card, by the
    customer's latest unexpired offer (a holdout one included: that is how the holdout's
    purchases are counted for lift). Either way the offer was issued before `redeemed_at`
    (give or take TILL_CLOCK_SKEW) and had not expired by then.

    Raises InvalidInputError (an unknown store, or a code redeemed before it was issued),
    UnknownCodeError (no such offer), ConflictError (redeemed already, or expired)."""
    store = Store.objects.filter(code=store_code).first()
    if store is None:
        raise InvalidInputError("store_code", f"Unknown store '{store_code}'.")
    if code:
        delivery = _delivery_by_code(code)
    else:
        delivery = (
            Delivery.objects.filter(
                customer__external_id=customer_id,
                status__in=[*REDEEMABLE, DeliveryStatus.HOLDOUT],
                expires_at__gte=redeemed_at,
                created_at__lte=redeemed_at + TILL_CLOCK_SKEW,
            )
            .order_by("-created_at", "-id")
            .first()
        )
    if delivery is None:
        raise UnknownCodeError("No offer matches this code." if code else "No current offer.")
    if Redemption.objects.filter(delivery=delivery).exists():
        raise ConflictError("This offer was already redeemed.")
    if redeemed_at + TILL_CLOCK_SKEW < delivery.created_at:
        raise InvalidInputError(
            "redeemed_at",
            f"This time is before this code was issued ({_instant(delivery.created_at)}); "
            "check the till's clock.",
        )
    if delivery.expires_at is not None and delivery.expires_at < redeemed_at:
        raise ConflictError(f"This code expired on {_instant(delivery.expires_at)}.")
    try:
        with transaction.atomic():
            return Redemption.objects.create(
                delivery=delivery, store=store, amount=amount, redeemed_at=redeemed_at
            )
    except IntegrityError:
        # A concurrent redemption of the same code won the race.
        raise ConflictError("This offer was already redeemed.") from None


def _instant(value: datetime) -> str:
    """An instant as the API writes times: ISO 8601 in UTC, to the second."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _delivery_by_code(code: str) -> Delivery | None:
    wanted = normalise_code(code)
    if not wanted or len(wanted) > 40:
        return None
    candidates = Delivery.objects.filter(status__in=REDEEMABLE).filter(
        Q(code__iexact=code.strip()) | Q(code__iexact=f"{wanted[:4]}-{wanted[4:]}")
    )
    return next((d for d in candidates if normalise_code(d.code) == wanted), None)


MAX_CODE_LENGTH = 40


def add_pool_codes(*, campaign: Campaign, codes: list[str]) -> int:
    """Add codes a retailer's till knows to a campaign's pool; returns how many were new."""
    cleaned = list(dict.fromkeys(code.strip() for code in codes))
    bad = [code for code in cleaned if not code or len(code) > MAX_CODE_LENGTH]
    if bad:
        raise InvalidInputError("codes", f"Codes are 1 to {MAX_CODE_LENGTH} characters.")
    taken = set(
        OfferCode.objects.filter(code__in=cleaned)
        .exclude(campaign=campaign)
        .values_list("code", flat=True)
    ) | set(Delivery.objects.filter(code__in=cleaned).values_list("code", flat=True))
    if taken:
        names = ", ".join(sorted(taken)[:10])
        raise InvalidInputError("codes", f"Codes already used elsewhere: {names}.")
    existing = set(
        OfferCode.objects.filter(campaign=campaign, code__in=cleaned).values_list("code", flat=True)
    )
    new = [OfferCode(campaign=campaign, code=code) for code in cleaned if code not in existing]
    OfferCode.objects.bulk_create(new)
    return len(new)
