"""Erasing a customer while the web site's events about them are being stored: the erasure
waits for them and takes them along, and events that come after it are refused as any
unknown customer's. Two real transactions at once, so PostgreSQL only."""

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from customers import services
from customers.models import BrowsingEvent, Customer, ProductIntent, Visitor
from promotions.ingest import IngestResult
from tests.customers.test_erase_sighting_race import erasure_waits
from tests.factories import CustomerFactory
from tests.processes import Paused, in_thread, started

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
    ),
]


def view(**who: str) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "type": "product_view",
        "sku": "X200",
        "occurred_at": timezone.now() - timedelta(hours=1),
        **who,
    }


def storing(event: dict[str, Any], result: IngestResult) -> Paused:
    return started(
        lambda: services.record_browsing_events(
            items=[(0, event)], result=result, now=timezone.now()
        )
    )


def erase_while_stored(api, ingest: Paused) -> list[int]:
    api.raise_request_exception = False
    responses = []
    erasure = in_thread(lambda: responses.append(api.delete("/api/v1/customers/C-1")))
    assert erasure_waits(), "the erasure must wait for the events in flight"
    ingest.release.set()
    ingest.join(10)
    erasure.join(10)
    assert ingest.error is None
    return [response.status_code for response in responses]


def test_erasing_a_customer_while_their_events_are_stored_erases_them_too(api):
    CustomerFactory(external_id="C-1")
    result = IngestResult()
    ingest = storing(view(customer_id="C-1"), result)

    assert erase_while_stored(api, ingest) == [204]
    assert result.accepted == 1
    assert not Customer.objects.exists()
    assert not BrowsingEvent.objects.exists()
    assert not ProductIntent.objects.exists()


def test_erasing_a_customer_while_their_browsers_events_are_stored_erases_them_too(api):
    lea = CustomerFactory(external_id="C-1")
    services.identify_visitor(visitor_id="lea-laptop", customer=lea)
    ingest = storing(view(visitor_id="lea-laptop"), IngestResult())

    assert erase_while_stored(api, ingest) == [204]
    assert not Customer.objects.exists()
    assert not BrowsingEvent.objects.exists()
    assert not Visitor.objects.exists()
    assert not ProductIntent.objects.exists()


def test_events_stored_while_their_customer_is_erased_are_refused_as_unknown():
    lea = CustomerFactory(external_id="C-1")
    erasure = started(lambda: services.erase_customer(customer=lea))
    result = IngestResult()
    ingest = in_thread(
        lambda: services.record_browsing_events(
            items=[(0, view(customer_id="C-1"))], result=result, now=timezone.now()
        )
    )
    ingest.join(0.5)
    erasure.release.set()
    erasure.join(10)
    ingest.join(10)

    assert not ingest.is_alive()
    assert result.accepted == 0
    assert result.rejected == [{"index": 0, "errors": {"customer_id": ["Unknown customer 'C-1'."]}}]
    assert not BrowsingEvent.objects.exists()


def test_events_from_a_browser_whose_customer_is_being_erased_are_stored_anonymous():
    lea = CustomerFactory(external_id="C-1")
    services.identify_visitor(visitor_id="lea-laptop", customer=lea)
    erasure = started(lambda: services.erase_customer(customer=lea))
    result = IngestResult()
    ingest = in_thread(
        lambda: services.record_browsing_events(
            items=[(0, view(visitor_id="lea-laptop"))], result=result, now=timezone.now()
        )
    )
    ingest.join(0.5)
    erasure.release.set()
    erasure.join(10)
    ingest.join(10)

    assert not ingest.is_alive()
    assert result.accepted == 1
    event = BrowsingEvent.objects.get()
    assert event.customer is None
    assert event.visitor.customer is None
    assert not ProductIntent.objects.exists()


def test_erasing_a_customer_while_their_browser_is_identified_erases_what_it_sent(api):
    # Lea has browsed before: identify adds her browser's views to her intent rows.
    lea = CustomerFactory(external_id="C-1")
    services.record_browsing_events(
        items=[(0, view(customer_id="C-1"))], result=IngestResult(), now=timezone.now()
    )
    services.record_browsing_events(
        items=[(0, {**view(visitor_id="lea-laptop"), "event_id": "e-2"})],
        result=IngestResult(),
        now=timezone.now(),
    )
    identify = started(lambda: services.identify_visitor(visitor_id="lea-laptop", customer=lea))

    assert erase_while_stored(api, identify) == [204]
    assert identify.result[1] == 1
    assert not Customer.objects.exists()
    assert not BrowsingEvent.objects.exists()
    assert not Visitor.objects.exists()
    assert not ProductIntent.objects.exists()


def test_a_browser_identified_while_its_customer_is_erased_is_refused_as_unknown(api):
    api.raise_request_exception = False
    lea = CustomerFactory(external_id="C-1")
    services.record_browsing_events(
        items=[(0, view(visitor_id="lea-laptop"))], result=IngestResult(), now=timezone.now()
    )
    erasure = started(lambda: services.erase_customer(customer=lea))
    responses = []
    identify = in_thread(
        lambda: responses.append(
            api.post("/api/v1/identify", {"visitor_id": "lea-laptop", "customer_id": "C-1"})
        )
    )
    identify.join(0.5)
    erasure.release.set()
    erasure.join(10)
    identify.join(10)

    assert [response.status_code for response in responses] == [400]
    assert responses[0].json() == {"customer_id": ["Unknown customer 'C-1'."]}
    event = BrowsingEvent.objects.get()
    assert (event.customer, event.visitor.customer) == (None, None)
