"""A device's beacon readings uploaded after a later one of its own: two gateways' buffers, the
app's queue. They still count toward a zone entry, once each, through the HTTP API."""

import pytest

from promotions import beacons
from promotions.models import PresenceEvent
from promotions.sms import locmem
from tests.clock import ago
from tests.factories import (
    BEACON_UUID,
    BeaconFactory,
    CampaignFactory,
    CustomerFactory,
    DeviceFactory,
    GatewayFactory,
    StoreFactory,
    ZoneFactory,
)

pytestmark = pytest.mark.django_db

CARD_TAG = {"uuid": BEACON_UUID, "major": 7, "minor": 42}
ENTRANCE_BEACON = {"uuid": BEACON_UUID, "major": 1, "minor": 2}


@pytest.fixture(autouse=True)
def outbox(settings):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    return locmem.outbox


@pytest.fixture
def entrance():
    """The entrance zone of Rivoli (-80 dBm), and a campaign texting whoever enters it."""
    rivoli = StoreFactory(code="RIVOLI")
    zone = ZoneFactory(store=rivoli, code="entrance", rssi_threshold=-80)
    campaign = CampaignFactory(
        trigger_type="beacon_zone", trigger_zone="entrance", offer_template="Coffee: {code}"
    )
    campaign.stores.add(rivoli)
    return zone


@pytest.fixture
def lea():
    customer = CustomerFactory(external_id="C-1")
    DeviceFactory(
        device_id="lea-phone",
        customer=customer,
        ble_identity=beacons.ibeacon_key(BEACON_UUID, 7, 42),
    )
    return customer


@pytest.fixture
def two_gateways(entrance):
    GatewayFactory(gateway_id="gw-1", store=entrance.store, zone=entrance)
    GatewayFactory(gateway_id="gw-2", store=entrance.store, zone=entrance)


def heard(gateway_id, api, *readings):
    """A gateway's upload: (rssi, seconds ago) of Léa's card tag."""
    sightings = [
        {"ibeacon": CARD_TAG, "rssi": rssi, "seen_at": ago(seconds=s)} for rssi, s in readings
    ]
    return api.post(f"/api/v1/gateways/{gateway_id}/sightings", {"sightings": sightings})


def ranged(api, *readings):
    """The app's post: (rssi, seconds ago) of the entrance beacon."""
    sightings = [
        {
            "device_id": "lea-phone",
            "ibeacon": ENTRANCE_BEACON,
            "rssi": rssi,
            "seen_at": ago(seconds=s),
        }
        for rssi, s in readings
    ]
    return api.post("/api/v1/sightings", {"sightings": sightings})


def zone_entries(customer):
    return PresenceEvent.objects.filter(customer=customer, kind="entered").exclude(zone=None)


def test_a_gateways_buffer_uploaded_after_anothers_later_reading_enters_the_zone(
    api, outbox, two_gateways, lea
):
    # gw-1 heard the tag 4 s ago; gw-2 uploads what it heard 9 s and 7 s ago: three strong
    # readings within 30 s.
    first = heard("gw-1", api, (-60, 4))
    second = heard("gw-2", api, (-62, 9), (-61, 7))

    assert (first.json()["accepted"], second.json()["accepted"]) == (1, 2)
    assert zone_entries(lea).count() == 1
    assert [sms.to for sms in outbox] == [lea.phone]


def test_the_apps_queued_rangings_flushed_after_a_live_one_enter_the_zone(
    api, outbox, entrance, lea
):
    BeaconFactory(zone=entrance, identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))

    ranged(api, (-60, 4))
    queued = ranged(api, (-62, 9), (-61, 7))

    assert queued.json()["accepted"] == 2
    assert zone_entries(lea).count() == 1
    assert [sms.to for sms in outbox] == [lea.phone]


def test_a_late_reading_from_before_the_window_does_not_complete_it(api, outbox, two_gateways, lea):
    # Strong, but 36 s apart: no 2 sightings within 30 s.
    heard("gw-1", api, (-60, 4))
    late = heard("gw-2", api, (-60, 40))

    assert late.json()["accepted"] == 1
    assert not zone_entries(lea).exists()
    assert outbox == []


def test_a_late_reading_completes_a_window_that_ended_before_the_latest_reading(
    api, outbox, two_gateways, lea
):
    # gw-1 heard the tag strongly 35 s ago, then faintly 10 s ago (no entry: the median of
    # those two is below the threshold); gw-2 uploads late what it heard 45 s ago, strong:
    # with the reading 35 s ago, 2 strong sightings within 30 s, as in time order.
    heard("gw-1", api, (-60, 35), (-110, 10))
    late = heard("gw-2", api, (-60, 45))

    assert late.json()["accepted"] == 1
    assert zone_entries(lea).count() == 1
    assert [sms.to for sms in outbox] == [lea.phone]


def test_a_late_buffer_of_faint_readings_does_not_make_a_passer_by_a_shopper(
    api, outbox, two_gateways, lea
):
    # gw-1 heard the tag once, strongly, 5 s ago; gw-2 uploads what it heard 20 and 15 s ago,
    # just below the threshold. Three readings within 30 s, their median 1 dB short: no entry,
    # as in time order, though the first of the late two and the strong one would make one.
    heard("gw-1", api, (-60, 5))
    late = heard("gw-2", api, (-81, 20), (-81, 15))

    assert late.json()["accepted"] == 2
    assert not zone_entries(lea).exists()
    assert outbox == []
