"""Customers' phone numbers stay out of the logs when the workers talk to Twilio, at the
default LOG_LEVEL (INFO): the SDK's request dumps, and the errors of a Twilio that cannot be
reached or refuses a lookup. Twilio is the local fake, reached through the real SDK."""

import logging
import socket
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from promotions import decisions, sending, sms, tasks
from promotions.models import Delivery, LocationBatch, Ping
from promotions.sms import OutgoingSms, TransientSmsError
from tests import twilio_fake
from tests.factories import CampaignFactory, CustomerFactory, DeviceFactory, StoreFactory

PHONE = "+33612345678"
DIGITS = "33612345678"  # in every spelling of the number: +33…, %2B33…, 33…
MESSAGE = OutgoingSms(to=PHONE, body="Bonjour Léa, -20%: K7Q2-M9XB", reference="42")


def logs(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def naming_the_number(caplog) -> list[str]:
    return [line for line in logs(caplog) if DIGITS in line]


def closed_port_url() -> str:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{closed.getsockname()[1]}"


def queue_offer(now):
    """A customer walks in and a campaign decides to text them; nothing is sent yet."""
    store = StoreFactory(code="RIVOLI", latitude=48.8606, longitude=2.3417)
    device = DeviceFactory(customer=CustomerFactory(phone=PHONE))
    campaign = CampaignFactory(offer_template="Bonjour {first_name}: {code}")
    campaign.stores.add(store)
    ping = Ping.objects.create(
        device=device,
        latitude=store.latitude,
        longitude=store.longitude,
        accuracy=10,
        recorded_at=now - timedelta(seconds=30),
    )
    batch = LocationBatch.objects.create(ping_ids=[ping.id])
    [delivery_id] = decisions.process_location_batch(batch_id=batch.pk, now=now)
    return delivery_id


def test_the_default_log_level_is_info():
    # What the other tests below stand for: a worker run with no LOG_LEVEL set.
    assert django_settings.LOGGING["root"]["level"] == "INFO"


def test_asking_twilio_about_a_sent_message_logs_no_phone_number(twilio, caplog):
    caplog.set_level(logging.INFO)
    sms.get_backend().send(MESSAGE)

    found = sms.get_backend().find(MESSAGE, since=datetime.now(UTC) - timedelta(minutes=1))

    assert found is not None
    assert twilio.lookups[0].form["To"] == PHONE  # the number was in the lookup's URL
    assert naming_the_number(caplog) == []


def test_asking_twilio_about_a_sent_message_at_log_level_debug_logs_no_phone_number(twilio, caplog):
    caplog.set_level(logging.DEBUG)  # LOG_LEVEL=DEBUG: the root logger's level
    sms.get_backend().send(MESSAGE)

    found = sms.get_backend().find(MESSAGE, since=datetime.now(UTC) - timedelta(minutes=1))

    assert found is not None
    assert naming_the_number(caplog) == []
    # urllib3's line of each request still says which was made and how it ended.
    [lookup] = [line for line in logs(caplog) if '"GET /2010-04-01/Accounts/' in line]
    assert '/Messages.json?To=<redacted>&PageSize=<redacted> HTTP/1.1" 200 ' in lookup


def test_a_lookup_twilio_refuses_names_no_phone_number(twilio):
    twilio.then(twilio_fake.error(400, 21211, f"The 'To' number {PHONE} is not valid."))

    with pytest.raises(TransientSmsError) as raised:
        sms.get_backend().find(MESSAGE, since=datetime.now(UTC) - timedelta(minutes=1))

    assert str(raised.value) == "Twilio could not list messages: HTTP 400"
    assert raised.value.http_status == 400


@pytest.mark.django_db
def test_twilio_unreachable_while_settling_logs_no_phone_number(twilio, settings, caplog):
    now = timezone.now()
    delivery_id = queue_offer(now)
    assert sending.claim(delivery_id, now=now, attempts=1)
    # Claimed, never recorded, and its offer expired: settle_claimed_sends asks Twilio.
    age = timedelta(seconds=settings.SMS_VALIDITY_SECONDS) + sending.SETTLE_AFTER_EXPIRY
    Delivery.objects.filter(id=delivery_id).update(claimed_at=now - age - timedelta(seconds=1))
    settings.TWILIO_API_BASE = closed_port_url()
    caplog.set_level(logging.INFO)

    assert tasks.settle_claimed_sends.delay().get() == 0

    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("Could not ask the SMS provider about claimed sends: ")
    assert "Twilio unreachable: ConnectionError" in warning
    assert "Connection refused" in warning  # still says why
    assert naming_the_number(caplog) == []


@pytest.mark.django_db
def test_a_send_to_unreachable_twilio_logs_no_phone_number(twilio, settings, caplog):
    delivery_id = queue_offer(timezone.now())
    settings.TWILIO_API_BASE = closed_port_url()
    caplog.set_level(logging.INFO)
    # Celery logs each retry with its error at INFO (the simulate command, run in-process
    # by other tests, leaves "celery" at WARNING).
    caplog.set_level(logging.INFO, logger="celery")

    tasks.send_sms.delay(delivery_id)  # tried, retried, then given up

    delivery = Delivery.objects.get(id=delivery_id)
    assert delivery.status == "failed"
    assert delivery.error_message.startswith("Twilio unreachable: ConnectionError")
    assert DIGITS not in delivery.error_message
    assert any("Twilio unreachable" in line for line in logs(caplog))  # the retries' log
    assert naming_the_number(caplog) == []
