"""What comes back after a send: Twilio's status callbacks, customers' replies, redemptions
at the till, and code pools uploaded for campaigns."""

import itertools
import re
import unicodedata
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from customers.models import Customer, HandledReply, ReplySource, SmsConsent
from customers.phones import reply_number
from customers.services import (
    ConflictError,
    lock_number,
    record_number_opted_out,
    record_number_replied_start,
    replied_start_since,
    set_sms_consent,
)
from promotions.models import (
    CODE_KEY_LENGTH,
    REDEEMABLE,
    Campaign,
    CampaignDay,
    Delivery,
    DeliveryStatus,
    OfferCode,
    Redemption,
    Store,
    no_such_key,
)
from promotions.offers import language_of, normalise_code, typed_code_keys
from promotions.selectors import get_budget_zone
from promotions.services import record_campaign_days
from promotions.times import ZONES_SPREAD, format_instant_for_api, local_day, offer_end_at_till

# Twilio's statuses that move ours, and from which of ours each may move: forward only, and
# never out of a terminal status, so late and duplicate callbacks are harmless.
STATUS_MOVES = {
    "sent": (DeliveryStatus.SENT, (DeliveryStatus.QUEUED,)),
    "delivered": (DeliveryStatus.DELIVERED, (DeliveryStatus.QUEUED, DeliveryStatus.SENT)),
    "undelivered": (DeliveryStatus.UNDELIVERED, (DeliveryStatus.QUEUED, DeliveryStatus.SENT)),
    "failed": (DeliveryStatus.FAILED, (DeliveryStatus.QUEUED, DeliveryStatus.SENT)),
}

# Twilio: the recipient replied STOP to this sender; texting them again is refused.
TWILIO_UNSUBSCRIBED = 21610

# Twilio's default opt-out keywords: Twilio blocks the number and answers them itself.
TWILIO_OPT_OUT_WORDS = {
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
}
# Replies are matched as their words, case, accents and punctuation ignored ("Opt-out" is
# "OPT OUT"): Twilio's keywords, a carrier's spelling (Twilio matches single words only, so
# "Stop all" is ours to act on and confirm), and those of the languages Passage
# answers in, which Twilio does not act on. French: ARRET, and the ARRETE and ARRETT that
# Twilio's own French lists carry. German, Spanish and Italian: the words their SMS
# unsubscribe notices use, and each language's "cancel", as Twilio takes CANCEL; nothing a
# customer could send meaning something else (a NO, a NEIN answers a question).
OPT_OUT_WORDS = TWILIO_OPT_OUT_WORDS | {
    "OPT OUT",
    "STOP ALL",
    "ARRET",
    "ARRETE",
    "ARRETT",
    "STOPP",
    "ABMELDEN",
    "BAJA",
    "CANCELAR",
    "ANNULLA",
}
# A reply may say more than the keyword ("Stop please", "STOP STOP", "Unsubscribe me", a
# signature): Twilio matches a whole reply only, so Passage acts on, and confirms, a reply
# that starts with an opt-out word (or two: OPT OUT, STOP ALL). Not one that starts with an
# everyday word that is an opt-out only alone: "cancel my order", "end of the sale?", "baja
# el precio" (lower the price) ask something else.
ALONE_OPT_OUT_WORDS = {"CANCEL", "END", "BAJA", "CANCELAR", "ANNULLA"}
LEADING_OPT_OUT_WORDS = OPT_OUT_WORDS - ALONE_OPT_OUT_WORDS
OPT_IN_WORDS = {"START", "YES", "UNSTOP"}
HELP_WORDS = {"HELP", "INFO", "AIDE", "HILFE", "AYUDA", "AIUTO"}
# What Twilio answers itself (every opt-in word is Twilio's too), so that a confirmation of
# ours would be a second one, paid for. HELP is answered by us all the same: it says what
# Passage is.
TWILIO_CONFIRMS = TWILIO_OPT_OUT_WORDS | OPT_IN_WORDS
# A Messaging Service with Advanced Opt-Out matches its own keywords (a retailer's
# DESABONNER, say), answers them, and says which kind it matched in `OptOutType`.
OPT_OUT_TYPES = {"STOP", "START", "HELP"}

# The replies we send ourselves, in the customer's language (as the offers' opt-out footer
# is), in GSM-7 characters like the footers.
OPTED_OUT_TEXTS = {
    "en": "You will receive no more offers by SMS. Reply START to opt back in.",
    "fr": "Vous ne recevrez plus nos offres par SMS. Répondez START pour les recevoir à nouveau.",
    "es": "Ya no te enviaremos ofertas por SMS. Responde START para volver a recibirlas.",
    "de": "Du erhältst keine Angebote mehr per SMS. Antworte START, um sie wieder zu erhalten.",
    "it": "Non riceverai più le nostre offerte via SMS. Rispondi START per riceverle di nuovo.",
}
HELP_TEXTS = {
    "en": "Passage offers by SMS. Reply STOP to opt out, START to opt back in.",
    "fr": "Offres Passage par SMS. Répondez STOP pour ne plus les recevoir, START pour les "
    "recevoir à nouveau.",
    "es": "Ofertas de Passage por SMS. Responde STOP para darte de baja, START para volver a "
    "recibirlas.",
    "de": "Angebote von Passage per SMS. Antworte STOP zum Abmelden, START zum erneuten Anmelden.",
    "it": "Offerte Passage via SMS. Rispondi STOP per non riceverle più, START per riceverle "
    "di nuovo.",
}


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
    """Move the delivery Twilio reports on forward (a redeemed one is not failed: see below);
    returns it, or None when the callback changed nothing.
    `delivery_id` comes from the callback's URL: Twilio may call back before the send task
    has recorded the sid, and the delivery is then found by its id (and given its sid)."""
    move = STATUS_MOVES.get(status)
    if not sid or move is None:
        return None
    new_status, allowed_from = move
    reported = Q(twilio_sid=sid)
    if delivery_id is not None:
        reported |= Q(id=delivery_id, twilio_sid="")
    # A callback may settle a send whose answer was lost (no sid, no sent_at recorded): Twilio
    # took it, at the send's claim (when it was handed over) as near as we know.
    went = (
        {}
        if new_status == DeliveryStatus.FAILED
        else {"sent_at": Coalesce("sent_at", "claimed_at", Value(now))}
    )
    moving = Delivery.objects.filter(reported, status__in=allowed_from)
    kept = 0
    if new_status not in REDEEMABLE:
        # A code redeemed at the till reached its customer: a failure reported after (a late
        # or mistaken callback) does not take the purchase out of the campaign's results.
        # The delivery stays as it was, with Twilio's word recorded on it.
        redeemed = Exists(Redemption.objects.filter(delivery=OuterRef("pk")))
        kept = moving.filter(redeemed).update(
            twilio_sid=sid,
            error_code=error_code,
            error_message=f"Twilio reported it {status} after its code was redeemed.",
            status_updated_at=now,
        )
        moving = moving.filter(~redeemed)
    moved = moving.update(
        status=new_status,
        twilio_sid=sid,
        # Twilio's word on the message replaces a send's "may have been sent" (a 502 whose
        # answer was lost): its error code, or none, stands alone.
        error_code=error_code,
        error_message="",
        status_updated_at=now,
        **went,
    )
    if not moved and not kept:
        # A callback Twilio sent again, or one overtaken by a later status: what it says was
        # acted on when it first moved the delivery, and a START since then stands.
        return None
    delivery = Delivery.objects.filter(twilio_sid=sid).first()
    if delivery and error_code == TWILIO_UNSUBSCRIBED:
        opt_out_unsubscribed(
            phone=delivery.to, now=now, message_at=delivery.sent_at or delivery.claimed_at
        )
    return delivery


def opt_out_unsubscribed(*, phone: str, now: datetime, message_at: datetime | None = None) -> None:
    """Twilio refused or failed an SMS with 21610: the number had replied STOP to our sender
    when the SMS went (`message_at`, by default `now`). Everyone whose number it is now is
    opted out, as an inbound STOP does; a customer who has given another number since is
    not. Nor is anyone when the number replied START after the SMS went: that lifted
    Twilio's block, and this 21610 (a late callback) is older than it."""
    if not phone:
        return  # an erased customer's delivery: its number is gone
    with transaction.atomic():
        lock_number(phone=phone)  # a START in flight commits first, and is seen below
        if replied_start_since(phone=phone, since=message_at or now):
            return
        _change_consent(
            phone,
            SmsConsent.OPTED_OUT,
            source=ReplySource.TWILIO,
            note=f"Twilio error {TWILIO_UNSUBSCRIBED}: the recipient unsubscribed.",
            now=now,
        )


def keyword(body: str) -> str:
    """The reply's words, upper case, one space apart: case, accents and punctuation
    ignored, so that it can be compared with the keywords."""
    plain = unicodedata.normalize("NFKD", body).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^A-Za-z]+", " ", plain).split()).upper()


def handle_inbound_sms(
    *,
    from_number: str,
    body: str,
    now: datetime,
    opt_out_type: str = "",
    message_sid: str = "",
) -> str:
    """Act on a customer's reply; returns the text to answer ("" for none). `opt_out_type`
    is Twilio's OptOutType: when it is given, Twilio matched the keyword and answered it.
    `message_sid`: the reply's own sid, by which a copy of a reply acted on already is
    neither acted on nor answered again."""
    with transaction.atomic():
        # Recorded with what the reply changes, in one transaction: a reply whose change
        # failed is acted on when it comes again, and a copy arriving meanwhile waits for
        # the first and is then known.
        if message_sid and not _first_time(message_sid=message_sid, now=now):
            return ""
        return _act_on_reply(from_number=from_number, body=body, now=now, opt_out_type=opt_out_type)


# How long the sid of a reply acted on is kept (HandledReply), so that a copy of its request
# is not acted on again. Twilio retries a failed webhook within a minute or so (at most five
# retries of 15 s at most, its connection overrides); a webhook gateway replays what it
# stored for days, a few weeks at most; an operator's manual retry comes within days. A year
# covers them with a wide margin, for a table of a sid and a time a reply. A copy older than
# this is acted on as new: Twilio's request holds no time to refuse it by (see the README).
REPLAY_WINDOW = timedelta(days=365)


def forget_handled_replies(*, now: datetime) -> int:
    """The retention purge of the sids of replies acted on past REPLAY_WINDOW; returns how
    many. Idempotent: each beat run forgets what aged past the window since the last."""
    deleted, _ = HandledReply.objects.filter(received_at__lt=now - REPLAY_WINDOW).delete()
    return deleted


def _first_time(*, message_sid: str, now: datetime) -> bool:
    """Record the reply as handled; False when it was already."""
    try:
        with transaction.atomic():
            HandledReply.objects.create(message_sid=message_sid, received_at=now)
    except IntegrityError:
        return False
    return True


def _act_on_reply(*, from_number: str, body: str, now: datetime, opt_out_type: str) -> str:
    word = keyword(body)
    phone = reply_number(from_number)  # "" for no number: answered, never acted on
    matched = opt_out_type.upper()
    if matched in OPT_OUT_TYPES:
        # Twilio's match stands, our keywords aside; it has answered already.
        note = f"Replied {word[:40]} (Twilio {matched})"
        if matched == "STOP":
            _change_consent(phone, SmsConsent.OPTED_OUT, ReplySource.SMS, note, now)
        elif matched == "START":
            _change_consent(phone, SmsConsent.OPTED_IN, ReplySource.SMS, note, now)
        return ""
    language = _language_at(phone)
    opt_out = _opt_out_asked(word)
    if opt_out:
        # The keyword alone is logged: what else a reply says (a signature) is not kept.
        note = f"Replied {opt_out}" if opt_out == word else f"Replied {opt_out} (and more)"
        changed = _change_consent(phone, SmsConsent.OPTED_OUT, ReplySource.SMS, note, now)
        # Twilio confirms its keywords when one is the whole reply, and only then.
        return OPTED_OUT_TEXTS[language] if changed and word not in TWILIO_CONFIRMS else ""
    if word in OPT_IN_WORDS:
        # Twilio confirms every opt-in word (TWILIO_CONFIRMS): no reply of ours.
        _change_consent(phone, SmsConsent.OPTED_IN, ReplySource.SMS, f"Replied {word}", now)
        return ""
    if word in HELP_WORDS or _mentions_opt_out(word):
        # An opt-out word in a reply not taken as one ("please don't stop", "baja el
        # precio"): the customer is told how to opt out, should they have meant to.
        return HELP_TEXTS[language]
    return ""


def _opt_out_asked(words: str) -> str:
    """The opt-out keyword a reply (its keyword() words) asks by, "" for none: the whole
    reply, or its first two words or first word when they are one of
    LEADING_OPT_OUT_WORDS."""
    if words in OPT_OUT_WORDS:
        return words
    first_two = words.split()[:2]
    for lead in (" ".join(first_two), first_two[0] if first_two else ""):
        if lead in LEADING_OPT_OUT_WORDS:
            return lead
    return ""


def _mentions_opt_out(words: str) -> bool:
    """Whether any word of the reply, or two words together, is an opt-out keyword."""
    each = words.split()
    pairs = map(" ".join, itertools.pairwise(each))
    return any(phrase in OPT_OUT_WORDS for phrase in [*each, *pairs])


def _language_at(phone: str) -> str:
    """The language to answer a number in: its customer's (the one who gave it last, when
    several share it), English when none is known or written."""
    if not phone:
        return "en"
    locale = (
        Customer.objects.filter(phone=phone)
        .order_by("-updated_at", "-id")
        .values_list("locale", flat=True)
        .first()
    )
    return language_of(locale or "")


def _change_consent(
    phone: str, consent: str, source: ReplySource, note: str, now: datetime
) -> bool:
    """The number's own word on its consent: kept for the number (whoever has it now, or
    later), and given to everyone whose current number it is. Whether it changed anything:
    a customer's consent, or the number's opt-out (one no customer has, or whose customers
    were opted out through the API, is confirmed too)."""
    if not phone:
        return False  # an erased customer's delivery: its number is gone
    changed = False
    with transaction.atomic():
        if consent == SmsConsent.OPTED_OUT:
            changed = record_number_opted_out(phone=phone, source=source, at=now)
        else:
            record_number_replied_start(phone=phone, at=now)
        for customer in Customer.objects.select_for_update().filter(phone=phone).order_by("pk"):
            if set_sms_consent(
                customer=customer,
                consent=consent,
                source=source,
                note=note,
                at=now,
                reply_from=phone,
            ):
                customer.save(update_fields=["sms_consent", "consent_source", "consent_updated_at"])
                changed = True
    return changed


# A till's clock and ours disagree by a little: a code shown the minute its SMS arrived may
# be stamped a few minutes before we recorded it, and that purchase is genuine.
TILL_CLOCK_SKEW = timedelta(minutes=5)


def redeem(
    *,
    code: str | None,
    customer_id: str | None,
    store_code: str,
    amount: Decimal | None,
    redeemed_at: datetime,
    now: datetime | None = None,
) -> Redemption:
    """Record a purchase with an offer: by the code it carried, or, from a loyalty card, by the
    customer's latest unexpired offer not redeemed yet (a holdout one included: that is how
    the holdout's purchases are counted for lift). Either way the offer was issued before
    `redeemed_at` (give or take TILL_CLOCK_SKEW) and had not expired by then or, when `now`
    (by default the current time) is earlier, by `now`: a till's clock may be fast.

    A loyalty-card purchase sent again (same customer, store, time and amount: a till's
    retry) is refused, not credited to another offer; two purchases handled at once take
    one offer each.

    Raises InvalidInputError (an unknown store, or a code redeemed before it was issued),
    UnknownCodeError (no such offer), ConflictError (redeemed already, recorded already, or
    expired)."""
    store = Store.objects.filter(code=store_code).first()
    if store is None:
        raise InvalidInputError("store_code", no_such_key(Store, "code", store_code, label="code"))
    judged_at = _expiry_judged_at(redeemed_at, now or timezone.now())
    if code:
        delivery = _delivery_by_code(code)
        if delivery is None:
            raise UnknownCodeError("No offer matches this code.")
        redeemed = Redemption.objects.filter(delivery=delivery).select_related("store").first()
        if redeemed is not None:
            raise ConflictError(_redeemed_already(redeemed, store, redeemed_at, amount))
        return _record_redemption(
            delivery, store=store, amount=amount, redeemed_at=redeemed_at, judged_at=judged_at
        )
    for _ in range(LOYALTY_CARD_ATTEMPTS):
        # A till that retries (its answer lost) sends the same purchase again: that is one
        # purchase, not a reason to credit the next unused offer too.
        if Redemption.objects.filter(
            delivery__customer__external_id=customer_id,
            store=store,
            redeemed_at=redeemed_at,
            amount=amount,
        ).exists():
            raise ConflictError("This purchase was already recorded.")
        delivery = _current_offer(customer_id, store, redeemed_at, judged_at)
        try:
            return _record_redemption(
                delivery, store=store, amount=amount, redeemed_at=redeemed_at, judged_at=judged_at
            )
        except OfferTakenError:
            # Another purchase of this customer took that offer in the same instant: the
            # next unused one, if any, is this one's.
            continue
    raise ConflictError("Every current offer of this customer was redeemed already.")


def _redeemed_already(
    redemption: Redemption, store: Store, redeemed_at: datetime, amount: Decimal | None
) -> str:
    """Why a code redeemed already is refused: the same purchase sent again (a till whose
    answer was lost) was recorded; another is told where and when the code was used."""
    if (redemption.store_id, redemption.redeemed_at, redemption.amount) == (
        store.id,
        redeemed_at,
        amount,
    ):
        return "This purchase was already recorded."
    where = f"at {redemption.store.code} " if redemption.store is not None else ""
    return (
        f"This offer was already redeemed, {where}on "
        f"{format_instant_for_api(redemption.redeemed_at)}."
    )


# Concurrent loyalty-card purchases of one customer: how many offers one tries in turn.
LOYALTY_CARD_ATTEMPTS = 3


class OfferTakenError(ConflictError):
    """A concurrent redemption of the same offer committed first."""


def _expiry_judged_at(redeemed_at: datetime, now: datetime) -> datetime:
    """The instant an offer must not have expired by: the purchase's, or our `now` when the
    till's clock is ahead of ours (the API accepts times up to INGEST_MAX_CLOCK_SKEW_SECONDS
    ahead): the purchase happened no later than now, and a code still valid then is not
    refused for the till's fast clock."""
    return min(redeemed_at, now)


def _record_redemption(
    delivery: Delivery,
    *,
    store: Store,
    amount: Decimal | None,
    redeemed_at: datetime,
    judged_at: datetime,
) -> Redemption:
    """Redeem `delivery` at `store`, once its times allow it (its expiry judged at
    `judged_at`); OfferTakenError when a concurrent redemption of it won the race."""
    if redeemed_at + TILL_CLOCK_SKEW < delivery.created_at:
        raise InvalidInputError(
            "redeemed_at",
            "This time is before this code was issued "
            f"({format_instant_for_api(delivery.created_at)}); check the till's clock.",
        )
    ends_at = _offer_end_at(delivery, store)
    if ends_at is not None and ends_at < judged_at:
        raise ConflictError(f"This code expired on {format_instant_for_api(ends_at)}.")
    # The day the results count it on (selectors.get_day_figures).
    day = local_day(redeemed_at, get_budget_zone())
    try:
        with transaction.atomic():
            redemption = Redemption.objects.create(
                delivery=delivery, store=store, amount=amount, redeemed_at=redeemed_at
            )
            # A till that was offline reports days late: a day already recorded for the
            # results chart is recorded again, in the same transaction, or the chart would
            # disagree with the campaign's totals (and a failure here undoes the redemption,
            # so that the till's retry is not told it was redeemed already).
            if CampaignDay.objects.filter(campaign_id=delivery.campaign_id, day=day).exists():
                record_campaign_days(days=[day], now=timezone.now(), campaign=delivery.campaign)
    except IntegrityError:
        raise OfferTakenError("This offer was already redeemed.") from None
    return redemption


def _current_offer(
    customer_id: str | None, store: Store, redeemed_at: datetime, judged_at: datetime
) -> Delivery:
    """The offer a loyalty-card purchase at `redeemed_at` in `store` goes to: the customer's
    latest one current then (not ended at that store's till by `judged_at`) and not redeemed
    yet. One redeemed already (a code used days ago) is passed over for an earlier one still
    unused, another campaign's holdout say: the purchase carried no code, and that holdout's
    lift would lose it."""
    try:
        # An offer's last day may end later at this till than where it was given.
        earliest_end = judged_at - ZONES_SPREAD
    except OverflowError:
        # A till whose clock was never set dates purchases in year 1's first day (.NET's
        # DateTimeOffset.MinValue): no offer was current then.
        raise UnknownCodeError("No current offer.") from None
    candidates = (
        Delivery.objects.filter(
            customer__external_id=customer_id,
            status__in=[*REDEEMABLE, DeliveryStatus.HOLDOUT],
            expires_at__gte=earliest_end,
            created_at__lte=redeemed_at + TILL_CLOCK_SKEW,
        )
        .annotate(redeemed=Exists(Redemption.objects.filter(delivery=OuterRef("pk"))))
        .order_by("-created_at", "-id")
    )
    current = [d for d in candidates if _offer_end_at(d, store) >= judged_at]
    delivery = next((d for d in current if not d.redeemed), None)
    if delivery is not None:
        return delivery
    if current:
        raise ConflictError("Every current offer of this customer was redeemed already.")
    raise UnknownCodeError("No current offer.")


def _offer_end_at(delivery: Delivery, store: Store) -> datetime | None:
    """When the delivery's offer ends at `store`'s till: the day its SMS named lasts until it
    ends there too, whichever store it was given in (times.offer_end_at_till). An offer
    written before the zone of its date was recorded, or whose customer was erased, ends at
    its expiry."""
    if delivery.expires_at is None:
        return None
    zone = (delivery.trace or {}).get("offer_timezone")
    try:
        offer_zone, till_zone = ZoneInfo(zone), ZoneInfo(store.timezone)
    except (ZoneInfoNotFoundError, TypeError, ValueError, OSError):
        return delivery.expires_at
    return offer_end_at_till(delivery.expires_at, offer_zone, till_zone)


def _delivery_by_code(code: str) -> Delivery | None:
    """The sent offer a code typed at the till names. The till ignores case, spaces and
    dashes; pools uploaded before that was enforced may hold codes that differ only so
    (SAVE10 and SAVE-10): the code spelt exactly as typed is then the one, and without one,
    ConflictError rather than a guess that would credit another customer's SMS."""
    keys = [key for key in typed_code_keys(code) if key and len(key) <= CODE_KEY_LENGTH]
    if not keys:
        return None
    matches = list(Delivery.objects.filter(code_key__in=keys, status__in=REDEEMABLE).order_by("id"))
    if len(matches) > 1:
        matches = [d for d in matches if d.code == code.strip()]
        if not matches:
            raise ConflictError(
                "This code matches more than one offer once case, spaces and dashes are "
                "ignored: enter it exactly as the SMS shows it."
            )
    return matches[0] if matches else None


MAX_CODE_LENGTH = 40
# Concurrent uploads: how many times one checks its codes again after another committed.
POOL_UPLOAD_ATTEMPTS = 3


def add_pool_codes(*, campaign: Campaign, codes: list[str]) -> int:
    """Add codes a retailer's till knows to a campaign's pool; returns how many were new.

    Codes already in this campaign's pool are skipped, so an upload can be sent again. The
    till looks codes up with case, spaces and dashes ignored, so InvalidInputError refuses
    the whole upload, naming them, for codes it could not tell apart from one another, from
    a code in any pool, or from a code already sent (generated or pooled)."""
    cleaned = list(dict.fromkeys(code.strip() for code in codes))
    for _ in range(POOL_UPLOAD_ATTEMPTS):
        new = [
            OfferCode(campaign=campaign, code=code, code_key=normalise_code(code))
            for code in check_pool_codes(campaign=campaign, codes=cleaned)
        ]
        try:
            with transaction.atomic():
                OfferCode.objects.bulk_create(new)
        except IntegrityError:
            # Another upload committed one of these codes, or one the till cannot tell
            # apart, after the check (the unique code and code_key): checked again, it is
            # named, or skipped when it is the same code for this campaign.
            continue
        return len(new)
    raise ConflictError("Other uploads kept changing the code pools; send these codes again.")


def delete_pool_codes(*, codes: Iterable[OfferCode]) -> None:
    """Take codes out of their pools (one mistyped in an upload, say), unless an SMS carried
    one (ConflictError): its row is the pool's record that it went. Locked first, in id
    order: a worker's draw passes over a code being deleted (it skips locked codes), and a
    code drawn before the lock is seen as carried."""
    with transaction.atomic():
        ids = sorted(code.pk for code in codes)
        held = OfferCode.objects.select_for_update().filter(pk__in=ids).order_by("pk")
        carried = [row.code for row in held if row.delivery_id is not None]
        if carried:
            raise ConflictError(
                f"An SMS carried {_listed(carried)}: kept in the pool, as the record that it "
                "went. Only codes not sent yet can be taken out."
            )
        OfferCode.objects.filter(pk__in=ids).delete()


def check_pool_codes(*, campaign: Campaign, codes: list[str]) -> list[str]:
    """Of `codes` (stripped and distinct), those not in the campaign's pool yet; raises
    InvalidInputError naming any the till could not tell apart from another (see
    add_pool_codes), and any the till could not look up at all: made of spaces and dashes
    alone (nothing left to look up), or longer than a code can be."""
    if any(not normalise_code(code) or len(code) > MAX_CODE_LENGTH for code in codes):
        raise InvalidInputError(
            "codes",
            f"Codes are 1 to {MAX_CODE_LENGTH} characters, not only spaces and dashes.",
        )
    by_key: dict[str, list[str]] = {}
    for code in codes:
        by_key.setdefault(normalise_code(code), []).append(code)
    alike = [" and ".join(group) for group in by_key.values() if len(group) > 1]
    if alike:
        raise InvalidInputError(
            "codes",
            f"Codes a till cannot tell apart (it ignores case, spaces and dashes): "
            f"{_listed(alike, sep='; ')}.",
        )
    # Keyless pool codes are the few drawn before keys were stored (migration 0015).
    pooled = OfferCode.objects.filter(Q(code_key__in=list(by_key)) | Q(code_key=None))
    known = [
        (campaign_id, code)
        for campaign_id, code in pooled.values_list("campaign_id", "code")
        if normalise_code(code) in by_key
    ]
    uploaded = set(codes)
    already = {
        code for campaign_id, code in known if campaign_id == campaign.id and code in uploaded
    }
    sent = Delivery.objects.filter(code_key__in=list(by_key)).values_list("code", flat=True)
    # A code of this pool's is on the delivery that drew it: that one is not another code.
    others = {code for _, code in known if code not in already} | (set(sent) - already)
    taken, confusable = [], []
    for other in sorted(others):
        [mine] = by_key[normalise_code(other)]
        if mine in already:
            continue  # a pair stored before pairs were refused: sending it again adds nothing
        if mine == other:
            taken.append(mine)
        else:
            confusable.append(f"{mine} (like {other})")
    problems = []
    if taken:
        problems.append(f"Codes already used elsewhere: {_listed(taken)}.")
    if confusable:
        problems.append(
            "Codes a till cannot tell apart from codes already used (it ignores case, spaces "
            f"and dashes): {_listed(confusable)}."
        )
    if problems:
        raise InvalidInputError("codes", " ".join(problems))
    return [code for code in codes if code not in already]


def _listed(items: list[str], *, sep: str = ", ") -> str:
    """The first ten of a list in a message, and how many more."""
    more = f" and {len(items) - 10} more" if len(items) > 10 else ""
    return sep.join(items[:10]) + more
