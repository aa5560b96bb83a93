"""Deleting a device's location history (its customer erased, or the device changing hands)
beside ping ingest: only that device's ingest waits, and only for as long as a few
statements take, the device's pings never loaded into Python however many they are.

Pings name their device without a foreign key, so ingest and the deletion take turns on
an advisory lock a bucket of devices (promotions.ingest). Review 7 measured one lock for
all devices: a phone with 100,000 pings erased stalled every app's ingest for 17.8 s."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from customers import services as customer_services
from customers.models import Device
from promotions import services
from promotions.ingest import IngestResult
from promotions.models import Ping, PresenceEvent, PresenceKind
from tests.factories import CustomerFactory, DeviceFactory, StoreFactory
from tests.processes import in_thread, started

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
)


def store_history(device: Device, count: int) -> None:
    """`count` pings of the device, one every 26 s back from now, and a presence event of
    its owner that one of them caused."""
    now = datetime.now(UTC)
    Ping.objects.bulk_create(
        Ping(
            device=device,
            latitude=48.86,
            longitude=2.34,
            accuracy=10,
            recorded_at=now - timedelta(seconds=26 * n),
            received_at=now,
        )
        for n in range(1, count + 1)
    )
    PresenceEvent.objects.create(
        customer=device.customer,
        place_key="store:1",
        kind=PresenceKind.ENTERED,
        store=StoreFactory(),
        occurred_at=now,
        ping=Ping.objects.filter(device=device).first(),
    )


def deleting_the_history(mode: str, device: Device):
    """What deletes the device's history: its customer's erasure, or its registration to
    someone else (a phone sold, handed down)."""
    if mode == "erase":
        return lambda: customer_services.erase_customer(customer=device.customer)
    new_owner = CustomerFactory()
    return lambda: customer_services.register_device(device_id=device.device_id, customer=new_owner)


def a_ping_request(api, device_id: str, recorded_at: datetime) -> dict:
    """Post one ping; its answer, in a dict filled once it came back."""
    answer: dict = {}
    body = {
        "pings": [
            {
                "device_id": device_id,
                "latitude": 48.86,
                "longitude": 2.34,
                "accuracy": 10,
                "recorded_at": recorded_at.isoformat(),
            }
        ]
    }

    def send() -> None:
        response = api.post("/api/v1/pings", body, format="json")
        answer.update(status=response.status_code, **response.json())

    return answer, in_thread(send)


@postgresql_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["erase", "change_of_hands"])
def test_deleting_one_devices_history_does_not_stall_other_devices_ingest(api, mode):
    leaving = CustomerFactory(external_id="LEAVING")
    old_phone = DeviceFactory(device_id="old-phone", customer=leaving)
    # In another of the 64 buckets of device locks than "old-phone" (hashtext: 18 and 48).
    DeviceFactory(device_id="other-phone")
    store_history(old_phone, 20_000)
    before = datetime.now(UTC) - timedelta(minutes=1)

    # The deletion has done its work and holds its locks, uncommitted.
    deletion = started(deleting_the_history(mode, old_phone))
    try:
        others, other_request = a_ping_request(api, "other-phone", before)
        same, same_request = a_ping_request(api, "old-phone", before)

        # Another customer's phone is stored meanwhile: its ingest waits for nothing.
        other_request.join(10)
        assert not other_request.is_alive(), "another device's ingest waits for the deletion"
        assert (others["status"], others["accepted"]) == (202, 1)
        # The phone whose history is deleted waits for the deletion to commit.
        same_request.join(0.5)
        assert same_request.is_alive(), "the device's own ingest must wait for its deletion"
    finally:
        deletion.release.set()
        deletion.join(10)
        other_request.join(10)
        same_request.join(10)

    assert deletion.error is None
    # Then finds the device gone, or someone else's since after this ping was recorded.
    assert (same["status"], same["accepted"], len(same["rejected"])) == (202, 0, 1)
    assert not Ping.objects.filter(device_id=old_phone.pk).exists()
    assert Ping.objects.filter(device__device_id="other-phone").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["erase", "change_of_hands"])
def test_a_devices_pings_are_deleted_in_one_statement_never_loaded(mode):
    leaving = CustomerFactory()
    old_phone = DeviceFactory(customer=leaving)
    store_history(old_phone, 3_000)
    kept = DeviceFactory()
    store_history(kept, 2)

    with CaptureQueriesContext(connection) as queries:
        deleting_the_history(mode, old_phone)()

    ping_table = Ping._meta.db_table
    touching_pings = [q["sql"] for q in queries if ping_table in q["sql"]]
    # Django's collector would load every ping, then delete them a hundred at a time.
    assert not [sql for sql in touching_pings if ".latitude" in sql]
    assert len(touching_pings) < 10, touching_pings
    assert not Ping.objects.filter(device_id=old_phone.pk).exists()
    assert Ping.objects.filter(device=kept).count() == 2
    if mode == "change_of_hands":
        # The previous owner's presence stays theirs, without the deleted ping as evidence.
        [event] = PresenceEvent.objects.filter(customer=leaving)
        assert event.ping_id is None
    assert PresenceEvent.objects.get(customer=kept.customer).ping_id is not None


@pytest.mark.django_db
def test_a_batch_locks_its_devices_in_one_statement_before_reading_them():
    devices = [DeviceFactory(device_id=f"phone-{n}") for n in range(3)]
    now = datetime.now(UTC)
    items = [
        (
            n,
            {
                "device_id": devices[n % 3].device_id,
                "latitude": 48.86,
                "longitude": 2.34,
                "accuracy": 10.0,
                "recorded_at": now - timedelta(seconds=n),
                "mocked": False,
            },
        )
        for n in range(30)
    ]

    with CaptureQueriesContext(connection) as queries:
        services.record_pings(items=items, result=IngestResult(), now=now)

    statements = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]
    # As many round trips as with one lock for all devices: the lock, the devices, the
    # insert (which, on PostgreSQL, writes the location batch too).
    if connection.vendor == "postgresql":
        lock, read, insert = statements
        assert "pg_advisory_xact_lock_shared" in lock
        assert Device._meta.db_table in read
        assert insert.startswith("WITH stored AS (INSERT INTO")
    else:
        assert len(statements) == 3  # no lock: the devices, the pings, the batch
    assert Ping.objects.count() == 30


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_ping_stored_under_a_devices_old_id_goes_with_its_erased_owner(api, monkeypatch):
    # A phone renamed in the admin while its app's upload under the old id is being stored,
    # then its owner erased: the erasure locks the device by its new id, and must still
    # find that upload's pings. (The two ids fall in different lock buckets: 24 and 7.)
    leaving = CustomerFactory()
    phone = DeviceFactory(device_id="shop-phone", customer=leaving)
    # The upload is held between reading its devices and inserting its pings.
    inside, go = threading.Event(), threading.Event()
    insert = services.insert_ping_batch

    def held_insert(*args, **kwargs):
        inside.set()
        go.wait(10)
        return insert(*args, **kwargs)

    monkeypatch.setattr(services, "insert_ping_batch", held_insert)
    answer, uploading = a_ping_request(api, "shop-phone", datetime.now(UTC) - timedelta(minutes=1))

    def rename() -> None:
        device = Device.objects.get(pk=phone.pk)
        device.device_id = "renamed-phone"
        customer_services.save_device(device=device)

    renaming = erasing = None
    try:
        assert inside.wait(10)
        renaming = in_thread(rename)
        renaming.join(1)
        erasing = in_thread(lambda: customer_services.erase_customer(customer=leaving))
        erasing.join(1)
    finally:
        go.set()
        for thread in (uploading, renaming, erasing):
            if thread is not None:
                thread.join(10)

    # Stored before the rename, or refused after it (no device by that id any more).
    assert answer["status"] == 202, answer
    assert answer["accepted"] + len(answer["rejected"]) == 1, answer
    assert not Device.objects.filter(pk=phone.pk).exists()
    assert not Ping.objects.filter(device_id=phone.pk).exists(), "a ping outlived its erased owner"


def customer_page_renaming(client, customer, device, new_id: str) -> dict:
    """The customer's change page as the browser posts it, the device renamed in its row."""
    page = client.get(f"/admin/customers/customer/{customer.pk}/change/")
    form = page.context["adminform"].form
    data = {form[name].html_name: form[name].value() or "" for name in form.fields}
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        data.update({management[n].html_name: management[n].value() for n in management.fields})
        for row in formset.forms:
            for name in row.fields:
                value = row[name].value()
                if value not in (None, False):
                    data[row[name].html_name] = "on" if value is True else value
            if row.instance.pk == device.pk:
                data[row["device_id"].html_name] = new_id
    return data


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_ping_stored_under_an_id_renamed_on_the_customer_page_goes_with_its_erased_owner(
    api, admin_client, monkeypatch
):
    # As above, the phone renamed in its row on its customer's page rather than on its own.
    leaving = CustomerFactory()
    phone = DeviceFactory(device_id="shop-phone", customer=leaving)
    renamed = customer_page_renaming(admin_client, leaving, phone, "renamed-phone")
    inside, go = threading.Event(), threading.Event()
    insert = services.insert_ping_batch

    def held_insert(*args, **kwargs):
        inside.set()
        go.wait(10)
        return insert(*args, **kwargs)

    monkeypatch.setattr(services, "insert_ping_batch", held_insert)
    answer, uploading = a_ping_request(api, "shop-phone", datetime.now(UTC) - timedelta(minutes=1))
    saved: dict = {}

    def rename() -> None:
        response = admin_client.post(f"/admin/customers/customer/{leaving.pk}/change/", renamed)
        saved["status"] = response.status_code

    renaming = erasing = None
    try:
        assert inside.wait(10)
        renaming = in_thread(rename)
        renaming.join(1)
        erasing = in_thread(lambda: customer_services.erase_customer(customer=leaving))
        erasing.join(1)
    finally:
        go.set()
        for thread in (uploading, renaming, erasing):
            if thread is not None:
                thread.join(10)

    assert saved == {"status": 302}
    assert answer["status"] == 202, answer
    assert answer["accepted"] + len(answer["rejected"]) == 1, answer
    assert not Device.objects.filter(pk=phone.pk).exists()
    assert not Ping.objects.filter(device_id=phone.pk).exists(), "a ping outlived its erased owner"
