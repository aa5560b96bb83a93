"""Two event batches naming a product new to the catalogue at the same time: the name and
category of the later event stand, whichever batch commits first. PostgreSQL only."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from customers import services
from customers.models import Product
from promotions.ingest import IngestResult
from tests.factories import CustomerFactory
from tests.processes import in_thread, started

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
    ),
]


def storing(event_id: str, name: str, category: str, hours_ago: float):
    event = {
        "event_id": event_id,
        "customer_id": "C-1",
        "type": "product_view",
        "sku": "X200",
        "product_name": name,
        "category": category,
        "occurred_at": timezone.now() - timedelta(hours=hours_ago),
    }
    return lambda: services.record_browsing_events(
        items=[(0, event)], result=IngestResult(), now=timezone.now()
    )


def test_the_newest_name_of_a_new_product_stands_when_two_batches_name_it_at_once():
    CustomerFactory(external_id="C-1")
    older = started(storing("e-old", "X200", "audio", hours_ago=2))
    newer = in_thread(storing("e-new", "X200 headphones", "headphones", hours_ago=1))
    newer.join(0.5)
    older.release.set()
    older.join(10)
    newer.join(10)

    product = Product.objects.get()
    assert (product.name, product.category) == ("X200 headphones", "headphones")
