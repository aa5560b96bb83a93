"""Two workers claiming the same delivery at once: exactly one may send it. Two real
transactions at the same row, so PostgreSQL only."""

import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from promotions.models import DeliveryStatus
from promotions.sending import claim
from tests.factories import DeliveryFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
    ),
]


def test_a_delivery_claimed_by_a_worker_still_deciding_is_not_claimed_again():
    delivery = DeliveryFactory(status=DeliveryStatus.QUEUED, claimed_at=None)
    first_claimed, release, results = threading.Event(), threading.Event(), {}

    def first_worker():
        try:
            with transaction.atomic():
                results["first"] = claim(delivery.id, now=timezone.now(), attempts=1)
                first_claimed.set()
                release.wait(10)  # the row stays locked until this commits
        finally:
            connection.close()

    def second_worker():
        try:
            results["second"] = claim(delivery.id, now=timezone.now(), attempts=1)
        finally:
            connection.close()

    first = threading.Thread(target=first_worker)
    first.start()
    assert first_claimed.wait(10)
    second = threading.Thread(target=second_worker)
    second.start()
    second.join(0.5)
    assert second.is_alive(), "the second claim must wait for the first to commit"
    release.set()
    first.join(10)
    second.join(10)

    assert results == {"first": True, "second": False}
