"""Two workers deciding for the same customer. Each task reads its clock when it starts,
then waits for the customer's lock: the worker that started later may take the lock first
and commit an SMS stamped after the other's `now`. That SMS still counts for the other
one's caps, or the customer gets two."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from customers.models import Customer
from promotions import decisions
from promotions.models import Delivery, PresenceEvent
from tests.factories import CampaignFactory, CustomerFactory, StoreFactory
from tests.processes import in_thread, started

LIMITS = pytest.mark.parametrize(
    ("limits", "reason"),
    [
        ({"limit_per_customer_days": 7}, "campaign_cap"),
        ({"SMS_GLOBAL_MIN_GAP_MINUTES": 60}, "global_cap"),
        ({"SMS_GLOBAL_CAP_COUNT": 1}, "global_cap"),
        # Budgets count every SMS recorded from the day's start, whatever its stamp.
        ({"daily_budget": 1}, "budget"),
        ({"total_budget": 1}, "budget"),
    ],
    ids=["campaign_cap", "min_gap", "global_cap", "daily_budget", "total_budget"],
)


def two_entries(settings, limits):
    """One customer entering a store's fence, then a second fence of it, a second apart:
    each entry in its own batch, so each decided by its own worker. Only `limits` can hold
    the second SMS."""
    settings.SMS_GLOBAL_CAP_COUNT = limits.pop("SMS_GLOBAL_CAP_COUNT", 3)
    settings.SMS_GLOBAL_MIN_GAP_MINUTES = limits.pop("SMS_GLOBAL_MIN_GAP_MINUTES", 0)
    store = StoreFactory()
    customer = CustomerFactory()
    CampaignFactory(**limits).stores.add(store)
    t0 = timezone.now()
    entries = [
        PresenceEvent.objects.create(
            customer=customer,
            store=store,
            kind="entered",
            place_key=place_key,
            occurred_at=t0 - timedelta(seconds=seconds),
            created_at=t0,
        )
        for place_key, seconds in ((f"store:{store.id}", 5), ("second-fence", 4))
    ]
    return customer, entries, t0


@pytest.mark.django_db
@LIMITS
def test_an_sms_committed_by_a_worker_with_a_later_clock_counts_for_the_other(
    settings, limits, reason
):
    _, (first, second), t0 = two_entries(settings, dict(limits))

    # The worker that started 2 s later got the lock first.
    later = decisions.decide_presence_events(event_ids=[second.id], now=t0 + timedelta(seconds=2))
    earlier = decisions.decide_presence_events(event_ids=[first.id], now=t0)

    assert len(later) == 1 and earlier == []
    statuses = list(Delivery.objects.order_by("created_at").values_list("status", "reason"))
    assert statuses == [("suppressed", reason), ("queued", "")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two workers waiting on a lock need PostgreSQL"
)
@LIMITS
def test_a_worker_that_waited_for_the_customer_sees_the_sms_committed_meanwhile(
    settings, limits, reason
):
    customer, (first, second), t0 = two_entries(settings, dict(limits))

    def worker(event: PresenceEvent, now):
        # As a batch does: the customer locked, then the decision, in one transaction.
        def work():
            with transaction.atomic():
                list(Customer.objects.select_for_update().filter(pk=customer.pk))
                return decisions.decide_presence_events(event_ids=[event.id], now=now)

        return work

    later = started(worker(second, t0 + timedelta(seconds=2)))
    results = {}
    earlier = in_thread(lambda: results.update(earlier=worker(first, t0)()))
    earlier.join(0.5)
    assert earlier.is_alive(), "the earlier worker must wait for the customer's lock"
    later.release.set()
    later.join(10)
    earlier.join(10)

    assert len(later.result) == 1 and results == {"earlier": []}
    statuses = list(Delivery.objects.order_by("created_at").values_list("status", "reason"))
    assert statuses == [("suppressed", reason), ("queued", "")]
