"""`make run` has no broker and no `celery beat`: the beat in its serving process
(config/beat.py) announces what no ping does, a dwell reached in silence."""

from datetime import timedelta

import pytest
from django.utils import timezone

from config.beat import InProcessBeat
from config.celery import app as celery_app
from promotions.models import Delivery
from promotions.sms import locmem
from tests.clock import ago
from tests.factories import CampaignFactory, CustomerFactory, DeviceFactory, StoreFactory

pytestmark = pytest.mark.django_db

RIVOLI = (48.8606, 2.3417)


class Clock:
    def __init__(self) -> None:
        self.now = timezone.now()

    def __call__(self):
        return self.now


def test_a_shopper_who_stops_pinging_inside_gets_the_dwell_sms_from_the_beat(api, settings):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    StoreFactory(code="RIVOLI", latitude=RIVOLI[0], longitude=RIVOLI[1])
    DeviceFactory(device_id="lea-phone", customer=CustomerFactory(phone="+33612345678"))
    CampaignFactory(trigger_type="dwell", trigger_minutes=5)
    clock = Clock()
    beat = InProcessBeat(settings.CELERY_BEAT_SCHEDULE, app=celery_app, clock=clock)
    # Léa walked in seven minutes ago; her phone has sent nothing since.
    ping = {"device_id": "lea-phone", "latitude": RIVOLI[0], "longitude": RIVOLI[1]}
    response = api.post(
        "/api/v1/pings", {"pings": [{**ping, "accuracy": 8.0, "recorded_at": ago(minutes=7)}]}
    )
    assert response.status_code == 202
    assert locmem.outbox == []

    clock.now += timedelta(seconds=settings.BEAT_EVERY_SECONDS)
    beat.run_due()

    assert len(locmem.outbox) == 1
    assert Delivery.objects.get().presence_event.minutes == 5
