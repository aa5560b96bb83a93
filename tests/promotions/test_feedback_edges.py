"""Edges of what comes back from Twilio and the till: a loyalty card whose latest offer was
redeemed already, replies in the languages Passage writes in, a status callback that
overtakes a send whose answer was lost, and a callback with a sid Twilio never sends."""

from dataclasses import replace
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.utils import timezone
from twilio.request_validator import RequestValidator

from customers.models import SmsConsent
from promotions import tasks
from promotions.models import Redemption
from tests import twilio_fake
from tests.clock import ago
from tests.factories import CampaignFactory, CustomerFactory, DeliveryFactory, StoreFactory
from tests.promotions.test_sending import queue_offer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def webhooks(settings):
    settings.TWILIO_AUTH_TOKEN = "webhook-token"
    settings.PUBLIC_BASE_URL = "https://passage.example.com"


@pytest.fixture
def store():
    return StoreFactory(code="RIVOLI", name="Passage Rivoli", latitude=48.8606, longitude=2.3417)


def signed_post(client, path, form):
    """A webhook request signed as Twilio signs it, with the token configured now."""
    url = django_settings.PUBLIC_BASE_URL + path
    signature = RequestValidator(django_settings.TWILIO_AUTH_TOKEN).compute_signature(url, form)
    return client.post(path, form, HTTP_X_TWILIO_SIGNATURE=signature)


def reply(phone, body, **extra):
    return signed_post(Client(), "/webhooks/twilio/inbound", {"From": phone, "Body": body, **extra})


def callback(delivery_id, sid, status, **extra):
    form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC1", **extra}
    client = Client(raise_request_exception=False)
    return signed_post(client, f"/webhooks/twilio/status?delivery={delivery_id}", form)


def shown_error_code(api, delivery):
    """The delivery's error_code as GET /api/v1/deliveries shows it."""
    external_id = delivery.customer.external_id
    [item] = api.get(f"/api/v1/deliveries?customer_id={external_id}").json()["results"]
    return item["error_code"]


# --- A loyalty card at the till ---------------------------------------------------------


def loyalty_purchase(api, customer_id, **extra):
    body = {"customer_id": customer_id, "store_code": "RIVOLI", "redeemed_at": ago(minutes=1)}
    return api.post("/api/v1/redemptions", {**body, **extra})


def offer(customer, *, days_ago, status="sent", expires_in_days=5):
    now = timezone.now()
    return DeliveryFactory(
        customer=customer,
        campaign=CampaignFactory(),
        status=status,
        created_at=now - timedelta(days=days_ago),
        expires_at=now + timedelta(days=expires_in_days),
    )


def test_a_loyalty_card_goes_to_an_earlier_unused_offer_past_one_redeemed_already(api, store):
    # Léa is in campaign A's holdout (day 3); campaign B texts her a code (day 1), which she
    # uses at once. Today she buys again with her loyalty card only.
    lea = CustomerFactory(external_id="C-7")
    held = offer(lea, days_ago=3, status="holdout")
    texted = offer(lea, days_ago=1)
    used = api.post(
        "/api/v1/redemptions",
        {"code": texted.code, "store_code": "RIVOLI", "redeemed_at": ago(hours=20)},
    )
    assert used.status_code == 201

    response = loyalty_purchase(api, "C-7")

    assert response.status_code == 201, response.json()
    assert response.json()["delivery"] == held.id
    assert Redemption.objects.filter(delivery=held).exists()


def test_a_loyalty_card_still_takes_the_latest_unused_offer(api, store):
    lea = CustomerFactory(external_id="C-7")
    offer(lea, days_ago=3)
    latest = offer(lea, days_ago=1)

    response = loyalty_purchase(api, "C-7")

    assert response.status_code == 201
    assert response.json()["delivery"] == latest.id


def test_a_loyalty_card_whose_current_offers_were_all_redeemed_is_409(api, store):
    lea = CustomerFactory(external_id="C-7")
    first, second = offer(lea, days_ago=3), offer(lea, days_ago=1)
    # An unused offer that has expired is no current one.
    offer(lea, days_ago=10, expires_in_days=-2)
    assert loyalty_purchase(api, "C-7", redeemed_at=ago(hours=20)).json()["delivery"] == second.id
    assert loyalty_purchase(api, "C-7", redeemed_at=ago(hours=10)).json()["delivery"] == first.id

    response = loyalty_purchase(api, "C-7")

    assert response.status_code == 409
    assert "redeemed already" in response.json()["detail"]
    assert Redemption.objects.count() == 2


def test_a_loyalty_card_with_only_expired_offers_is_404(api, store):
    lea = CustomerFactory(external_id="C-7")
    offer(lea, days_ago=10, expires_in_days=-2)

    response = loyalty_purchase(api, "C-7")

    assert response.status_code == 404
    assert response.json() == {"detail": "No current offer."}


def test_a_code_redeemed_already_is_409_though_its_customer_has_another_unused_offer(api, store):
    lea = CustomerFactory(external_id="C-7")
    offer(lea, days_ago=3)
    texted = offer(lea, days_ago=1)
    body = {"code": texted.code, "store_code": "RIVOLI", "redeemed_at": ago(hours=20)}
    assert api.post("/api/v1/redemptions", body).status_code == 201

    response = api.post("/api/v1/redemptions", {**body, "redeemed_at": ago(minutes=1)})

    assert response.status_code == 409
    assert response.json()["detail"].startswith("This offer was already redeemed, at RIVOLI on ")


def test_a_till_writing_the_store_code_in_another_case_is_told_the_code_there_is(api, store):
    texted = offer(CustomerFactory(external_id="C-7"), days_ago=1)
    body = {"code": texted.code, "store_code": "rivoli", "redeemed_at": ago(hours=20)}

    response = api.post("/api/v1/redemptions", body)

    assert response.status_code == 400
    assert response.json()["store_code"] == [
        "No store has the code 'rivoli'. Codes are case-sensitive: did you mean 'RIVOLI'?"
    ]
    assert not Redemption.objects.exists()


# --- Replies in the languages Passage writes in -----------------------------------------


@pytest.mark.parametrize(
    ("locale", "body", "text"),
    [
        ("de-DE", "STOPP", "Du erhältst keine Angebote mehr per SMS"),
        ("de-AT", "Stopp!", "Du erhältst keine Angebote mehr per SMS"),
        ("de-DE", "abmelden", "Du erhältst keine Angebote mehr per SMS"),
        ("es-ES", "BAJA", "Ya no te enviaremos ofertas por SMS"),
        ("es-MX", "Cancelar", "Ya no te enviaremos ofertas por SMS"),
        ("it-IT", "ANNULLA", "Non riceverai più le nostre offerte"),
    ],
)
def test_a_stop_word_of_a_language_passage_writes_in_opts_out_and_passage_confirms_it(
    locale, body, text
):
    # Twilio does not act on these: the customer's only confirmation is ours.
    customer = CustomerFactory(phone="+33612345678", locale=locale)

    response = reply("+33612345678", body)

    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_OUT
    assert text in response.content.decode()


@pytest.mark.parametrize("body", ["no", "NEIN", "baja el precio"])
def test_a_no_or_a_sentence_is_not_an_opt_out(body):
    customer = CustomerFactory(phone="+33612345678", locale="es-ES")
    reply("+33612345678", body)
    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_IN


@pytest.mark.parametrize(
    ("locale", "body", "text"),
    [
        ("de-DE", "Hilfe", "Antworte STOP zum Abmelden"),
        ("es-ES", "AYUDA", "Responde STOP para darte de baja"),
        ("it-IT", "aiuto?", "Rispondi STOP per non riceverle"),
    ],
)
def test_help_in_a_language_passage_writes_in_is_answered_in_the_customers_language(
    locale, body, text
):
    customer = CustomerFactory(phone="+33612345678", locale=locale)
    assert text in reply("+33612345678", body).content.decode()
    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_IN


def test_a_stop_word_twilios_advanced_opt_out_matched_is_left_to_twilio_to_answer():
    customer = CustomerFactory(phone="+33612345678", locale="de-DE")

    response = reply("+33612345678", "STOPP", OptOutType="STOP")

    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_OUT
    assert b"<Message>" not in response.content


# --- A status callback and a send whose answer was lost ---------------------------------


def overtaking_callback(answers, status, **extra):
    """Twilio's status callback, posted before Twilio's answer to the send comes back."""

    def call_back(request, sid):
        path = request.form["StatusCallback"].removeprefix(django_settings.PUBLIC_BASE_URL)
        try:
            form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC1", **extra}
            answers.append(signed_post(Client(), path, form))
        finally:
            connection.close()

    return call_back


@pytest.mark.django_db(transaction=True)
def test_the_error_code_of_a_callback_survives_the_lost_answer_of_its_send(twilio, store, api):
    # Twilio takes the SMS, the carrier refuses it (30003) and Twilio calls back; the gateway
    # in front of Twilio then loses Twilio's answer to the send (502).
    answers = []
    twilio.on_accepted = overtaking_callback(answers, "undelivered", ErrorCode="30003")
    twilio.then(replace(twilio_fake.BAD_GATEWAY, accepted=True))
    delivery = queue_offer(store)

    tasks.send_sms.apply((delivery.id,), throw=True)

    assert [answer.status_code for answer in answers] == [204]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.twilio_sid) == ("undelivered", twilio.accepted[0].sid)
    assert shown_error_code(api, delivery) == 30003
    assert "may have been sent" not in delivery.error_message


def test_a_callback_after_a_lost_answer_leaves_only_twilios_error(twilio, store, api):
    twilio.then(replace(twilio_fake.BAD_GATEWAY, accepted=True))
    delivery = queue_offer(store)
    tasks.send_sms.apply((delivery.id,), throw=True)
    delivery.refresh_from_db()
    assert delivery.status == "queued"
    assert "may have been sent" in delivery.error_message

    response = callback(delivery.id, twilio.accepted[0].sid, "undelivered", ErrorCode="30003")

    assert response.status_code == 204
    delivery.refresh_from_db()
    assert delivery.status == "undelivered"
    assert shown_error_code(api, delivery) == 30003
    # The admin shows error_message beside the code: not the gateway's guess any more.
    assert delivery.error_message == ""


# --- A callback's MessageSid ------------------------------------------------------------


@pytest.mark.parametrize(
    "sid",
    [
        "SM" + "0" * 70,  # longer than the stored sid
        "SM\x00",
        "SM" + "a" * 33,
        "SMnot-hex",
        "AC" + "0" * 32,  # an account's sid, not a message's
        "",
    ],
)
def test_a_callback_with_a_sid_twilio_never_sends_is_ignored(sid):
    delivery = DeliveryFactory(status="queued", twilio_sid="")

    response = callback(delivery.id, sid, "delivered")

    assert response.status_code == 204
    delivery.refresh_from_db()
    assert (delivery.status, delivery.twilio_sid) == ("queued", "")


@pytest.mark.parametrize("sid", ["SM" + "0123456789abcdef" * 2, "MM" + "0123456789ABCDEF" * 2])
def test_a_callback_with_a_sid_of_twilios_shape_is_applied(sid):
    delivery = DeliveryFactory(status="queued", twilio_sid="")

    assert callback(delivery.id, sid, "delivered").status_code == 204

    delivery.refresh_from_db()
    assert (delivery.status, delivery.twilio_sid) == ("delivered", sid)


def test_a_loyalty_purchase_sent_again_by_the_till_is_not_credited_to_another_offer(api, store):
    # The till's first request was recorded, but its answer was lost: it sends it again.
    lea = CustomerFactory(external_id="C-7")
    earlier = offer(lea, days_ago=3)
    latest = offer(lea, days_ago=1)
    purchase = {"redeemed_at": ago(minutes=3), "amount": "42.50"}
    assert loyalty_purchase(api, "C-7", **purchase).json()["delivery"] == latest.id

    again = loyalty_purchase(api, "C-7", **purchase)

    assert again.status_code == 409
    assert "already recorded" in again.json()["detail"]
    assert not Redemption.objects.filter(delivery=earlier).exists()
    # A second purchase that day still takes the earlier offer.
    other = loyalty_purchase(api, "C-7", redeemed_at=ago(minutes=2), amount="9.90")
    assert other.json()["delivery"] == earlier.id


@pytest.mark.parametrize("path", ["code", "customer_id"])
def test_a_till_clock_a_few_minutes_ahead_still_redeems_a_code_valid_on_our_clock(api, path):
    # The till's time is ahead of ours (accepted up to INGEST_MAX_CLOCK_SKEW_SECONDS): the
    # purchase happened no later than our now, when the code had not expired.
    StoreFactory(code="RIVOLI")
    now = timezone.now()
    customer = CustomerFactory(external_id="C-7")
    DeliveryFactory(
        customer=customer,
        code="K7Q2-M9XB",
        created_at=now - timedelta(days=1),
        expires_at=now + timedelta(minutes=1),
    )
    wanted = {"code": "K7Q2-M9XB"} if path == "code" else {"customer_id": "C-7"}
    response = api.post(
        "/api/v1/redemptions",
        {**wanted, "store_code": "RIVOLI", "redeemed_at": (now + timedelta(minutes=3)).isoformat()},
    )
    assert response.status_code == 201, response.json()


@pytest.mark.parametrize("path", ["code", "customer_id"])
def test_a_till_clock_ahead_does_not_revive_a_code_expired_on_our_clock(api, path):
    StoreFactory(code="RIVOLI")
    now = timezone.now()
    customer = CustomerFactory(external_id="C-7")
    DeliveryFactory(
        customer=customer,
        code="K7Q2-M9XB",
        created_at=now - timedelta(days=1),
        expires_at=now - timedelta(minutes=1),
    )
    wanted = {"code": "K7Q2-M9XB"} if path == "code" else {"customer_id": "C-7"}
    response = api.post(
        "/api/v1/redemptions",
        {**wanted, "store_code": "RIVOLI", "redeemed_at": (now + timedelta(minutes=3)).isoformat()},
    )
    # By code, the expired offer is named (409); by loyalty card, there is no current one.
    assert response.status_code == (409 if path == "code" else 404), response.json()
