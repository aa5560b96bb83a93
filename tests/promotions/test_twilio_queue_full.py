"""Twilio's 21611: the sender's queue of messages is full. Twilio took nothing and the queue
drains at the sender's rate, so the send is tried again, through the real SDK against the
local fake."""

import pytest

from tests import twilio_fake
from tests.factories import StoreFactory
from tests.promotions.test_sending import queue_offer, send

pytestmark = pytest.mark.django_db

QUEUE_FULL = twilio_fake.error(
    400, 21611, "This 'From' number has exceeded the maximum number of queued messages"
)


@pytest.fixture
def store():
    return StoreFactory(code="RIVOLI", name="Passage Rivoli", latitude=48.8606, longitude=2.3417)


def test_a_full_sender_queue_is_retried_until_the_offer_goes(twilio, store):
    twilio.then(QUEUE_FULL, QUEUE_FULL)

    delivery = send(queue_offer(store))

    assert delivery.status == "sent"
    assert delivery.error_code is None
    assert len(twilio.messages) == 3
    [accepted] = twilio.accepted
    assert accepted.sid == delivery.twilio_sid
