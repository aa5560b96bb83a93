"""A shopper who left sends the fixes phones send on the move: vague ones (cell and Wi-Fi
positions, background location), kilometres from the store. However vague, a fix whose whole
accuracy circle is kilometres clear of the store ends the visit: no dwell is announced, and no
SMS goes out, after the shopper left."""

import pytest

from promotions import tasks
from promotions.models import Delivery, PresenceEvent
from promotions.sms import locmem
from tests.factories import CampaignFactory, CustomerFactory, DeviceFactory, StoreFactory
from tests.promotions.test_batch_processing import RIVOLI, ping, send

pytestmark = pytest.mark.django_db

# 5 km north of Rivoli: a 500 m accuracy circle there is 4.4 km clear of the fence.
FIVE_KM_NORTH = (RIVOLI[0] + 0.045, RIVOLI[1])


@pytest.fixture
def rivoli():
    return StoreFactory(code="RIVOLI", latitude=RIVOLI[0], longitude=RIVOLI[1])


@pytest.mark.parametrize("accuracy", [10.0, 500.0])
def test_a_shopper_5_km_away_has_left_however_vague_the_fix(api, rivoli, settings, accuracy):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    DeviceFactory(device_id="walker", customer=CustomerFactory(external_id="walker"))
    CampaignFactory(trigger_type="dwell", trigger_minutes=15)
    # In the store 20 minutes ago, for two minutes; then 5 km away, saying so every minute
    # with a fix whose whole accuracy circle is kilometres from the store.
    send(api, ping("walker", RIVOLI, 20), ping("walker", RIVOLI, 18))
    send(api, *(ping("walker", FIVE_KM_NORTH, m, accuracy=accuracy) for m in range(17, 0, -1)))
    tasks.tick_presence.delay()

    events = list(PresenceEvent.objects.order_by("occurred_at").values_list("kind", "minutes"))
    assert events == [("entered", None), ("exited", None)]
    assert not Delivery.objects.exists()
    assert locmem.outbox == []
