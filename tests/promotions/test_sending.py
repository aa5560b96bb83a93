"""Sending a decided SMS through Twilio, once: retries, permanent errors, consent and phone
changes while queued, stale offers, pacing, pool codes of SMS that never went. Twilio is the
local fake, reached through the real SDK."""

import re
import socket
from dataclasses import replace
from datetime import timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from twilio.request_validator import RequestValidator

from customers.models import ConsentChange, Customer, SmsConsent
from customers.selectors import get_customer_export
from customers.services import erase_customer
from promotions import decisions, offers, sending, sms, tasks
from promotions.models import Campaign, Delivery, LocationBatch, OfferCode, Ping, SmsSender
from promotions.sms import locmem
from tests import twilio_fake
from tests.factories import CampaignFactory, CustomerFactory, DeviceFactory, StoreFactory
from tests.promotions.test_engine_api import RIVOLI
from tests.promotions.test_engine_api import walk_in as walk_in_through_the_api

pytestmark = pytest.mark.django_db


@pytest.fixture
def store():
    return StoreFactory(code="RIVOLI", name="Passage Rivoli", latitude=48.8606, longitude=2.3417)


def queue_offer(store, customer=None, *, seconds_ago=30, now=None):
    """A customer walks in and a campaign decides to text them at `now`; nothing is sent yet."""
    customer = customer or CustomerFactory()
    device = DeviceFactory(customer=customer)
    campaign = CampaignFactory(offer_template="Bonjour {first_name}: {code}")
    campaign.stores.add(store)
    now = now or timezone.now()
    ping = Ping.objects.create(
        device=device,
        latitude=store.latitude,
        longitude=store.longitude,
        accuracy=10,
        recorded_at=now - timedelta(seconds=seconds_ago),
    )
    batch = LocationBatch.objects.create(ping_ids=[ping.id])
    [delivery_id] = decisions.process_location_batch(batch_id=batch.pk, now=now)
    return Delivery.objects.get(id=delivery_id)


def book_until(delivery, until):
    """`delivery` becomes the last SMS booked at the sender, its turn ending at `until`: the
    sender has a backlog until then (its next free slot is where its live bookings end)."""
    gap = timedelta(seconds=1 / settings.SMS_SENDER_MPS)
    Delivery.objects.filter(id=delivery.id).update(
        send_after=until - gap * max(1, delivery.segments)
    )
    SmsSender.objects.update_or_create(sender=sms.sender_id(), defaults={"next_slot_at": until})


def send(delivery):
    tasks.send_sms.delay(delivery.id)
    delivery.refresh_from_db()
    return delivery


def test_a_queued_offer_is_sent_once_with_its_sid(twilio, store):
    delivery = send(queue_offer(store))

    assert delivery.status == "sent"
    assert delivery.twilio_sid.startswith("SM")
    assert delivery.sent_at is not None
    [request] = twilio.messages
    assert request.form["Body"] == delivery.body


@pytest.mark.django_db(transaction=True)
def test_a_status_callback_that_overtakes_the_send_is_kept(twilio, store, settings):
    answers = []

    def call_back(request, sid):
        # Twilio delivers and calls back before its answer to the send reaches the worker.
        url = request.form["StatusCallback"]
        form = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": "AC1"}
        signature = RequestValidator(twilio_fake.AUTH_TOKEN).compute_signature(url, form)
        try:
            path = url.removeprefix(settings.PUBLIC_BASE_URL)
            answers.append(Client().post(path, form, HTTP_X_TWILIO_SIGNATURE=signature))
        finally:
            connection.close()

    twilio.on_accepted = call_back
    delivery = queue_offer(store)
    tasks.send_sms.apply((delivery.id,), throw=True)  # anything unexpected fails the test
    delivery.refresh_from_db()

    assert [answer.status_code for answer in answers] == [204]
    assert delivery.status == "delivered"
    assert delivery.twilio_sid.startswith("SM")
    assert delivery.sent_at is not None
    assert len(twilio.messages) == 1


def test_sending_the_same_delivery_again_sends_nothing(twilio, store):
    delivery = send(queue_offer(store))
    send(delivery)
    tasks.send_sms.delay(delivery.id)

    assert len(twilio.messages) == 1


def test_a_delivery_is_claimed_for_sending_once(store):
    delivery = queue_offer(store)
    now = timezone.now()

    first = sending.claim(delivery.id, now=now, attempts=1)
    second = sending.claim(delivery.id, now=now + timedelta(seconds=1), attempts=2)

    assert (first, second) == (True, False)
    delivery.refresh_from_db()
    assert (delivery.claimed_at, delivery.attempts) == (now, 1)


def test_a_delivery_claimed_by_a_worker_that_died_is_not_sent_by_the_next(twilio, store):
    delivery = queue_offer(store)
    # The first worker claimed it, then died before it could say whether Twilio took it.
    claimed_at = timezone.now()
    assert sending.claim(delivery.id, now=claimed_at, attempts=1)

    delivery = send(delivery)  # the task, redelivered to another worker

    assert twilio.messages == []
    assert (delivery.status, delivery.claimed_at, delivery.attempts) == ("queued", claimed_at, 1)


def test_throttling_and_server_errors_are_retried_until_one_message_goes(twilio, store):
    twilio.then(twilio_fake.TOO_MANY, twilio_fake.SERVER_ERROR, twilio_fake.TOO_MANY)

    delivery = send(queue_offer(store))

    assert delivery.status == "sent"
    assert delivery.attempts == 4
    assert len(twilio.messages) == 4
    assert len({r.form["Body"] for r in twilio.messages}) == 1


def test_after_the_retry_bound_the_delivery_fails_with_the_error(twilio, store, settings):
    twilio.then(*[twilio_fake.SERVER_ERROR] * 20)

    delivery = send(queue_offer(store))

    assert delivery.status == "failed"
    assert delivery.error_code == 20500
    assert len(twilio.messages) == settings.SMS_MAX_RETRIES + 1


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(twilio_fake.Answer(503), id="an empty 503"),
        pytest.param(twilio_fake.Answer(503, {"message": "Service Unavailable"}), id="no code"),
    ],
)
def test_an_answer_with_no_twilio_error_code_records_none(twilio, store, settings, page):
    # A balancer's own 503 page carries no error code: the SDK puts the HTTP status in its
    # place, which is no Twilio error code (theirs are five digits), and would read as one.
    twilio.then(*[page] * 20)

    delivery = send(queue_offer(store))

    assert (delivery.status, delivery.error_code) == ("failed", None)
    assert delivery.error_message.startswith("Twilio 503")
    assert len(twilio.messages) == settings.SMS_MAX_RETRIES + 1


def test_an_invalid_number_fails_at_once_without_retry(twilio, store):
    twilio.then(twilio_fake.INVALID_NUMBER)

    delivery = send(queue_offer(store))

    assert (delivery.status, delivery.error_code) == ("failed", 21211)
    assert len(twilio.messages) == 1


def test_the_stored_error_never_quotes_the_phone_number(twilio, store):
    # Twilio's 21211 names the number; erasing the customer blanks the delivery's `to`, and a
    # send in flight meanwhile must not leave the number in the error text.
    delivery = queue_offer(store)
    text = f"The 'To' number {delivery.to} is not a valid phone number."
    twilio.then(twilio_fake.error(400, 21211, text))

    delivery = send(delivery)

    assert delivery.error_code == 21211
    assert delivery.to not in delivery.error_message
    assert delivery.to.lstrip("+") not in delivery.error_message
    assert "The 'To' number [phone number] is not a valid phone number." in delivery.error_message


def test_an_unsubscribed_recipient_is_opted_out(twilio, store):
    twilio.then(twilio_fake.UNSUBSCRIBED)
    delivery = queue_offer(store)

    delivery = send(delivery)

    assert (delivery.status, delivery.error_code) == ("failed", 21610)
    customer = delivery.customer
    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_OUT
    assert ConsentChange.objects.get(customer=customer).source == "twilio"


def test_an_unsubscribed_number_opts_out_everyone_at_it_as_a_stop_does(twilio, store):
    delivery = queue_offer(store)
    sharing = CustomerFactory(phone=delivery.to)
    twilio.then(twilio_fake.UNSUBSCRIBED)

    send(delivery)

    sharing.refresh_from_db()
    assert sharing.sms_consent == SmsConsent.OPTED_OUT


def test_a_stop_arriving_while_the_sms_is_queued_wins(twilio, store, client, settings):
    delivery = queue_offer(store)
    url = settings.PUBLIC_BASE_URL + "/webhooks/twilio/inbound"
    form = {"From": delivery.customer.phone, "Body": " stop ", "MessageSid": "SMin"}
    signature = RequestValidator(twilio_fake.AUTH_TOKEN).compute_signature(url, form)
    response = client.post("/webhooks/twilio/inbound", form, HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 200

    delivery = send(delivery)

    assert (delivery.status, delivery.reason) == ("suppressed", "no_consent")
    assert twilio.messages == []


def test_an_sms_queued_before_a_phone_change_does_not_go_to_the_old_number(twilio, store, api):
    delivery = queue_offer(store)
    customer = delivery.customer
    # The customer gives a new number, with consent for it, while the SMS waits its turn.
    response = api.put(
        f"/api/v1/customers/{customer.external_id}",
        {
            "phone": "+33699999999",
            "first_name": customer.first_name,
            "timezone": customer.timezone,
            "locale": customer.locale,
            "sms_consent": "opted_in",
            "consent_source": "app",
        },
        format="json",
    )
    assert response.status_code == 200

    delivery = send(delivery)

    assert (delivery.status, delivery.reason) == ("suppressed", "no_phone")
    assert delivery.error_message == sending.PHONE_CHANGED
    assert twilio.messages == []


def test_twilio_holds_an_sms_no_longer_than_its_offer_has_left(twilio, store, settings):
    settings.SMS_VALIDITY_SECONDS = 600
    delivery = queue_offer(store)
    event_at = delivery.presence_event.occurred_at
    late = queue_offer(store)

    # Its turn comes 9 minutes 30 s after the customer walked in: 30 s of the offer are left.
    sending.send_delivery(delivery_id=delivery.id, now=event_at + timedelta(seconds=570))
    # A fraction of a second is left: Twilio's minimum, 1 s.
    sending.send_delivery(
        delivery_id=late.id,
        now=late.presence_event.occurred_at + timedelta(seconds=599, milliseconds=600),
    )

    assert [r.form["ValidityPeriod"] for r in twilio.messages] == ["30", "1"]


def test_twilio_never_holds_an_sms_longer_than_the_validity(twilio, store, settings):
    settings.SMS_VALIDITY_SECONDS = 600
    delivery = queue_offer(store)
    # The presence event is stamped 30 s ahead of the worker's clock (a phone's clock).
    sending.send_delivery(
        delivery_id=delivery.id, now=delivery.presence_event.occurred_at - timedelta(seconds=30)
    )

    assert [r.form["ValidityPeriod"] for r in twilio.messages] == ["600"]


def test_a_phone_clock_running_fast_does_not_keep_an_offer_fresh(twilio, store, settings):
    settings.SMS_VALIDITY_SECONDS = 600
    visit = timezone.now()
    # The shopper walks in at `visit`; their phone's clock runs 290 s fast (ingest takes up
    # to 300 s ahead), so the ping says visit + 290 s.
    delivery = queue_offer(store, seconds_ago=-290, now=visit)
    assert delivery.presence_event.occurred_at == visit + timedelta(seconds=290)

    # Its turn comes 11 minutes after the visit (a paced backlog, a retry): stale.
    outcome = sending.send_delivery(delivery_id=delivery.id, now=visit + timedelta(minutes=11))

    delivery.refresh_from_db()
    assert (outcome.status, delivery.error_message) == ("failed", offers.STALE)
    assert twilio.messages == []


def test_the_sweep_fails_a_lost_send_whose_visit_is_past_its_validity(twilio, store, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # paced: the sends go through a broker
    settings.SMS_VALIDITY_SECONDS = 600
    visit = timezone.now()
    fast = queue_offer(store, seconds_ago=-290, now=visit)  # a phone clock 290 s fast
    fresh = queue_offer(store, seconds_ago=0, now=visit + timedelta(minutes=5))
    swept_at = visit + timedelta(minutes=11)
    lost_at = swept_at - timedelta(seconds=settings.SWEEP_AFTER_SECONDS + 1)
    Delivery.objects.filter(id__in=[fast.id, fresh.id]).update(send_after=lost_at)

    assert sorted(sending.lost_sends(swept_at=swept_at, now=swept_at)) == [fast.id, fresh.id]

    fast.refresh_from_db()
    fresh.refresh_from_db()
    assert (fast.status, fast.error_message) == ("failed", offers.STALE)
    assert fresh.status == "queued"


def test_an_sms_too_long_for_twilio_fails_without_reaching_it(twilio, store):
    delivery = queue_offer(store)
    # Rendered from a template saved before templates were checked against Twilio's limit.
    Delivery.objects.filter(id=delivery.id).update(body="x" * 1601)

    delivery = send(delivery)

    assert delivery.status == "failed"
    assert delivery.error_message == sending.TOO_LONG.format(length=1601, limit=1600)
    assert twilio.messages == []


def test_a_name_that_fails_to_resolve_for_a_moment_is_retried_and_the_sms_goes(
    twilio, store, settings, monkeypatch
):
    port = twilio.url.rsplit(":", 1)[1]
    settings.TWILIO_API_BASE = f"http://twilio-egress.internal:{port}"
    resolve = socket.getaddrinfo
    failures = []

    def resolve_after_a_blip(host, *args, **kwargs):
        if host != "twilio-egress.internal":
            return resolve(host, *args, **kwargs)
        if not failures:
            failures.append(host)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return resolve("127.0.0.1", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve_after_a_blip)

    delivery = send(queue_offer(store))

    assert (delivery.status, delivery.attempts) == ("sent", 2)
    assert len(twilio.messages) == 1


@pytest.mark.parametrize("gateway", [twilio_fake.BAD_GATEWAY, twilio_fake.GATEWAY_TIMEOUT])
def test_a_gateway_error_is_never_resent_and_is_settled_from_twilio(
    twilio, store, settings, gateway
):
    # The gateway in front of Twilio answers an error, and Twilio behind it took the message.
    twilio.then(replace(gateway, accepted=True))

    delivery = send(queue_offer(store))
    assert delivery.status == "queued"
    assert delivery.claimed_at is not None
    assert "may have been sent" in delivery.error_message
    send(delivery)

    long_claimed(delivery, settings)
    tasks.settle_claimed_sends.delay()
    delivery.refresh_from_db()

    assert delivery.status == "sent"
    assert delivery.twilio_sid == twilio.accepted[0].sid
    assert len(twilio.messages) == 1


@pytest.mark.parametrize(
    "answer",
    [
        # What an egress proxy or a gateway in front of Twilio may answer a POST it passed on:
        # a page of its own, or Twilio's answer stripped down.
        twilio_fake.Answer(200, raw=("text/html", b"<html><body>Request accepted</body></html>")),
        twilio_fake.Answer(200, {"status": "queued"}),
    ],
)
def test_a_success_that_names_no_message_is_never_resent_and_is_settled_from_twilio(
    twilio, store, settings, answer
):
    # The send task failed with a traceback (the SDK's JSON error, or the database refusing
    # no sid), the delivery saying nothing of why it stayed queued.
    twilio.then(replace(answer, accepted=True))

    delivery = send(queue_offer(store))
    assert (delivery.status, delivery.sent_at) == ("queued", None)
    assert delivery.claimed_at is not None
    assert "Twilio 200 answered no message; not retried, it may have been sent" in (
        delivery.error_message
    )
    send(delivery)

    long_claimed(delivery, settings)
    tasks.settle_claimed_sends.delay()
    delivery.refresh_from_db()

    assert delivery.status == "sent"
    assert delivery.twilio_sid == twilio.accepted[0].sid
    assert len(twilio.messages) == 1


def test_a_listing_that_is_not_twilio_s_leaves_claimed_sends_for_the_next_run(
    twilio, store, settings, caplog
):
    # An egress proxy's page where Twilio's list of messages should be: the settling task
    # failed with the JSON parser's traceback every five minutes.
    twilio.then(replace(twilio_fake.GATEWAY_TIMEOUT, accepted=True))
    delivery = send(queue_offer(store))
    long_claimed(delivery, settings)
    twilio.then(twilio_fake.Answer(200, raw=("text/html", b"<html>Sign in to continue</html>")))

    assert tasks.settle_claimed_sends.delay().get() == 0
    delivery.refresh_from_db()
    assert (delivery.status, delivery.twilio_sid) == ("queued", "")
    assert "Twilio could not list messages: HTTP 200 answered no list" in caplog.text

    assert tasks.settle_claimed_sends.delay().get() == 1  # Twilio's own listing, next run
    delivery.refresh_from_db()
    assert delivery.twilio_sid == twilio.accepted[0].sid


def test_a_throttled_send_is_retried_after_the_wait_twilio_asks_for(twilio, store, settings):
    settings.SMS_SENDER_MPS = 100
    twilio.then(replace(twilio_fake.TOO_MANY, headers={"Retry-After": "30"}))

    delivery = send(queue_offer(store))

    first, _ = twilio.messages
    assert delivery.status == "sent"
    assert delivery.send_after - first.at >= timedelta(seconds=30)


def test_a_retry_after_longer_than_the_longest_backoff_is_cut_to_it(twilio, store, settings):
    settings.SMS_SENDER_MPS = 100
    twilio.then(replace(twilio_fake.TOO_MANY, headers={"Retry-After": "3600"}))

    delivery = send(queue_offer(store))

    first, _ = twilio.messages
    longest = timedelta(seconds=sending.MAX_SEND_BACKOFF_SECONDS + 2)
    assert timedelta(seconds=sending.MAX_SEND_BACKOFF_SECONDS) <= delivery.send_after - first.at
    assert delivery.send_after - first.at < longest


def test_a_send_that_succeeds_after_throttling_keeps_no_error(twilio, store):
    twilio.then(twilio_fake.TOO_MANY)

    delivery = send(queue_offer(store))

    assert delivery.status == "sent"
    assert (delivery.error_code, delivery.error_message) == (None, "")


def test_an_offer_that_expires_after_throttling_keeps_twilios_error_code(twilio, store):
    twilio.then(twilio_fake.TOO_MANY)
    delivery = queue_offer(store)
    with pytest.raises(sms.TransientSmsError):
        sending.send_delivery(delivery_id=delivery.id, now=timezone.now(), final_attempt=False)
    sending.schedule_retry(delivery_id=delivery.id, now=timezone.now(), backoff=timedelta(0))

    # Its retry comes after the offer's validity.
    sending.send_delivery(delivery_id=delivery.id, now=timezone.now() + timedelta(minutes=11))
    delivery.refresh_from_db()

    assert (delivery.status, delivery.error_code) == ("failed", 20429)
    assert delivery.error_message == offers.STALE
    assert len(twilio.messages) == 1


def test_an_offer_older_than_its_validity_is_not_sent(twilio, store, settings):
    delivery = queue_offer(store)
    settings.SMS_VALIDITY_SECONDS = 60
    delivery.presence_event.occurred_at = timezone.now() - timedelta(minutes=2)
    delivery.presence_event.save()

    delivery = send(delivery)

    assert delivery.status == "failed"
    assert delivery.error_message == offers.STALE
    assert twilio.messages == []


def test_an_sms_whose_store_was_deleted_while_it_waited_is_not_sent(twilio, store):
    # Only a campaign for every store lets a store with queued texts go; its presence events
    # go with it, and the decision's own time still bounds the offer.
    delivery = queue_offer(store)
    delivery.campaign.stores.clear()
    store.delete()

    delivery = send(delivery)

    assert (delivery.status, delivery.error_message) == ("failed", sending.STORE_DELETED)
    assert twilio.messages == []


def test_an_sms_whose_presence_event_is_gone_still_expires(twilio, store, settings):
    delivery = queue_offer(store)
    settings.SMS_VALIDITY_SECONDS = 60
    delivery.presence_event.delete()

    sending.send_delivery(delivery_id=delivery.id, now=timezone.now() + timedelta(minutes=2))

    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_message) == ("failed", offers.STALE)
    assert twilio.messages == []


@pytest.mark.parametrize(
    "stop",
    [
        {"status": "paused"},
        {"status": "ended"},
        {"ends_at": timedelta(seconds=-1)},  # past its end when the slot comes
        {"ends_at": timedelta(0)},  # ending the very instant its slot comes
    ],
    ids=["paused", "ended", "past its end", "ending at its slot"],
)
def test_a_campaign_stopped_while_its_sms_waited_sends_nothing(twilio, store, stop):
    delivery = queue_offer(store)
    now = timezone.now()
    campaign = delivery.campaign
    campaign.status = stop.get("status", campaign.status)
    if "ends_at" in stop:
        campaign.ends_at = now + stop["ends_at"]
    campaign.save()

    sending.send_delivery(delivery_id=delivery.id, now=now)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_message) == ("failed", sending.CAMPAIGN_STOPPED)
    assert twilio.messages == []


def test_a_campaign_postponed_while_its_sms_waited_sends_nothing(twilio, store, api):
    # It went live by mistake: the marketer moves its start to tomorrow, which the engine
    # reads as not running yet. The SMS already waiting for their turn are not sent either.
    delivery = queue_offer(store)
    tomorrow = timezone.now() + timedelta(days=1)
    response = api.patch(
        f"/api/v1/campaigns/{delivery.campaign_id}", {"starts_at": tomorrow}, format="json"
    )
    assert response.status_code == 200

    delivery = send(delivery)

    assert (delivery.status, delivery.error_message) == ("failed", sending.CAMPAIGN_STOPPED)
    assert twilio.messages == []


@pytest.fixture
def locmem_outbox(settings):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    yield locmem.outbox
    locmem.clear()


def test_an_sms_for_a_store_removed_from_its_campaign_while_it_waited_is_not_sent(
    store, api, admin_client, locmem_outbox
):
    # Decided at Rivoli, its SMS waits for its slot at the sender; meanwhile the marketer
    # takes Rivoli out of the campaign, which runs on at Opéra only.
    StoreFactory(code="OPERA", name="Passage Opéra", latitude=48.8719, longitude=2.3316)
    delivery = queue_offer(store)
    book_until(delivery, timezone.now() + timedelta(seconds=30))
    response = api.patch(
        f"/api/v1/campaigns/{delivery.campaign_id}", {"stores": ["OPERA"]}, format="json"
    )
    assert response.status_code == 200

    delivery = send(delivery)

    assert locmem_outbox == []
    assert (delivery.status, delivery.error_message) == ("failed", sending.STORE_REMOVED)
    assert limits_shown(admin_client, delivery) == (
        f"all passed when decided; then failed at its turn to send: {sending.STORE_REMOVED}"
    )


def test_an_sms_waiting_when_its_campaign_is_opened_to_every_store_is_sent(
    store, api, locmem_outbox
):
    delivery = queue_offer(store)
    response = api.patch(f"/api/v1/campaigns/{delivery.campaign_id}", {"stores": []}, format="json")
    assert response.status_code == 200

    delivery = send(delivery)

    assert delivery.status == "sent"
    assert [sms.to for sms in locmem_outbox] == [delivery.to]


def test_a_send_whose_slot_falls_in_quiet_hours_is_held(twilio, store):
    delivery = queue_offer(store)  # decided outside quiet hours
    # By the time its paced slot comes, the customer's evening quiet hours have begun.
    paris = timezone.now().astimezone(ZoneInfo("Europe/Paris"))
    campaign = delivery.campaign
    campaign.quiet_hours_start = (paris - timedelta(minutes=1)).time()
    campaign.quiet_hours_end = (paris + timedelta(hours=1)).time()
    campaign.save()

    delivery = send(delivery)

    assert (delivery.status, delivery.reason) == ("suppressed", "quiet_hours")
    assert twilio.messages == []


def limits_shown(admin_client, delivery) -> str:
    """The Limits row of the delivery's decision trace in the admin."""
    page = admin_client.get(f"/admin/promotions/delivery/{delivery.pk}/change/").content.decode()
    return re.search(r"<th>Limits</th><td>(.*?)</td>", page).group(1)


def test_the_trace_of_an_sms_held_back_at_its_turn_says_why(twilio, store, admin_client):
    delivery = queue_offer(store)  # decided outside quiet hours: every limit passed
    paris = timezone.now().astimezone(ZoneInfo("Europe/Paris"))
    campaign = delivery.campaign
    campaign.quiet_hours_start = (paris - timedelta(minutes=1)).time()
    campaign.quiet_hours_end = (paris + timedelta(hours=1)).time()
    campaign.save()

    delivery = send(delivery)

    assert (delivery.status, delivery.reason) == ("suppressed", "quiet_hours")
    assert limits_shown(admin_client, delivery) == (
        "all passed when decided; then suppressed at its turn to send: "
        "Quiet hours or a day not allowed"
    )


def test_the_trace_of_an_sms_stopped_with_its_campaign_says_why(twilio, store, admin_client):
    delivery = queue_offer(store)
    Campaign.objects.filter(id=delivery.campaign_id).update(status="paused")

    delivery = send(delivery)

    assert limits_shown(admin_client, delivery) == (
        f"all passed when decided; then failed at its turn to send: {sending.CAMPAIGN_STOPPED}"
    )


def test_the_trace_of_an_sms_sent_says_every_limit_passed(twilio, store, admin_client):
    delivery = send(queue_offer(store))

    assert delivery.status == "sent"
    assert limits_shown(admin_client, delivery) == "all passed"


def test_sends_are_paced_to_the_senders_rate(store, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # paced: the sends go through a broker
    settings.SMS_SENDER_MPS = 2
    now = timezone.now()  # three decisions in one instant: a burst
    first, second, third = (queue_offer(store, now=now) for _ in range(3))

    assert [first.send_after, second.send_after, third.send_after] == [
        now,
        now + timedelta(seconds=0.5),
        now + timedelta(seconds=1),
    ]


def test_a_send_retried_after_throttling_waits_its_turn_at_the_senders_pace(
    twilio, store, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # paced: the sends go through a broker
    settings.SMS_SENDER_MPS = 1
    now = timezone.now()
    # The sender has five minutes' backlog (within the offers' validity): the retry, which
    # runs on the worker's clock, is paced from it, however long the test takes to get there.
    backlog_ends = now + timedelta(minutes=5)
    book_until(queue_offer(store, now=now), backlog_ends)
    throttled = queue_offer(store, now=now)
    next_in_line = queue_offer(store, now=now)
    twilio.then(twilio_fake.TOO_MANY)

    # Throttled, its send books its retry as the task does (1 s of backoff), and the next
    # decision comes while the retry waits for its turn; then the retry runs.
    with pytest.raises(sms.TransientSmsError):
        sending.send_delivery(delivery_id=throttled.id, now=now, final_attempt=False)
    sending.schedule_retry(delivery_id=throttled.id, now=now, backoff=timedelta(seconds=1))
    later = queue_offer(store, now=now)
    tasks.send_sms.apply((throttled.id,), retries=1)
    throttled.refresh_from_db()

    # The retry took the slot after the SMS paced behind it, and the next decision's SMS
    # the slot after the retry's: the sender never sends faster than its pace.
    assert throttled.status == "sent"
    assert next_in_line.send_after == backlog_ends + timedelta(seconds=1)
    assert throttled.send_after == backlog_ends + timedelta(seconds=2)
    assert later.send_after == backlog_ends + timedelta(seconds=3)


def test_a_copy_of_a_throttled_send_waits_for_the_retry_twilio_asked_for(twilio, store, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # deployed: workers, a broker, paced sends
    twilio.then(twilio_fake.TOO_MANY)
    delivery = queue_offer(store)
    now = timezone.now()
    # The send is throttled and books its retry 30 s on, as the send_sms task does.
    with pytest.raises(sms.TransientSmsError):
        sending.send_delivery(delivery_id=delivery.id, now=now, final_attempt=False)
    sending.schedule_retry(delivery_id=delivery.id, now=now, backoff=timedelta(seconds=30))

    # A second copy of its first task (the broker redelivered it) runs a second later.
    outcome = sending.send_delivery(
        delivery_id=delivery.id, now=now + timedelta(seconds=1), final_attempt=False
    )
    delivery.refresh_from_db()

    assert outcome.status == "skipped"
    assert len(twilio.messages) == 1, "Twilio asked for a wait and was asked again at once"
    assert (delivery.status, delivery.claimed_at) == ("queued", None)  # left for its retry


def test_a_copy_of_a_throttled_send_run_before_its_retry_is_booked_leaves_it_alone(twilio, store):
    twilio.then(twilio_fake.TOO_MANY)
    delivery = queue_offer(store)
    with pytest.raises(sms.TransientSmsError):
        sending.send_delivery(delivery_id=delivery.id, now=timezone.now(), final_attempt=False)

    # The throttled worker has not booked its retry yet when a copy of the task runs.
    outcome = sending.send_delivery(delivery_id=delivery.id, now=timezone.now())

    assert outcome.status == "skipped"
    assert len(twilio.messages) == 1


def test_a_copy_of_a_send_that_finds_it_claimed_leaves_it_to_its_worker(twilio, store, monkeypatch):
    delivery = queue_offer(store)
    claim = sending.claim

    def claimed_by_a_worker_that_is_then_throttled(delivery_id, *, now, attempts):
        # Another worker claimed the delivery a moment before this copy tries to...
        assert claim(delivery_id, now=now, attempts=attempts)
        won = claim(delivery_id, now=now, attempts=attempts)
        # ... and is answered with a 429: it gives the row back, booked for its retry.
        sending.schedule_retry(delivery_id=delivery_id, now=now, backoff=timedelta(seconds=5))
        return won

    # Patched to put two real writes in the order two workers can give them, no more.
    monkeypatch.setattr(sending, "claim", claimed_by_a_worker_that_is_then_throttled)
    outcome = sending.send_delivery(delivery_id=delivery.id, now=timezone.now())
    delivery.refresh_from_db()

    # The customer still consents at this number: the other worker's retry sends the SMS.
    assert (delivery.status, delivery.reason) == ("queued", "")
    assert outcome.status == "skipped"


def test_a_retry_whose_backoff_ends_after_the_senders_next_slot_waits_for_the_backoff(store):
    delivery = queue_offer(store)
    now = timezone.now()
    SmsSender.objects.update(next_slot_at=now)

    retry_at = sending.schedule_retry(
        delivery_id=delivery.id, now=now, backoff=timedelta(seconds=30)
    )

    delivery.refresh_from_db()
    assert retry_at == delivery.send_after == now + timedelta(seconds=30)


def test_a_redelivered_batch_sends_what_its_first_run_decided_but_never_enqueued(twilio, store):
    # The first run decided and died before enqueuing the send.
    delivery = queue_offer(store)

    [batch] = LocationBatch.objects.all()

    tasks.process_location_batch.delay(batch.pk)
    tasks.process_location_batch.delay(batch.pk)

    delivery.refresh_from_db()
    assert delivery.status == "sent"
    assert len(twilio.messages) == 1


def test_the_sweep_sends_a_delivery_whose_send_task_was_lost(twilio, store, settings):
    delivery = queue_offer(store)
    Delivery.objects.filter(id=delivery.id).update(
        send_after=timezone.now() - timedelta(seconds=settings.SWEEP_AFTER_SECONDS + 5)
    )

    tasks.sweep_unprocessed.delay()

    delivery.refresh_from_db()
    assert delivery.status == "sent"
    assert len(twilio.messages) == 1


# --- Sends claimed and never recorded -----------------------------------------------------


def long_claimed(delivery, settings):
    """Make the delivery's claim older than its offer's validity and the settling margin: as
    it is when the sweep finds it."""
    age = timedelta(seconds=settings.SMS_VALIDITY_SECONDS) + sending.SETTLE_AFTER_EXPIRY
    Delivery.objects.filter(id=delivery.id).update(
        claimed_at=timezone.now() - age - timedelta(seconds=1)
    )


def test_an_answer_that_never_came_is_settled_from_twilio_and_never_resent(twilio, store, settings):
    settings.SMS_HTTP_TIMEOUT_SECONDS = 0.5
    # Twilio takes the message, and its answer comes after the worker gave up waiting.
    twilio.then(twilio_fake.Answer(201, {"sid": "SMlate", "status": "queued"}, delay=2))

    delivery = send(queue_offer(store))
    assert delivery.status == "queued"
    assert delivery.claimed_at is not None
    assert "may have been sent" in delivery.error_message
    send(delivery)  # the task again, as after a worker's death: nothing more goes out

    long_claimed(delivery, settings)
    assert tasks.settle_claimed_sends.delay().get() == 1
    delivery.refresh_from_db()

    assert delivery.status == "sent"
    assert delivery.twilio_sid == "SMlate"
    assert len(twilio.messages) == 1
    [lookup] = twilio.lookups
    assert lookup.form["To"] == delivery.to


def test_a_send_twilio_took_before_its_worker_died_gets_twilios_status(twilio, store, settings):
    delivery = queue_offer(store)
    # The worker claimed the delivery, Twilio took the message, and the worker died before
    # recording the sid. Twilio delivered it meanwhile, and its callbacks went unanswered.
    assert sending.claim(delivery.id, now=timezone.now(), attempts=1)
    sent = sms.get_backend().send(
        sms.OutgoingSms(to=delivery.to, body=delivery.body, reference=str(delivery.id))
    )
    twilio.statuses[sent.sid] = "delivered"
    other = queue_offer(store)  # another customer's offer, sent and recorded
    send(other)

    long_claimed(delivery, settings)
    tasks.settle_claimed_sends.delay()
    delivery.refresh_from_db()

    assert delivery.status == "delivered"
    assert delivery.twilio_sid == sent.sid
    assert delivery.sent_at is not None
    assert len(twilio.messages) == 2


def test_a_status_callback_settling_a_send_whose_answer_was_lost_records_when_it_went(
    twilio, store, settings
):
    # A gateway's 504: Twilio took the message, and its callback comes before the sweep.
    twilio.then(replace(twilio_fake.GATEWAY_TIMEOUT, accepted=True))
    delivery = send(queue_offer(store))
    assert (delivery.status, delivery.sent_at) == ("queued", None)
    [accepted] = twilio.accepted
    url = accepted.form["StatusCallback"]
    form = {"MessageSid": accepted.sid, "MessageStatus": "delivered", "AccountSid": "AC1"}
    signature = RequestValidator(twilio_fake.AUTH_TOKEN).compute_signature(url, form)
    path = url.removeprefix(settings.PUBLIC_BASE_URL)

    assert Client().post(path, form, HTTP_X_TWILIO_SIGNATURE=signature).status_code == 204

    delivery.refresh_from_db()
    assert (delivery.status, delivery.sent_at) == ("delivered", delivery.claimed_at)


def test_a_claim_whose_worker_died_before_twilio_fails_as_never_sent(twilio, store, settings):
    delivery = queue_offer(store)
    assert sending.claim(delivery.id, now=timezone.now(), attempts=1)

    long_claimed(delivery, settings)
    tasks.settle_claimed_sends.delay()
    send(delivery)
    delivery.refresh_from_db()

    assert delivery.status == "failed"
    assert delivery.error_message == sending.NEVER_SENT
    assert twilio.messages == []


def test_a_claim_younger_than_its_offer_is_left_to_its_worker(twilio, store):
    delivery = queue_offer(store)
    assert sending.claim(delivery.id, now=timezone.now(), attempts=1)

    assert tasks.settle_claimed_sends.delay().get() == 0
    delivery.refresh_from_db()

    assert delivery.status == "queued"
    assert twilio.requests == []


def test_twilio_unreachable_leaves_claimed_sends_for_the_next_run(twilio, store, settings):
    delivery = queue_offer(store)
    assert sending.claim(delivery.id, now=timezone.now(), attempts=1)
    long_claimed(delivery, settings)
    twilio.then(twilio_fake.SERVER_ERROR)

    assert tasks.settle_claimed_sends.delay().get() == 0
    delivery.refresh_from_db()
    assert delivery.status == "queued"

    assert tasks.settle_claimed_sends.delay().get() == 1
    delivery.refresh_from_db()
    assert delivery.status == "failed"
    assert len(twilio.lookups) == 2


def test_a_claimed_send_of_an_erased_customer_is_settled_without_asking(twilio, store, settings):
    delivery = queue_offer(store)
    assert sending.claim(delivery.id, now=timezone.now(), attempts=1)
    erase_customer(customer=delivery.customer)

    long_claimed(delivery, settings)
    tasks.settle_claimed_sends.delay()
    delivery.refresh_from_db()

    assert (delivery.status, delivery.error_message) == ("failed", sending.UNKNOWN_ERASED)
    assert twilio.requests == []


# --- Codes from a pool ------------------------------------------------------------------


@pytest.fixture
def pooled(store):
    """A campaign with one code left in its pool."""
    campaign = CampaignFactory(offer_template="Your code: {code}")
    campaign.stores.add(store)
    OfferCode.objects.create(campaign=campaign, code="POS-1")
    return campaign


def walk_in(store, customer=None, *, now=None):
    """A customer walks in, and the campaigns decide through the engine's real path; returns
    the customer's decision."""
    customer = customer or CustomerFactory()
    now = now or timezone.now()
    ping = Ping.objects.create(
        device=DeviceFactory(customer=customer),
        latitude=store.latitude,
        longitude=store.longitude,
        accuracy=10,
        recorded_at=now - timedelta(seconds=30),
    )
    batch = LocationBatch.objects.create(ping_ids=[ping.id])
    decisions.process_location_batch(batch_id=batch.pk, now=now)
    return Delivery.objects.get(customer=customer)


def stop_before_the_send(delivery, twilio, settings):
    Customer.objects.filter(id=delivery.customer_id).update(sms_consent=SmsConsent.OPTED_OUT)
    send(delivery)


def change_number_before_the_send(delivery, twilio, settings):
    Customer.objects.filter(id=delivery.customer_id).update(phone="+33699999999")
    send(delivery)


def erase_before_the_send(delivery, twilio, settings):
    erase_customer(customer=delivery.customer)
    send(delivery)


def send_in_quiet_hours(delivery, twilio, settings):
    before = settings.SMS_GLOBAL_QUIET_HOURS
    paris = timezone.now().astimezone(ZoneInfo("Europe/Paris"))
    settings.SMS_GLOBAL_QUIET_HOURS = (
        (paris - timedelta(minutes=1)).time(),
        (paris + timedelta(minutes=1)).time(),
    )
    send(delivery)
    settings.SMS_GLOBAL_QUIET_HOURS = before


def send_after_the_offer_went_stale(delivery, twilio, settings):
    sending.send_delivery(delivery_id=delivery.id, now=timezone.now() + timedelta(minutes=11))


def pause_the_campaign_before_the_send(delivery, twilio, settings):
    Campaign.objects.filter(id=delivery.campaign_id).update(status="paused")
    send(delivery)
    Campaign.objects.filter(id=delivery.campaign_id).update(status="active")


def remove_the_store_before_the_send(delivery, twilio, settings):
    campaign = Campaign.objects.get(id=delivery.campaign_id)
    campaign.stores.set([StoreFactory()])
    send(delivery)
    campaign.stores.set([delivery.store])


def send_too_long(delivery, twilio, settings):
    Delivery.objects.filter(id=delivery.id).update(body="x" * 1601)
    send(delivery)


def send_to_an_invalid_number(delivery, twilio, settings):
    twilio.then(twilio_fake.INVALID_NUMBER)
    send(delivery)


def send_to_an_unsubscribed_number(delivery, twilio, settings):
    twilio.then(twilio_fake.UNSUBSCRIBED)
    send(delivery)


def send_while_twilio_fails_every_retry(delivery, twilio, settings):
    twilio.then(*[twilio_fake.SERVER_ERROR] * (settings.SMS_MAX_RETRIES + 1))
    send(delivery)


@pytest.mark.parametrize(
    ("end", "status"),
    [
        (stop_before_the_send, "suppressed"),
        (change_number_before_the_send, "suppressed"),
        (erase_before_the_send, "suppressed"),
        (send_in_quiet_hours, "suppressed"),
        (send_after_the_offer_went_stale, "failed"),
        (pause_the_campaign_before_the_send, "failed"),
        (remove_the_store_before_the_send, "failed"),
        (send_too_long, "failed"),
        (send_to_an_invalid_number, "failed"),
        (send_to_an_unsubscribed_number, "failed"),
        (send_while_twilio_fails_every_retry, "failed"),
    ],
    ids=lambda value: getattr(value, "__name__", value),
)
def test_a_pool_code_whose_sms_twilio_never_took_goes_to_the_next_customer(
    twilio, store, pooled, settings, end, status
):
    first = walk_in(store)
    assert (first.status, first.code) == ("queued", "POS-1")

    end(first, twilio, settings)

    first.refresh_from_db()
    # The text quoted the code, which is the next customer's now: it goes with it.
    assert (first.status, first.code, first.body) == (status, None, "")
    assert not twilio.accepted
    second = walk_in(store)
    assert (second.status, second.reason, second.code) == ("queued", "", "POS-1")
    send(second)
    assert [r.form["Body"].split("\n")[0] for r in twilio.accepted] == ["Your code: POS-1"]
    assert OfferCode.objects.get().delivery == second


def test_the_code_of_an_sms_twilio_took_and_could_not_deliver_stays_used(
    twilio, store, pooled, client, settings
):
    first = send(walk_in(store))
    form = {"MessageSid": first.twilio_sid, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    url = settings.PUBLIC_BASE_URL + "/webhooks/twilio/status"
    signature = RequestValidator(twilio_fake.AUTH_TOKEN).compute_signature(url, form)
    client.post("/webhooks/twilio/status", form, HTTP_X_TWILIO_SIGNATURE=signature)
    first.refresh_from_db()
    assert (first.status, first.code) == ("undelivered", "POS-1")

    second = walk_in(store)

    assert (second.status, second.reason, second.code) == ("suppressed", "budget", None)
    assert OfferCode.objects.get().delivery == first


def test_the_code_of_a_send_whose_outcome_went_unrecorded_stays_used(
    twilio, store, pooled, settings
):
    # The request went out and no answer came: the SMS may be on the customer's phone, and
    # Twilio finding no record of it later (among the number's latest messages) is not proof.
    twilio.then(twilio_fake.GATEWAY_TIMEOUT)
    first = send(walk_in(store))
    assert (first.status, first.code) == ("queued", "POS-1")
    long_claimed(first, settings)
    tasks.settle_claimed_sends.delay()
    first.refresh_from_db()
    assert (first.status, first.error_message) == ("failed", sending.NEVER_SENT)

    second = walk_in(store)

    assert (second.status, second.reason) == ("suppressed", "budget")
    assert OfferCode.objects.get().delivery == first


def test_a_returned_pool_code_shows_only_on_the_sms_that_carries_it(twilio, store, pooled, api):
    first = walk_in(store)
    Customer.objects.filter(id=first.customer_id).update(sms_consent=SmsConsent.OPTED_OUT)
    send(first)
    second = send(walk_in(store))

    bodies = {
        d["id"]: (d["code"], d["body"]) for d in api.get("/api/v1/deliveries").json()["results"]
    }
    assert bodies[first.id] == (None, "")
    assert bodies[second.id][0] == "POS-1"
    assert bodies[second.id][1].startswith("Your code: POS-1")
    export = get_customer_export(Customer.objects.get(id=first.customer_id))
    assert "POS-1" not in str(export["deliveries"])


# --- Without a broker ---------------------------------------------------------------------


def test_twilio_without_a_broker_is_warned_of_by_the_system_checks(settings):
    # Eager tasks run inside the request: no pace between sends, no backoff between retries.
    settings.SMS_BACKEND = "twilio"
    settings.CELERY_TASK_ALWAYS_EAGER = True
    out = StringIO()

    call_command("check", stdout=out, stderr=out)

    assert "passage.W001" in out.getvalue()
    assert "SMS_BACKEND=twilio without CELERY_BROKER_URL" in out.getvalue()


@pytest.mark.parametrize(
    ("backend", "eager"), [("twilio", False), ("console", True), ("locmem", True)]
)
def test_a_broker_or_a_local_backend_needs_no_warning(settings, backend, eager):
    settings.SMS_BACKEND = backend
    settings.CELERY_TASK_ALWAYS_EAGER = eager

    assert "passage.W001" not in [message.id for message in run_checks()]


@pytest.mark.parametrize(("mps", "minutes_ago"), [(0.01, 0.1), (1, 595 / 60)])
def test_without_a_broker_a_burst_goes_at_once_none_expired_by_pacing(
    api, settings, mps, minutes_ago
):
    # make run: sends run inside the request, so a pace booked for them would only expire
    # the later shoppers' offers (every 100 s; or at 1/s, for walk-ins 595 s old).
    settings.SMS_BACKEND = "locmem"
    settings.SMS_SENDER_MPS = mps
    locmem.clear()
    store = StoreFactory(latitude=RIVOLI[0], longitude=RIVOLI[1])
    CampaignFactory().stores.add(store)
    devices = [DeviceFactory() for _ in range(12)]

    for device in devices:
        walk_in_through_the_api(api, device.device_id, minutes_ago=minutes_ago)

    statuses = Delivery.objects.values_list("status", "error_message")
    assert list(statuses) == [("sent", "")] * 12
    assert len(locmem.outbox) == 12


def test_a_throttled_send_whose_worker_died_before_booking_its_retry_is_still_sent(
    twilio, store, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # deployed: workers, a broker, the sweep
    twilio.then(twilio_fake.TOO_MANY)
    delivery = queue_offer(store)
    now = timezone.now()
    with pytest.raises(sms.TransientSmsError):
        sending.send_delivery(delivery_id=delivery.id, now=now, final_attempt=False)
    # The worker is killed here (out of memory, a deploy), before schedule_retry: its retry
    # is never booked. Three minutes on, well within the offer's ten, the sweep runs.
    later = now + timedelta(minutes=3)
    due_before = later - timedelta(seconds=settings.SWEEP_AFTER_SECONDS)

    assert delivery.id in decisions.stranded_deliveries(due_before=due_before)
    assert sending.send_delivery(delivery_id=delivery.id, now=later).status == "sent"
    assert len(twilio.accepted) == 1


def test_a_retry_booked_for_an_sms_failed_meanwhile_takes_no_send_slot(twilio, store, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # deployed: paced sends
    twilio.then(twilio_fake.TOO_MANY)
    delivery = queue_offer(store)
    now = timezone.now()
    with pytest.raises(sms.TransientSmsError):
        sending.send_delivery(delivery_id=delivery.id, now=now, final_attempt=False)
    # Before its worker books the retry, a redelivered retry finds the campaign paused.
    Delivery.objects.filter(id=delivery.id).update(status="failed")
    next_slot = SmsSender.objects.get().next_slot_at

    sending.schedule_retry(delivery_id=delivery.id, now=now, backoff=timedelta(seconds=1))

    assert SmsSender.objects.get().next_slot_at == next_slot
