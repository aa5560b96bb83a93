"""A customer's reply, delivered to the inbound webhook again (a webhook gateway's replay of
its stored requests, an operator's manual retry, a captured request sent back): Twilio's
signature has no time in it, so the copy passes the signature check. Acted on again, an old
START would opt back in a customer who has replied STOP since."""

from datetime import timedelta

import pytest
from django.utils import timezone

from customers.models import ConsentChange, HandledReply, SmsConsent
from promotions import feedback, tasks
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


def test_the_retention_purge_forgets_only_replies_older_than_the_replay_window(client):
    customer = CustomerFactory(phone=PHONE, sms_consent=SmsConsent.OPTED_OUT)
    reply(client, PHONE, "START", MessageSid=START_SID)
    reply(client, PHONE, "STOP", MessageSid=STOP_SID)
    long_ago = timezone.now() - feedback.REPLAY_WINDOW - timedelta(days=1)
    HandledReply.objects.create(message_sid="SM" + "d" * 32, received_at=long_ago)

    for _ in range(2):  # two beat runs: the second finds nothing more to forget
        tasks.purge_location_history.apply().get()
        kept = set(HandledReply.objects.values_list("message_sid", flat=True))
        assert kept == {START_SID, STOP_SID}

    # The START replayed within the window is still known, and still not acted on.
    reply(client, PHONE, "START", MessageSid=START_SID)
    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_OUT
