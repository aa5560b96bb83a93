"""A number's START is remembered with its time whether or not it changed anyone's consent
(their STOP may never have reached us): a 21610 for an SMS sent before it is outdated. What
is kept of the number is a keyed hash of it, through the erasure of its customers."""

import importlib
from datetime import timedelta
from pathlib import Path

import pytest
from django.apps import apps
from django.test import Client
from django.utils import timezone

from customers.models import (
    ConsentChange,
    RepliedStartNumber,
    SmsConsent,
    opted_out_number_keys,
)
from customers.services import erase_customer, replied_start_since
from tests.factories import CustomerFactory, DeliveryFactory
from tests.promotions.test_webhooks import BASE, TOKEN, reply, status

pytestmark = pytest.mark.django_db

PHONE = "+33612345678"


@pytest.fixture(autouse=True)
def twilio_settings(settings):
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.PUBLIC_BASE_URL = BASE


def test_a_start_is_kept_as_a_keyed_hash_of_the_number_not_the_number():
    CustomerFactory(phone=PHONE, sms_consent=SmsConsent.OPTED_IN)
    reply(Client(), PHONE, "START")

    [row] = RepliedStartNumber.objects.values()
    assert row["number_key"] == opted_out_number_keys(PHONE)[0]
    assert PHONE not in str(row) and PHONE[1:] not in str(row)


def test_a_start_from_a_number_no_customer_has_is_remembered_too():
    before = timezone.now()
    reply(Client(), PHONE, "START")

    assert replied_start_since(phone=PHONE, since=before)
    assert not replied_start_since(phone="+33698765432", since=before)


def test_a_start_outlives_the_erasure_of_a_customer_at_the_number():
    # Two records of one number; the one the START came to is erased before a 21610 comes,
    # late, for an SMS the other was sent before the START.
    erased = CustomerFactory(phone=PHONE, sms_consent=SmsConsent.OPTED_OUT)
    twin = CustomerFactory(phone=PHONE, sms_consent=SmsConsent.OPTED_IN)
    DeliveryFactory(customer=twin, twilio_sid="SM1", sent_at=timezone.now() - timedelta(hours=1))
    client = Client()
    reply(client, PHONE, "START")
    erase_customer(customer=erased)

    status(client, "SM1", "failed", ErrorCode="21610")

    twin.refresh_from_db()
    assert twin.sms_consent == SmsConsent.OPTED_IN


def test_a_start_read_from_a_rotated_key_counts_and_the_next_start_rekeys_it(settings):
    before = timezone.now()
    reply(Client(), PHONE, "START")
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-of-fifty-characters-or-so-0123456789"

    assert replied_start_since(phone=PHONE, since=before)
    reply(Client(), PHONE, "START")
    assert list(RepliedStartNumber.objects.values_list("number_key", flat=True)) == [
        opted_out_number_keys(PHONE)[0]
    ]


def test_the_migration_fills_each_numbers_latest_start_from_the_consent_log():
    [path] = Path(__file__).parents[2].glob("customers/migrations/*_replied_start_numbers.py")
    migration = importlib.import_module(f"customers.migrations.{path.stem}")
    now = timezone.now()
    lea = CustomerFactory(phone=PHONE, sms_consent=SmsConsent.OPTED_IN)
    logged = {"customer": lea, "source": "sms", "by_reply": True}
    key = opted_out_number_keys(PHONE)[0]
    ConsentChange.objects.create(
        **logged,
        previous="opted_out",
        consent="opted_in",
        changed_at=now - timedelta(days=2),
        reply_number_key=key,
    )
    ConsentChange.objects.create(
        **logged,
        previous="opted_in",
        consent="opted_out",
        changed_at=now - timedelta(days=1),
        reply_number_key=key,
    )
    # Logged before 0011 without its number, its customer having none then: read as from
    # the customer's current number, as the rule read it.
    ConsentChange.objects.create(
        **logged, previous="opted_out", consent="opted_in", changed_at=now - timedelta(hours=1)
    )
    # A CRM's opt-in is no reply.
    tom = CustomerFactory(phone="+33698765432", sms_consent=SmsConsent.OPTED_IN)
    ConsentChange.objects.create(
        customer=tom, previous="unknown", consent="opted_in", source="sms", changed_at=now
    )
    RepliedStartNumber.objects.all().delete()

    migration.fill_from_the_consent_log(apps, None)

    assert list(RepliedStartNumber.objects.values_list("number_key", "replied_at")) == [
        (key, now - timedelta(hours=1))
    ]
