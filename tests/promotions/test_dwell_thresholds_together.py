"""Dwell campaigns started while a shopper is already inside: every threshold she has passed
is announced at her next fix, all at one instant, and each is its own event to decide."""

import pytest
from django.utils import timezone

from promotions import tracking
from promotions.models import DeviceTrack, LocationBatch, Presence, PresenceEvent
from promotions.sms import locmem
from tests.clock import ago
from tests.factories import CampaignFactory, CustomerFactory, DeviceFactory, StoreFactory

pytestmark = pytest.mark.django_db

RIVOLI = (48.8606, 2.3417)


@pytest.fixture(autouse=True)
def outbox(settings):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    return locmem.outbox


@pytest.fixture
def lea():
    lea = CustomerFactory(external_id="C-1")
    DeviceFactory(device_id="lea-phone", customer=lea)
    return lea


@pytest.fixture
def rivoli():
    return StoreFactory(code="RIVOLI", latitude=RIVOLI[0], longitude=RIVOLI[1])


def in_rivoli(minutes_ago):
    return {
        "device_id": "lea-phone",
        "latitude": RIVOLI[0],
        "longitude": RIVOLI[1],
        "accuracy": 8.0,
        "recorded_at": ago(minutes=minutes_ago),
    }


def send(api, *pings):
    response = api.post("/api/v1/pings", {"pings": list(pings)})
    assert response.status_code == 202, response.json()


def dwell_campaigns(rivoli, *minutes):
    campaigns = [CampaignFactory(trigger_type="dwell", trigger_minutes=m) for m in minutes]
    for campaign in campaigns:
        campaign.stores.add(rivoli)
    return campaigns


def events_of(customer):
    return list(
        PresenceEvent.objects.filter(customer=customer)
        .order_by("id")
        .values_list("kind", "minutes", "occurred_at")
    )


def test_two_dwell_campaigns_started_during_a_visit_each_text_the_shopper(api, lea, rivoli, outbox):
    # Léa has been shopping in Rivoli for 12 minutes when the marketer starts two campaigns.
    send(api, in_rivoli(13), in_rivoli(2))
    five, ten = dwell_campaigns(rivoli, 5, 10)

    send(api, in_rivoli(1))

    dwells = PresenceEvent.objects.filter(customer=lea, kind="dwelled")
    assert sorted(dwells.values_list("minutes", flat=True)) == [5, 10]
    assert len({dwell.occurred_at for dwell in dwells}) == 1
    decided = {d.campaign: d.presence_event.minutes for d in lea.deliveries.all()}
    assert decided == {five: 5, ten: 10}
    # Both decided; the global cap lets one SMS of the two through.
    assert [sms.to for sms in outbox] == [lea.phone]


def test_a_batch_processed_again_records_none_of_its_events_twice(api, lea, rivoli, outbox):
    # Each batch replayed from the presence it was first processed from: the state machine
    # announces the same events again, the entry without minutes and both dwells at once.
    def snapshot():
        return list(Presence.objects.all()), list(DeviceTrack.objects.all())

    def restore(state):
        Presence.objects.all().delete()
        DeviceTrack.objects.all().delete()
        Presence.objects.bulk_create(state[0])
        DeviceTrack.objects.bulk_create(state[1])

    def replay(state, batch):
        restore(state)
        return tracking.process_location_batch(ping_ids=batch.ping_ids, now=timezone.now())

    before_entry = snapshot()
    send(api, in_rivoli(13), in_rivoli(2))
    entry_batch = LocationBatch.objects.get()
    # Nothing new to decide: the entry is the one decided the first time.
    assert replay(before_entry, entry_batch) == []

    dwell_campaigns(rivoli, 5, 10)
    before_dwells = snapshot()
    send(api, in_rivoli(1))
    dwell_batch = LocationBatch.objects.exclude(pk=entry_batch.pk).get()
    recorded = events_of(lea)
    assert replay(before_dwells, dwell_batch) == []

    assert [(kind, minutes) for kind, minutes, _ in events_of(lea)] == [
        ("entered", None),
        ("dwelled", 5),
        ("dwelled", 10),
    ]
    assert events_of(lea) == recorded
    assert lea.deliveries.count() == 2
