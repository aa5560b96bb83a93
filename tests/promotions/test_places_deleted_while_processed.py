"""A marketer deletes a store while a worker processes a batch of pings that reached it:
the batch is processed against the stores as they now are, at once, and the other shoppers
in it are texted without waiting for the sweep. PostgreSQL checks the presence rows' foreign
keys when the worker commits, so two real transactions at once: PostgreSQL only."""

import pytest
from django.db import connection
from django.utils import timezone

from promotions import decisions, services
from promotions.models import Delivery, LocationBatch, Ping, PresenceEvent
from tests.factories import CampaignFactory, CustomerFactory, DeviceFactory, StoreFactory
from tests.processes import in_thread, started

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
    ),
]


def test_a_store_deleted_while_a_batch_is_processed_leaves_the_other_shoppers_texted():
    CampaignFactory(name="Every store")  # no stores: it runs in every store
    rivoli = StoreFactory(code="RIVOLI", latitude=48.8606, longitude=2.3417)
    opera = StoreFactory(code="OPERA", latitude=48.8720, longitude=2.3316)
    lea, tom = CustomerFactory(), CustomerFactory()
    now = timezone.now()
    pings = [
        Ping.objects.create(
            device=DeviceFactory(customer=customer),
            latitude=store.latitude,
            longitude=store.longitude,
            accuracy=10,
            recorded_at=now,
        )
        for customer, store in ((lea, rivoli), (tom, opera))
    ]
    batch = LocationBatch.objects.create(ping_ids=[ping.id for ping in pings])
    deletion = started(lambda: services.delete_stores(stores=[rivoli]))
    queued, errors = [], []

    def process() -> None:
        try:
            queued.extend(decisions.process_location_batch(batch_id=batch.pk, now=now))
        except Exception as error:  # surfaced below
            errors.append(error)

    worker = in_thread(process)
    worker.join(0.5)  # it has processed the batch, and its commit waits for the deletion
    deletion.release.set()
    deletion.join(10)
    worker.join(10)

    assert deletion.error is None
    assert errors == []
    assert LocationBatch.objects.get().processed_at is not None
    [delivery] = Delivery.objects.filter(id__in=queued)
    assert (delivery.customer, delivery.store, delivery.status) == (tom, opera, "queued")
    assert not PresenceEvent.objects.filter(customer=lea).exists()
