"""People, their devices and consent, and what they browsed."""

import unicodedata
from datetime import datetime
from functools import cache
from zoneinfo import available_timezones

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.crypto import salted_hmac

from customers import intent
from customers.phones import PhoneError, normalise_phone, region_of_locale
from promotions.beacons import BeaconParseError, identity_key_from_text

# Names the system's zone database holds that are not places: `localtime` is whatever the
# server is set to (so a store's hours would move with the machine), `Factory` no zone at all.
NOT_PLACES = frozenset({"localtime", "Factory"})


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones()) - NOT_PLACES


def validate_time_zone(name: str) -> None:
    """An IANA time zone name: quiet hours and budgets are read in it."""
    if name not in _time_zones():
        raise ValidationError(f"Unknown time zone '{name}'; use an IANA name such as Europe/Paris.")


# BCP 47 as clients write it: a language, then subtags (fr, fr-FR, zh-Hant-TW); the API
# also takes fr_FR and stores it as fr-FR.
LOCALE_PATTERN = r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$"
locale_validator = RegexValidator(LOCALE_PATTERN, "Expected a BCP 47 locale such as fr-FR.")


EXTERNAL_ID_MAX_LENGTH = 100


def validate_external_id(external_id: str) -> None:
    """The retailer's id for a customer, as the API's paths carry it: what
    validate_external_id_lookup takes, neither blank nor with whitespace around it, nor
    holding a "/". Every body field naming a customer (a device's customer_id, an event's)
    is trimmed, so a customer whose id had a space at either end could never be named by
    one. A "/" is refused for the customer's URL: servers and proxies decode %2F before
    routing (some refuse it outright), so such a customer's address would depend on the
    path between the client and us. Ids stored before either rule are still looked up."""
    validate_external_id_lookup(external_id)
    trimmed = external_id.strip()
    if not trimmed:
        raise ValidationError("An id cannot be blank.")
    if trimmed != external_id:
        raise ValidationError(
            f"An id cannot begin or end with whitespace; did you mean {trimmed!r}?"
        )
    if "/" in external_id:
        raise ValidationError("A customer id cannot contain '/': it is part of the customer's URL.")


def validate_external_id_lookup(external_id: str) -> None:
    """An id the database can be asked about: at most EXTERNAL_ID_MAX_LENGTH characters,
    none of them a control character. PostgreSQL cannot store a NUL, and a tab or line feed
    in an id is a client's bug, not a retailer's id."""
    if len(external_id) > EXTERNAL_ID_MAX_LENGTH:
        raise ValidationError(f"At most {EXTERNAL_ID_MAX_LENGTH} characters.")
    control = next((c for c in external_id if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise ValidationError(f"An id cannot hold a control character ({control!r}).")


class SmsConsent(models.TextChoices):
    OPTED_IN = "opted_in", "Opted in"
    OPTED_OUT = "opted_out", "Opted out"
    UNKNOWN = "unknown", "Unknown"


class Customer(models.Model):
    external_id = models.CharField(
        max_length=EXTERNAL_ID_MAX_LENGTH,
        unique=True,
        validators=[validate_external_id],
        help_text="The retailer's id.",
    )
    phone = models.CharField(max_length=20, blank=True, help_text="E.164, e.g. +33612345678.")
    first_name = models.CharField(max_length=100, blank=True)
    timezone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text="IANA time zone; empty means the store's.",
    )
    locale = models.CharField(
        max_length=35, blank=True, validators=[locale_validator], help_text="BCP 47, e.g. fr-FR."
    )
    sms_consent = models.CharField(
        max_length=10, choices=SmsConsent.choices, default=SmsConsent.UNKNOWN
    )
    consent_source = models.CharField(max_length=100, blank=True)
    consent_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["external_id"]
        # A reply or Twilio's 21610 finds its customers by number: without an index, a scan
        # of every customer per inbound SMS.
        indexes = [models.Index(fields=["phone"], name="customer_phone")]
        permissions = [
            ("erase_customer", "Can erase a customer's personal data"),
            ("export_customer", "Can export everything held about a customer"),
        ]

    def __str__(self) -> str:
        return self.external_id

    def clean(self) -> None:
        """A phone an SMS can reach, kept in E.164: a national number is read in the country
        of the customer's locale."""
        if self.phone:
            try:
                self.phone = normalise_phone(self.phone, region_of_locale(self.locale))
            except PhoneError as error:
                raise ValidationError({"phone": str(error)}) from None


class ConsentChange(models.Model):
    """The consent log: one row per change of a customer's SMS consent, never edited."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="consent_log")
    previous = models.CharField(max_length=10, choices=SmsConsent.choices)
    consent = models.CharField(max_length=10, choices=SmsConsent.choices)
    source = models.CharField(max_length=100, blank=True)
    note = models.CharField(max_length=200, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)
    # The customer's own reply to our SMS (or Twilio's 21610), which only their reply undoes;
    # not a source name, which a CRM may name "sms" too.
    by_reply = models.BooleanField(default=False)
    # For a reply: the number it came from, keyed as OptedOutNumber's (no phone number kept),
    # so that a STOP from a number the customer has given up does not hold their new one.
    # Migration 0011 gave the replies logged before it their customer's number then; one
    # without (its customer had none) is taken as from the customer's current number.
    reply_number_key = models.CharField(
        max_length=64,
        null=True,
        blank=True,
        editable=False,  # a hash no one can read: nothing to show or edit in the admin
        help_text="For a reply: HMAC-SHA256 of the E.164 number it came from (SECRET_KEY).",
    )

    class Meta:
        ordering = ["changed_at", "id"]

    def __str__(self) -> str:
        return f"{self.previous} → {self.consent}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ValueError("The consent log is append-only.")
        super().save(*args, **kwargs)


class Platform(models.TextChoices):
    IOS = "ios", "iOS"
    ANDROID = "android", "Android"
    OTHER = "other", "Other"


class Device(models.Model):
    """An app install, or a tag a customer carries that in-store gateways can see."""

    device_id = models.CharField(max_length=100, unique=True)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="devices")
    platform = models.CharField(max_length=10, choices=Platform.choices, default=Platform.OTHER)
    ble_identity = models.CharField(
        max_length=80,
        unique=True,
        null=True,
        blank=True,
        help_text="The iBeacon or Eddystone-UID identity the device advertises, as a key.",
    )
    # Pings and sightings recorded before this are the previous owner's location, however
    # late the app uploads them. None for a device that has never changed hands: an app's
    # first queue, recorded before it was registered, is its first customer's own.
    owner_since = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When the device last changed customer (empty: never). Pings and sightings "
        "recorded before then are refused.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.device_id

    def clean(self) -> None:
        """The identity is stored as its canonical key (the admin takes it typed in any case);
        one the key builders refuse, or a store beacon's, is a field error."""
        if not self.ble_identity:
            self.ble_identity = None  # no identity; "" would collide with another device's
            return
        try:
            self.ble_identity = identity_key_from_text(self.ble_identity)
        except BeaconParseError as error:
            raise ValidationError({"ble_identity": str(error)}) from None
        # Gateways find devices by the identity they hear: a device holding a store beacon's
        # would be heard whenever the beacon is, and its customer would seem to stand in that
        # zone all day. Looked up by name: promotions' models import this module.
        beacon_model = apps.get_model("promotions", "Beacon")
        if beacon_model.objects.filter(identity=self.ble_identity).exists():
            raise ValidationError({"ble_identity": "A store beacon advertises this identity."})


class Visitor(models.Model):
    """An anonymous web visitor; once identified, its events count as the customer's."""

    visitor_id = models.CharField(max_length=100, unique=True)
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.CASCADE, related_name="visitors"
    )
    identified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.visitor_id


class EventType(models.TextChoices):
    PAGE_VIEW = "page_view", "Page view"
    PRODUCT_VIEW = "product_view", "Product view"
    ADD_TO_CART = "add_to_cart", "Add to cart"
    CART_ABANDONED = "cart_abandoned", "Cart abandoned"


class BrowsingEvent(models.Model):
    event_id = models.CharField(max_length=100, unique=True)
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    # Not CASCADE: an identified visitor goes when its customer is erased, and another
    # customer's events sent from the same browser (a shared computer) must stay theirs.
    visitor = models.ForeignKey(
        Visitor, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    type = models.CharField(max_length=20, choices=EventType.choices)
    sku = models.CharField(max_length=100, blank=True)
    product_name = models.CharField(max_length=200, blank=True)
    category = models.CharField(max_length=100, blank=True)
    url = models.CharField(max_length=2000, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["customer", "occurred_at"]),
            # The admin's list: its date drill-down reads the first and last, its search
            # finds the events of a SKU.
            models.Index(fields=["occurred_at"], name="browsing_event_occurred"),
            models.Index(fields=["sku"], name="browsing_event_sku"),
        ]

    def __str__(self) -> str:
        return self.event_id


class Product(models.Model):
    """The catalogue as browsing reveals it: the name last sent with each SKU's events."""

    sku = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True)
    category = models.CharField(max_length=100, blank=True)
    named_at = models.DateTimeField(
        null=True, blank=True, help_text="When the event that gave the name occurred."
    )
    categorised_at = models.DateTimeField(
        null=True, blank=True, help_text="When the event that gave the category occurred."
    )

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return self.name or self.sku

    @property
    def display_name(self) -> str:
        return self.name or self.sku


class CartState(models.TextChoices):
    NONE = intent.CART_NONE, "None"
    IN_CART = intent.CART_IN_CART, "In cart"
    ABANDONED = intent.CART_ABANDONED, "Abandoned"


class DecayingScore:
    """A score kept as one number as of its newest event (`score`, `score_at`), decaying with
    INTENT_HALF_LIFE_DAYS: matching reads it at the time it decides."""

    score: float
    score_at: datetime | None

    def score_as_of(self, when: datetime) -> float:
        half_life = settings.INTENT_HALF_LIFE_DAYS * 86400
        return intent.score_as_of(self.score, self.score_at, when, half_life)


class Intent(DecayingScore, models.Model):
    """What a customer's browsing says, kept current on ingest so matching reads one row."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE)
    view_times = models.JSONField(
        default=list, help_text="Epoch seconds of recent product views, ascending."
    )
    last_seen_at = models.DateTimeField(null=True, blank=True)
    cart_state = models.CharField(
        max_length=10, choices=CartState.choices, default=CartState.NONE, blank=True
    )
    cart_updated_at = models.DateTimeField(null=True, blank=True)
    score = models.FloatField(default=0.0, help_text="Decayed score as of score_at.")
    score_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    def views_since(self, since_epoch: int) -> int:
        return intent.views_since(self.view_times, since_epoch)


class ProductIntent(Intent):
    sku = models.CharField(max_length=100)
    category = models.CharField(max_length=100, blank=True)
    categorised_at = models.DateTimeField(
        null=True, blank=True, help_text="When the event that gave the category occurred."
    )
    categories = models.JSONField(
        default=list,
        blank=True,
        help_text="Every category its events counted towards, as matched (case and spacing "
        "folded): a product the site lists under two is in both. Empty on a row stored "
        "before it was kept: its category alone.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "sku"], name="product_intent_unique")
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}/{self.sku}"


class CategoryIntent(Intent):
    category = models.CharField(max_length=100)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "category"], name="category_intent_unique")
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}/{self.category}"


class ReplySource(models.TextChoices):
    """The consent sources of a customer's own reply to our SMS (promotions.feedback)."""

    SMS = "sms", "Their reply (STOP, START...)"
    TWILIO = "twilio", "Twilio's error 21610 (they replied STOP to the sender)"


# Salts the number's keyed hash, so that it is no other HMAC Django makes with SECRET_KEY.
OPTED_OUT_NUMBER_SALT = "customers.OptedOutNumber"


def opted_out_number_keys(phone: str) -> list[str]:
    """The keys an E.164 number is stored under: its HMAC-SHA256 with SECRET_KEY (what is
    written), then with each of SECRET_KEY_FALLBACKS (rows written before a rotation). A
    plain hash of a phone number is reversed by trying every number of a country; this one
    is not without the key."""
    secrets = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    return [
        salted_hmac(OPTED_OUT_NUMBER_SALT, phone, secret=secret, algorithm="sha256").hexdigest()
        for secret in secrets
    ]


class OptedOutNumber(models.Model):
    """A number that opted out by replying to our SMS (or that Twilio says did): no customer
    stands opted in at it until it replies START. Kept by a keyed hash, no phone number, and
    kept through the erasure of its customers: that this number asked not to be texted."""

    number_key = models.CharField(
        max_length=64, unique=True, help_text="HMAC-SHA256 of the E.164 number (SECRET_KEY)."
    )
    opted_out_at = models.DateTimeField()
    source = models.CharField(max_length=10, choices=ReplySource.choices)

    class Meta:
        ordering = ["-opted_out_at"]

    def __str__(self) -> str:
        return f"{self.number_key[:12]}… ({self.source})"


class RepliedStartNumber(models.Model):
    """A number that replied START (or YES, UNSTOP...) to our sender, and when it last did,
    whether or not that changed anyone's consent: a START from a customer whose STOP never
    reached us changes nothing here, yet lifted Twilio's block, and a 21610 for an SMS sent
    before it is outdated. Kept by a keyed hash, as OptedOutNumber is, and through the
    erasure of its customers: another record at the number may have that SMS's 21610 still
    to come."""

    number_key = models.CharField(
        max_length=64, unique=True, help_text="HMAC-SHA256 of the E.164 number (SECRET_KEY)."
    )
    replied_at = models.DateTimeField()

    class Meta:
        ordering = ["-replied_at"]

    def __str__(self) -> str:
        return f"{self.number_key[:12]}… (START)"


class HandledReply(models.Model):
    """An SMS a number sent us (Twilio's MessageSid), once acted on. Twilio's signature holds no
    time, so a copy of its request (a webhook gateway replaying what it stored, a manual
    retry, a captured request) passes the check: known here, it is not acted on again, and an
    old START does not opt back in a number that has replied STOP since. Its sid alone,
    neither the number nor the text, so it is kept through the erasure of its customers."""

    message_sid = models.CharField(max_length=34, unique=True)
    received_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "handled replies"
        # The retention purge forgets them by age (promotions.feedback.REPLAY_WINDOW).
        indexes = [models.Index(fields=["received_at"], name="handled_reply_received")]

    def __str__(self) -> str:
        return self.message_sid


class CartIntent(DecayingScore, models.Model):
    """A customer's cart as the web site reports it whole: from the cart events that name
    neither a SKU nor a category (a cart-level `cart_abandoned`, the usual one, and the
    `add_to_cart` that restores it). One row per customer, kept current on ingest."""

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="cart_intent")
    last_seen_at = models.DateTimeField(null=True, blank=True)
    cart_state = models.CharField(
        max_length=10, choices=CartState.choices, default=CartState.NONE, blank=True
    )
    cart_updated_at = models.DateTimeField(null=True, blank=True)
    score = models.FloatField(default=0.0, help_text="Decayed score as of score_at.")
    score_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.customer_id}/cart"
