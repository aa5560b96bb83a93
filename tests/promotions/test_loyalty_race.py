"""Two loyalty-card purchases of one customer handled at the same instant: each takes an
offer of its own. Two real transactions at the same row, so PostgreSQL only."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from promotions.feedback import redeem
from promotions.models import Redemption
from tests.factories import CampaignFactory, CustomerFactory, DeliveryFactory, StoreFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
    ),
]


def blocked_on_a_lock(thread_pid: list[int]) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", thread_pid)
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


def test_two_loyalty_purchases_at_once_each_take_an_offer_of_their_own():
    StoreFactory(code="RIVOLI")
    lea = CustomerFactory(external_id="C-7")
    now = timezone.now()
    earlier, latest = (
        DeliveryFactory(
            customer=lea,
            campaign=CampaignFactory(),
            status="sent",
            created_at=now - timedelta(days=days),
            expires_at=now + timedelta(days=5),
        )
        for days in (3, 1)
    )
    first_inserted, release, second_pid, results = (
        threading.Event(),
        threading.Event(),
        [],
        {},
    )

    def first_till():
        try:
            with transaction.atomic():
                results["first"] = redeem(
                    code=None,
                    customer_id="C-7",
                    store_code="RIVOLI",
                    amount=Decimal("10"),
                    redeemed_at=now - timedelta(minutes=2),
                )
                first_inserted.set()
                release.wait(10)  # its redemption is not committed until this returns
        finally:
            connection.close()

    def second_till():
        try:
            second_pid.append(connection.cursor().connection.info.backend_pid)
            results["second"] = redeem(
                code=None,
                customer_id="C-7",
                store_code="RIVOLI",
                amount=Decimal("20"),
                redeemed_at=now - timedelta(minutes=1),
            )
        except Exception as error:  # reported by the assertion below
            results["second"] = error
        finally:
            connection.close()

    first = threading.Thread(target=first_till)
    first.start()
    assert first_inserted.wait(10)
    second = threading.Thread(target=second_till)
    second.start()
    for _ in range(200):
        if second_pid and blocked_on_a_lock(second_pid):
            break
        second.join(0.05)
    assert second.is_alive(), "the second purchase must wait for the first's redemption"
    release.set()
    first.join(10)
    second.join(10)

    assert results["first"].delivery_id == latest.id
    assert getattr(results["second"], "delivery_id", results["second"]) == earlier.id
    assert Redemption.objects.count() == 2
