"""A throttled send's retry is booked at the sender's pace from the end of its backoff: the
sender's later SMS come after it, not in its second."""

from datetime import timedelta

import pytest
from django.utils import timezone

from promotions import sending, sms
from promotions.models import SmsSender
from tests.promotions.test_sending import queue_offer, store  # noqa: F401

pytestmark = pytest.mark.django_db


def test_a_retry_after_its_backoff_shares_no_second_with_another_sms(store, settings):  # noqa: F811
    settings.CELERY_TASK_ALWAYS_EAGER = False  # deployed: a broker, paced sends
    settings.SMS_SENDER_MPS = 1
    now = timezone.now()
    throttled = queue_offer(store, now=now)
    SmsSender.objects.filter(sender=sms.sender_id()).update(next_slot_at=now)
    # Twilio answered 429 with Retry-After: 30; the task books the retry as send_sms does.
    retry_at = sending.schedule_retry(
        delivery_id=throttled.id, now=now, backoff=timedelta(seconds=30)
    )

    # Shoppers keep walking in, one a second, each SMS paced at the sender's rate.
    others = [queue_offer(store, now=now + timedelta(seconds=s)) for s in range(1, 35)]

    assert retry_at == now + timedelta(seconds=30)
    throttled.refresh_from_db()
    assert throttled.send_after == retry_at
    same_second = [d.id for d in others if abs(d.send_after - retry_at) < timedelta(seconds=1)]
    assert same_second == [], f"the retry shares its second with {same_second}"


def test_a_retry_that_would_go_stale_books_nothing(store, settings):  # noqa: F811
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.SMS_SENDER_MPS = 1
    settings.SMS_VALIDITY_SECONDS = 60
    now = timezone.now()
    throttled = queue_offer(store, now=now)  # its visit was 30 s ago

    sending.schedule_retry(delivery_id=throttled.id, now=now, backoff=timedelta(seconds=45))

    throttled.refresh_from_db()
    assert throttled.status == "failed"
    # The sender's turn is not pushed past a retry that never goes.
    assert SmsSender.objects.get().next_slot_at == now + timedelta(seconds=1)
