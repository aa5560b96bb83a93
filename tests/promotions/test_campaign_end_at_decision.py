"""A visit made just before a campaign's end and decided just after it (a worker's lag, a
batch the sweep picked up) goes to a campaign still running: the ended one's SMS would be
stopped at its send, and the shopper would get nothing where the next campaign texts."""

from datetime import UTC, datetime, timedelta

import pytest

from promotions import decisions, sending
from promotions.models import Delivery, PresenceEvent
from promotions.sms import locmem
from tests.factories import CampaignFactory, CustomerFactory, StoreFactory

pytestmark = pytest.mark.django_db

LUNCH_ENDS = datetime(2026, 12, 1, 13, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def outbox(settings):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    return locmem.outbox


def test_a_visit_decided_after_a_campaign_ended_is_texted_by_one_still_running(outbox):
    store = StoreFactory(code="RIVOLI", name="Passage Rivoli", timezone="Europe/Paris")
    CampaignFactory(
        priority=10, ends_at=LUNCH_ENDS, offer_template="Lunch offer {code}"
    ).stores.add(store)
    CampaignFactory(priority=1, offer_template="All day offer {code}").stores.add(store)
    lea = CustomerFactory(timezone="Europe/Paris", locale="fr-FR")
    event = PresenceEvent.objects.create(
        customer=lea,
        store=store,
        kind="entered",
        place_key=f"store:{store.id}",
        occurred_at=LUNCH_ENDS - timedelta(seconds=5),
        created_at=LUNCH_ENDS - timedelta(seconds=4),
    )
    decided_at = LUNCH_ENDS + timedelta(seconds=2)

    queued = decisions.decide_presence_events(event_ids=[event.id], now=decided_at)
    for delivery_id in queued:
        sending.send_delivery(delivery_id=delivery_id, now=decided_at)

    assert [message.body.splitlines()[0][:13] for message in outbox] == ["All day offer"]
    assert list(Delivery.objects.values_list("status", flat=True)) == ["sent"]
