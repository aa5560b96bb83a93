"""Twilio's webhooks: signed status callbacks and customers' replies."""

import pytest
from twilio.request_validator import RequestValidator

from customers.models import ConsentChange, SmsConsent
from promotions.models import DeliveryStatus
from tests.factories import CustomerFactory, DeliveryFactory

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


def reply(client, phone, body):
    return signed_post(client, "/webhooks/twilio/inbound", {"From": phone, "Body": body})


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


@pytest.mark.parametrize("param", ["abc", "-1", "1.5", "%D9%A1", "9" * 30, ""])
def test_a_malformed_delivery_id_in_a_callback_is_ignored(client, param):
    delivery = DeliveryFactory(status=DeliveryStatus.QUEUED, twilio_sid="")
    assert status_of(client, param, "SM9", "delivered").status_code == 204
    delivery.refresh_from_db()
    assert delivery.status == "queued"


# --- Replies ----------------------------------------------------------------------------


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


def test_a_sentence_with_stop_in_it_is_not_an_opt_out(client):
    customer = CustomerFactory(phone="+33612345678")
    reply(client, "+33612345678", "please don't stop the offers")
    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_IN


@pytest.mark.parametrize("body", ["START", "yes", "Unstop"])
def test_start_yes_and_unstop_opt_back_in(client, body):
    customer = CustomerFactory(phone="+33612345678", sms_consent=SmsConsent.OPTED_OUT)
    response = reply(client, "+33612345678", body)
    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_IN
    assert b"<Message>" in response.content
    assert ConsentChange.objects.get(customer=customer).consent == "opted_in"


def test_help_is_answered(client):
    response = reply(client, "+33612345678", "help")
    assert b"Reply STOP to opt out" in response.content


def test_arret_is_confirmed_and_stop_is_left_to_twilio(client):
    CustomerFactory(phone="+33612345678")
    assert b"<Message>" in reply(client, "+33612345678", "ARRET").content
    CustomerFactory(phone="+33612345679")
    assert b"<Message>" not in reply(client, "+33612345679", "STOP").content


def test_a_reply_from_an_unknown_number_changes_nothing(client):
    response = reply(client, "+33699999999", "STOP")
    assert response.status_code == 200
    assert not ConsentChange.objects.exists()


def test_everyone_sharing_a_number_is_opted_out(client):
    first = CustomerFactory(phone="+33612345678")
    second = CustomerFactory(phone="+33612345678")
    reply(client, "+33612345678", "STOP")
    for customer in (first, second):
        customer.refresh_from_db()
        assert customer.sms_consent == SmsConsent.OPTED_OUT
