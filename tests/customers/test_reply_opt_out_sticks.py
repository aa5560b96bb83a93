"""A customer who opted out by replying to our SMS stays opted out until they reply START:
a CRM that still holds their old consent cannot opt them back in through the API."""

import pytest
from django.test import Client

from customers.models import ConsentChange, Customer, SmsConsent
from promotions.models import DeliveryStatus
from tests.factories import DeliveryFactory
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
        f"This customer opted out by replying to an SMS on {at}; only their own reply "
        "(START) opts them back in."
    )


def test_a_crm_stating_opted_in_after_an_arret_reply_is_refused_whole_until_start(api):
    api.put("/api/v1/customers/C-1", LEA)
    reply(Client(), PHONE, "Arrêt")
    opt_out = ConsentChange.objects.latest("id")

    response = api.put(
        "/api/v1/customers/C-1",
        {**LEA, "phone": "+33698765432", "first_name": "Lea", "consent_source": "crm_sync"},
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
