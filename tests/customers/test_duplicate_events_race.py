"""Two event batches holding some of the same events, sent at once (a tag manager's retry of
a batch whose answer it never got, flushed with its queue): both are answered, and each
event is stored and counted once. PostgreSQL only."""

import pytest
from django.db import connection
from django.utils import timezone

from customers import services
from customers.models import BrowsingEvent, ProductIntent
from promotions.ingest import IngestResult
from tests import processes
from tests.factories import CustomerFactory
from tests.processes import in_thread

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
    ),
]


@pytest.fixture
def slow_inserts():
    # Each batch's insert stops at its own slow item, after those it lists before it.
    with processes.slow_inserts("customers_browsingevent", "NEW.event_id LIKE 'slow-%'"):
        yield


def storing(*event_ids: str):
    items = [
        (
            index,
            {
                "event_id": event_id,
                "customer_id": "C-1",
                "type": "product_view",
                "sku": "X200",
                "occurred_at": timezone.now(),
            },
        )
        for index, event_id in enumerate(event_ids)
    ]

    def store() -> IngestResult:
        result = IngestResult()
        services.record_browsing_events(items=items, result=result, now=timezone.now())
        return result

    return store


def test_two_batches_holding_the_same_events_in_another_order_are_both_stored(slow_inserts):
    CustomerFactory(external_id="C-1")

    first = in_thread(storing("e-1", "slow-a", "e-2"))
    second = in_thread(storing("e-2", "slow-b", "e-1"))
    first.join(20)
    second.join(20)

    assert (first.error, second.error) == (None, None)
    assert BrowsingEvent.objects.count() == 4
    assert len(ProductIntent.objects.get().view_times) == 4
