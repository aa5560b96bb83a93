"""A marketer deletes a store while a worker processes a batch of pings that reached it, or
while the presence tick runs:
the batch is processed against the stores as they now are, at once, and the other shoppers
in it are texted without waiting for the sweep. PostgreSQL checks the presence rows' foreign
keys when the worker commits, so two real transactions at once: PostgreSQL only."""

from datetime import timedelta

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
    worker = in_thread(lambda: decisions.process_location_batch(batch_id=batch.pk, now=now))
    worker.join(0.5)  # it has processed the batch, and its commit waits for the deletion
    deletion.release.set()
    deletion.join(10)
    worker.join(10)

    assert deletion.error is None
    assert worker.error is None
    assert LocationBatch.objects.get().processed_at is not None
    [delivery] = Delivery.objects.filter(id__in=worker.result)
    assert (delivery.customer, delivery.store, delivery.status) == (tom, opera, "queued")
    assert not PresenceEvent.objects.filter(customer=lea).exists()


def test_a_store_deleted_while_the_presence_tick_runs_leaves_the_other_shoppers_texted():
    # Léa and Tom have stood in two stores for six minutes without a fix since: the tick
    # announces their dwells, reached in silence. Rivoli is deleted while it runs.
    CampaignFactory(name="Every store, 5 minutes", trigger_type="dwell", trigger_minutes=5)
    rivoli = StoreFactory(code="RIVOLI", latitude=48.8606, longitude=2.3417)
    opera = StoreFactory(code="OPERA", latitude=48.8720, longitude=2.3316)
    lea, tom = CustomerFactory(), CustomerFactory()
    now = timezone.now()
    entered = now - timedelta(minutes=6)
    pings = [
        Ping.objects.create(
            device=DeviceFactory(customer=customer),
            latitude=store.latitude,
            longitude=store.longitude,
            accuracy=10,
            recorded_at=entered,
        )
        for customer, store in ((lea, rivoli), (tom, opera))
    ]
    batch = LocationBatch.objects.create(ping_ids=[ping.id for ping in pings])
    decisions.process_location_batch(batch_id=batch.pk, now=entered)
    deletion = started(lambda: services.delete_stores(stores=[rivoli]))
    worker = in_thread(lambda: decisions.process_presence_tick(now=now))
    worker.join(0.5)  # it has read Rivoli's presence, and waits for the deletion
    deletion.release.set()
    deletion.join(10)
    worker.join(10)

    assert deletion.error is None
    assert worker.error is None
    [delivery] = Delivery.objects.filter(id__in=worker.result)
    assert (delivery.customer, delivery.store, delivery.status) == (tom, opera, "queued")
    assert PresenceEvent.objects.filter(customer=tom, kind="dwelled").exists()
    assert not PresenceEvent.objects.filter(customer=lea).exists()
