"""A customer who opted out by replying to our SMS stays opted out at that number until it
replies START: a CRM that still holds their old consent cannot opt them back in through the
API. A new number of theirs is opted in with its own consent."""

import importlib

import pytest
from django.apps import apps
from django.test import Client

from customers.models import (
    ConsentChange,
    Customer,
    OptedOutNumber,
    SmsConsent,
    opted_out_number_keys,
)
from promotions.models import DeliveryStatus
from tests.factories import CustomerFactory, DeliveryFactory
from tests.promotions.test_webhooks import BASE, TOKEN, reply, status

pytestmark = pytest.mark.django_db

PHONE = "+33612345678"
LEA = {
    "phone": PHONE,
    "first_name": "Léa",
    "locale": "fr-FR",
    "sms_consent": "opted_in",
    "consent_source": "web_form",
}


@pytest.fixture(autouse=True)
def twilio_settings(settings):
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.PUBLIC_BASE_URL = BASE


def refusal(change: ConsentChange) -> str:
    at = change.changed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f"This number opted out by replying to an SMS on {at}; only its own reply (START, "
        "sent from this number) opts it back in."
    )


def test_a_crm_stating_opted_in_after_an_arret_reply_is_refused_whole_until_start(api):
    api.put("/api/v1/customers/C-1", LEA)
    reply(Client(), PHONE, "Arrêt")
    opt_out = ConsentChange.objects.latest("id")

    response = api.put(
        "/api/v1/customers/C-1",
        {**LEA, "first_name": "Lea", "consent_source": "crm_sync"},
    )

    assert response.status_code == 409
    assert response.json() == {"detail": refusal(opt_out)}
    customer = Customer.objects.get()
    assert (customer.sms_consent, customer.phone, customer.first_name) == (
        SmsConsent.OPTED_OUT,
        PHONE,
        "Léa",
    )
    assert ConsentChange.objects.latest("id") == opt_out

    reply(Client(), PHONE, "START")

    assert Customer.objects.get().sms_consent == SmsConsent.OPTED_IN
    again = api.put("/api/v1/customers/C-1", {**LEA, "first_name": "Lea"})
    assert again.status_code == 200
    assert (again.json()["sms_consent"], again.json()["first_name"]) == ("opted_in", "Lea")


@pytest.mark.parametrize(
    "opt_out",
    [
        lambda: reply(Client(), PHONE, "STOPP"),
        lambda: reply(Client(), PHONE, "Opt-out"),
        # Twilio's Advanced Opt-Out matched a keyword of the retailer's.
        lambda: reply(Client(), PHONE, "DESABONNER", OptOutType="STOP"),
        # Twilio refused a send: the number replied STOP to that sender.
        lambda: status(Client(), "SM1", "failed", ErrorCode="21610"),
    ],
    ids=["stopp", "opt-out", "advanced-opt-out", "error-21610"],
)
def test_every_kind_of_reply_opt_out_sticks(api, opt_out):
    api.put("/api/v1/customers/C-1", LEA)
    DeliveryFactory(
        customer=Customer.objects.get(), to=PHONE, status=DeliveryStatus.SENT, twilio_sid="SM1"
    )
    opt_out()
    assert Customer.objects.get().sms_consent == SmsConsent.OPTED_OUT

    response = api.put("/api/v1/customers/C-1", {"sms_consent": "opted_in"})

    assert response.status_code == 409
    assert response.json() == {"detail": refusal(ConsentChange.objects.latest("id"))}
    assert Customer.objects.get().sms_consent == SmsConsent.OPTED_OUT


def test_stating_unknown_first_does_not_open_a_way_around_the_reply(api):
    api.put("/api/v1/customers/C-1", LEA)
    reply(Client(), PHONE, "BAJA")
    opt_out = ConsentChange.objects.latest("id")

    assert api.put("/api/v1/customers/C-1", {"sms_consent": "unknown"}).status_code == 200
    assert api.put("/api/v1/customers/C-1", {"sms_consent": "opted_out"}).status_code == 200
    response = api.put("/api/v1/customers/C-1", {"sms_consent": "opted_in"})

    assert response.status_code == 409
    assert response.json() == {"detail": refusal(opt_out)}
    assert Customer.objects.get().sms_consent == SmsConsent.OPTED_OUT


def test_what_does_not_opt_in_is_taken_as_before(api):
    api.put("/api/v1/customers/C-1", LEA)
    reply(Client(), PHONE, "ANNULLA")

    renamed = api.put("/api/v1/customers/C-1", {"first_name": "Lea"})
    stated_out = api.put("/api/v1/customers/C-1", {**LEA, "sms_consent": "opted_out"})

    assert (renamed.status_code, stated_out.status_code) == (200, 200)
    assert (stated_out.json()["sms_consent"], stated_out.json()["consent_source"]) == (
        "opted_out",
        "sms",
    )


def test_an_opt_out_made_through_the_api_is_lifted_through_the_api(api):
    api.put("/api/v1/customers/C-1", LEA)
    api.put("/api/v1/customers/C-1", {"sms_consent": "opted_out", "consent_source": "call_centre"})

    response = api.put("/api/v1/customers/C-1", {"sms_consent": "opted_in"})

    assert response.status_code == 200
    assert response.json()["sms_consent"] == "opted_in"


def test_after_start_an_opt_out_through_the_api_is_the_apis_to_lift(api):
    api.put("/api/v1/customers/C-1", LEA)
    reply(Client(), PHONE, "STOP")
    reply(Client(), PHONE, "START")
    api.put("/api/v1/customers/C-1", {"sms_consent": "opted_out", "consent_source": "crm"})

    response = api.put("/api/v1/customers/C-1", {"sms_consent": "opted_in"})

    assert response.status_code == 200
    assert Customer.objects.get().sms_consent == SmsConsent.OPTED_IN


def test_a_crm_opt_out_whose_source_it_names_sms_is_the_apis_to_lift(api):
    # The retailer's CRM names the channel consent went through (a sign-up by text, an
    # unsubscribe texted to the retailer's own short code): no reply to Passage's SMS.
    lea = {"phone": "+33612345678", "locale": "fr-FR"}
    api.put("/api/v1/customers/C-1", {**lea, "sms_consent": "opted_in", "consent_source": "sms"})
    api.put("/api/v1/customers/C-1", {"sms_consent": "opted_out", "consent_source": "sms"})

    response = api.put(
        "/api/v1/customers/C-1", {"sms_consent": "opted_in", "consent_source": "web_form"}
    )

    assert response.status_code == 200, response.json()
    assert response.json()["sms_consent"] == "opted_in"


# --- A new number ---------------------------------------------------------------------------

OLD, NEW = PHONE, "+33698765432"
SIGN_UP = {"phone": NEW, "sms_consent": "opted_in", "consent_source": "web_form"}


def test_a_stop_from_an_old_number_does_not_refuse_consent_given_for_a_new_one(api):
    # Review 3: the whole log was read whatever number the reply came from, so no new
    # number of theirs could ever be opted in, and the 409's advice (START) could not work:
    # the refused request kept the old number, and a START from the new one found nobody.
    api.put("/api/v1/customers/C-1", {**LEA, "phone": OLD})
    reply(Client(), OLD, "STOP")

    # Months later, a new phone: they sign up for SMS offers again on the web site.
    response = api.put("/api/v1/customers/C-1", SIGN_UP)

    assert response.status_code == 200, response.json()
    assert (response.json()["phone"], response.json()["sms_consent"]) == (NEW, "opted_in")
    # A CRM's sync stating it again is taken too: the STOP was the old number's.
    assert api.put("/api/v1/customers/C-1", SIGN_UP).status_code == 200
    # Their START from the new phone, as the 409 would have advised, changes nothing.
    reply(Client(), NEW, "START")
    assert api.get("/api/v1/customers/C-1").json()["sms_consent"] == "opted_in"


def test_the_old_number_that_replied_stop_is_still_refused(api):
    api.put("/api/v1/customers/C-1", {**LEA, "phone": OLD})
    reply(Client(), OLD, "STOP")
    opt_out = ConsentChange.objects.latest("id")
    api.put("/api/v1/customers/C-1", SIGN_UP)

    # A stale CRM puts the old number back, opted in: that number said STOP.
    response = api.put("/api/v1/customers/C-1", {**SIGN_UP, "phone": OLD})

    assert response.status_code == 409
    assert response.json() == {"detail": refusal(opt_out)}
    assert Customer.objects.get().phone == NEW


def test_a_stop_from_the_new_number_refuses_it(api):
    api.put("/api/v1/customers/C-1", {**LEA, "phone": OLD})
    reply(Client(), OLD, "STOP")
    api.put("/api/v1/customers/C-1", SIGN_UP)
    reply(Client(), NEW, "STOP")

    assert api.put("/api/v1/customers/C-1", SIGN_UP).status_code == 409
    reply(Client(), NEW, "START")
    assert api.put("/api/v1/customers/C-1", SIGN_UP).status_code == 200


def test_a_reply_logged_before_its_number_was_is_taken_as_the_current_numbers(api):
    api.put("/api/v1/customers/C-1", {**LEA, "phone": OLD})
    reply(Client(), OLD, "STOP")
    ConsentChange.objects.update(reply_number_key=None)  # as rows logged before 0011 were
    OptedOutNumber.objects.all().delete()  # the log alone

    assert api.put("/api/v1/customers/C-1", {"sms_consent": "opted_in"}).status_code == 409
    assert api.put("/api/v1/customers/C-1", SIGN_UP).status_code == 200


def test_the_migration_keys_earlier_replies_by_their_customers_current_number():
    migration = importlib.import_module("customers.migrations.0011_consent_reply_number")
    lea = CustomerFactory(external_id="C-1", phone=OLD, sms_consent=SmsConsent.OPTED_OUT)
    gone = CustomerFactory(external_id="C-2", phone="", sms_consent=SmsConsent.OPTED_OUT)
    for customer in (lea, gone):
        ConsentChange.objects.create(
            customer=customer, previous="opted_in", consent="opted_out", by_reply=True
        )
    ConsentChange.objects.create(customer=lea, previous="opted_out", consent="unknown")

    migration.key_earlier_replies(apps, None)

    assert (
        ConsentChange.objects.get(customer=lea, by_reply=True).reply_number_key
        == (opted_out_number_keys(OLD)[0])
    )
    assert ConsentChange.objects.get(customer=gone).reply_number_key is None
    assert ConsentChange.objects.get(customer=lea, by_reply=False).reply_number_key is None
