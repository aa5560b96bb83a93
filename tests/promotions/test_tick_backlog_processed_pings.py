"""The presence tick holds a timeout back for pings that may wait in an unprocessed batch,
not for pings a worker processed already."""

from datetime import timedelta

import pytest
from django.utils import timezone

from promotions import decisions, tasks
from promotions.models import LocationBatch, Presence, PresenceEvent
from tests.clock import ago
from tests.factories import DeviceFactory, StoreFactory

pytestmark = pytest.mark.django_db

RIVOLI = (48.8606, 2.3417)
HOME = (48.8400, 2.3000)  # about 4 km off


def ping(device, where, minutes_ago):
    return {
        "device_id": device,
        "latitude": where[0],
        "longitude": where[1],
        "accuracy": 10.0,
        "recorded_at": ago(minutes=minutes_ago),
    }


def post(api, *pings):
    response = api.post("/api/v1/pings", {"pings": list(pings)})
    assert response.status_code == 202 and response.json()["accepted"] == len(pings)


def lost(api, *pings):
    with pytest.MonkeyPatch.context() as outage:
        outage.setattr(tasks, "enqueue_location_batch", lambda batch_id: None)
        post(api, *pings)


def test_pings_processed_already_do_not_hold_back_a_timeout_behind_a_stuck_batch(api, rivoli):
    """Léa's phone went quiet in the store 40 minutes ago (its battery died); her tablet at
    home pinged a few minutes more, pings a worker processed and that hold nothing. A batch of
    Max's waits unprocessed (the sweep fails on it, or the workers are behind): it says
    nothing about Léa, who is timed out all the same."""
    phone = DeviceFactory(device_id="lea-phone")
    DeviceFactory(device_id="lea-tablet", customer=phone.customer)
    DeviceFactory(device_id="max-phone")
    post(api, ping("lea-phone", RIVOLI, 40))
    lost(api, ping("max-phone", RIVOLI, 38))
    for minutes_ago in (35, 30):
        post(api, ping("lea-tablet", HOME, minutes_ago))
    assert LocationBatch.objects.filter(processed_at=None).count() == 1

    decisions.process_presence_tick(now=timezone.now())

    lea = Presence.objects.get(store=rivoli, customer=phone.customer)
    assert not lea.inside
    exited = PresenceEvent.objects.get(customer=phone.customer, kind="exited")
    entered = PresenceEvent.objects.get(customer=phone.customer, kind="entered")
    assert exited.occurred_at - entered.occurred_at == timedelta(minutes=15)


@pytest.fixture
def rivoli():
    return StoreFactory(code="RIVOLI", latitude=RIVOLI[0], longitude=RIVOLI[1])
