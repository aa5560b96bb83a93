"""A sender's pace counts SMS segments, as Twilio's does: a US long code sends one message
segment a second (error 21611 past it), so a two-segment SMS takes two seconds of it."""

from datetime import timedelta

import pytest
from django.utils import timezone

from promotions import decisions, offers, sending
from promotions.models import Delivery, LocationBatch, Ping, SmsSender
from tests.factories import CampaignFactory, CustomerFactory, DeviceFactory, StoreFactory
from tests.promotions.test_sending import book_until

pytestmark = pytest.mark.django_db

# With its opt-out footer, two GSM-7 segments (about 210 characters).
TWO_SEGMENTS = (
    "Bonjour {first_name}, "
    + "les casques X200 que vous avez vus sont a -20% chez nous aujourd'hui. " * 2
    + "Code {code}"
)


@pytest.fixture
def store():
    """A store whose campaign's SMS is two segments long."""
    store = StoreFactory(code="RIVOLI", name="Passage Rivoli", latitude=48.8606, longitude=2.3417)
    CampaignFactory(offer_template=TWO_SEGMENTS).stores.add(store)
    return store


@pytest.fixture
def kiosk():
    """A store across town whose campaign's SMS is one segment."""
    kiosk = StoreFactory(code="BASTILLE", latitude=48.8532, longitude=2.3692)
    CampaignFactory(offer_template="Bonjour {first_name}: {code}").stores.add(kiosk)
    return kiosk


@pytest.fixture(autouse=True)
def broker(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # paced: the sends go through a broker
    settings.SMS_SENDER_MPS = 1


def walk_in(store, now) -> Delivery:
    """A customer walks in and the store's campaign decides to text them at `now`."""
    device = DeviceFactory(customer=CustomerFactory())
    ping = Ping.objects.create(
        device=device,
        latitude=store.latitude,
        longitude=store.longitude,
        accuracy=10,
        recorded_at=now - timedelta(seconds=30),
    )
    batch = LocationBatch.objects.create(ping_ids=[ping.id])
    [delivery_id] = decisions.process_location_batch(batch_id=batch.pk, now=now)
    return Delivery.objects.get(id=delivery_id)


def test_a_sender_is_paced_by_the_segments_it_sends_not_by_messages(store, kiosk):
    now = timezone.now()

    first = walk_in(store, now)
    second = walk_in(store, now)
    third = walk_in(kiosk, now)

    assert (first.encoding, first.segments) == ("GSM-7", 2)
    assert third.segments == 1
    assert [first.send_after, second.send_after, third.send_after] == [
        now,
        now + timedelta(seconds=2),
        now + timedelta(seconds=4),
    ]
    assert SmsSender.objects.get().next_slot_at == now + timedelta(seconds=5)


def test_a_retried_two_segment_sms_books_two_seconds_of_the_senders_pace(store):
    now = timezone.now()
    retried = walk_in(store, now)
    book_until(walk_in(store, now), now + timedelta(seconds=10))

    retry_at = sending.schedule_retry(delivery_id=retried.id, now=now, backoff=timedelta(0))
    after_it = walk_in(store, now)

    assert retry_at == now + timedelta(seconds=10)
    assert after_it.send_after == now + timedelta(seconds=12)


def test_segments_push_the_later_sms_of_a_burst_past_their_validity(store, settings):
    # Five two-segment SMS at 1 segment a second need 8 s of sending before the last's turn;
    # its offer is stale after 7 s: it fails now and books nothing.
    settings.SMS_VALIDITY_SECONDS = 37  # the walk-ins' events are 30 s old
    now = timezone.now()

    burst = [walk_in(store, now) for _ in range(5)]

    assert [d.status for d in burst] == ["queued"] * 4 + ["failed"]
    assert burst[-1].error_message == offers.STALE
    assert burst[-1].send_after is None
    assert SmsSender.objects.get().next_slot_at == now + timedelta(seconds=8)
