"""Demo data for `make run`: stores in Paris and Lyon, shoppers, products and live campaigns.

Loading is idempotent: everything is keyed by its natural code (a campaign by its name, the
oldest of that name), so a second run updates in place. The shoppers' phone numbers are
reserved for fiction (North America's 555-0100 to 555-0199, which phonenumbers accepts;
France's range for fiction it does not), and still demo data is never loaded while a real
SMS backend is configured.
"""

from dataclasses import dataclass
from datetime import time, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from customers import services as customer_services
from customers.models import Device, Platform, SmsConsent
from promotions import beacons
from promotions.ingest import IngestResult
from promotions.models import Beacon, Campaign, CampaignStatus, Gateway, Store, TriggerType, Zone

DEMO_BEACON_UUID = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"


def _square(latitude: float, longitude: float, half_side_deg: float) -> dict:
    corners = [
        [longitude - half_side_deg, latitude - half_side_deg],
        [longitude + half_side_deg, latitude - half_side_deg],
        [longitude + half_side_deg, latitude + half_side_deg],
        [longitude - half_side_deg, latitude + half_side_deg],
    ]
    return {"type": "Polygon", "coordinates": [[*corners, corners[0]]]}


STORES = [
    {
        "code": "RIVOLI",
        "name": "Passage Rivoli",
        "address": "142 Rue de Rivoli, 75001 Paris",
        "latitude": 48.8606,
        "longitude": 2.3417,
        "radius_m": 60,
        "polygon": None,
        "timezone": "Europe/Paris",
    },
    {
        "code": "OPERA",
        "name": "Passage Opéra",
        "address": "29 Boulevard des Capucines, 75009 Paris",
        "latitude": 48.8707,
        "longitude": 2.3310,
        "radius_m": None,
        "polygon": _square(48.8707, 2.3310, 0.0004),
        "timezone": "Europe/Paris",
    },
    {
        "code": "PARTDIEU",
        "name": "Passage Part-Dieu",
        "address": "17 Rue du Docteur Bouchut, 69003 Lyon",
        "latitude": 45.7610,
        "longitude": 4.8565,
        "radius_m": 80,
        "polygon": None,
        "timezone": "Europe/Paris",
    },
    {
        "code": "BELLECOUR",
        "name": "Passage Bellecour",
        "address": "2 Place Bellecour, 69002 Lyon",
        "latitude": 45.7579,
        "longitude": 4.8320,
        "radius_m": 50,
        "polygon": None,
        "timezone": "Europe/Paris",
    },
]
ZONES = [("entrance", "Entrance", -75), ("electronics", "Electronics", -80)]


@dataclass(frozen=True)
class Shopper:
    external_id: str
    first_name: str
    phone: str
    locale: str
    consent: str
    device_id: str
    platform: str
    viewed: tuple[tuple[str, str, str, int], ...]  # (sku, name, category, views)


SHOPPERS = [
    Shopper(
        "C-1001",
        "Léa",
        "+14155550101",
        "fr-FR",
        SmsConsent.OPTED_IN,
        "lea-iphone",
        Platform.IOS,
        (("X200", "X200 headphones", "headphones", 3),),
    ),
    Shopper(
        "C-1002",
        "Tom",
        "+14155550102",
        "en-GB",
        SmsConsent.OPTED_IN,
        "tom-pixel",
        Platform.ANDROID,
        (("S9", "S9 speaker", "speakers", 2), ("X200", "X200 headphones", "headphones", 1)),
    ),
    Shopper(
        "C-1003",
        "Nadia",
        "+14155550103",
        "fr-FR",
        SmsConsent.OPTED_OUT,
        "nadia-iphone",
        Platform.IOS,
        (("X200", "X200 headphones", "headphones", 4),),
    ),
    Shopper(
        "C-1004",
        "Karim",
        "+14155550104",
        "fr-FR",
        SmsConsent.UNKNOWN,
        "karim-galaxy",
        Platform.ANDROID,
        (("K5", "K5 keyboard", "keyboards", 2),),
    ),
]

CAMPAIGNS = [
    {
        "name": "X200 walk-by",
        "stores": ["RIVOLI"],
        "priority": 10,
        "trigger_type": TriggerType.ENTER,
        "intent_skus": ["X200"],
        "intent_min_views": 3,
        "intent_within_days": 14,
        "offer_template": ("Bonjour {first_name}, -20% on {product_name} at {store_name}: {code}"),
        "limit_per_customer_days": 7,
        "quiet_hours_start": time(21, 0),
        "quiet_hours_end": time(8, 0),
        "daily_budget": 1000,
    },
    {
        "name": "Headphones nearby",
        "stores": ["RIVOLI", "OPERA"],
        "priority": 5,
        "trigger_type": TriggerType.NEAR,
        "trigger_distance_m": 300,
        "intent_categories": ["headphones"],
        "intent_min_views": 1,
        "intent_within_days": 30,
        "offer_template": "{first_name}, the {product_name} is 2 minutes away at {store_name}. "
        "Show {code} for 10% off.",
        "limit_per_customer_days": 14,
        "holdout_percent": 10,
    },
    {
        "name": "Welcome to Lyon",
        "stores": ["PARTDIEU", "BELLECOUR"],
        "priority": 1,
        "trigger_type": TriggerType.BEACON_ZONE,
        "trigger_zone": "entrance",
        "offer_template": "Welcome to {store_name}, {first_name}! A coffee on us with {code}.",
        "limit_per_customer_days": 30,
    },
    {
        # Short, so that under `make run` a newcomer sees the beat text a shopper whose
        # phone went quiet in the store within minutes.
        "name": "Speakers, take your time",
        "stores": ["OPERA"],
        "priority": 3,
        "trigger_type": TriggerType.DWELL,
        "trigger_minutes": 3,
        "intent_categories": ["speakers"],
        "intent_min_views": 2,
        "intent_within_days": 14,
        "offer_template": "{first_name}, take your time: the {product_name} is -15% at "
        "{store_name} today with {code}.",
        "offer_valid_days": 1,
        "limit_per_customer_days": 7,
    },
]


class DemoRefused(Exception):
    """The demo data breaks a rule under these settings (an INTENT_WINDOW_DAYS shorter than
    a demo campaign's browsing window, say); nothing was loaded."""


def load_demo() -> dict[str, int]:
    """Create or refresh the demo data; returns how many of each thing the demo has (the
    simulator's shoppers and a marketer's own campaigns are not counted)."""
    with transaction.atomic():
        stores = _load_places()
        _load_shoppers()
        _load_campaigns(stores)
    return {
        "stores": len(stores),
        "beacons": Beacon.objects.filter(store__in=stores.values()).count(),
        "shoppers": len(SHOPPERS),
        "active campaigns": len(CAMPAIGNS),
    }


def _load_places() -> dict[str, Store]:
    stores = {}
    for major, values in enumerate(STORES, start=1):
        store, _ = Store.objects.update_or_create(code=values["code"], defaults=values)
        stores[store.code] = store
        for minor, (code, name, threshold) in enumerate(ZONES, start=1):
            zone, _ = Zone.objects.update_or_create(
                store=store, code=code, defaults={"name": name, "rssi_threshold": threshold}
            )
            Beacon.objects.update_or_create(
                identity=beacons.ibeacon_key(DEMO_BEACON_UUID, major, minor),
                defaults={"store": store, "zone": zone, "measured_power": -59},
            )
            Gateway.objects.update_or_create(
                gateway_id=f"gw-{store.code.lower()}-{code}",
                defaults={"store": store, "zone": zone},
            )
    return stores


def _load_shoppers() -> None:
    today = timezone.now()
    events = []
    for number, shopper in enumerate(SHOPPERS, start=1):
        values = {
            "first_name": shopper.first_name,
            "phone": shopper.phone,
            "locale": shopper.locale,
            "timezone": "Europe/Paris",
        }
        consent = {"sms_consent": shopper.consent, "consent_source": "demo"}
        try:
            customer, _ = customer_services.upsert_customer(
                external_id=shopper.external_id, values={**values, **consent}
            )
        except customer_services.ConflictError:
            # The shopper replied STOP to a demo SMS: their reply stands, the rest refreshes.
            customer, _ = customer_services.upsert_customer(
                external_id=shopper.external_id, values=values
            )
        # Registered as the API registers it: a demo phone someone registered to another
        # customer meanwhile comes back without that customer's location history.
        # The shopper's phone also advertises itself, so in-store gateways see it.
        identity = beacons.ibeacon_key(DEMO_BEACON_UUID, 1000, number)
        try:
            customer_services.register_device(
                device_id=shopper.device_id,
                customer=customer,
                platform=shopper.platform,
                ble_identity=identity,
            )
        except customer_services.ConflictError:
            device = Device.objects.filter(ble_identity=identity).first()
            holder = f"Device {device.device_id!r}" if device else "A store beacon"
            raise DemoRefused(
                f"{holder} advertises the BLE identity of the demo shopper "
                f"{shopper.external_id}'s phone ({shopper.device_id}): remove its identity, "
                "or the device, and run again."
            ) from None
        for sku, name, category, views in shopper.viewed:
            for view in range(views):
                # Dated ids: each day's `make run` adds that day's browsing, once.
                events.append(
                    {
                        "event_id": f"demo-{today:%Y%m%d}-{shopper.external_id}-{sku}-{view}",
                        "customer_id": shopper.external_id,
                        "type": "product_view",
                        "sku": sku,
                        "product_name": name,
                        "category": category,
                        "url": f"https://shop.example/p/{sku.lower()}",
                        "occurred_at": today - timedelta(days=2, hours=view),
                    }
                )
    customer_services.record_browsing_events(
        items=list(enumerate(events)), result=IngestResult(), now=today
    )


def _load_campaigns(stores: dict[str, Store]) -> None:
    for values in CAMPAIGNS:
        values = dict(values)
        codes = values.pop("stores")
        # A marketer may have named another campaign like a demo one (a copy, say): the
        # demo's own is the oldest of that name, and the newer ones are left alone. An ended
        # one stays ended (its results are history): the demo starts a new one.
        campaign = (
            Campaign.objects.filter(name=values["name"])
            .exclude(status=CampaignStatus.ENDED)
            .order_by("id")
            .first()
        )
        if campaign is None:
            campaign = Campaign()
        # Refreshed whole, from the model's defaults: a holdout, an end date or allowed days
        # a newcomer tried in the admin would otherwise stay, and the README's walk-through
        # would send nothing.
        defaults = Campaign()
        for field in Campaign._meta.concrete_fields:
            if field.editable and not field.primary_key:
                setattr(campaign, field.attname, getattr(defaults, field.attname))
        for field, value in {**values, "status": CampaignStatus.ACTIVE}.items():
            setattr(campaign, field, value)
        try:
            campaign.full_clean()
        except ValidationError as error:
            broken = "; ".join(
                f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items()
            )
            raise DemoRefused(
                f"The demo campaign {campaign.name!r} breaks a rule: {broken}"
            ) from None
        campaign.save()
        campaign.stores.set([stores[code] for code in codes])
