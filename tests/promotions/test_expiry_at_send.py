"""An SMS never goes out after its offer expired: decided a minute before the offer's last
day ends, its paced slot or its retry can fall on the next day, and its "until 30/11" would
reach the customer on 1/12 with a code the till refuses."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from promotions import decisions, offers, sending
from promotions.models import Delivery, OfferCode, PresenceEvent, SmsSender
from promotions.sms import locmem
from tests.factories import CampaignFactory, CustomerFactory, StoreFactory
from tests.promotions.test_sending import book_until

pytestmark = pytest.mark.django_db

LONDON = ZoneInfo("Europe/London")
# Two minutes before the end of a one-day offer's only day.
DECIDED = datetime(2026, 11, 30, 23, 58, tzinfo=LONDON)


@pytest.fixture(autouse=True)
def outbox(settings):
    settings.SMS_BACKEND = "locmem"
    settings.SMS_GLOBAL_MIN_GAP_MINUTES = 0
    locmem.clear()
    return locmem.outbox


@pytest.fixture
def store():
    return StoreFactory(code="OXFORD", timezone="Europe/London")


@pytest.fixture
def campaign(store):
    campaign = CampaignFactory(offer_valid_days=1, offer_template="{code} until {expires_at}")
    campaign.stores.add(store)
    return campaign


def walk_in(store, at: datetime) -> list[int]:
    customer = CustomerFactory(timezone="Europe/London", locale="en-GB")
    event = PresenceEvent.objects.create(
        customer=customer,
        store=store,
        kind="entered",
        place_key=f"store:{store.id}",
        occurred_at=at - timedelta(seconds=5),
        created_at=at,
    )
    return decisions.decide_presence_events(event_ids=[event.id], now=at)


def test_a_paced_sms_whose_slot_comes_after_its_offer_expired_is_never_sent(
    settings, store, campaign, outbox
):
    settings.CELERY_TASK_ALWAYS_EAGER = False  # paced: the sends go through a broker
    booked = DECIDED + timedelta(minutes=3)  # the sender's backlog runs past midnight
    [backlog] = walk_in(store, DECIDED)
    book_until(Delivery.objects.get(pk=backlog), booked)

    [queued] = walk_in(store, DECIDED)
    sending.send_delivery(delivery_id=queued, now=booked)

    delivery = Delivery.objects.get(pk=queued)
    assert (delivery.status, delivery.reason) == ("failed", "")
    assert delivery.error_message == offers.OFFER_EXPIRED
    assert delivery.send_after is None
    assert outbox == []
    # A slot booked for it would hold up the next shopper's SMS for nothing.
    assert SmsSender.objects.get().next_slot_at == booked


def test_an_sms_whose_send_comes_after_its_offer_expired_is_not_sent(store, campaign, outbox):
    # Without a broker the send runs at once; a retry (Twilio's 429) can still take it
    # past the offer's end, within the SMS's validity.
    [queued] = walk_in(store, DECIDED)
    after_midnight = DECIDED + timedelta(minutes=3)

    outcome = sending.send_delivery(delivery_id=queued, now=after_midnight)

    delivery = Delivery.objects.get(pk=queued)
    assert outcome == sending.SendOutcome("failed", offers.OFFER_EXPIRED)
    assert (delivery.status, delivery.reason) == ("failed", "")
    assert delivery.error_message == offers.OFFER_EXPIRED
    assert outbox == []


def test_a_pool_code_whose_offer_expired_unsent_goes_back_to_the_pool(store, campaign, outbox):
    OfferCode.objects.create(campaign=campaign, code="POOL-0001")
    [queued] = walk_in(store, DECIDED)
    assert Delivery.objects.get(pk=queued).code == "POOL-0001"

    sending.send_delivery(delivery_id=queued, now=DECIDED + timedelta(minutes=3))

    assert Delivery.objects.get(pk=queued).code is None
    assert OfferCode.objects.get().delivery is None
    assert outbox == []


def test_an_sms_sent_in_its_offers_last_minute_goes(store, campaign, outbox):
    [queued] = walk_in(store, DECIDED)

    sending.send_delivery(delivery_id=queued, now=DECIDED + timedelta(seconds=90))

    delivery = Delivery.objects.get(pk=queued)
    assert delivery.status == "sent"
    [message] = outbox
    assert message.body.startswith(f"{delivery.code} until 30/11")
