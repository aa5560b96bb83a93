"""The campaign admin refuses what the API refuses: a beacon zone none of the campaign's
stores has (on the page and when activated), and intent names PostgreSQL cannot store."""

import pytest

from promotions.models import Campaign, CampaignStatus, TriggerType
from tests.factories import CampaignFactory, StoreFactory, ZoneFactory
from tests.test_site import campaign_form, form_errors, run_action

pytestmark = pytest.mark.django_db


@pytest.fixture
def rivoli_entrance():
    return ZoneFactory(store=StoreFactory(code="RIVOLI"), code="entrance")


def beacon_zone_form(zone_code: str, *stores) -> dict:
    return campaign_form(
        trigger_type="beacon_zone", trigger_zone=zone_code, stores=[s.pk for s in stores]
    )


def test_a_beacon_zone_trigger_naming_no_zone_of_its_stores_is_refused(
    admin_client, rivoli_entrance
):
    response = admin_client.post(
        "/admin/promotions/campaign/add/", beacon_zone_form("entrnce", rivoli_entrance.store)
    )

    assert form_errors(response)["trigger_zone"] == ["No zone 'entrnce' in the campaign's stores."]
    assert not Campaign.objects.exists()


def test_a_beacon_zone_trigger_for_every_store_needs_the_zone_in_one_of_them(
    admin_client, rivoli_entrance
):
    typo = admin_client.post("/admin/promotions/campaign/add/", beacon_zone_form("entrnce"))
    right = admin_client.post("/admin/promotions/campaign/add/", beacon_zone_form("entrance"))

    assert form_errors(typo)["trigger_zone"] == ["No zone 'entrnce' in any store."]
    assert right.status_code == 302
    assert Campaign.objects.get().trigger_zone == "entrance"


def test_the_zone_is_looked_for_in_the_stores_chosen_on_the_page(admin_client, rivoli_entrance):
    opera = StoreFactory(code="OPERA")
    campaign = CampaignFactory(
        status=CampaignStatus.DRAFT, trigger_type=TriggerType.BEACON_ZONE, trigger_zone="entrance"
    )
    campaign.stores.add(rivoli_entrance.store)
    url = f"/admin/promotions/campaign/{campaign.pk}/change/"

    to_opera = admin_client.post(url, {**beacon_zone_form("entrance", opera), "name": "Door"})
    to_both = admin_client.post(
        url, {**beacon_zone_form("entrance", opera, rivoli_entrance.store), "name": "Door"}
    )

    assert "trigger_zone" in form_errors(to_opera)
    assert to_both.status_code == 302
    campaign.refresh_from_db()
    assert set(campaign.stores.values_list("code", flat=True)) == {"OPERA", "RIVOLI"}


def test_activating_a_campaign_whose_zone_its_stores_lack_says_why(admin_client, rivoli_entrance):
    campaign = CampaignFactory(
        name="Hello door",
        status=CampaignStatus.DRAFT,
        trigger_type=TriggerType.BEACON_ZONE,
        trigger_zone="entrnce",
    )
    campaign.stores.add(rivoli_entrance.store)

    shown = run_action(admin_client, "activate", campaign)

    assert "Hello door cannot go live: No zone 'entrnce' in the campaign's stores." in shown
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT


@pytest.mark.parametrize("field", ["intent_skus", "intent_categories"])
@pytest.mark.parametrize(
    "typed",
    # PostgreSQL's jsonb holds neither: saved, each was a 500.
    ['["a\\u0000"]', '["X200", "\\ud800"]'],
    ids=["nul", "lone-surrogate"],
)
def test_an_intent_name_postgresql_cannot_store_is_a_message_on_its_field(
    admin_client, field, typed
):
    response = admin_client.post(
        "/admin/promotions/campaign/add/",
        campaign_form(**{field: typed, "offer_template": "{product_name} {code}"}),
    )

    assert "cannot hold a NUL character" in form_errors(response)[field][0]
    assert "sms-preview" in response.content.decode()
    assert not Campaign.objects.exists()
