"""Two event batches holding some of the same events, sent at once (a tag manager's retry of
a batch whose answer it never got, flushed with its queue): both are answered, and each
event is stored and counted once. PostgreSQL only."""

import pytest
from django.db import connection
from django.utils import timezone

from customers import services
from customers.models import BrowsingEvent, ProductIntent
from promotions.ingest import IngestResult
from tests.factories import CustomerFactory
from tests.processes import in_thread

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
    ),
]

# Each batch's insert stops at its own "slow-" event for a moment, after the events it
# lists before it: long enough for the other batch to insert its own first events.
SLOW_INSERTS = """
CREATE FUNCTION passage_test_slow_insert() RETURNS trigger AS $$
BEGIN
    IF NEW.event_id LIKE 'slow-%' THEN PERFORM pg_sleep(0.6); END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER passage_test_slow_insert BEFORE INSERT ON customers_browsingevent
    FOR EACH ROW EXECUTE FUNCTION passage_test_slow_insert();
"""


@pytest.fixture
def slow_inserts():
    with connection.cursor() as cursor:
        cursor.execute(SLOW_INSERTS)
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER passage_test_slow_insert ON customers_browsingevent")
        cursor.execute("DROP FUNCTION passage_test_slow_insert()")


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
