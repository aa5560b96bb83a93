"""Settling a send whose answer never came from what Twilio's records say of the message: its
status and its error code replace what the send had written ("may have been sent"), as a
status callback's do."""

from dataclasses import replace

import pytest

from customers.models import SmsConsent
from promotions import tasks
from tests import twilio_fake
from tests.factories import StoreFactory
from tests.promotions.test_sending import long_claimed, queue_offer, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def store():
    return StoreFactory(code="RIVOLI", name="Passage Rivoli", latitude=48.8606, longitude=2.3417)


def settle_after_a_lost_answer(twilio, store, settings, *, status, error_code=None):
    """A gateway in front of Twilio timed out while Twilio took the SMS; Twilio's record of
    it says `status` (and `error_code`) when the settling sweep asks."""
    twilio.then(replace(twilio_fake.GATEWAY_TIMEOUT, accepted=True))
    delivery = send(queue_offer(store))
    assert "may have been sent" in delivery.error_message
    [accepted] = twilio.accepted
    twilio.statuses[accepted.sid] = status
    if error_code is not None:
        twilio.error_codes[accepted.sid] = error_code
    long_claimed(delivery, settings)
    tasks.settle_claimed_sends.delay()
    delivery.refresh_from_db()
    return delivery


def test_a_send_settled_as_delivered_keeps_no_gateway_error(twilio, store, settings, api):
    delivery = settle_after_a_lost_answer(twilio, store, settings, status="delivered")

    [listed] = api.get("/api/v1/deliveries").json()["results"]
    assert (listed["status"], listed["error_code"]) == ("delivered", None)
    assert delivery.error_message == ""


def test_a_send_settled_as_undelivered_records_twilios_error_code(twilio, store, settings):
    delivery = settle_after_a_lost_answer(
        twilio, store, settings, status="undelivered", error_code=30003
    )

    assert (delivery.status, delivery.error_code, delivery.error_message) == (
        "undelivered",
        30003,
        "",
    )


def test_a_send_settled_as_failed_for_an_unsubscribed_number_opts_it_out(twilio, store, settings):
    delivery = settle_after_a_lost_answer(
        twilio, store, settings, status="failed", error_code=21610
    )

    assert (delivery.status, delivery.error_code, delivery.sent_at) == ("failed", 21610, None)
    delivery.customer.refresh_from_db()
    assert delivery.customer.sms_consent == SmsConsent.OPTED_OUT
