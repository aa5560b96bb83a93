"""Customers' writes beside the writers they race: a delivery being recorded while its
customer is erased, pings stored while their device changes hands, an event stored while
its visitor is identified. Each runs two real transactions at once, so needs PostgreSQL."""

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from customers import services
from customers.models import BrowsingEvent, Customer, Device, ProductIntent, Visitor
from promotions import decisions
from promotions import services as promotions_services
from promotions.ingest import IngestResult
from promotions.models import (
    Delivery,
    DeviceTrack,
    LocationBatch,
    Ping,
    Presence,
    PresenceEvent,
)
from tests.factories import CustomerFactory, DeliveryFactory, DeviceFactory, StoreFactory
from tests.processes import in_thread, started

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
    ),
]


def test_an_erasure_waits_for_a_delivery_being_recorded_and_anonymises_it(api):
    api.raise_request_exception = False
    lea = CustomerFactory(external_id="C-1", phone="+33612345678", first_name="Léa")

    def record_a_delivery_as_the_worker_does():
        # The location worker locks the batch's customers, then records their deliveries.
        list(Customer.objects.select_for_update().filter(pk=lea.pk))
        DeliveryFactory(customer=lea, status="queued", to=lea.phone, body="Bonjour Léa, -20%")

    worker = started(record_a_delivery_as_the_worker_does)
    responses = []
    erasure = in_thread(lambda: responses.append(api.delete("/api/v1/customers/C-1")))
    erasure.join(0.5)
    worker.release.set()
    worker.join(10)
    erasure.join(10)

    assert [response.status_code for response in responses] == [204]
    delivery = Delivery.objects.get()
    assert (delivery.customer_id, delivery.to, delivery.body) == (None, "", "")
    assert delivery.erased_as is not None


def test_pings_stored_while_their_device_changes_hands_go_with_its_history():
    lea, tom = CustomerFactory(), CustomerFactory()
    device = DeviceFactory(customer=lea)
    at = timezone.now() - timedelta(seconds=30)
    fix = {"device_id": device.device_id, "latitude": 48.86, "longitude": 2.34, "accuracy": 10.0}
    items = [
        (n, {**fix, "recorded_at": at + timedelta(seconds=n), "mocked": False}) for n in range(3)
    ]
    ingest = started(
        lambda: promotions_services.record_pings(
            items=items, result=IngestResult(), now=timezone.now()
        )
    )

    handover = in_thread(lambda: services.register_device(device_id=device.device_id, customer=tom))
    handover.join(0.5)
    assert handover.is_alive(), "the handover must wait for the pings in flight"
    ingest.release.set()
    ingest.join(10)
    handover.join(10)

    device.refresh_from_db()
    assert device.customer == tom
    assert not Ping.objects.filter(device_id=device.pk).exists()


def _view(event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "visitor_id": "v-1",
        "type": "product_view",
        "sku": "X200",
        "occurred_at": timezone.now() - timedelta(hours=1),
    }


def test_an_event_stored_while_its_visitor_is_identified_counts_as_the_customers():
    lea = CustomerFactory()
    Visitor.objects.create(visitor_id="v-1")
    identify = started(lambda: services.identify_visitor(visitor_id="v-1", customer=lea))

    ingest = in_thread(
        lambda: services.record_browsing_events(
            items=[(0, _view("e1"))], result=IngestResult(), now=timezone.now()
        )
    )
    ingest.join(0.5)
    assert ingest.is_alive(), "the events must wait to learn whose they are"
    identify.release.set()
    identify.join(10)
    ingest.join(10)

    assert BrowsingEvent.objects.get().customer == lea
    assert len(ProductIntent.objects.get(customer=lea).view_times) == 1


def test_identify_waits_for_its_visitors_events_in_flight_and_credits_them():
    lea = CustomerFactory()
    Visitor.objects.create(visitor_id="v-1")
    ingest = started(
        lambda: services.record_browsing_events(
            items=[(0, _view("e1"))], result=IngestResult(), now=timezone.now()
        )
    )

    attributed = []
    identify = in_thread(
        lambda: attributed.append(services.identify_visitor(visitor_id="v-1", customer=lea)[1])
    )
    identify.join(0.5)
    assert identify.is_alive(), "identify must wait for the visitor's events in flight"
    ingest.release.set()
    ingest.join(10)
    identify.join(10)

    assert attributed == [1]
    assert BrowsingEvent.objects.get().customer == lea
    assert len(ProductIntent.objects.get(customer=lea).view_times) == 1


@pytest.mark.parametrize("change", ["handed to another customer", "deleted"])
def test_a_batch_processed_while_its_device_loses_its_history_applies_none_of_it(change):
    # Both delete the device's pings under its owner's lock; the worker waits for it, then
    # finds the pings gone, instead of failing the batch on their foreign keys.
    lea, tom = CustomerFactory(), CustomerFactory()
    device = DeviceFactory(customer=lea)
    store = StoreFactory(latitude=48.8606, longitude=2.3417, radius_m=80)
    now = timezone.now()
    ping = Ping.objects.create(
        device=device, latitude=48.8606, longitude=2.3417, accuracy=10, recorded_at=now
    )
    batch = LocationBatch.objects.create(ping_ids=[ping.id])
    changes = {
        "handed to another customer": lambda: services.register_device(
            device_id=device.device_id, customer=tom
        ),
        "deleted": lambda: Device.objects.filter(pk=device.pk).delete(),
    }
    writer = started(changes[change])

    worker = in_thread(lambda: decisions.process_location_batch(batch_id=batch.pk, now=now))
    worker.join(0.5)
    assert worker.is_alive(), "the worker must wait for the device's owner to be settled"
    writer.release.set()
    writer.join(10)
    worker.join(10)

    assert worker.error is None
    assert LocationBatch.objects.get().processed_at is not None
    assert not Presence.objects.filter(place_key=f"store:{store.pk}").exists()
    assert not PresenceEvent.objects.exists()
    assert not DeviceTrack.objects.exists()


def test_a_device_handed_to_a_customer_a_worker_is_locking_waits_its_turn_without_deadlock(api):
    # The worker locks a batch's customers in id order: Tom (first) then Léa, whose phone is
    # being handed to Tom meanwhile. A handover that locked Tom only when its foreign key was
    # checked, at commit, waited for the worker while the worker waited for Léa: a deadlock,
    # one of the two cancelled (the worker, which lost the batch until the sweep).
    tom = CustomerFactory(external_id="C-TOM")
    lea = CustomerFactory()
    assert tom.pk < lea.pk
    phone, toms_phone = DeviceFactory(customer=lea), DeviceFactory(customer=tom)
    StoreFactory(latitude=48.8606, longitude=2.3417, radius_m=80)
    now = timezone.now()
    pings = [
        Ping.objects.create(
            device=device, latitude=48.8606, longitude=2.3417, accuracy=10, recorded_at=now
        )
        for device in (toms_phone, phone)
    ]
    batch = LocationBatch.objects.create(ping_ids=[ping.id for ping in pings])
    handover = started(
        lambda: api.post(
            "/api/v1/devices",
            {"device_id": phone.device_id, "customer_id": "C-TOM", "platform": "ios"},
            format="json",
        )
    )

    worker = in_thread(lambda: decisions.process_location_batch(batch_id=batch.pk, now=now))
    worker.join(0.5)
    assert worker.is_alive(), "the worker must wait for the handover"
    handover.release.set()
    handover.join(10)
    worker.join(10)

    assert handover.error is None and handover.result.status_code == 200
    assert worker.error is None
    assert LocationBatch.objects.get().processed_at is not None
    assert Device.objects.get(pk=phone.pk).customer == tom
    # Tom's own phone's ping was applied; the handed phone's, Léa's history, went with it.
    assert Presence.objects.filter(customer=tom, inside=True).exists()
    assert not Presence.objects.filter(customer=lea).exists()


def test_a_device_handed_to_a_customer_being_erased_is_refused_as_an_unknown_customer(api):
    # The new owner is locked before the device changes hands: the handover waits for the
    # erasure and finds the customer gone, where its foreign key failed at commit: a 409 to
    # retry, as if the device were contested, for a customer who will never come back.
    tom, lea = CustomerFactory(external_id="C-TOM"), CustomerFactory()
    phone = DeviceFactory(customer=lea)
    erasure = started(lambda: services.erase_customer(customer=tom))

    responses = []
    handover = in_thread(
        lambda: responses.append(
            api.post(
                "/api/v1/devices",
                {"device_id": phone.device_id, "customer_id": "C-TOM", "platform": "ios"},
                format="json",
            )
        )
    )
    handover.join(0.5)
    assert handover.is_alive(), "the handover must wait for the erasure"
    erasure.release.set()
    erasure.join(10)
    handover.join(10)

    assert [response.status_code for response in responses] == [400]
    assert responses[0].json()["customer_id"] == ["Unknown customer 'C-TOM'."]
    assert Device.objects.get(pk=phone.pk).customer == lea


def test_a_device_given_in_the_admin_to_a_customer_being_erased_is_a_404_not_a_500(
    admin_client,
):
    # The admin's page of the device, as the API: the handover waits for the erasure and
    # finds the new owner gone. The page answers as the customer's own page does when its
    # customer is erased during the save, and the device stays where it was.
    from tests.customers.test_erasure_admin_log import admin_form

    admin_client.raise_request_exception = False
    tom, lea = CustomerFactory(external_id="C-TOM"), CustomerFactory()
    phone = DeviceFactory(customer=lea)
    url = f"/admin/customers/device/{phone.pk}/change/"
    form = admin_form(admin_client, url, customer=tom.pk)
    erasure = started(lambda: services.erase_customer(customer=tom))

    responses = []
    save = in_thread(lambda: responses.append(admin_client.post(url, form)))
    save.join(0.5)
    assert save.is_alive(), "the handover must wait for the erasure"
    erasure.release.set()
    erasure.join(10)
    save.join(10)

    assert [response.status_code for response in responses] == [404]
    assert Device.objects.get(pk=phone.pk).customer == lea
