"""A batch's decisions are recorded in a number of queries that does not grow with the batch:
a crowd reaching a dwell in the same minute is decided, in one transaction holding every
shopper's lock, in a few statements. Only pool codes (drawn and locked one at a time) and a
generated code that collided with another delivery's are recorded one by one."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from promotions import decisions, offers
from promotions.models import Delivery, OfferCode, PresenceEvent
from tests.clock import ago
from tests.factories import CampaignFactory, CustomerFactory, DeliveryFactory, StoreFactory, crowd

pytestmark = pytest.mark.django_db

RIVOLI = (48.8606, 2.3417)


@pytest.fixture
def rivoli():
    return StoreFactory(code="RIVOLI", latitude=RIVOLI[0], longitude=RIVOLI[1])


def at_rivoli(device_id, minutes_ago):
    return {
        "device_id": device_id,
        "latitude": RIVOLI[0],
        "longitude": RIVOLI[1],
        "accuracy": 10.0,
        "recorded_at": ago(minutes=minutes_ago),
    }


def walk_in(store, count, *, at):
    """`count` new customers entering the store at `at`: one batch's presence events."""
    return [
        PresenceEvent.objects.create(
            customer=CustomerFactory(),
            store=store,
            kind="entered",
            place_key=f"store:{store.id}",
            occurred_at=at,
            created_at=at,
        ).id
        for _ in range(count)
    ]


def test_a_tick_deciding_two_thousand_dwells_runs_a_bounded_number_of_queries(
    api, rivoli, settings, django_assert_max_num_queries
):
    """2,000 shoppers reach a "stays 5 minutes" campaign in the same minute: each is queued
    with a code of their own and a send slot of their own, in a few dozen queries."""
    settings.SMS_SENDER_MPS = 100  # 20 seconds of sending: every slot before the offer expires
    crowd(2000, prefix="shopper")
    for start in (0, 1000):
        pings = [at_rivoli(f"shopper-{n}", 1) for n in range(start, start + 1000)]
        assert api.post("/api/v1/pings", {"pings": pings}).json()["accepted"] == 1000
    campaign = CampaignFactory(trigger_type="dwell", trigger_minutes=5)
    decisions.process_presence_tick(now=timezone.now())  # the campaign is watched from here
    settings.CELERY_TASK_ALWAYS_EAGER = False  # a deployment's worker: sends paced for later
    now = timezone.now() + timedelta(minutes=6)

    # Django splits a bulk insert at SQLite's 999 parameters, about 38 deliveries a statement.
    with django_assert_max_num_queries(60 if connection.vendor == "postgresql" else 150):
        queued = decisions.process_presence_tick(now=now)

    assert len(queued) == 2000
    sent = Delivery.objects.filter(campaign=campaign, status="queued")
    assert set(sent.values_list("id", flat=True)) == set(queued)
    codes = list(sent.values_list("code", flat=True))
    assert len(set(codes)) == 2000 and None not in codes
    # The till finds each code by its key, and each SMS carries its own code.
    for delivery in sent.order_by("?")[:20]:
        assert delivery.code_key == offers.normalise_code(delivery.code)
        assert delivery.code in delivery.body
        assert delivery.trace["offer_timezone"] == "Europe/Paris"
    # Paced: one slot each, 10 ms apart, in the order decided.
    slots = dict(sent.values_list("id", "send_after"))
    assert [slots[pk] for pk in queued] == [now + n * timedelta(seconds=0.01) for n in range(2000)]


def test_a_crowd_past_the_senders_pace_fails_what_would_expire_in_a_bounded_number_of_queries(
    api, rivoli, settings, django_assert_max_num_queries
):
    """At one SMS a second, the offers of 2,000 shoppers cannot all go before they expire:
    those whose turn would come too late fail at once, together, not one by one."""
    settings.SMS_SENDER_MPS = 1
    crowd(2000, prefix="shopper")
    for start in (0, 1000):
        pings = [at_rivoli(f"shopper-{n}", 1) for n in range(start, start + 1000)]
        assert api.post("/api/v1/pings", {"pings": pings}).json()["accepted"] == 1000
    campaign = CampaignFactory(trigger_type="dwell", trigger_minutes=5)
    decisions.process_presence_tick(now=timezone.now())
    settings.CELERY_TASK_ALWAYS_EAGER = False
    now = timezone.now() + timedelta(minutes=6)

    with django_assert_max_num_queries(70 if connection.vendor == "postgresql" else 200):
        queued = decisions.process_presence_tick(now=now)

    outcomes = Delivery.objects.filter(campaign=campaign)
    expired = outcomes.filter(status="failed", error_message=offers.STALE)
    paced = outcomes.filter(status="queued")
    # Ten minutes' validity from the dwell, two of them gone (and the test's own seconds):
    # about 480 turns at one a second.
    assert 400 < paced.count() <= 480
    assert paced.count() + expired.count() == 2000
    assert set(queued) == set(outcomes.values_list("id", flat=True))
    assert not expired.exclude(send_after=None).exists()


def test_a_batch_mixing_pool_codes_and_generated_codes(rivoli):
    """The pooled campaign ranks first until its three codes are drawn; the next shoppers
    of the same batch get the other campaign's generated codes."""
    pooled = CampaignFactory(priority=10, offer_template="{code}")
    for code in ("POOL-1", "POOL-2", "POOL-3"):
        OfferCode.objects.create(campaign=pooled, code=code)
    generated = CampaignFactory(priority=1)
    now = timezone.now()
    events = walk_in(rivoli, 5, at=now)

    queued = decisions.decide_presence_events(event_ids=events, now=now)

    assert len(queued) == 5
    decided = {
        (d.presence_event_id, d.campaign_id): d for d in Delivery.objects.filter(id__in=queued)
    }
    by_event = [
        next(d for (event, _), d in decided.items() if event == event_id) for event_id in events
    ]
    assert [d.campaign for d in by_event] == [pooled] * 3 + [generated] * 2
    assert [d.code for d in by_event[:3]] == ["POOL-1", "POOL-2", "POOL-3"]
    assert all(d.code not in ("POOL-1", "POOL-2", "POOL-3") for d in by_event[3:])
    assert len({d.code for d in by_event}) == 5
    assert {c.code: c.delivery_id for c in OfferCode.objects.all()} == {
        d.code: d.id for d in by_event[:3]
    }
    # The pool spent, the last two shoppers' events judged it so before the next campaign.
    spent = Delivery.objects.filter(campaign=pooled, status="suppressed")
    assert sorted(spent.values_list("presence_event_id", flat=True)) == sorted(events[3:])
    assert set(spent.values_list("reason", flat=True)) == {"budget"}


def test_a_generated_code_that_collides_is_drawn_again(rivoli, monkeypatch):
    """A generated code another delivery carries, and one drawn twice in the batch: the
    shoppers concerned are still texted, each with a code, and a body, of their own."""
    DeliveryFactory(code="K7Q2-M9XB", campaign__status="ended")  # an older campaign's SMS
    drawn = iter(["K7Q2-M9XB", "AAAA-BBBB", "AAAA-BBBB", "CCCC-DDDD", "EEEE-FFFF"])
    monkeypatch.setattr(offers, "generate_code", lambda: next(drawn))
    campaign = CampaignFactory(offer_template="{code}")
    now = timezone.now()
    events = walk_in(rivoli, 3, at=now)

    queued = decisions.decide_presence_events(event_ids=events, now=now)

    assert len(queued) == 3
    sent = Delivery.objects.filter(campaign=campaign).order_by("presence_event_id")
    assert [d.status for d in sent] == ["queued"] * 3
    assert sorted(d.code for d in sent) == ["AAAA-BBBB", "CCCC-DDDD", "EEEE-FFFF"]
    for delivery in sent:
        assert delivery.body.startswith(f"{delivery.code}\n")  # the code the till will know
        assert delivery.code_key == offers.normalise_code(delivery.code)
    assert Delivery.objects.filter(code="K7Q2-M9XB").count() == 1


def test_a_batch_decided_again_records_and_queues_nothing_twice(rivoli):
    """A retried task: every decision is recorded by the first run; the second queues none."""
    CampaignFactory(holdout_percent=50)
    now = timezone.now()
    events = walk_in(rivoli, 20, at=now)
    first = decisions.decide_presence_events(event_ids=events, now=now)
    recorded = sorted(Delivery.objects.values_list("id", "status", "code"))

    again = decisions.decide_presence_events(event_ids=events, now=now)

    assert len(first) == len([r for r in recorded if r[1] == "queued"]) > 0 and again == []
    assert sorted(Delivery.objects.values_list("id", "status", "code")) == recorded
    assert {status for _, status, _ in recorded} == {"queued", "holdout"}
    # Holdouts carry a generated code (their purchases are found by the customer), never sent.
    assert all(code for _, _, code in recorded)


def test_an_event_decided_before_is_not_passed_on_to_the_next_campaign(rivoli):
    """Judged again, the first campaign's SMS would hold its own cap and the visit would go
    to the runner-up: an event's decisions are made once, all of them."""
    first_choice = CampaignFactory(priority=10)
    CampaignFactory(priority=1)
    now = timezone.now()
    events = walk_in(rivoli, 1, at=now)
    [queued] = decisions.decide_presence_events(event_ids=events, now=now)

    again = decisions.decide_presence_events(event_ids=events, now=now)

    assert again == []
    [delivery] = Delivery.objects.all()
    assert (delivery.id, delivery.campaign, delivery.status) == (queued, first_choice, "queued")
