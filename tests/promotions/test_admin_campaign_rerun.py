"""An ended campaign runs again from its draft copy, and a campaign whose end has passed
cannot be made active: activated, it would send nothing and say nothing (review 6)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from promotions.models import Campaign, CampaignStatus
from promotions.sms import locmem
from tests.factories import CampaignFactory, CustomerFactory, DeviceFactory, StoreFactory
from tests.promotions.test_engine_api import RIVOLI, browse, walk_in, x200_campaign
from tests.test_site import campaign_form, form_errors, run_action

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def outbox(settings):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    return locmem.outbox


@pytest.fixture
def rivoli():
    return StoreFactory(
        code="RIVOLI", name="Passage Rivoli", latitude=RIVOLI[0], longitude=RIVOLI[1]
    )


@pytest.fixture
def lea(api):
    """Léa, who viewed the X200 headphones three times, and her phone."""
    customer = CustomerFactory(external_id="C-1001", phone="+33612345678")
    DeviceFactory(device_id="lea-phone", customer=customer)
    browse(api, "C-1001")
    return customer


LAST_MONTH = {
    "starts_at": timezone.now() - timedelta(days=40),
    "ends_at": timezone.now() - timedelta(days=26),
}


def test_an_ended_campaign_run_again_from_its_copy_texts_the_shopper(
    admin_client, api, rivoli, lea, outbox
):
    # Last month's two-week campaign, ended.
    original = x200_campaign(rivoli, status=CampaignStatus.ENDED, **LAST_MONTH)

    duplicated = run_action(admin_client, "duplicate", original)
    copy = Campaign.objects.get(name="X200 walk-by (copy)")
    activated = run_action(admin_client, "activate", copy)
    walk_in(api, "lea-phone")

    assert any("no start or end date" in message for message in duplicated), duplicated
    assert (copy.starts_at, copy.ends_at) == (None, None)
    assert "1 campaign(s) activated." in activated
    [sms] = outbox
    assert "X200 headphones" in sms.body
    original.refresh_from_db()
    assert (original.starts_at, original.ends_at) == (
        LAST_MONTH["starts_at"],
        LAST_MONTH["ends_at"],
    )


def test_activating_a_campaign_past_its_end_says_when_it_ended(admin_client):
    ends_at = timezone.now() - timedelta(days=2)
    draft = CampaignFactory(name="Soldes", status=CampaignStatus.DRAFT, ends_at=ends_at)

    shown = run_action(admin_client, "activate", draft)

    draft.refresh_from_db()
    assert draft.status == CampaignStatus.DRAFT
    assert "0 campaign(s) activated." in shown
    [refused] = [message for message in shown if message.startswith("Soldes cannot go live")]
    assert ends_at.strftime("%Y-%m-%d %H:%M") in refused
    assert "has passed" in refused


def test_the_campaign_page_refuses_to_make_a_campaign_past_its_end_active(admin_client):
    paused = CampaignFactory(name="Soldes", status=CampaignStatus.PAUSED)
    ends_at = timezone.now() - timedelta(hours=1)
    past_end = {
        "ends_at_0": ends_at.strftime("%Y-%m-%d"),
        "ends_at_1": ends_at.strftime("%H:%M:%S"),
    }

    response = admin_client.post(
        f"/admin/promotions/campaign/{paused.pk}/change/",
        campaign_form(name="Soldes", status="active", **past_end),
    )

    [message] = form_errors(response)["ends_at"]
    assert ends_at.strftime("%Y-%m-%d %H:%M") in message
    paused.refresh_from_db()
    assert paused.status == CampaignStatus.PAUSED
    # As a draft it saves: the marketer sets the new dates later.
    draft = admin_client.post(
        f"/admin/promotions/campaign/{paused.pk}/change/",
        campaign_form(name="Soldes", status="draft", **past_end),
    )
    assert draft.status_code == 302


def test_the_api_refuses_a_campaign_made_active_past_its_end(api, rivoli):
    from tests.promotions.test_config_api import campaign_body

    ended_yesterday = (timezone.now() - timedelta(days=1)).isoformat()

    created = api.post("/api/v1/campaigns", campaign_body(ends_at=ended_yesterday))
    draft = api.post("/api/v1/campaigns", campaign_body(status="draft", ends_at=ended_yesterday))
    activated = api.patch(f"/api/v1/campaigns/{draft.json()['id']}", {"status": "active"})

    assert created.status_code == 400
    assert list(created.json()) == ["ends_at"]
    assert "has passed" in created.json()["ends_at"][0]
    assert draft.status_code == 201
    assert activated.status_code == 400
    assert list(activated.json()) == ["ends_at"]


def test_an_active_campaign_whose_end_passed_is_still_edited(admin_client, api, rivoli):
    # History: a campaign that was active when it ended keeps its status and its page saves.
    over = x200_campaign(rivoli, status=CampaignStatus.ACTIVE, **LAST_MONTH)

    renamed = api.patch(f"/api/v1/campaigns/{over.pk}", {"name": "X200 walk-by, October"})
    ended = run_action(admin_client, "pause", over)

    assert renamed.status_code == 200, renamed.json()
    assert "1 campaign(s) paused." in ended
