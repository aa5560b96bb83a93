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


def test_the_demo_texts_tom_who_stays_in_passage_opera_without_pinging_again(api, settings):
    # README, "Using the API": a newcomer's one ping from inside the store, then the SMS on
    # the `make run` console at the demo dwell campaign's minute, with no more requests.
    from django.core.management import call_command

    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    call_command("load_demo")
    clock = Clock()
    beat = InProcessBeat(settings.CELERY_BEAT_SCHEDULE, app=celery_app, clock=clock)
    opera = {"device_id": "tom-pixel", "latitude": 48.8707, "longitude": 2.3310}
    response = api.post(
        "/api/v1/pings", {"pings": [{**opera, "accuracy": 10, "recorded_at": ago(minutes=4)}]}
    )
    assert response.status_code == 202
    assert locmem.outbox == []

    clock.now += timedelta(seconds=settings.BEAT_EVERY_SECONDS)
    beat.run_due()

    [sms] = locmem.outbox
    assert sms.to == "+14155550102"
    assert "S9 speaker" in sms.body and "Passage Opéra" in sms.body
