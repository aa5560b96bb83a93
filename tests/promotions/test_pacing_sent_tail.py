"""An SMS whose slot came (sent, or being sent) still holds the sender for its segments: a
sender whose queue just emptied is not idle, and a new SMS must wait for the turn the last
one is taking, or the sender runs past its rate and Twilio refuses with 21611."""

from datetime import timedelta
from itertools import pairwise

import pytest
from django.utils import timezone

from promotions import tasks
from promotions.models import Delivery
from tests.factories import CampaignFactory, StoreFactory
from tests.promotions.test_pacing_segments import broker, walk_in  # noqa: F401

pytestmark = pytest.mark.django_db

# With its opt-out footer, four GSM-7 segments (about 500 characters).
FOUR_SEGMENTS = (
    "Bonjour {first_name}, "
    + "les casques X200 que vous avez vus sont a -20% chez nous aujourd'hui. " * 6
    + "Code {code}"
)


@pytest.fixture
def store():
    store = StoreFactory(code="RIVOLI", latitude=48.8606, longitude=2.3417)
    CampaignFactory(offer_template="Bonjour {first_name}: {code}").stores.add(store)
    return store


@pytest.fixture
def long_store():
    store = StoreFactory(code="OPERA", latitude=48.8719, longitude=2.3316)
    CampaignFactory(offer_template=FOUR_SEGMENTS).stores.add(store)
    return store


def sent_at_its_slot(delivery: Delivery) -> None:
    """A worker takes the SMS when its slot comes, and the provider accepts it."""
    assert tasks.send_sms.apply((delivery.id,)).get() == "sent"


def test_a_steady_stream_keeps_the_senders_rate(store):
    # One shopper every half second, each SMS sent the moment its slot comes: at one segment
    # a second, ten of them take ten seconds, not the five they walked in over.
    start = timezone.now()
    slots = []
    for step in range(10):
        delivery = walk_in(store, start + timedelta(seconds=step / 2))
        slots.append(delivery.send_after)
        sent_at_its_slot(delivery)

    assert slots[-1] - slots[0] >= timedelta(seconds=9), slots
    gaps = [later - earlier for earlier, later in pairwise(slots)]
    assert min(gaps) >= timedelta(seconds=1), gaps


def test_a_new_sms_waits_for_every_segment_of_the_one_just_sent(long_store, store):
    now = timezone.now()
    long = walk_in(long_store, now)
    assert (long.segments, long.send_after) == (4, now)
    sent_at_its_slot(long)

    later = walk_in(store, now + timedelta(seconds=0.5))

    assert later.send_after == now + timedelta(seconds=4)


def test_a_new_sms_waits_for_the_turn_of_one_whose_slot_just_came(store):
    now = timezone.now()
    first = walk_in(store, now)
    assert first.send_after == now
    # Its worker has it and is talking to the provider: neither queued for later nor sent.
    Delivery.objects.filter(id=first.id).update(claimed_at=now)

    later = walk_in(store, now + timedelta(seconds=0.2))

    assert later.send_after == now + timedelta(seconds=1)
