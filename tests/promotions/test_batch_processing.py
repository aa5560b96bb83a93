"""A worker's batch holds shoppers far from every store beside shoppers walking in: the first
only move their phones' tracks (followed for the whole batch at once), the second go
through the state machine. Both, in one request, must come out as each would alone."""

from datetime import timedelta

import pytest
from django.utils import timezone

from customers.models import Customer
from promotions import beacons, decisions, presence, tasks
from promotions.models import (
    Delivery,
    DeviceTrack,
    Ping,
    Presence,
    PresenceEvent,
    Store,
    TriggerType,
)
from promotions.sms import locmem
from tests.clock import ago
from tests.factories import (
    BEACON_UUID,
    BeaconFactory,
    CampaignFactory,
    CustomerFactory,
    DeviceFactory,
    StoreFactory,
    ZoneFactory,
)

pytestmark = pytest.mark.django_db

RIVOLI = (48.8606, 2.3417)
# Far from Rivoli: Lyon, a place 2 km from it, and Marseille, 280 km away.
LYON = (45.7640, 4.8357)
NEAR_LYON = (45.7820, 4.8357)
MARSEILLE = (43.2965, 5.3698)


@pytest.fixture(autouse=True)
def rivoli():
    return StoreFactory(code="RIVOLI", latitude=RIVOLI[0], longitude=RIVOLI[1])


@pytest.fixture
def phones():
    for name in ("walker", "wanderer", "jumper", "faker", "twice"):
        DeviceFactory(device_id=name, customer=CustomerFactory(external_id=name))


def ping(device, place, minutes_ago, **extra):
    return {
        "device_id": device,
        "latitude": place[0],
        "longitude": place[1],
        "accuracy": 10.0,
        "recorded_at": ago(minutes=minutes_ago),
        **extra,
    }


def send(api, *pings):
    response = api.post("/api/v1/pings", {"pings": list(pings)})
    assert response.status_code == 202, response.json()
    assert response.json()["accepted"] == len(pings)


def track(device_id):
    row = DeviceTrack.objects.get(device__device_id=device_id)
    return (row.latitude, row.longitude)


def jump(device_id):
    row = DeviceTrack.objects.get(device__device_id=device_id)
    return None if row.jump_at is None else (row.jump_latitude, row.jump_longitude)


def suspicious(device_id):
    return list(
        Ping.objects.filter(device__device_id=device_id)
        .order_by("recorded_at")
        .values_list("suspicious", flat=True)
    )


def test_one_batch_moves_far_phones_and_enters_the_store_of_a_near_one(api, phones):
    send(
        api,
        ping("wanderer", LYON, 30),
        ping("jumper", LYON, 30),
        ping("twice", LYON, 30),
    )

    send(
        api,
        # Inside Rivoli: an entry.
        ping("walker", RIVOLI, 1),
        # 2 km in 25 minutes: a walk.
        ping("wanderer", NEAR_LYON, 5),
        # Lyon to Marseille in 25 minutes: a teleport, suspicious, held as the phone's jump.
        ping("jumper", MARSEILLE, 5),
        # A mocked location moves nothing.
        ping("faker", NEAR_LYON, 5, mocked=True),
        # Two fixes of one phone in the batch: applied in time order.
        ping("twice", NEAR_LYON, 4),
        ping("twice", LYON, 6),
    )

    [entry] = PresenceEvent.objects.all()
    assert (entry.customer.external_id, entry.kind) == ("walker", "entered")
    assert track("wanderer") == NEAR_LYON
    assert track("jumper") == LYON and jump("jumper") == MARSEILLE
    assert suspicious("jumper") == [False, True]
    assert not DeviceTrack.objects.filter(device__device_id="faker").exists()
    assert suspicious("faker") == [True]
    assert track("twice") == NEAR_LYON
    assert suspicious("wanderer") == [False, False]
    assert suspicious("twice") == [False, False, False]


def test_a_second_fix_confirms_a_journey_and_a_fix_back_leaves_a_wild_one_behind(api, phones):
    send(api, ping("jumper", LYON, 30), ping("wanderer", LYON, 30))
    send(api, ping("jumper", MARSEILLE, 6), ping("wanderer", MARSEILLE, 6))

    send(api, ping("jumper", MARSEILLE, 5), ping("wanderer", NEAR_LYON, 5))

    assert (track("jumper"), jump("jumper")) == (MARSEILLE, None)
    assert suspicious("jumper") == [False, True, False]
    assert (track("wanderer"), jump("wanderer")) == (NEAR_LYON, None)
    assert suspicious("wanderer") == [False, True, False]


def test_a_wild_fix_does_not_delay_the_entry_of_the_fix_after_it(api, phones):
    outside = (RIVOLI[0] + 0.003, RIVOLI[1])  # 330 m north of the store
    send(api, ping("walker", outside, 30))
    send(api, ping("walker", MARSEILLE, 6))
    assert suspicious("walker") == [False, True]

    send(api, ping("walker", RIVOLI, 5))

    [entry] = PresenceEvent.objects.all()
    genuine = Ping.objects.filter(device__device_id="walker").latest("recorded_at")
    assert (entry.kind, entry.ping) == ("entered", genuine)
    assert (track("walker"), jump("walker")) == (RIVOLI, None)


def test_a_tablet_at_home_does_not_take_its_owner_out_of_the_store(api, phones):
    walker = Customer.objects.get(external_id="walker")
    DeviceFactory(device_id="tablet", customer=walker)
    send(api, ping("walker", RIVOLI, 12))
    send(api, ping("tablet", LYON, 10))
    send(api, ping("walker", RIVOLI, 8))
    send(api, ping("tablet", LYON, 6))

    assert list(PresenceEvent.objects.values_list("kind", flat=True)) == ["entered"]

    send(api, ping("walker", (RIVOLI[0] + 0.01, RIVOLI[1]), 1))  # 1.1 km north

    assert list(PresenceEvent.objects.order_by("occurred_at").values_list("kind", flat=True)) == [
        "entered",
        "exited",
    ]


def test_a_tablet_at_home_across_the_street_does_not_keep_its_owner_in_the_store(api, phones):
    walker = Customer.objects.get(external_id="walker")
    DeviceFactory(device_id="tablet", customer=walker)
    # 180 m from the store's centre (120 m past its 60 m fence), on wifi: 80 m accurate.
    home = (RIVOLI[0] + 180 / 111_195, RIVOLI[1])
    send(api, ping("walker", RIVOLI, 12))
    send(api, ping("tablet", home, 11, accuracy=80.0))
    send(api, ping("walker", (RIVOLI[0] + 0.01, RIVOLI[1]), 8))  # 1.1 km north
    send(api, ping("tablet", home, 1, accuracy=80.0))

    assert list(PresenceEvent.objects.order_by("occurred_at").values_list("kind", flat=True)) == [
        "entered",
        "exited",
    ]
    assert not Presence.objects.filter(customer=walker, inside=True).exists()


@pytest.mark.parametrize("evaluated_by", ["a ping", "the beat"])
def test_a_dwell_campaign_started_while_the_customer_is_inside_texts_them(
    api, phones, rivoli, settings, evaluated_by
):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    send(api, *(ping("walker", RIVOLI, minutes) for minutes in (30, 25, 20, 15, 10, 5, 2)))
    # "Stays 5 minutes" starts now; the walker has been in for 30 and still is.
    campaign = CampaignFactory(trigger_type="dwell", trigger_minutes=5)
    if evaluated_by == "a ping":
        send(api, ping("walker", RIVOLI, 1 / 3))
    tasks.tick_presence.delay()

    [delivery] = Delivery.objects.all()
    assert (delivery.campaign, delivery.presence_event.minutes) == (campaign, 5)
    assert [sms.to for sms in locmem.outbox] == [Customer.objects.get(external_id="walker").phone]
    # The dry run decides that visit's dwell once: the one recorded late, none derived.
    since = (timezone.now() - timedelta(hours=1)).isoformat()
    until = timezone.now().isoformat()
    replay = api.post(
        f"/api/v1/campaigns/{campaign.id}/dry-run", {"since": since, "until": until}
    ).json()
    assert (replay["matched"], replay["would_send"], replay["arrived_too_late"]) == (1, 1, 0)


def test_a_late_fix_does_not_move_a_track_back(api, phones):
    send(api, ping("wanderer", NEAR_LYON, 5))

    send(api, ping("wanderer", LYON, 10))

    assert track("wanderer") == NEAR_LYON
    assert suspicious("wanderer") == [False, False]


@pytest.mark.parametrize("near_a_store", [False, True])
def test_a_mocked_ping_uploaded_late_is_marked_suspicious(api, phones, near_a_store):
    # Whether the phone is followed in numpy (far from every store) or by the state machine.
    place = RIVOLI if near_a_store else LYON
    send(api, ping("faker", place, 5))

    send(api, ping("faker", place, 10, mocked=True))

    assert suspicious("faker") == [True, False]


def test_a_store_with_an_invalid_fence_stops_no_other_store(api, phones, caplog):
    # A bow tie, stored around the model's rules (as by a row from before them).
    broken = StoreFactory(code="BROKEN", latitude=LYON[0], longitude=LYON[1])
    bow_tie = [[4.83, 45.76], [4.84, 45.77], [4.84, 45.76], [4.83, 45.77], [4.83, 45.76]]
    Store.objects.filter(pk=broken.pk).update(
        radius_m=None, polygon={"type": "Polygon", "coordinates": [bow_tie]}
    )

    send(api, ping("walker", RIVOLI, 1))

    [entry] = PresenceEvent.objects.all()
    assert (entry.store.code, entry.kind) == ("RIVOLI", "entered")
    assert f"Store {broken.pk} left out of presence" in caplog.text


@pytest.mark.parametrize("pings_first", [True, False], ids=["pings first", "sightings first"])
def test_pings_and_sightings_of_the_same_minutes_enter_whichever_is_processed_first(
    api, phones, rivoli, pings_first
):
    zone = ZoneFactory(store=rivoli)
    BeaconFactory(zone=zone, identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))
    # A visit two hours ago: the store's presence row exists, with its exit.
    send(api, ping("walker", RIVOLI, 121), ping("walker", (RIVOLI[0] + 0.05, RIVOLI[1]), 120))

    # Back in the store, where GPS is vague (250 m: no entry) and the beacon strong; every
    # 30 s the app posts its pings, then its sightings of the same 30 s (or the other way).
    for start in (300, 270, 240, 210):
        pings = [ping("walker", RIVOLI, (start - s) / 60, accuracy=250) for s in (1, 11, 21, 29)]
        seen = [
            {
                "device_id": "walker",
                "ibeacon": {"uuid": BEACON_UUID, "major": 1, "minor": 2},
                "rssi": -55,
                "seen_at": ago(seconds=start - s),
            }
            for s in (0, 10, 20)
        ]
        posts = [("pings", pings), ("sightings", seen)]
        for name, items in posts if pings_first else posts[::-1]:
            response = api.post(f"/api/v1/{name}", {name: items})
            assert response.status_code == 202, response.json()
            assert response.json()["accepted"] == len(items)

    events = PresenceEvent.objects.order_by("occurred_at", "id").values_list("kind", "zone")
    assert list(events) == [
        ("entered", None),
        ("exited", None),
        ("entered", zone.pk),
        ("entered", None),
    ]


def test_sightings_processed_before_the_ping_that_entered_keep_the_visit_alive(api, phones, rivoli):
    zone = ZoneFactory(store=rivoli)
    BeaconFactory(zone=zone, identity=beacons.ibeacon_key(BEACON_UUID, 1, 2))
    # The app ranged the beacon once a minute (too seldom to enter by itself) for the last
    # 19 minutes; its one precise ping in the store, 20 minutes ago, is processed after.
    seen = [
        {
            "device_id": "walker",
            "ibeacon": {"uuid": BEACON_UUID, "major": 1, "minor": 2},
            "rssi": -70,
            "seen_at": ago(minutes=minutes),
        }
        for minutes in range(19, 0, -1)
    ]
    response = api.post("/api/v1/sightings", {"sightings": seen})
    assert response.status_code == 202, response.json()

    send(api, ping("walker", RIVOLI, 20))
    decisions.process_presence_tick(now=timezone.now())

    # Entered 20 minutes ago, and held since by the readings: no timeout 15 minutes after.
    assert list(PresenceEvent.objects.values_list("kind", "zone")) == [("entered", None)]
    assert Presence.objects.get(place_key=f"store:{rivoli.pk}").inside


def test_one_stores_wide_approach_ring_leaves_shoppers_near_other_stores_to_the_fast_path(
    api, phones, monkeypatch
):
    # A "within 20 km" campaign for the Lyon store: its ring is Lyon's alone. Shoppers 2 km
    # from Rivoli, which no ring watches, went through the state machine store by store, as
    # did every shopper within 20 km of any store (a city's pings, each measured against
    # every store in 20 km: a worker's throughput divided many times).
    lyon = StoreFactory(code="LYON", latitude=LYON[0], longitude=LYON[1])
    CampaignFactory(trigger_type=TriggerType.NEAR, trigger_distance_m=20_000).stores.set([lyon])
    judged = []
    advance = presence.advance

    def counted(**kwargs):
        judged.append([o.device for o in kwargs["observations"]])
        return advance(**kwargs)

    monkeypatch.setattr(presence, "advance", counted)
    two_km_from_rivoli = (RIVOLI[0] + 0.018, RIVOLI[1])

    send(api, ping("wanderer", two_km_from_rivoli, 5), ping("walker", NEAR_LYON, 5))

    # The walker, 2 km from Lyon, is near it; the wanderer only moves their phone's track.
    assert len(judged) == 1
    [near] = PresenceEvent.objects.all()
    assert (near.customer.external_id, near.kind, near.store) == ("walker", "near", lyon)
    assert track("wanderer") == two_km_from_rivoli
