"""A number that opted out by replying to our SMS stays opted out whoever its record: a CRM's
duplicate, a re-import, or the same person stored again after their erasure is not texted
until the number itself replies START. What is kept of the number is a keyed hash of it."""

import importlib
from datetime import timedelta
from pathlib import Path

import pytest
from django.apps import apps
from django.db import connection
from django.test import Client
from django.utils import timezone

from customers.models import ConsentChange, Customer, OptedOutNumber, SmsConsent
from promotions.feedback import handle_inbound_sms
from promotions.models import DeliveryStatus
from tests.factories import CustomerFactory, DeliveryFactory
from tests.processes import in_thread, started
from tests.promotions.test_webhooks import BASE, TOKEN, reply, status

pytestmark = pytest.mark.django_db

PHONE = "+33612345678"
LEA = {"phone": PHONE, "first_name": "Léa", "locale": "fr-FR", "sms_consent": "opted_in"}


@pytest.fixture(autouse=True)
def twilio_settings(settings):
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.PUBLIC_BASE_URL = BASE


def refusal(at) -> str:
    return (
        f"This number opted out by replying to an SMS on {at:%Y-%m-%dT%H:%M:%SZ}; only its own "
        "reply (START, sent from this number) opts it back in."
    )


def test_another_record_of_a_number_that_replied_arret_is_refused_opted_in(api):
    api.put("/api/v1/customers/C-1", LEA)
    reply(Client(), PHONE, "ARRET")
    opted_out_at = ConsentChange.objects.latest("id").changed_at

    response = api.put("/api/v1/customers/C-2", {**LEA, "consent_source": "crm_import"})

    assert response.status_code == 409
    assert response.json() == {"detail": refusal(opted_out_at)}
    assert not Customer.objects.filter(external_id="C-2").exists()
    # Anything else about the number is taken: only consent is the number's to give.
    stated_unknown = api.put("/api/v1/customers/C-2", {**LEA, "sms_consent": "unknown"})
    assert stated_unknown.status_code == 201
    assert api.put("/api/v1/customers/C-2", {"sms_consent": "opted_in"}).status_code == 409
    assert Customer.objects.get(external_id="C-2").sms_consent == SmsConsent.UNKNOWN


def test_the_same_person_stored_again_after_their_erasure_is_refused_opted_in(api):
    api.put("/api/v1/customers/C-1", LEA)
    reply(Client(), PHONE, "STOP")
    assert api.delete("/api/v1/customers/C-1").status_code == 204

    response = api.put("/api/v1/customers/C-1", LEA)

    assert response.status_code == 409
    assert not Customer.objects.exists()
    assert OptedOutNumber.objects.count() == 1


def test_the_numbers_start_lifts_it_for_every_record(api):
    api.put("/api/v1/customers/C-1", LEA)
    reply(Client(), PHONE, "ARRET")
    api.delete("/api/v1/customers/C-1")

    reply(Client(), PHONE, "START")

    assert not OptedOutNumber.objects.exists()
    response = api.put("/api/v1/customers/C-2", LEA)
    assert response.status_code == 201
    assert response.json()["sms_consent"] == "opted_in"


def test_an_unsubscribed_error_from_twilio_suppresses_the_number(api):
    api.put("/api/v1/customers/C-1", LEA)
    DeliveryFactory(
        customer=Customer.objects.get(), to=PHONE, status=DeliveryStatus.SENT, twilio_sid="SM1"
    )

    status(Client(), "SM1", "failed", ErrorCode="21610")

    assert OptedOutNumber.objects.get().source == "twilio"
    assert api.put("/api/v1/customers/C-2", LEA).status_code == 409


def test_a_stop_from_a_number_no_customer_has_is_kept_for_when_one_does(api):
    reply(Client(), PHONE, "STOP")

    assert api.put("/api/v1/customers/C-1", LEA).status_code == 409


def test_the_table_holds_no_phone_number():
    handle_inbound_sms(from_number=PHONE, body="ARRET", now=timezone.now())

    [row] = OptedOutNumber.objects.values()
    stored = " ".join(str(value) for value in row.values())
    assert "612345678" not in stored
    assert row["source"] == "sms"


@pytest.mark.parametrize("old_phone", ["", "+33698765432"], ids=["no-phone", "another-phone"])
def test_a_customer_given_an_opted_out_number_is_opted_out(api, old_phone):
    handle_inbound_sms(from_number=PHONE, body="ARRET", now=timezone.now())
    api.put("/api/v1/customers/C-1", {**LEA, "phone": old_phone})
    assert Customer.objects.get().sms_consent == SmsConsent.OPTED_IN

    response = api.put("/api/v1/customers/C-1", {"phone": PHONE})

    assert response.status_code == 200
    assert response.json()["sms_consent"] == "opted_out"
    change = ConsentChange.objects.latest("id")
    assert (change.previous, change.consent) == ("opted_in", "opted_out")
    assert "This number opted out by replying to an SMS" in change.note


def test_a_different_number_is_not_suppressed(api):
    handle_inbound_sms(from_number=PHONE, body="ARRET", now=timezone.now())

    assert api.put("/api/v1/customers/C-1", {**LEA, "phone": "+33698765432"}).status_code == 201


# --- Customers put back to opted_in before the rule --------------------------------------


def restore_reply_opt_outs():
    """The migration's data steps, on rows logged as they were before it."""
    [path] = Path(__file__).parents[2].glob("customers/migrations/*_opted_out_numbers.py")
    migration = importlib.import_module(f"customers.migrations.{path.stem}")
    ConsentChange.objects.update(by_reply=False)
    migration.mark_replies(apps, None)
    migration.restore_reply_opt_outs(apps, None)


def test_the_migration_opts_out_again_whom_the_api_opted_back_in_over_their_reply():
    now = timezone.now()
    lea = CustomerFactory(external_id="C-1", phone=PHONE, sms_consent=SmsConsent.OPTED_IN)
    # As before the rule: STOP, then a CRM's sync opted her back in.
    ConsentChange.objects.create(
        customer=lea,
        previous="opted_in",
        consent="opted_out",
        source="sms",
        note="Replied STOP (Twilio STOP)",
        changed_at=now,
    )
    ConsentChange.objects.create(
        customer=lea, previous="opted_out", consent="opted_in", source="crm", changed_at=now
    )
    # Another record of her number, imported later.
    twin = CustomerFactory(external_id="C-2", phone=PHONE, sms_consent=SmsConsent.OPTED_IN)
    # Opted back in by her own START: left alone.
    tom = CustomerFactory(external_id="C-3", phone="+33698765432", sms_consent="opted_in")
    ConsentChange.objects.create(
        customer=tom,
        previous="opted_in",
        consent="opted_out",
        source="sms",
        note="Replied ARRET",
        changed_at=now,
    )
    ConsentChange.objects.create(
        customer=tom,
        previous="opted_out",
        consent="opted_in",
        source="sms",
        note="Replied START (Twilio START)",
        changed_at=now + timedelta(minutes=1),
    )
    # A CRM that names its own text channel "sms": its opt-out was no reply to our SMS.
    zoe = CustomerFactory(external_id="C-4", phone="+33611112222", sms_consent="opted_in")
    ConsentChange.objects.create(
        customer=zoe, previous="opted_in", consent="opted_out", source="sms", changed_at=now
    )
    ConsentChange.objects.create(
        customer=zoe, previous="opted_out", consent="opted_in", source="web_form", changed_at=now
    )

    restore_reply_opt_outs()

    for customer in (lea, twin):
        customer.refresh_from_db()
        assert customer.sms_consent == SmsConsent.OPTED_OUT
        change = customer.consent_log.latest("id")
        assert (change.previous, change.consent, change.source) == (
            "opted_in",
            "opted_out",
            "reply_opt_out_restored",
        )
        assert f"{now:%Y-%m-%dT%H:%M:%SZ}" in change.note
    for customer in (tom, zoe):
        customer.refresh_from_db()
        assert customer.sms_consent == SmsConsent.OPTED_IN
    assert OptedOutNumber.objects.count() == 1
    assert OptedOutNumber.objects.get().opted_out_at == now


# --- A reply and a request at once --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs two concurrent writers")
def test_a_record_created_while_its_number_replies_stop_is_refused(api):
    api.raise_request_exception = False
    stop = started(lambda: handle_inbound_sms(from_number=PHONE, body="STOP", now=timezone.now()))
    responses = []
    request = in_thread(lambda: responses.append(api.put("/api/v1/customers/C-2", LEA)))
    request.join(0.5)
    stop.release.set()
    stop.join(10)
    request.join(10)

    assert [response.status_code for response in responses] == [409]
    assert not Customer.objects.exists()


def test_a_number_opted_out_before_a_key_rotation_is_recognised_through_the_fallback(api, settings):
    api.put("/api/v1/customers/C-1", LEA)
    reply(Client(), PHONE, "ARRET")
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "rotated-" + "k" * 50

    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert api.put("/api/v1/customers/C-2", LEA).status_code == 409

    # Without the old key, the row cannot be told from any other number's.
    settings.SECRET_KEY_FALLBACKS = []
    assert api.put("/api/v1/customers/C-2", LEA).status_code == 201
