"""Twilio's errors in the newer RFC 9457 shape (problem details: type, title, status, code),
which the SDK raises as TwilioServiceException rather than TwilioRestException: they are
Twilio's answers all the same, and a send acts on them as on the older shape."""

import pytest

from customers.models import SmsConsent
from tests import twilio_fake
from tests.factories import StoreFactory
from tests.promotions.test_sending import queue_offer, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def store():
    return StoreFactory(code="RIVOLI", name="Passage Rivoli", latitude=48.8606, longitude=2.3417)


def problem(status: int, code: int | str, title: str) -> twilio_fake.Answer:
    return twilio_fake.Answer(
        status,
        {
            "type": f"https://www.twilio.com/docs/errors/{code}",
            "title": title,
            "status": status,
            "code": code,
            "detail": title,
            "instance": "/2010-04-01/Accounts/AC/Messages.json",
        },
    )


def test_an_unsubscribed_recipient_in_problem_details_is_opted_out(twilio, store):
    twilio.then(problem(400, 21610, "Attempt to send to unsubscribed recipient"))

    delivery = send(queue_offer(store))

    assert (delivery.status, delivery.error_code) == ("failed", 21610)
    assert "unsubscribed recipient" in delivery.error_message
    delivery.customer.refresh_from_db()
    assert delivery.customer.sms_consent == SmsConsent.OPTED_OUT


def test_an_invalid_number_in_problem_details_fails_at_once(twilio, store):
    twilio.then(problem(400, 21211, "Invalid 'To' Phone Number"))

    delivery = send(queue_offer(store))

    assert (delivery.status, delivery.error_code) == ("failed", 21211)
    assert len(twilio.messages) == 1


def test_throttling_in_problem_details_is_retried_until_the_sms_goes(twilio, store):
    twilio.then(problem(429, 20429, "Too Many Requests"), problem(503, 20503, "Unavailable"))

    delivery = send(queue_offer(store))

    assert (delivery.status, delivery.attempts) == ("sent", 3)
    assert len(twilio.accepted) == 1


def test_a_gateways_problem_details_with_a_code_in_words_are_retried(twilio, store):
    # An egress gateway's own rate limit, in its own words: no Twilio error code to record.
    twilio.then(problem(429, "RATE_LIMITED", "Too Many Requests"))

    delivery = send(queue_offer(store))

    assert (delivery.status, delivery.error_code, delivery.attempts) == ("sent", None, 2)


@pytest.mark.parametrize(
    "body_status",
    [
        pytest.param("429", id="the status written as a string"),
        pytest.param(400, id="another status than the answer's"),
        pytest.param(None, id="a null status"),
    ],
)
def test_the_answers_http_status_decides_whatever_the_problem_details_say(
    twilio, store, body_status
):
    # A gateway's problem details whose "status" is not the answer's: the answer's own 429
    # says the message was not taken, and the send is retried, where it crashed or failed.
    throttled = problem(429, "RATE_LIMITED", "Too Many Requests")
    throttled.body["status"] = body_status
    twilio.then(throttled)

    delivery = send(queue_offer(store))

    assert (delivery.status, delivery.attempts) == ("sent", 2)
    assert len(twilio.accepted) == 1
