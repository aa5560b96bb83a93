"""A customer's reply, delivered to the inbound webhook again (a webhook gateway's replay of
its stored requests, an operator's manual retry, a captured request sent back): Twilio's
signature has no time in it, so the copy passes the signature check. Acted on again, an old
START would opt back in a customer who has replied STOP since."""

import pytest

from customers.models import ConsentChange, SmsConsent
from tests.factories import CustomerFactory
from tests.promotions.test_webhooks import reply, twilio_settings  # noqa: F401

pytestmark = pytest.mark.django_db

PHONE = "+33612345678"
START_SID = "SM" + "a" * 32
STOP_SID = "SM" + "b" * 32


def test_a_replayed_start_does_not_undo_a_later_stop(client):
    customer = CustomerFactory(phone=PHONE, sms_consent=SmsConsent.OPTED_OUT)
    reply(client, PHONE, "START", MessageSid=START_SID)
    reply(client, PHONE, "STOP", MessageSid=STOP_SID)
    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_OUT

    response = reply(client, PHONE, "START", MessageSid=START_SID)  # the same request again

    assert response.status_code == 200
    assert b"<Message>" not in response.content
    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_OUT
    assert list(
        ConsentChange.objects.filter(customer=customer)
        .order_by("changed_at", "id")
        .values_list("consent", flat=True)
    ) == ["opted_in", "opted_out"]


def test_a_replayed_stop_does_not_undo_a_later_start(client):
    customer = CustomerFactory(phone=PHONE, sms_consent=SmsConsent.OPTED_IN)
    reply(client, PHONE, "STOP", MessageSid=STOP_SID)
    reply(client, PHONE, "START", MessageSid=START_SID)

    reply(client, PHONE, "STOP", MessageSid=STOP_SID)

    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_IN


def test_the_same_word_sent_again_in_a_new_message_is_acted_on(client):
    # Each SMS the customer sends is a message of its own, with its own sid.
    customer = CustomerFactory(phone=PHONE, sms_consent=SmsConsent.OPTED_IN)
    reply(client, PHONE, "STOP", MessageSid=STOP_SID)
    reply(client, PHONE, "START", MessageSid=START_SID)
    reply(client, PHONE, "STOP", MessageSid="SM" + "c" * 32)

    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_OUT
