"""A marketer saving a customer's page in the admin while that customer's number replies
STOP: the save keeps the opt-out, as the API's update does. Two real transactions at once,
so PostgreSQL only."""

import pytest
from django.db import connection
from django.utils import timezone

from customers import services
from customers.models import Customer, SmsConsent
from promotions import feedback, sending
from promotions.models import DeliveryStatus
from tests.customers.test_erasure_admin_log import admin_form
from tests.factories import CustomerFactory, DeliveryFactory
from tests.processes import in_thread, started

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
    ),
]

PHONE = "+33612345678"


def save_in_the_admin_while(admin_client, lea: Customer, work, **fields) -> list[int]:
    """Post the customer's page, read before `work` (a reply, an erasure) commits and saved
    while it holds its locks; the statuses the admin answered."""
    url = f"/admin/customers/customer/{lea.pk}/change/"
    form = admin_form(admin_client, url, **fields)
    paused = started(work)
    responses = []
    save = in_thread(lambda: responses.append(admin_client.post(url, form)))
    save.join(0.5)  # the admin has read the customer, and waits on the other's lock
    paused.release.set()
    paused.join(10)
    save.join(10)
    assert paused.error is None
    return [response.status_code for response in responses]


def reply(body: str):
    return lambda: feedback.handle_inbound_sms(from_number=PHONE, body=body, now=timezone.now())


def test_a_stop_replied_while_the_customer_is_saved_in_the_admin_stays(admin_client, api):
    lea = CustomerFactory(external_id="C-1", phone=PHONE, sms_consent=SmsConsent.OPTED_IN)
    queued = DeliveryFactory(customer=lea, status=DeliveryStatus.QUEUED, to=PHONE)

    statuses = save_in_the_admin_while(admin_client, lea, reply("STOP"), first_name="Lea")

    assert statuses == [302]
    customer = api.get("/api/v1/customers/C-1").json()
    assert (customer["first_name"], customer["sms_consent"]) == ("Lea", "opted_out")
    # The SMS waiting for its turn is not sent to the number that said STOP.
    assert not sending.claim(queued.pk, now=timezone.now(), attempts=1)


def test_a_start_replied_while_the_customer_is_saved_in_the_admin_stays(admin_client, api):
    lea = CustomerFactory(external_id="C-1", phone=PHONE, sms_consent=SmsConsent.OPTED_OUT)

    statuses = save_in_the_admin_while(admin_client, lea, reply("START"), first_name="Lea")

    assert statuses == [302]
    customer = api.get("/api/v1/customers/C-1").json()
    assert (customer["first_name"], customer["sms_consent"]) == ("Lea", "opted_in")


def test_a_customer_erased_while_saved_in_the_admin_stays_erased(admin_client):
    lea = CustomerFactory(external_id="C-1", phone=PHONE, first_name="Léa")
    statuses = save_in_the_admin_while(
        admin_client, lea, lambda: services.erase_customer(customer=lea), first_name="Lea"
    )

    assert not Customer.objects.exists()
    assert statuses == [404]
