"""SMS that end without being sent (campaign paused, quiet hours, STOP, erased...) give their
send slots back: an idle sender does not hold the next shopper's SMS behind them."""

from datetime import timedelta

import pytest
from django.utils import timezone

from promotions import tasks
from promotions.models import Campaign, Delivery
from tests.promotions.test_sending import queue_offer, store  # noqa: F401

pytestmark = pytest.mark.django_db


def test_an_idle_sender_sends_the_next_sms_at_once_after_a_paused_burst(store, settings):  # noqa: F811
    settings.CELERY_TASK_ALWAYS_EAGER = False  # deployed: a broker, paced sends
    settings.SMS_SENDER_MPS = 0.1  # one segment every 10 s, so 20 SMS book 200 s
    now = timezone.now()
    burst = [queue_offer(store, now=now) for _ in range(20)]
    # The marketer sees the burst and pauses the campaign: none of it goes, all of it fails.
    Campaign.objects.update(status="paused")
    for delivery in burst:
        assert tasks.send_sms.apply((delivery.id,)).get() == "failed"
    assert not Delivery.objects.filter(status="queued").exists()  # the sender has nothing to do

    # Another campaign's shopper walks in 5 s later.
    walked_in = now + timedelta(seconds=5)
    later = queue_offer(store, now=walked_in)

    wait = later.send_after - walked_in
    assert wait < timedelta(seconds=15), f"an idle sender holds the next SMS back {wait}"


def test_a_new_sms_waits_for_the_sms_still_booked(store, settings):  # noqa: F811
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.SMS_SENDER_MPS = 0.1
    now = timezone.now()
    first, second, third = [queue_offer(store, now=now) for _ in range(3)]
    # The second ends without being sent; the third, booked behind it, still waits.
    Delivery.objects.filter(id=second.id).update(status="suppressed")

    later = queue_offer(store, now=now + timedelta(seconds=5))

    assert (first.send_after, third.send_after) == (now, now + timedelta(seconds=20))
    assert later.send_after == now + timedelta(seconds=30)
