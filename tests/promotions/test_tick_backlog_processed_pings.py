"""The presence tick holds a timeout or a dwell back for the shopper's own pings still
waiting in an unprocessed batch, not for pings a worker processed already."""

from datetime import timedelta

import pytest
from django.utils import timezone

from promotions import decisions, tasks
from promotions.models import Delivery, LocationBatch, Presence, PresenceEvent
from tests.clock import ago
from tests.factories import CampaignFactory, DeviceFactory, StoreFactory

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


def test_no_dwell_is_announced_for_a_shopper_whose_exit_waits_in_a_lost_batch(
    api, settings, rivoli
):
    """Léa shopped ten minutes and walked out; the fixes that say so were accepted while the
    broker was down, their task lost. The "stays 20 minutes" campaign must not text her at
    minute 20 on the strength of pings the tick has not read: her exit comes first."""
    settings.SMS_BACKEND = "locmem"
    campaign = CampaignFactory(trigger_type="dwell", trigger_minutes=20)
    phone = DeviceFactory(device_id="lea-phone")
    for minutes_ago in range(21, 11, -1):
        post(api, ping("lea-phone", RIVOLI, minutes_ago))
    lost(api, *(ping("lea-phone", HOME, minutes_ago) for minutes_ago in range(11, 1, -1)))

    decisions.process_presence_tick(now=timezone.now())

    settings.SWEEP_AFTER_SECONDS = 10
    decisions.decide_lost_batches(
        now=timezone.now() + timedelta(minutes=1), budget_seconds=30, queue_sends=tasks.queue_sends
    )
    events = PresenceEvent.objects.filter(customer=phone.customer).order_by("occurred_at")
    assert list(events.values_list("kind", flat=True)) == ["entered", "exited"]
    assert not Delivery.objects.filter(campaign=campaign).exists()
