from datetime import timedelta

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from customers.models import Customer, Device, Platform, SmsConsent
from promotions import beacons
from promotions.models import (
    Beacon,
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    Gateway,
    PresenceEvent,
    Store,
    Zone,
)

BEACON_UUID = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"


class CustomerFactory(DjangoModelFactory):
    class Meta:
        model = Customer

    external_id = factory.Sequence(lambda n: f"C-{n:05d}")
    first_name = "Léa"
    phone = factory.Sequence(lambda n: f"+336123{n:05d}")
    timezone = "Europe/Paris"
    locale = "fr-FR"
    sms_consent = SmsConsent.OPTED_IN


class DeviceFactory(DjangoModelFactory):
    class Meta:
        model = Device

    device_id = factory.Sequence(lambda n: f"device-{n}")
    customer = factory.SubFactory(CustomerFactory)
    platform = Platform.IOS
    ble_identity = None


class StoreFactory(DjangoModelFactory):
    class Meta:
        model = Store

    code = factory.Sequence(lambda n: f"STORE{n}")
    name = factory.Sequence(lambda n: f"Passage {n}")
    address = "142 Rue de Rivoli, 75001 Paris"
    latitude = 48.8606
    longitude = 2.3417
    radius_m = 60.0
    polygon = None
    timezone = "Europe/Paris"


class ZoneFactory(DjangoModelFactory):
    class Meta:
        model = Zone

    store = factory.SubFactory(StoreFactory)
    code = "entrance"
    name = "Entrance"
    rssi_threshold = -80


class BeaconFactory(DjangoModelFactory):
    class Meta:
        model = Beacon

    zone = factory.SubFactory(ZoneFactory)
    store = factory.SelfAttribute("zone.store")
    identity = factory.Sequence(lambda n: beacons.ibeacon_key(BEACON_UUID, 1, n % 65536))
    measured_power = -59


class GatewayFactory(DjangoModelFactory):
    class Meta:
        model = Gateway

    gateway_id = factory.Sequence(lambda n: f"gw-{n}")
    zone = factory.SubFactory(ZoneFactory)
    store = factory.SelfAttribute("zone.store")


class CampaignFactory(DjangoModelFactory):
    class Meta:
        model = Campaign

    name = factory.Sequence(lambda n: f"Campaign {n}")
    status = CampaignStatus.ACTIVE
    offer_template = "Bonjour {first_name}, -20% at {store_name}: {code}"


class DeliveryFactory(DjangoModelFactory):
    """A decision as the engine records it; status and codes as each test needs."""

    class Meta:
        model = Delivery

    customer = factory.SubFactory(CustomerFactory)
    campaign = factory.SubFactory(CampaignFactory)
    store = factory.SubFactory(StoreFactory)
    status = DeliveryStatus.SENT
    to = factory.SelfAttribute("customer.phone")
    body = "Bonjour Léa, -20% at Passage Rivoli"
    code = factory.Sequence(lambda n: f"TEST-{n:04d}")
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=7))


def crowd(count: int, *, prefix: str = "crowd") -> list[Customer]:
    """`count` opted-in customers, each with a phone the app pings from ("crowd-n"): bulk
    inserts, for tests of a batch or a tick at a store's scale."""
    customers = Customer.objects.bulk_create(
        Customer(
            external_id=f"{prefix.upper()}-{n}",
            phone=f"+3361{n:07d}",
            first_name="Léa",
            timezone="Europe/Paris",
            sms_consent=SmsConsent.OPTED_IN,
        )
        for n in range(count)
    )
    Device.objects.bulk_create(
        Device(device_id=f"{prefix}-{n}", customer=customer, platform=Platform.IOS)
        for n, customer in enumerate(customers)
    )
    return customers


def an_entry_the_first_campaign_could_not_text(store: Store) -> tuple[Campaign, Campaign]:
    """Two campaigns judged for one entry into `store`, as live: the one ranked first could
    not send (its cap) and left the event to the next, which texted."""
    first, second = CampaignFactory(priority=10), CampaignFactory(priority=5)
    lea = CustomerFactory()
    event = PresenceEvent.objects.create(
        customer=lea,
        store=store,
        place_key=f"store:{store.id}",
        kind="entered",
        occurred_at=timezone.now(),
    )
    DeliveryFactory(
        campaign=first,
        customer=lea,
        presence_event=event,
        status="suppressed",
        reason="campaign_cap",
        code=None,
    )
    DeliveryFactory(campaign=second, customer=lea, presence_event=event)
    return first, second
