"""Places, campaigns, the location data that reaches them, and the keys of API clients."""

import hashlib
import secrets
from collections.abc import Collection, Iterable, Mapping
from datetime import time
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import connection, models
from django.db.models.functions import Coalesce
from django.utils import timezone

from customers.models import Device, validate_time_zone
from promotions.beacons import BeaconParseError, identity_key_from_text
from promotions.database import held_rows, hold_names
from promotions.geo import GeometryError, distance_m, outline_geometry, polygon_rings
from promotions.offers import TemplateError, normalise_code, template_placeholders
from promotions.times import format_instant_for_people

code_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
    "Use letters, digits, '_', '.' or '-', starting with a letter or digit.",
)


def is_storable_text(text: str) -> bool:
    """Text PostgreSQL can store, in a text column or inside JSON: no NUL character and no
    unpaired UTF-16 surrogate. SQLite takes both, so only production would fail, with a 500."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# A fence wider than this is a mistake (a radius in the wrong unit, a polygon's positions in
# the wrong order), and it would cost every worker's index memory for nothing.
MAX_FENCE_RADIUS_M = 50_000.0


# What a polygon fence is made of. Other GeoJSON members (a name, properties, a bbox) are
# dropped: every worker loads every store's polygon to build its fence index, and a string
# in them could hold what PostgreSQL cannot store (a NUL), failing the save with a 500.
POLYGON_MEMBERS = ("type", "coordinates")


class Store(models.Model):
    code = models.CharField(max_length=32, unique=True, validators=[code_validator])
    name = models.CharField(max_length=200)
    address = models.CharField(max_length=300, blank=True)
    latitude = models.FloatField(validators=[MinValueValidator(-90), MaxValueValidator(90)])
    longitude = models.FloatField(validators=[MinValueValidator(-180), MaxValueValidator(180)])
    radius_m = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_FENCE_RADIUS_M)],
        help_text="Circular fence around the point, in metres.",
    )
    # Checked by clean(), which knows the store's location too.
    polygon = models.JSONField(
        null=True, blank=True, help_text="GeoJSON Polygon fence, instead of a radius."
    )
    timezone = models.CharField(max_length=64, validators=[validate_time_zone])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(radius_m__isnull=False, polygon__isnull=True)
                | models.Q(radius_m__isnull=True, polygon__isnull=False),
                name="store_has_one_fence",
                violation_error_message="A store has a radius or a polygon, not both.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    def clean(self) -> None:
        """One fence, and a polygon around the store's own location. The presence engine
        measures every store with every batch: a fence it cannot measure would stop it.
        A polygon is kept as its type and coordinates alone (see POLYGON_MEMBERS), taken out
        of the Feature a map editor wraps it in."""
        if (self.radius_m is None) == (self.polygon is None):
            raise ValidationError(
                {"radius_m": "Give the fence as a radius_m or a polygon (and the other null)."}
            )
        if self.polygon is not None:
            try:
                self.polygon = outline_geometry(self.polygon)
            except GeometryError as error:
                raise ValidationError({"polygon": str(error)}) from None
            self._check_polygon_near()
            self.polygon = {name: self.polygon[name] for name in POLYGON_MEMBERS}

    def _check_polygon_near(self) -> None:
        """A polygon the engine can measure, around the store's own location. One around
        some other place is a mistake, most often positions written
        [latitude, longitude]: near Paris both orders are on the globe, so only the store's
        own location tells them apart."""
        try:
            outer = polygon_rings(self.polygon)[0]
        except GeometryError as error:
            raise ValidationError({"polygon": str(error)}) from None
        if self.latitude is None or self.longitude is None:
            return  # their own fields say what is wrong with them
        here = (self.longitude, self.latitude)
        farthest = max(distance_m(here, corner) for corner in outer)
        if farthest <= MAX_FENCE_RADIUS_M:
            return
        message = (
            f"The polygon reaches {farthest / 1000:,.0f} km from the store's location; "
            f"a fence reaches {MAX_FENCE_RADIUS_M / 1000:g} km at most."
        )
        if max(distance_m(here, (lat, lon)) for lon, lat in outer) <= MAX_FENCE_RADIUS_M:
            message += (
                " Its positions look like [latitude, longitude]: GeoJSON puts longitude first."
            )
        raise ValidationError({"polygon": message})

    def campaigns_targeting(self) -> list[str]:
        """Names of the campaigns, ended ones aside, that list this store."""
        live = self.campaigns.exclude(status=CampaignStatus.ENDED)
        return sorted(live.values_list("name", flat=True))


def no_such_key(model: type[models.Model], field: str, key: str, *, label: str) -> str:
    """What to say of `key`, which no `model` row has in `field` (unique, case-sensitive):
    naming the rows whose key differs from it by case alone, which an integrator who wrote
    "rivoli" for store RIVOLI was not told of ("Object with code=rivoli does not exist.")."""
    noun = model._meta.verbose_name
    message = f"No {noun} has the {label} '{key}'."
    return message + case_hint(model.objects.all(), field, key, label=label)


def case_hint(rows: models.QuerySet, field: str, text: str, *, label: str = "code") -> str:
    """A sentence naming the keys of `rows` in `field` that differ from `text` by case alone
    (" Codes are case-sensitive: did you mean 'RIVOLI'?"); "" when none do."""
    if not is_storable_text(text):  # PostgreSQL cannot compare it: no key holds it
        return ""
    found = rows.filter(**{f"{field}__iexact": text}).values_list(field, flat=True)
    near = sorted(set(found[:5]))
    if not near:
        return ""
    which = " or ".join(f"'{other}'" for other in near)
    return f" {label.capitalize()}s are case-sensitive: did you mean {which}?"


DEFAULT_RSSI_THRESHOLD = -80


class Zone(models.Model):
    """A named area of a store (entrance, electronics...), covered by beacons."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="zones")
    code = models.CharField(max_length=32, validators=[code_validator])
    name = models.CharField(max_length=200)
    rssi_threshold = models.IntegerField(
        default=DEFAULT_RSSI_THRESHOLD,
        # Sightings are below 0 dBm (0 is a phone saying it could not measure): a threshold
        # at 0 or above would be a zone no one can enter.
        validators=[MinValueValidator(-127), MaxValueValidator(-1)],
        help_text="Median RSSI (dBm, below 0) a phone must reach to count as in the zone.",
    )

    class Meta:
        ordering = ["store__code", "code"]
        constraints = [
            models.UniqueConstraint(fields=["store", "code"], name="zone_code_unique_in_store")
        ]

    def __str__(self) -> str:
        return f"{self.store.code}/{self.code}"

    def clean(self) -> None:
        if self.pk is None:
            return
        # Locked, as a beacon or gateway joining the zone locks it (see
        # zone_of_another_store): whichever write comes second waits, then sees the other's.
        before = locked_zone(self.pk)
        if before is None or (before.code, before.store_id) == (self.code, self.store_id):
            return
        # The codes held as a deletion holds them, after the row: a deletion of the other
        # zone of the old code in flight is waited for, then seen gone by the checks below,
        # and one that comes after waits for this save and sees the zone renamed or moved.
        hold_zone_codes({before.code, self.code})
        errors: dict[str, str] = {}
        # Beacons and gateways keep their own store (see zone_of_another_store): moving their
        # zone would count its shoppers in the other store.
        moved = before.store_id != self.store_id
        if moved and (before.beacons.exists() or before.gateways.exists()):
            errors["store"] = (
                f"Zone {before.code} has beacons or gateways in store {before.store.code}; "
                "move or delete them first."
            )
        lost = zones_lost_by_campaigns({self.pk: (self.code, self.store_id)})
        if lost:
            renamed = before.code != self.code
            doing = {
                (True, False): "Renaming this zone",
                (False, True): f"Moving this zone to store {self.store.code}",
                (True, True): f"Renaming this zone and moving it to store {self.store.code}",
            }[renamed, moved]
            errors["code"] = zone_loss_refusal(doing, lost)
        if errors:
            raise ValidationError(errors)


class ZoneLoss(NamedTuple):
    """A live campaign that a change to zones would leave with no zone of the code it watches
    among its stores: `stores`, their codes, none for a campaign for every store."""

    campaign: str
    code: str
    stores: list[str]

    def where(self) -> str:
        """Where the campaign looks for its zone, in a marketer's words."""
        if not self.stores:
            return "in any store"
        if len(self.stores) == 1:
            return f"in its store {self.stores[0]}"
        if len(self.stores) > 3:
            return f"in any of its {len(self.stores)} stores"
        return f"in its stores {', '.join(self.stores[:-1])} and {self.stores[-1]}"


def zones_lost_by_campaigns(changes: Mapping[int, tuple[str, int] | None]) -> list[ZoneLoss]:
    """The rule for every change to zones (a rename, a move, a deletion, several at once, a
    store's deletion taking its zones): it is refused when it leaves a live campaign (not
    ended) watching a code that no zone of its stores has (of any store, for a campaign for
    every store), where one had before. A campaign names its zone by code, and one with no
    zone to watch stops without a word; one that keeps another (a chain-wide "entrance"
    campaign in the stores that keep an entrance, a zone moved with its code) runs on.

    `changes`: the zones changed, by id, each with its code and store id after the change,
    or None when it goes. Returns the campaigns so left, by name. A write calls it holding
    the zones' rows and their old and new codes (hold_zone_codes), so that a change to
    another zone of those codes, in flight, is waited for and seen."""
    codes = set(Zone.objects.filter(pk__in=changes).values_list("code", flat=True))
    before = list(Zone.objects.filter(code__in=codes).values_list("pk", "code", "store_id"))
    after_places = [(code, store_id) for pk, code, store_id in before if pk not in changes] + [
        place for place in changes.values() if place is not None
    ]
    campaigns = (
        Campaign.objects.exclude(status=CampaignStatus.ENDED)
        .filter(trigger_type=TriggerType.BEACON_ZONE, trigger_zone__in=codes)
        .prefetch_related("stores")
        .order_by("name", "pk")
    )
    lost = []
    for campaign in campaigns:
        stores = {store.pk: store.code for store in campaign.stores.all()}
        watched = [store_id for code, store_id in after_places if code == campaign.trigger_zone]
        had = [store_id for _, code, store_id in before if code == campaign.trigger_zone]
        if _in_stores(had, stores) and not _in_stores(watched, stores):
            lost.append(ZoneLoss(campaign.name, campaign.trigger_zone, sorted(stores.values())))
    return lost


def _in_stores(store_ids: list[int], stores: Collection[int]) -> bool:
    """Whether a zone in one of `store_ids` is in `stores`, a campaign's (all, when none)."""
    return bool(store_ids) and (not stores or any(pk in stores for pk in store_ids))


def zone_loss_refusal(doing: str, lost: Collection[ZoneLoss]) -> str:
    """Why a change to zones is refused (see zones_lost_by_campaigns): `doing`, what the
    marketer asked ("Deleting zone RIVOLI/entrance"), and the campaigns it would leave
    without a zone to watch."""
    if len(lost) == 1:
        [loss] = lost
        return (
            f"{doing} would leave campaign {loss.campaign} with no zone '{loss.code}' "
            f"{loss.where()}. Change its trigger or end it first."
        )
    each = "; ".join(f"{loss.campaign}, no zone '{loss.code}' {loss.where()}" for loss in lost)
    return (
        f"{doing} would leave campaigns with no zone to watch: {each}. Change their trigger "
        "or end them first."
    )


# The first key of the PostgreSQL advisory locks on zone codes (see hold_zone_codes).
ZONE_CODE_LOCKS = 0x5A43  # "ZC"


def hold_zone_codes(codes: Collection[str]) -> None:
    """Hold zone codes until the transaction ends, for a zone of theirs about to be deleted,
    renamed or moved, its row locked already: a campaign watches a code, and stops only once
    no zone of it is left among its stores, or in any store for a campaign for every store
    (zones_lost_by_campaigns). Two such writes to the zones of one code in different stores
    lock different rows; each, checking unlocked, saw the other's zone left, and both went.
    The second now waits for the first to commit, then sees its zone gone. Taken after the
    rows, as every such write takes them: a deletion holding a code waits for no zone row."""
    hold_names(ZONE_CODE_LOCKS, codes)


def zone_of_another_store(place: "Beacon | Gateway") -> str | None:
    """What is wrong when a beacon's or gateway's zone is another store's, else None: its zone
    is one of its own store's, or none (the store as a whole). Presence puts a zone's
    shoppers in the zone's store, so a beacon of RIVOLI in a zone of OPERA would have
    RIVOLI's shoppers reach OPERA's entrance.

    A place joining a zone reads it under lock, so within the write's transaction (the API's
    and the admin's are one each): a move of the zone to another store in flight is waited
    for, then seen, and one that comes after waits for this write and sees the place
    (Zone.clean). Inserting the place alone would not make the move wait."""
    if place.zone_id is None or place.store_id is None:
        return None
    if _joins_zone(place):
        zone = locked_zone(place.zone_id)
        if zone is None:
            return "This zone has just been deleted: choose another, or none."
        place.zone = zone
    if place.zone.store_id == place.store_id:
        return None
    return (
        f"Zone {place.zone} is in store {place.zone.store.code}: choose a zone of store "
        f"{place.store.code}, or none."
    )


def locked_zone(pk: int) -> Zone | None:
    """The zone as committed, its row locked against a move (FOR NO KEY UPDATE, as the API's
    edits lock it). The row alone: PostgreSQL would drop a locked row that a move just
    committed from a join with its old store, and the zone would read as deleted."""
    return Zone.objects.select_for_update(no_key=True).order_by().filter(pk=pk).first()


def _joins_zone(place: "Beacon | Gateway") -> bool:
    """Whether the place is new, or moving into its zone. One already in it needs no lock:
    a move of the zone sees it, and locking the zone would wait on the zone's deletion,
    which waits on this place's row (locked by the API's edit) to take it out of the zone."""
    if place.pk is None:
        return True
    return not type(place).objects.filter(pk=place.pk, zone_id=place.zone_id).exists()


class Beacon(models.Model):
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="beacons")
    zone = models.ForeignKey(
        Zone, null=True, blank=True, on_delete=models.SET_NULL, related_name="beacons"
    )
    identity = models.CharField(
        max_length=80, unique=True, help_text="iBeacon or Eddystone-UID identity, as a key."
    )
    measured_power = models.IntegerField(
        default=-59,
        validators=[MinValueValidator(-127), MaxValueValidator(20)],
        help_text="RSSI at 1 m, in dBm.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["store__code", "id"]

    def __str__(self) -> str:
        return self.identity

    def clean(self) -> None:
        errors: dict[str, str] = {}
        # Stored as the key gateways' sightings are matched against, however it was typed.
        try:
            self.identity = identity_key_from_text(self.identity)
        except BeaconParseError as error:
            errors["identity"] = str(error)
        else:
            # Gateways would hear the beacon as that customer's device, all day long.
            if Device.objects.filter(ble_identity=self.identity).exists():
                errors["identity"] = "A customer's device advertises this identity."
        if wrong_zone := zone_of_another_store(self):
            errors["zone"] = wrong_zone
        if errors:
            raise ValidationError(errors)


class Gateway(models.Model):
    """A fixed in-store scanner that reports the phones and tags it sees."""

    gateway_id = models.CharField(max_length=64, unique=True, validators=[code_validator])
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="gateways")
    zone = models.ForeignKey(
        Zone, null=True, blank=True, on_delete=models.SET_NULL, related_name="gateways"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["gateway_id"]

    def __str__(self) -> str:
        return self.gateway_id

    def clean(self) -> None:
        if wrong_zone := zone_of_another_store(self):
            raise ValidationError({"zone": wrong_zone})


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    ENDED = "ended", "Ended"


class TriggerType(models.TextChoices):
    ENTER = "enter", "Enters the store"
    DWELL = "dwell", "Stays in the store for some minutes"
    NEAR = "near", "Passes within a distance of the store"
    BEACON_ZONE = "beacon_zone", "Reaches a beacon zone"


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def every_weekday() -> list[str]:
    return list(WEEKDAYS)


# The bounds of a campaign's numbers: the fields' validators apply them in the admin, and the
# API's serializer reads them from here. Past them a number is a mistake, and some would stop
# the engine: dates computed from a cap of a million days, or from an offer valid for ten
# billion, overflow, and every batch would fail. A near trigger's distance is a fence's
# radius, up to MAX_FENCE_RADIUS_M.
MAX_CAMPAIGN_PRIORITY = 1000  # from -MAX_CAMPAIGN_PRIORITY
MAX_DWELL_MINUTES = 24 * 60
MAX_INTENT_MIN_VIEWS = 100
MAX_INTENT_WITHIN_DAYS = 366
MAX_OFFER_VALID_DAYS = 365
MAX_LIMIT_PER_CUSTOMER_DAYS = 3650
MAX_INTENT_NAMES = 100  # SKUs, and categories, a campaign's intent condition names
MAX_INTENT_NAME_LENGTH = 100
MAX_CAMPAIGN_BUDGET = 2**31 - 1  # a PostgreSQL integer: past it the INSERT fails (a 500)


def unix_line_breaks(text: str) -> str:
    """Text with its line breaks as LF, CRLF and a lone CR alike. A browser posts a textarea's
    as CRLF while the page's script and the API's clients write LF: kept, each would count
    a character more in the SMS than in the live preview, a segment more at the edge."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


# Stores and zones that only ended campaigns use can be deleted: a campaign brought back
# could run without them, in every store if it lost all of its own.
ENDED_STAYS_ENDED = (
    "An ended campaign stays ended, as its stores or zones may be gone; create a new "
    'campaign to run it again (in the admin: "Duplicate as a draft").'
)


class Campaign(models.Model):
    """What to send, to whom, where and when: trigger, intent condition, offer and limits."""

    name = models.CharField(max_length=200)
    status = models.CharField(
        max_length=10, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT
    )
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    stores = models.ManyToManyField(
        Store, blank=True, related_name="campaigns", help_text="None selected means every store."
    )
    priority = models.IntegerField(
        default=0,
        validators=[
            MinValueValidator(-MAX_CAMPAIGN_PRIORITY),
            MaxValueValidator(MAX_CAMPAIGN_PRIORITY),
        ],
        help_text="Higher wins when several match.",
    )

    trigger_type = models.CharField(
        max_length=12, choices=TriggerType.choices, default=TriggerType.ENTER
    )
    trigger_minutes = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_DWELL_MINUTES)],
    )
    trigger_distance_m = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_FENCE_RADIUS_M)],
    )
    trigger_zone = models.CharField(max_length=32, blank=True)

    intent_skus = models.JSONField(default=list, blank=True)
    intent_categories = models.JSONField(default=list, blank=True)
    intent_min_views = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(MAX_INTENT_MIN_VIEWS)]
    )
    intent_within_days = models.PositiveSmallIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(MAX_INTENT_WITHIN_DAYS)]
    )
    intent_cart_abandoned = models.BooleanField(default=False)

    offer_template = models.TextField()
    offer_valid_days = models.PositiveSmallIntegerField(
        default=7, validators=[MinValueValidator(1), MaxValueValidator(MAX_OFFER_VALID_DAYS)]
    )

    limit_per_customer_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_LIMIT_PER_CUSTOMER_DAYS)],
        help_text="At most one SMS per customer in this many days.",
    )
    quiet_hours_start = models.TimeField(null=True, blank=True)
    quiet_hours_end = models.TimeField(null=True, blank=True)
    allowed_days = models.JSONField(default=every_weekday, blank=True)
    daily_budget = models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(MAX_CAMPAIGN_BUDGET)]
    )
    total_budget = models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(MAX_CAMPAIGN_BUDGET)]
    )
    holdout_percent = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(100)],
        help_text="The share of matching customers held out (sent nothing), to measure the "
        "lift against. A change applies to customers not yet in the campaign: a customer "
        "stays in the group their first decision in it put them in.",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-priority", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def has_intent(self) -> bool:
        return bool(self.intent_skus or self.intent_categories or self.intent_cart_abandoned)

    def clean(self) -> None:
        """The rules a campaign must satisfy, each reported on its field, in a marketer's words.
        Values are kept as the engine and the API read them: quiet hours to the minute, days
        and intent names once each, names trimmed."""
        errors: dict[str, str] = {}
        self._normalise()
        stored = None
        if self.pk is not None and self.status != CampaignStatus.ENDED:
            # Read from the database: the form and the API change a copy of the campaign.
            stored = Campaign.objects.filter(pk=self.pk).values_list("status", flat=True).first()
            if stored == CampaignStatus.ENDED:
                errors["status"] = ENDED_STAYS_ENDED
        if (
            self.status == CampaignStatus.ACTIVE
            and stored not in (CampaignStatus.ACTIVE, CampaignStatus.ENDED)
            and self.ends_at is not None
            and self.ends_at <= timezone.now()
        ):
            # Made active, it would send nothing and say nothing (the engine skips a campaign
            # past its end). One already active whose end passes is simply over: kept.
            errors["ends_at"] = (
                f"This campaign's end, {format_instant_for_people(self.ends_at)}, has "
                "passed: it cannot be made active. Set a later end, or none, to run it."
            )
        if self.trigger_type == TriggerType.DWELL and not self.trigger_minutes:
            errors["trigger_minutes"] = "A dwell trigger needs the minutes a customer must stay."
        if self.trigger_type == TriggerType.NEAR and not self.trigger_distance_m:
            errors["trigger_distance_m"] = "A near trigger needs a distance in metres."
        if self.trigger_type == TriggerType.BEACON_ZONE and not self.trigger_zone:
            errors["trigger_zone"] = "A beacon-zone trigger needs the zone to watch."
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            errors["ends_at"] = "The campaign must end after it starts."
        if (self.quiet_hours_start is None) != (self.quiet_hours_end is None):
            errors["quiet_hours_end"] = "Quiet hours need both a start and an end."
        elif self.quiet_hours_start is not None and self.quiet_hours_start == self.quiet_hours_end:
            errors["quiet_hours_end"] = "Quiet hours must end at another time than they start."
        days = self.allowed_days
        if not isinstance(days, list) or not all(day in WEEKDAYS for day in days):
            errors["allowed_days"] = f"A list of days, written {', '.join(WEEKDAYS)}."
        elif not days:
            errors["allowed_days"] = "Allow at least one day of the week."
        for name in ("intent_skus", "intent_categories"):
            values = getattr(self, name)
            if not isinstance(values, list) or not all(
                isinstance(v, str) and 0 < len(v) <= MAX_INTENT_NAME_LENGTH for v in values
            ):
                errors[name] = f"A list of names, each 1 to {MAX_INTENT_NAME_LENGTH} characters."
            elif len(values) > MAX_INTENT_NAMES:
                errors[name] = f"{MAX_INTENT_NAMES} names at most."
            elif not all(is_storable_text(v) for v in values):
                errors[name] = (
                    "A name cannot hold a NUL character (\\u0000) or half of a surrogate pair "
                    "(\\ud800 to \\udfff)."
                )
        if not self.has_intent and self._intent_counts_views():
            # Views of nothing named: no condition at all, and every shopper gets the SMS.
            errors.setdefault(
                "intent_skus",
                "The views and days count views of the SKUs or categories named here: name "
                "some, or ask for an abandoned cart. For no intent condition, leave the views "
                f"at {self._default('intent_min_views')} and the days at "
                f"{self._default('intent_within_days')}.",
            )
        if self.intent_within_days > settings.INTENT_WINDOW_DAYS:
            errors["intent_within_days"] = (
                f"Browsing is remembered for {settings.INTENT_WINDOW_DAYS} days at most."
            )
        try:
            placeholders = template_placeholders(self.offer_template)
        except TemplateError as error:
            errors["offer_template"] = str(error)
        else:
            if not self.offer_template.strip():
                errors["offer_template"] = "Write the message to send."
            elif "product_name" in placeholders and not self.has_intent:
                errors["offer_template"] = (
                    "{product_name} needs an intent condition naming SKUs, categories "
                    "or an abandoned cart."
                )
        if errors:
            raise ValidationError(errors)

    def _intent_counts_views(self) -> bool:
        return any(
            getattr(self, name) != self._default(name)
            for name in ("intent_min_views", "intent_within_days")
        )

    @classmethod
    def _default(cls, name: str) -> object:
        return cls._meta.get_field(name).default

    def _normalise(self) -> None:
        if isinstance(self.offer_template, str):
            self.offer_template = unix_line_breaks(self.offer_template)
        # The admin's clock widget fills in seconds ("Now" gives 21:00:41), which the API,
        # to the minute, would show as 21:00 and write back as such.
        for name in ("quiet_hours_start", "quiet_hours_end"):
            value = getattr(self, name)
            if isinstance(value, time):
                setattr(self, name, value.replace(second=0, microsecond=0))
        # Browsing events' SKUs and categories are trimmed: " X200 " would match nobody.
        # A list that holds anything but text is left for clean() to refuse; so is one of
        # days that are not all weekdays (dict.fromkeys needs them hashable).
        for name in ("intent_skus", "intent_categories"):
            values = getattr(self, name)
            if isinstance(values, list) and all(isinstance(v, str) for v in values):
                setattr(self, name, list(dict.fromkeys(v.strip() for v in values)))
        days = self.allowed_days
        if isinstance(days, list) and all(day in WEEKDAYS for day in days):
            self.allowed_days = list(dict.fromkeys(days))


def check_campaign_places(
    *, status: str, trigger_type: str, trigger_zone: str, stores: Iterable[Store]
) -> None:
    """The places a campaign is to use, held until its transaction commits: its stores (a
    key share, as its links to them take when they commit, taken now) and the zones its
    beacon-zone trigger watches (a share, which a rename waits for too). A store's or zone's
    deletion locks it before it checks the campaigns that use it (services.delete_stores,
    delete_zones): one in flight is waited for, and its place then reads as gone here; one
    that comes after waits for this campaign to commit, and sees it. The stores first, then
    the zones, as a deletion locks them.

    `stores` are the stores the campaign is to have, which a form or a request may change
    along with the trigger. Raises ValidationError on stores (one deleted since the request
    read it) or on trigger_zone (see _check_trigger_zone)."""
    stores = list(stores)
    store_ids = sorted({store.pk for store in stores})
    held = {
        pk
        for (pk,) in held_rows(
            Store.objects.filter(pk__in=store_ids).order_by("pk").values_list("pk"),
            strength="KEY SHARE",
        )
    }
    gone = sorted({store.code for store in stores if store.pk not in held})
    if gone:
        were = "Store {} has" if len(gone) == 1 else "Stores {} have"
        raise ValidationError({"stores": f"{were.format(', '.join(gone))} just been deleted."})
    _check_trigger_zone(status, trigger_type, trigger_zone, store_ids)


def _check_trigger_zone(
    status: str, trigger_type: str, trigger_zone: str, store_ids: list[int]
) -> None:
    """A beacon-zone trigger names a zone that one of the campaign's stores has (any store, for
    a campaign with none): a code no store has, "entrnce" for "entrance", never fires. An
    ended campaign fires no more: its zone may be gone (deleting it was allowed for that),
    and it can still be renamed or noted."""
    if status == CampaignStatus.ENDED:
        return
    if trigger_type != TriggerType.BEACON_ZONE or not trigger_zone:
        return  # Campaign.clean asks for the zone
    # PostgreSQL cannot even compare text holding a NUL: no zone code has one.
    if not is_storable_text(trigger_zone):
        watched = []
    else:
        zones = Zone.objects.filter(code=trigger_zone)
        if store_ids:
            zones = zones.filter(store__in=store_ids)
        watched = held_rows(zones.order_by("pk").values_list("pk"), strength="SHARE")
    if not watched:
        where = "the campaign's stores" if store_ids else "any store"
        raise ValidationError(
            {
                "trigger_zone": f"No zone '{trigger_zone}' in {where}."
                + zone_code_hint(trigger_zone, store_ids)
            }
        )


def zone_code_hint(text: str, store_ids: list[int] | None) -> str:
    """A sentence to add where no zone of code `text` is in the stores `store_ids` (None or
    [] for any): what the text was taken for, a zone's id (zone_id_hint), or the codes of
    those stores' zones it differs from by case alone; "" when neither."""
    if hint := zone_id_hint(text):
        return hint
    zones = Zone.objects.filter(store__in=store_ids) if store_ids else Zone.objects.all()
    return case_hint(zones, "code", text)


def zone_id_hint(text: str) -> str:
    """A sentence to add where a zone's code was asked for and `text` is a zone's id instead;
    "" otherwise. The API keys each zone by its `id` (/zones/7), but beacons, gateways,
    triggers and the lists' `zone` filter name it by its `code`: an integrator who took the
    key for the name was told only that the store has no zone '7'."""
    # Within a bigint, and ASCII digits alone: int() takes other scripts' digits too.
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return ""
    zone = Zone.objects.select_related("store").filter(pk=int(text)).first()
    if zone is None:
        return ""
    return (
        f" A zone is named here by its code: zone {zone.pk} is '{zone.code}', "
        f"of store {zone.store.code}."
    )


class Ping(models.Model):
    """A location fix from the app, stored as received (suspicious ones included)."""

    # Its unique constraints lead with the device, so they serve lookups by device too. No
    # foreign key in the database: checking one costs a row lock on the device per ping,
    # the largest cost of ingest. A device's deletion waits for the ingest in flight
    # instead (promotions.ingest.devices_deleted).
    device = models.ForeignKey(
        Device,
        on_delete=models.CASCADE,
        related_name="pings",
        db_index=False,
        db_constraint=False,
    )
    ping_id = models.CharField(max_length=64, null=True, blank=True)
    latitude = models.FloatField()
    longitude = models.FloatField()
    accuracy = models.FloatField(help_text="Radius of the 68% confidence circle, in metres.")
    recorded_at = models.DateTimeField()
    speed = models.FloatField(null=True, blank=True, help_text="Metres per second.")
    mocked = models.BooleanField(default=False)
    suspicious = models.BooleanField(
        default=False, help_text="A mocked location or a teleport: kept, but triggers nothing."
    )
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["device", "ping_id"],
                condition=models.Q(ping_id__isnull=False),
                name="ping_id_unique_per_device",
            ),
            models.UniqueConstraint(
                fields=["device", "recorded_at"], name="ping_time_unique_per_device"
            ),
        ]
        # By time taken: the retention purge finds a late upload by it, and the admin's
        # drill-down by date reads its range.
        indexes = [
            models.Index(fields=["received_at"]),
            models.Index(fields=["recorded_at"], name="ping_taken"),
        ]

    def __str__(self) -> str:
        return f"{self.device_id}@{self.recorded_at:%Y-%m-%dT%H:%M:%S}"


class LocationBatch(models.Model):
    """The pings or sightings one request stored: what a worker processes as one unit, and
    what the sweep finds unprocessed when its task was lost. One row a request, so marking
    a batch processed is one update, not one a ping."""

    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    ping_ids = models.JSONField(default=list, blank=True)
    sighting_ids = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name_plural = "location batches"
        indexes = [
            models.Index(fields=["received_at"]),
            models.Index(
                fields=["received_at"],
                condition=models.Q(processed_at__isnull=True),
                name="location_batch_unprocessed",
            ),
        ]

    def __str__(self) -> str:
        return f"{len(self.ping_ids)} pings, {len(self.sighting_ids)} sightings"


class SightingSource(models.TextChoices):
    APP = "app", "App ranged a store beacon"
    GATEWAY = "gateway", "A gateway saw the device"


class Sighting(models.Model):
    """A customer's device seen in a store, by the app (a beacon) or by a gateway."""

    source = models.CharField(max_length=10, choices=SightingSource.choices)
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="sightings")
    beacon = models.ForeignKey(Beacon, null=True, blank=True, on_delete=models.CASCADE)
    gateway = models.ForeignKey(Gateway, null=True, blank=True, on_delete=models.CASCADE)
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+")
    zone = models.ForeignKey(
        Zone, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rssi = models.IntegerField()
    mac = models.CharField(max_length=17, blank=True)
    seen_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["device", "beacon", "seen_at"],
                condition=models.Q(source="app"),
                name="app_sighting_unique",
            ),
            models.UniqueConstraint(
                fields=["device", "gateway", "seen_at"],
                condition=models.Q(source="gateway"),
                name="gateway_sighting_unique",
            ),
        ]
        # By time taken: the retention purge finds a late upload by it.
        indexes = [
            models.Index(fields=["received_at"]),
            models.Index(fields=["seen_at"], name="sighting_taken"),
        ]

    def __str__(self) -> str:
        return f"{self.device_id}@{self.store_id}"


class Scope(models.TextChoices):
    INGEST = "ingest", "Ingest: pings, sightings, events, devices, identify"
    CUSTOMERS = "customers", "Customers"
    REDEMPTIONS = "redemptions", "Redemptions"
    CONFIG = "config", "Configuration: stores, zones, beacons, gateways, campaigns"
    REPORTS = "reports", "Reports"


class ApiKey(models.Model):
    """A client's key. Only its SHA-256 is kept: keys are long random strings, so a fast
    hash is as safe as a slow one and keeps authentication off the hot path's budget."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="The first characters, to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()


# --- Presence ---------------------------------------------------------------------------


class PresenceKind(models.TextChoices):
    ENTERED = "entered", "Entered"
    DWELLED = "dwelled", "Dwelled"
    EXITED = "exited", "Exited"
    NEAR = "near", "Came near"


class Presence(models.Model):
    """Where a customer is: the state of one place (a store, a beacon zone, or an approach
    ring around a store), as `promotions.presence` keeps it. One row per customer and place."""

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="presences"
    )
    place_key = models.CharField(max_length=40, help_text="store:<id>, zone:<id> or near:<id>:<m>")
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+")
    zone = models.ForeignKey(
        Zone, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    inside = models.BooleanField(default=False)
    state = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "place_key"], name="presence_unique")
        ]
        indexes = [
            models.Index(fields=["inside"], condition=models.Q(inside=True), name="presence_inside")
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}@{self.place_key}"


class DeviceTrack(models.Model):
    """A device's last trusted location fix, the origin of the speed check that catches
    teleports, and the teleport after it (its jump), held until the next fix confirms it
    (the phone did travel) or refutes it (a wild fix). The later of the two is the
    device's timeline watermark."""

    device = models.OneToOneField(Device, on_delete=models.CASCADE, related_name="track")
    latitude = models.FloatField()
    longitude = models.FloatField()
    accuracy = models.FloatField()
    at = models.DateTimeField()
    jump_latitude = models.FloatField(null=True, blank=True)
    jump_longitude = models.FloatField(null=True, blank=True)
    jump_accuracy = models.FloatField(null=True, blank=True)
    jump_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.device_id}@{self.at:%Y-%m-%dT%H:%M:%S}"


class PresenceEvent(models.Model):
    """A change of presence: what campaigns trigger on, and the history a dry-run replays."""

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="presence_events"
    )
    place_key = models.CharField(max_length=40)
    kind = models.CharField(max_length=10, choices=PresenceKind.choices)
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="presence_events")
    zone = models.ForeignKey(
        Zone, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    minutes = models.PositiveIntegerField(null=True, blank=True, help_text="For dwelled.")
    distance_m = models.FloatField(null=True, blank=True, help_text="For near: the ring's radius.")
    occurred_at = models.DateTimeField()
    ping = models.ForeignKey(
        Ping, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    sighting = models.ForeignKey(
        Sighting, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    evidence = models.JSONField(
        default=dict, blank=True, help_text="What caused it, for the trace."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["occurred_at", "id"]
        constraints = [
            # Reprocessing a batch, or two workers given one batch, cannot record an event twice.
            # Dwells of different thresholds announced at one instant (campaigns started
            # during a visit) are different events. Coalesced rather than nulls_distinct=False,
            # which SQLite ignores: there, events without minutes would no longer be unique.
            models.UniqueConstraint(
                "customer",
                "place_key",
                "kind",
                "occurred_at",
                Coalesce("minutes", models.Value(0)),
                name="presence_event_unique",
            )
        ]
        indexes = [models.Index(fields=["occurred_at"])]

    def __str__(self) -> str:
        # No store lookup here: a list of events would pay one query per row for it.
        occurred = format_instant_for_people(self.occurred_at)
        return f"{self.get_kind_display()} {self.place_key}, {occurred}"


# --- Deliveries -------------------------------------------------------------------------


class DeliveryStatus(models.TextChoices):
    SUPPRESSED = "suppressed", "Suppressed"
    HOLDOUT = "holdout", "Holdout"
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    UNDELIVERED = "undelivered", "Undelivered"
    FAILED = "failed", "Failed"


# What a till may redeem, and what counts as sent: a code that reached the customer.
REDEEMABLE = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.UNDELIVERED)

# A decision that put its customer in one of the campaign's two groups: to text them, whatever
# came of the send since (delivered, expired, stopped with its campaign, or held back at its
# turn, which a paced send slot tells from a suppression when deciding), or to hold them out.
# A customer stays in the group of their first one (rules.in_holdout_group).
TEXTED_OR_HELD_OUT = models.Q(
    status__in=(
        DeliveryStatus.QUEUED,
        *REDEEMABLE,
        DeliveryStatus.FAILED,
        DeliveryStatus.HOLDOUT,
    )
) | models.Q(status=DeliveryStatus.SUPPRESSED, send_after__isnull=False)
# A customer's deliveries in a campaign, aggregated: when it first held them out and when it
# was first to text them (rules.first_held_out tells their group from these).
FIRST_IN_EACH_GROUP = {
    "first_holdout_at": models.Min("created_at", filter=models.Q(status=DeliveryStatus.HOLDOUT)),
    "first_texted_at": models.Min(
        "created_at", filter=TEXTED_OR_HELD_OUT & ~models.Q(status=DeliveryStatus.HOLDOUT)
    ),
}


class DeliveryReason(models.TextChoices):
    NO_CONSENT = "no_consent", "No SMS consent"
    NO_PHONE = "no_phone", "No phone number"
    QUIET_HOURS = "quiet_hours", "Quiet hours or a day not allowed"
    CAMPAIGN_CAP = "campaign_cap", "Campaign frequency cap"
    GLOBAL_CAP = "global_cap", "Global frequency cap"
    BUDGET = "budget", "Budget or code pool spent"
    HOLDOUT = "holdout", "Holdout group"


# A code's key is at most 40 characters upper-cased, and upper-casing can lengthen a
# character up to threefold (ß becomes SS).
CODE_KEY_LENGTH = 3 * 40


def delivery_event_time(prefix: str = "") -> Coalesce:
    """When a delivery's presence event occurred, as a query expression (`prefix` reaches the
    delivery from another model, "delivery__"): what decides whether a dry run starting at a
    moment replays it. A presence event goes with its store when the store is deleted: the
    decision's own time, a moment after the event, stands in for it. Its offer's freshness
    counts from sending.delivery_visited_at, which a phone clock running fast cannot delay."""
    return Coalesce(f"{prefix}presence_event__occurred_at", f"{prefix}created_at")


class Delivery(models.Model):
    """One decision about one customer, campaign and presence event, whether sent or not."""

    customer = models.ForeignKey(
        "customers.Customer",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deliveries",
        help_text="Empty once the customer is erased: the decision is kept, anonymised.",
    )
    erased_as = models.UUIDField(
        null=True,
        blank=True,
        editable=False,
        help_text="Once the customer is erased: a random id their deliveries share, so results "
        "still count them as one customer.",
    )
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="deliveries")
    presence_event = models.ForeignKey(
        PresenceEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    store = models.ForeignKey(
        Store, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    status = models.CharField(max_length=12, choices=DeliveryStatus.choices)
    reason = models.CharField(max_length=12, choices=DeliveryReason.choices, blank=True)
    to = models.CharField(max_length=20, blank=True)
    body = models.TextField(blank=True)
    code = models.CharField(max_length=40, null=True, blank=True, unique=True)
    code_key = models.CharField(
        max_length=CODE_KEY_LENGTH,
        null=True,
        blank=True,
        editable=False,
        db_index=True,
        help_text="The code as the till looks it up (offers.normalise_code).",
    )
    expires_at = models.DateTimeField(null=True, blank=True, help_text="The code's last day.")
    encoding = models.CharField(max_length=5, blank=True)
    segments = models.PositiveSmallIntegerField(default=0)
    product_sku = models.CharField(max_length=100, blank=True)
    intent_score = models.FloatField(default=0.0)
    trace = models.JSONField(default=dict, blank=True, help_text="Why: evidence, rule, limits.")
    twilio_sid = models.CharField(max_length=64, blank=True, db_index=True)
    error_code = models.IntegerField(null=True, blank=True)
    error_message = models.CharField(max_length=300, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    send_after = models.DateTimeField(null=True, blank=True, help_text="Its paced send slot.")
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    status_updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "campaign", "presence_event"], name="one_delivery_per_decision"
            )
        ]
        indexes = [
            # The deliveries list is newest first (id breaking ties), filtered by campaign,
            # status or both: each filter needs its rows in that order, or a page of a
            # campaign whose decisions are older than others' reads every newer delivery, or
            # sorts all of its own. The campaign's and status's serve its statistics too.
            models.Index(fields=["campaign", "created_at", "id"], name="delivery_campaign_newest"),
            models.Index(
                fields=["campaign", "status", "created_at", "id"], name="delivery_campaign_status"
            ),
            models.Index(fields=["status", "created_at", "id"], name="delivery_status_newest"),
            models.Index(fields=["customer", "created_at"]),
            # The daily statistics read a day's decisions across campaigns; the deliveries
            # list's pages find their ids in it, without reading the rows they skip.
            models.Index(fields=["created_at", "id"], name="delivery_newest"),
            # The sweeps look for queued deliveries left behind, among few.
            models.Index(
                fields=["send_after"],
                condition=models.Q(status="queued"),
                name="delivery_queued",
            ),
            # The sender's pacing reads the latest slots booked, whatever became of them.
            models.Index(
                fields=["send_after"],
                condition=models.Q(send_after__isnull=False),
                name="delivery_send_slot",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}→{self.customer_id}: {self.status}"

    def save(self, **kwargs) -> None:
        # The till finds a code by its key; the key follows the code wherever it is saved.
        self.code_key = normalise_code(self.code) if self.code else None
        if "code" in (kwargs.get("update_fields") or ()):
            kwargs["update_fields"] = {*kwargs["update_fields"], "code_key"}
        super().save(**kwargs)


class OfferCodeQuerySet(models.QuerySet):
    def drawable(self) -> "OfferCodeQuerySet":
        """Codes a delivery may still draw: on no delivery yet, and with a key. A keyless code
        (one of two the till cannot tell apart, kept by migration 0015) is never handed out.
        What the engine draws from, what its budget counts as left, what a dry run counts
        and what the pool upload reports as unused."""
        return self.filter(delivery__isnull=True, code_key__isnull=False)


class OfferCode(models.Model):
    """A code from a pool a retailer uploaded for a campaign, used instead of generated codes."""

    objects = OfferCodeQuerySet.as_manager()

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="code_pool")
    code = models.CharField(max_length=40, unique=True)
    # Unique: two pool codes the till cannot tell apart (SAVE10 and save-10) would credit one
    # customer's purchase to the other's SMS. Empty only for the few such codes already
    # drawn before the key existed (migration 0015).
    code_key = models.CharField(
        max_length=CODE_KEY_LENGTH,
        null=True,
        unique=True,
        editable=False,
        help_text="The code as the till looks it up (offers.normalise_code).",
    )
    delivery = models.OneToOneField(
        Delivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="pool_code"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(
                fields=["campaign"], condition=models.Q(delivery__isnull=True), name="pool_unused"
            )
        ]

    def __str__(self) -> str:
        return self.code

    def save(self, **kwargs) -> None:
        self.code_key = normalise_code(self.code)
        if "code" in (kwargs.get("update_fields") or ()):
            kwargs["update_fields"] = {*kwargs["update_fields"], "code_key"}
        super().save(**kwargs)


class Redemption(models.Model):
    """A code used at a till, tied to the delivery that carried it."""

    delivery = models.OneToOneField(Delivery, on_delete=models.CASCADE, related_name="redemption")
    store = models.ForeignKey(Store, null=True, on_delete=models.SET_NULL, related_name="+")
    amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    redeemed_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            # A campaign's results count a day's redemptions (today's on each view of its
            # page, the days beat records every hour): without it, every campaign's
            # redemptions of every day were read to find them.
            models.Index(fields=["redeemed_at"], name="redemption_redeemed_at"),
        ]

    def __str__(self) -> str:
        return f"{self.delivery_id}@{self.redeemed_at:%Y-%m-%d}"


class CampaignDay(models.Model):
    """A campaign's figures for one day (in SMS_BUDGET_TIMEZONE, the day daily budgets count),
    recorded by Celery beat once the day is over: the results page charts past days from
    these rows instead of counting their decisions again on every view."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="days")
    day = models.DateField()
    zone = models.CharField(
        max_length=64,
        help_text="The time zone the day was counted in: a row counted in a zone other "
        "than SMS_BUDGET_TIMEZONE is not shown, its day is counted again.",
    )
    decisions = models.PositiveIntegerField(default=0, help_text="Decisions made that day.")
    sent = models.PositiveIntegerField(default=0, help_text="Of those, SMS handed to Twilio.")
    delivered = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(
        default=0, help_text="Failed (undelivered counts as sent)."
    )
    holdout = models.PositiveIntegerField(default=0)
    suppressed = models.PositiveIntegerField(default=0)
    redeemed = models.PositiveIntegerField(default=0, help_text="Codes redeemed that day.")
    revenue = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["campaign", "day"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "day"], name="one_row_per_campaign_day")
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}@{self.day}"


class SmsSender(models.Model):
    """The next free send slot of one sender (a From number or a Messaging Service), so that
    every worker together keeps to the sender's messages-per-second limit."""

    sender = models.CharField(max_length=64, unique=True)
    next_slot_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.sender


class FenceVersion(models.Model):
    """One row whose token changes whenever a store or a campaign does: workers compare it
    with the token their fence index was built at, one primary-key read a batch, where
    counting a million stores would cost a scan. A random token, not a counter, so that a
    change rolled back and another made after it can never look alike."""

    token = models.BigIntegerField(default=0)

    @classmethod
    def current(cls) -> int | None:
        # Read once a batch: in SQL, a fifth of what building the same query through the ORM
        # costs.
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT token FROM {cls._meta.db_table} WHERE id = 1")
            row = cursor.fetchone()
        return row[0] if row else None

    @classmethod
    def bump(cls) -> None:
        cls.objects.update_or_create(pk=1, defaults={"token": secrets.randbits(31)})
