"""Twilio's webhooks: signed status callbacks and customers' replies."""

from datetime import timedelta
from urllib.parse import urlencode

import phonenumbers
import pytest
from django.http import QueryDict
from django.test import Client
from django.utils import timezone
from phonenumbers import PhoneNumberType
from twilio.request_validator import RequestValidator

from customers.models import ConsentChange, OptedOutNumber, SmsConsent
from customers.services import upsert_customer
from promotions.models import DeliveryStatus
from tests.factories import CustomerFactory, DeliveryFactory, StoreFactory

pytestmark = pytest.mark.django_db

TOKEN = "webhook-token"
BASE = "https://passage.example.com"


@pytest.fixture(autouse=True)
def twilio_settings(settings):
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.PUBLIC_BASE_URL = BASE


def signed_post(client, path, form, *, base=BASE, token=TOKEN):
    signature = RequestValidator(token).compute_signature(base + path, form)
    return client.post(path, form, HTTP_X_TWILIO_SIGNATURE=signature)


def status(client, sid, value, **extra):
    form = {"MessageSid": sid, "MessageStatus": value, "AccountSid": "AC1", **extra}
    return signed_post(client, "/webhooks/twilio/status", form)


def reply(client, phone, body, **extra):
    return signed_post(client, "/webhooks/twilio/inbound", {"From": phone, "Body": body, **extra})


# --- Signatures -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/webhooks/twilio/status", "/webhooks/twilio/inbound"])
def test_an_unsigned_request_is_refused(client, path):
    assert client.post(path, {"MessageSid": "SM1", "Body": "STOP"}).status_code == 403


@pytest.mark.parametrize("path", ["/webhooks/twilio/status", "/webhooks/twilio/inbound"])
def test_a_badly_signed_request_is_refused(client, path):
    form = {"From": "+33612345678", "Body": "STOP"}
    assert signed_post(client, path, form, token="another-token").status_code == 403
    signature = RequestValidator(TOKEN).compute_signature(BASE + path, form)
    tampered = {**form, "Body": "START"}
    response = client.post(path, tampered, HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 403


def test_a_signature_for_another_host_is_refused(client):
    # The URL is rebuilt from PUBLIC_BASE_URL, whatever Host header the caller sends.
    form = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    response = signed_post(client, "/webhooks/twilio/status", form, base="https://evil.example")
    assert response.status_code == 403


def test_without_an_auth_token_every_request_is_refused(client, settings):
    settings.TWILIO_AUTH_TOKEN = None
    form = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    assert signed_post(client, "/webhooks/twilio/status", form).status_code == 403


def test_every_value_of_a_repeated_form_key_is_signed(client):
    # Twilio signs each value of a key it sends twice; the last one alone would not match.
    DeliveryFactory(status=DeliveryStatus.SENT, twilio_sid="SM1")
    body = urlencode(
        [("MessageSid", "SM1"), ("MessageStatus", "delivered"), ("Tag", "a"), ("Tag", "b")]
    )
    url = BASE + "/webhooks/twilio/status"
    signature = RequestValidator(TOKEN).compute_signature(url, QueryDict(body))
    response = client.post(
        "/webhooks/twilio/status",
        body,
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )
    assert response.status_code == 204


def test_a_site_mounted_under_a_path_prefix_checks_the_url_twilio_called(settings):
    # gunicorn's SCRIPT_NAME: PUBLIC_BASE_URL names the prefix, where Twilio calls.
    settings.PUBLIC_BASE_URL = BASE + "/passage"
    delivery = DeliveryFactory(status=DeliveryStatus.SENT, twilio_sid="SM1")
    form = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    url = BASE + "/passage/webhooks/twilio/status"
    signature = RequestValidator(TOKEN).compute_signature(url, form)
    response = Client().post(
        "/webhooks/twilio/status", form, HTTP_X_TWILIO_SIGNATURE=signature, SCRIPT_NAME="/passage"
    )
    assert response.status_code == 204
    delivery.refresh_from_db()
    assert delivery.status == "delivered"


def test_a_get_is_not_allowed(client):
    assert client.get("/webhooks/twilio/status").status_code == 405


# --- Status callbacks -------------------------------------------------------------------


def test_a_status_callback_moves_a_delivery_forward(client):
    delivery = DeliveryFactory(status=DeliveryStatus.SENT, twilio_sid="SM1")
    assert status(client, "SM1", "delivered").status_code == 204
    delivery.refresh_from_db()
    assert delivery.status == "delivered"


@pytest.mark.parametrize(
    ("start", "callbacks", "end"),
    [
        ("sent", ["delivered", "sent"], "delivered"),  # a late "sent" never moves it back
        ("sent", ["failed", "delivered"], "failed"),  # terminal stays terminal
        ("sent", ["undelivered", "undelivered"], "undelivered"),  # duplicates are harmless
        ("queued", ["sent"], "sent"),
        ("sent", ["queued", "sending", "accepted"], "sent"),  # steps we do not track
        ("suppressed", ["delivered"], "suppressed"),
    ],
)
def test_statuses_move_forward_only(client, start, callbacks, end):
    delivery = DeliveryFactory(status=start, twilio_sid="SM1")
    for value in callbacks:
        assert status(client, "SM1", value).status_code == 204
    delivery.refresh_from_db()
    assert delivery.status == end


def test_a_failure_records_twilios_error_code(client):
    delivery = DeliveryFactory(status=DeliveryStatus.SENT, twilio_sid="SM1")
    status(client, "SM1", "undelivered", ErrorCode="30003")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code) == ("undelivered", 30003)


def test_an_unsubscribed_error_in_a_callback_opts_the_customer_out(client):
    delivery = DeliveryFactory(status=DeliveryStatus.SENT, twilio_sid="SM1")
    status(client, "SM1", "failed", ErrorCode="21610")
    delivery.customer.refresh_from_db()
    assert delivery.customer.sms_consent == SmsConsent.OPTED_OUT


def test_an_unsubscribed_error_opts_out_everyone_at_the_number_as_a_stop_does(client):
    delivery = DeliveryFactory(status=DeliveryStatus.SENT, twilio_sid="SM1")
    sharing = CustomerFactory(phone=delivery.to)
    status(client, "SM1", "failed", ErrorCode="21610")
    sharing.refresh_from_db()
    assert sharing.sms_consent == SmsConsent.OPTED_OUT


def test_an_unsubscribed_error_for_a_number_given_up_since_leaves_the_new_one_alone(client):
    customer = CustomerFactory(phone="+33612345678")
    DeliveryFactory(customer=customer, status=DeliveryStatus.SENT, twilio_sid="SM9")
    # The customer gives a new number, and consents at it, before Twilio's callback comes.
    upsert_customer(
        external_id=customer.external_id,
        values={"phone": "+33698765432", "sms_consent": SmsConsent.OPTED_IN},
    )
    status(client, "SM9", "failed", ErrorCode="21610")
    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_IN


def test_a_replayed_unsubscribed_error_does_not_undo_a_later_start(api):
    # Review 3: the callback was acted on each time it came, moved or not.
    client = Client()
    delivery = DeliveryFactory(status=DeliveryStatus.SENT, twilio_sid="SM1")
    customer = delivery.customer
    status(client, "SM1", "failed", ErrorCode="21610")  # they had replied STOP to Twilio
    reply(client, customer.phone, "START")  # they want the offers back
    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_IN

    # Twilio sends the same callback again (a retry after a slow answer): nothing moves.
    status(client, "SM1", "failed", ErrorCode="21610")

    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_IN
    response = api.put(f"/api/v1/customers/{customer.external_id}", {"sms_consent": "opted_in"})
    assert response.status_code == 200


def test_an_unsubscribed_error_for_an_sms_sent_before_a_start_is_outdated_by_it(client):
    # Two offers failed with 21610; the second's callback came first, then the customer
    # replied START, then the first's callback, late: the number was blocked when that SMS
    # went, not since its START.
    customer = CustomerFactory(phone="+33612345678")
    DeliveryFactory(
        customer=customer, twilio_sid="SM1", sent_at=timezone.now() - timedelta(hours=2)
    )
    DeliveryFactory(
        customer=customer, twilio_sid="SM2", sent_at=timezone.now() - timedelta(hours=1)
    )
    status(client, "SM2", "failed", ErrorCode="21610")
    reply(client, "+33612345678", "START")

    status(client, "SM1", "failed", ErrorCode="21610")

    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_IN
    assert not OptedOutNumber.objects.exists()


def test_an_unsubscribed_error_for_an_sms_sent_after_a_start_opts_out_again(client):
    customer = CustomerFactory(phone="+33612345678", sms_consent=SmsConsent.OPTED_OUT)
    reply(client, "+33612345678", "START")
    # They replied STOP to Twilio since, which we did not hear of: the next SMS fails.
    DeliveryFactory(customer=customer, twilio_sid="SM1", sent_at=timezone.now())

    status(client, "SM1", "failed", ErrorCode="21610")

    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_OUT


def test_an_unsubscribed_error_for_an_sms_sent_before_a_start_that_changed_nothing_is_outdated(
    client,
):
    # Their STOP never reached us (Twilio answered it, or the webhook was lost): they stand
    # opted in with us, and their START changes no consent. It lifted Twilio's block all the
    # same, and a late 21610 for an SMS sent before it is older than their wish.
    customer = CustomerFactory(phone="+33612345678", sms_consent=SmsConsent.OPTED_IN)
    DeliveryFactory(
        customer=customer, twilio_sid="SM1", sent_at=timezone.now() - timedelta(hours=1)
    )
    reply(client, "+33612345678", "START")
    assert not ConsentChange.objects.exists()  # nothing changed, nothing logged

    status(client, "SM1", "failed", ErrorCode="21610")

    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_IN
    assert not OptedOutNumber.objects.exists()


def test_twilios_start_that_changed_nothing_outdates_an_earlier_sms_unsubscribed_error(client):
    # The same through a Messaging Service's Advanced Opt-Out, which names the START itself.
    customer = CustomerFactory(phone="+33612345678", sms_consent=SmsConsent.OPTED_IN)
    DeliveryFactory(
        customer=customer, twilio_sid="SM1", sent_at=timezone.now() - timedelta(hours=1)
    )
    reply(client, "+33612345678", "Reprendre", OptOutType="START")

    status(client, "SM1", "failed", ErrorCode="21610")

    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_IN


def test_an_unsubscribed_error_for_an_sms_sent_after_a_start_that_changed_nothing_opts_out(
    client,
):
    customer = CustomerFactory(phone="+33612345678", sms_consent=SmsConsent.OPTED_IN)
    reply(client, "+33612345678", "START")
    # They replied STOP to Twilio since, which we did not hear of: the next SMS fails.
    DeliveryFactory(customer=customer, twilio_sid="SM1", sent_at=timezone.now())

    status(client, "SM1", "failed", ErrorCode="21610")

    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_OUT
    assert OptedOutNumber.objects.count() == 1


@pytest.mark.parametrize("code", ["\u00b2", "30003x", "9" * 12])
def test_an_error_code_that_is_not_a_number_is_left_out(client, code):
    delivery = DeliveryFactory(status=DeliveryStatus.SENT, twilio_sid="SM1")
    assert status(client, "SM1", "undelivered", ErrorCode=code).status_code == 204
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code) == ("undelivered", None)


def test_a_callback_for_an_unknown_message_is_harmless(client):
    assert status(client, "SMunknown", "delivered").status_code == 204


def status_of(client, delivery_param, sid, value):
    form = {"MessageSid": sid, "MessageStatus": value, "AccountSid": "AC1"}
    return signed_post(client, f"/webhooks/twilio/status?delivery={delivery_param}", form)


def test_a_callback_ahead_of_the_recorded_sid_finds_its_delivery_by_id(client):
    # Twilio called back before the send task recorded the sid it was given.
    delivery = DeliveryFactory(status=DeliveryStatus.QUEUED, twilio_sid="")
    assert status_of(client, delivery.id, "SM9", "delivered").status_code == 204
    delivery.refresh_from_db()
    assert (delivery.status, delivery.twilio_sid) == ("delivered", "SM9")


def test_the_id_in_a_callback_never_moves_a_delivery_with_another_sid(client):
    delivery = DeliveryFactory(status=DeliveryStatus.SENT, twilio_sid="SM1")
    status_of(client, delivery.id, "SM2", "failed")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.twilio_sid) == ("sent", "SM1")


@pytest.mark.parametrize("value", ["sent", "delivered", "undelivered"])
def test_a_callback_settling_a_send_whose_answer_was_lost_records_when_it_went(client, value):
    # Twilio's answer to the send never came: queued with its claim, no sid, no sent_at.
    claimed_at = timezone.now() - timedelta(minutes=2)
    delivery = DeliveryFactory(status=DeliveryStatus.QUEUED, twilio_sid="", claimed_at=claimed_at)
    status_of(client, delivery.id, "SM9", value)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.sent_at) == (value, claimed_at)


def test_a_callback_keeps_the_time_a_send_was_recorded_and_a_failure_sets_none(client):
    sent_at = timezone.now() - timedelta(minutes=1)
    sent = DeliveryFactory(status=DeliveryStatus.SENT, twilio_sid="SM1", sent_at=sent_at)
    never = DeliveryFactory(status=DeliveryStatus.QUEUED, twilio_sid="", claimed_at=sent_at)
    status(client, "SM1", "delivered")
    status_of(client, never.id, "SM2", "failed")
    sent.refresh_from_db()
    never.refresh_from_db()
    assert (sent.sent_at, never.sent_at) == (sent_at, None)


@pytest.mark.parametrize(("value", "kept_as"), [("failed", "sent"), ("undelivered", "undelivered")])
def test_a_late_failure_callback_leaves_a_redeemed_offer_in_the_campaigns_results(
    client, api, value, kept_as
):
    # The code was used at the till, so it reached the customer, whatever Twilio says after.
    StoreFactory(code="RIVOLI")
    delivery = DeliveryFactory(status=DeliveryStatus.SENT, twilio_sid="SM1", code="K7Q2-M9XB")
    redeemed = api.post(
        "/api/v1/redemptions",
        {
            "code": "K7Q2-M9XB",
            "store_code": "RIVOLI",
            "amount": "59.90",
            "redeemed_at": timezone.now().isoformat(),
        },
    )
    assert redeemed.status_code == 201

    assert status(client, "SM1", value, ErrorCode="30008").status_code == 204

    stats = api.get(f"/api/v1/campaigns/{delivery.campaign_id}/stats").json()
    assert (stats["sent"], stats["redeemed"], stats["failed"], stats["revenue"]) == (
        1,
        1,
        0,
        "59.90",
    )
    assert stats["treated"] == {"customers": 1, "redeemed": 1, "rate": 1.0, "revenue": "59.90"}
    # Twilio's word stays on the delivery, for whoever looks into the send.
    listed = api.get(f"/api/v1/deliveries?campaign={delivery.campaign_id}").json()["results"]
    assert [(row["status"], row["error_code"]) for row in listed] == [(kept_as, 30008)]


@pytest.mark.parametrize("param", ["abc", "-1", "1.5", "%D9%A1", "9" * 30, ""])
def test_a_malformed_delivery_id_in_a_callback_is_ignored(client, param):
    delivery = DeliveryFactory(status=DeliveryStatus.QUEUED, twilio_sid="")
    assert status_of(client, param, "SM9", "delivered").status_code == 204
    delivery.refresh_from_db()
    assert delivery.status == "queued"


# --- Replies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reclassified",
    [
        pytest.param({"number_type": lambda number: PhoneNumberType.FIXED_LINE}, id="fixed line"),
        pytest.param({"is_valid_number": lambda number: False}, id="range withdrawn"),
    ],
)
def test_a_stop_from_a_customers_number_is_acted_on_whatever_phonenumbers_says_of_it_now(
    client, monkeypatch, reclassified
):
    # The number was taken as a mobile when the customer gave it; a newer phonenumbers has
    # other metadata for its range. The customer's STOP still stands.
    customer = CustomerFactory(phone="+33612345678")
    for name, stand_in in reclassified.items():
        monkeypatch.setattr(phonenumbers, name, stand_in)

    response = reply(client, "+33612345678", "ARRET")

    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_OUT
    assert "START" in response.content.decode()  # confirmed


@pytest.mark.parametrize(
    "body",
    [
        "STOP",
        "stop",
        " Stop ",
        "STOP.",
        "StopAll",
        "unsubscribe",
        "CANCEL",
        "end",
        "QUIT",
        "arret",
        "ARRÊT",
        "Arrêt !",
        "arrête",
        "ARRETT",
        "REVOKE",
        "optout",
        "Opt-out",
        "opt out",
    ],
)
def test_every_stop_word_opts_out_and_is_logged(client, body):
    customer = CustomerFactory(phone="+33612345678")
    response = reply(client, "+33612345678", body)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/xml"
    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_OUT
    change = ConsentChange.objects.get(customer=customer)
    assert (change.previous, change.consent, change.source) == ("opted_in", "opted_out", "sms")


def test_a_sentence_with_stop_in_it_is_not_an_opt_out_and_says_how_to_opt_out(client):
    customer = CustomerFactory(phone="+33612345678", locale="en-GB")
    response = reply(client, "+33612345678", "please don't stop the offers")
    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_IN
    # Should they have meant it: the HELP text says how.
    assert b"Reply STOP to opt out" in response.content


@pytest.mark.parametrize(
    "body",
    [
        "Stop please",
        "STOP STOP",
        "stop texting me",
        "Unsubscribe me",
        "STOP\n-- Léa",
        "Quit sending these",
        "Opt out please",
        "stop all texts",
        "Arrête de m'envoyer des SMS",
        "Abmelden bitte",
    ],
)
def test_a_reply_that_starts_with_an_opt_out_word_opts_out_and_is_confirmed(client, body):
    # Review 3: neither acted on nor answered. Twilio matches a whole reply only: it neither
    # blocks the number nor answers, so Passage confirms it.
    customer = CustomerFactory(phone="+33612345678", locale="en-US")
    response = reply(client, "+33612345678", body)
    customer.refresh_from_db()
    assert (customer.sms_consent, response.status_code) == (SmsConsent.OPTED_OUT, 200)
    assert b"You will receive no more offers by SMS" in response.content
    change = ConsentChange.objects.get(customer=customer)
    assert change.by_reply
    assert "LEA" not in change.note  # the keyword is logged, not what else they wrote


@pytest.mark.parametrize(
    "body", ["Cancel my order", "End of the sale?", "baja el precio", "I want to opt out"]
)
def test_an_opt_out_word_not_leading_or_only_one_alone_is_answered_with_help(client, body):
    customer = CustomerFactory(phone="+33612345678", locale="en-US")
    response = reply(client, "+33612345678", body)
    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_IN
    assert b"Reply STOP to opt out" in response.content


def test_a_reply_with_no_keyword_is_not_answered(client):
    CustomerFactory(phone="+33612345678")
    assert b"<Message>" not in reply(client, "+33612345678", "Thanks, see you soon").content


@pytest.mark.parametrize("body", ["START", "yes", "Unstop"])
def test_start_yes_and_unstop_opt_back_in(client, body):
    customer = CustomerFactory(phone="+33612345678", sms_consent=SmsConsent.OPTED_OUT)
    response = reply(client, "+33612345678", body)
    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_IN
    # Twilio answers its opt-in words itself, as it does STOP: a reply of ours would be a
    # second confirmation, which the customer receives and the retailer pays for.
    assert b"<Message>" not in response.content
    assert ConsentChange.objects.get(customer=customer).consent == "opted_in"


def test_help_is_answered(client):
    response = reply(client, "+33612345678", "help")
    assert b"Reply STOP to opt out" in response.content


def test_arret_is_confirmed_and_stop_is_left_to_twilio(client):
    CustomerFactory(phone="+33612345678")
    assert b"<Message>" in reply(client, "+33612345678", "ARRET").content
    CustomerFactory(phone="+33612345679")
    assert b"<Message>" not in reply(client, "+33612345679", "STOP").content


@pytest.mark.parametrize("body", ["REVOKE", "OPTOUT"])
def test_twilios_newer_stop_words_are_left_to_twilio_too(client, body):
    CustomerFactory(phone="+33612345678")
    assert b"<Message>" not in reply(client, "+33612345678", body).content


def test_opt_out_spelt_in_two_words_which_twilio_does_not_match_is_confirmed(client):
    CustomerFactory(phone="+33612345678", locale="en-GB")
    response = reply(client, "+33612345678", "Opt-out")
    assert b"You will receive no more offers by SMS" in response.content


@pytest.mark.parametrize("body", [" stop all ", "Stop all", "STOP ALL!"])
def test_stopall_spelt_in_two_words_opts_out_and_is_confirmed(client, body):
    # Twilio matches STOPALL as one word only: Passage acts on "stop all" and confirms it.
    customer = CustomerFactory(phone="+33612345678", locale="en-GB")
    response = reply(client, "+33612345678", body)
    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_OUT
    assert b"You will receive no more offers by SMS" in response.content


@pytest.mark.parametrize(
    ("locale", "text"),
    [
        ("fr-FR", "Vous ne recevrez plus nos offres par SMS"),
        ("en-US", "You will receive no more offers by SMS"),
        ("it", "Non riceverai più le nostre offerte"),
        ("", "You will receive no more offers by SMS"),
        ("pt-BR", "You will receive no more offers by SMS"),  # a language we do not write
    ],
)
def test_our_confirmation_is_in_the_customers_language(client, locale, text):
    CustomerFactory(phone="+33612345678", locale=locale)
    assert text in reply(client, "+33612345678", "ARRET").content.decode()


def test_help_is_answered_in_the_customers_language(client):
    CustomerFactory(phone="+33612345678", locale="fr-FR")
    content = reply(client, "+33612345678", "AIDE").content.decode()
    assert "Répondez STOP pour ne plus les recevoir" in content


@pytest.mark.parametrize(
    ("opt_out_type", "consent"), [("STOP", "opted_out"), ("START", "opted_in")]
)
def test_twilios_advanced_opt_out_match_is_acted_on_and_left_to_twilio_to_answer(
    client, opt_out_type, consent
):
    # The retailer's Messaging Service adds its own keywords (DESABONNER, REABONNER) and
    # tells us which kind it matched; it has answered the customer already.
    start = SmsConsent.OPTED_IN if opt_out_type == "STOP" else SmsConsent.OPTED_OUT
    customer = CustomerFactory(phone="+33612345678", sms_consent=start)
    body = "DESABONNER" if opt_out_type == "STOP" else "REABONNER"
    response = reply(client, "+33612345678", body, OptOutType=opt_out_type)
    customer.refresh_from_db()
    assert customer.sms_consent == consent
    assert b"<Message>" not in response.content


def test_a_help_twilios_advanced_opt_out_answered_gets_no_second_answer(client):
    CustomerFactory(phone="+33612345678")
    response = reply(client, "+33612345678", "AIDE", OptOutType="HELP")
    assert b"<Message>" not in response.content


@pytest.mark.parametrize("already", ["no customer", "opted out through the API"])
def test_an_arret_that_records_the_number_s_opt_out_is_confirmed(already):
    # An erased customer replying to an old offer, or one their CRM opted out already: the
    # number's opt-out is kept now, and Twilio does not answer ARRET.
    from customers.models import OptedOutNumber

    if already == "opted out through the API":
        CustomerFactory(phone="+33612345678", locale="fr-FR", sms_consent="opted_out")

    response = reply(Client(), "+33612345678", "ARRET")

    assert OptedOutNumber.objects.count() == 1
    assert b"<Message>" in response.content
