"""What the API changes while a marketer has a page open, and outlines the API takes as the
admin does."""

import pytest

from promotions.models import Campaign, Store
from promotions.sms import locmem
from tests.factories import CustomerFactory, DeviceFactory, StoreFactory
from tests.promotions.test_admin_marketer_day import (
    GEOJSON_IO_FEATURE,
    GEOJSON_IO_POLYGON,
    STALE_PAGE,
    _another_marketer,
    opened_campaign_page,
)
from tests.promotions.test_config_api import store_body
from tests.promotions.test_engine_api import RIVOLI, walk_in
from tests.test_site import campaign_form, form_errors

pytestmark = pytest.mark.django_db


def test_a_page_opened_before_an_api_pause_does_not_set_the_campaign_live_again(
    marketer,
    api,
    settings,
):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    rivoli = StoreFactory(code="RIVOLI", latitude=RIVOLI[0], longitude=RIVOLI[1])
    marketer.post(
        "/admin/promotions/campaign/add/", campaign_form(status="active", stores=[rivoli.pk])
    )
    campaign = Campaign.objects.get()
    opened = opened_campaign_page(marketer, campaign)
    # The head office's tool pauses it meanwhile.
    paused = api.patch(f"/api/v1/campaigns/{campaign.pk}", {"status": "paused"})
    assert paused.status_code == 200

    saved = marketer.post(
        f"/admin/promotions/campaign/{campaign.pk}/change/", {**opened, "priority": 5}
    )
    walk_in(api, DeviceFactory(customer=CustomerFactory()).device_id)

    assert form_errors(saved)["status"] == [STALE_PAGE]
    campaign.refresh_from_db()
    assert campaign.status == "paused"
    assert locmem.outbox == []


@pytest.mark.parametrize(
    "outline",
    [GEOJSON_IO_FEATURE, {"type": "FeatureCollection", "features": [GEOJSON_IO_FEATURE]}],
    ids=["a Feature", "a FeatureCollection of one"],
)
def test_the_api_takes_an_outline_from_geojson_io_as_its_polygon(api, outline):
    placed = {"latitude": 48.8605, "longitude": 2.3415}  # inside the outline

    response = api.post("/api/v1/stores", store_body(radius_m=None, polygon=outline, **placed))

    assert response.status_code == 201, response.json()
    assert response.json() == store_body(radius_m=None, polygon=GEOJSON_IO_POLYGON, **placed)
    assert Store.objects.get().polygon == GEOJSON_IO_POLYGON


def test_the_api_refuses_two_outlines_for_a_store_as_the_admin_does(api):
    two = {"type": "FeatureCollection", "features": [GEOJSON_IO_FEATURE] * 2}

    response = api.post("/api/v1/stores", store_body(radius_m=None, polygon=two))

    assert response.status_code == 400
    assert response.json()["polygon"] == ["One outline per store: paste a single Polygon."]
    assert not Store.objects.exists()


# --- Two marketers, one campaign: a page opened before someone else's save -------------------

NEW_TEMPLATE = "Bonjour {first_name}, -20% today: {code}"


def _campaign_with_a_budget(marketer) -> Campaign:
    rivoli = StoreFactory(code="RIVOLI", latitude=RIVOLI[0], longitude=RIVOLI[1])
    marketer.post(
        "/admin/promotions/campaign/add/",
        campaign_form(status="active", stores=[rivoli.pk], daily_budget=100),
    )
    return Campaign.objects.get()


def _change(browser, campaign: Campaign, page: dict):
    return browser.post(f"/admin/promotions/campaign/{campaign.pk}/change/", page)


def test_a_page_opened_before_another_marketer_s_save_does_not_undo_it(marketer):
    campaign = _campaign_with_a_budget(marketer)
    paul = _another_marketer("paul")
    # Both open the campaign's page.
    maries_page = opened_campaign_page(marketer, campaign)
    pauls_page = opened_campaign_page(paul, campaign)
    # Paul rewrites the SMS and saves.
    assert (
        _change(paul, campaign, {**pauls_page, "offer_template": NEW_TEMPLATE}).status_code == 302
    )

    # Marie, whose page still holds the old SMS, raises the daily budget and saves.
    refused = _change(marketer, campaign, {**maries_page, "daily_budget": 200})

    errors = form_errors(refused)
    assert errors["__all__"] == [
        "Someone else changed this campaign since you opened this page: Offer template. "
        "Nothing was saved. Your values are kept below, and each field named says what is "
        "saved now: set it as it should be and save again."
    ]
    assert errors["offer_template"] == [
        f'Changed since you opened this page, now: "{NEW_TEMPLATE}".'
    ]
    assert "daily_budget" not in errors  # her own change, nobody else's
    form = refused.context["adminform"].form
    assert form["daily_budget"].value() == "200"  # what she typed, to apply again
    campaign.refresh_from_db()
    assert (campaign.offer_template, campaign.daily_budget) == (NEW_TEMPLATE, 100)


def test_the_refused_page_saved_again_keeps_both_marketers_changes(marketer):
    campaign = _campaign_with_a_budget(marketer)
    paul = _another_marketer("paul")
    maries_page = opened_campaign_page(marketer, campaign)
    _change(
        paul, campaign, {**opened_campaign_page(paul, campaign), "offer_template": NEW_TEMPLATE}
    )
    refused = _change(marketer, campaign, {**maries_page, "daily_budget": 200})
    shown = refused.context["adminform"].form

    # She sets the SMS as the page says it is now and saves the same page again.
    saved = _change(
        marketer,
        campaign,
        {
            **maries_page,
            "daily_budget": 200,
            "offer_template": NEW_TEMPLATE,
            "loaded_values": shown["loaded_values"].value(),
        },
    )

    assert saved.status_code == 302, form_errors(saved)
    campaign.refresh_from_db()
    assert (campaign.offer_template, campaign.daily_budget) == (NEW_TEMPLATE, 200)


def test_a_page_opened_before_an_api_patch_does_not_undo_it(marketer, api):
    campaign = _campaign_with_a_budget(marketer)
    opened = opened_campaign_page(marketer, campaign)
    patched = api.patch(f"/api/v1/campaigns/{campaign.pk}", {"offer": {"template": NEW_TEMPLATE}})
    assert patched.status_code == 200

    refused = _change(marketer, campaign, {**opened, "daily_budget": 200})

    assert "Offer template" in form_errors(refused)["__all__"][0]
    campaign.refresh_from_db()
    assert (campaign.offer_template, campaign.daily_budget) == (NEW_TEMPLATE, 100)


def test_a_page_opened_after_another_marketer_s_save_saves(marketer):
    campaign = _campaign_with_a_budget(marketer)
    paul = _another_marketer("paul")
    _change(
        paul, campaign, {**opened_campaign_page(paul, campaign), "offer_template": NEW_TEMPLATE}
    )

    saved = _change(
        marketer, campaign, {**opened_campaign_page(marketer, campaign), "daily_budget": 200}
    )

    assert saved.status_code == 302, form_errors(saved)
    campaign.refresh_from_db()
    assert (campaign.offer_template, campaign.daily_budget) == (NEW_TEMPLATE, 200)


def test_the_refused_page_saved_again_as_it_stands_sets_what_it_shows(marketer):
    campaign = _campaign_with_a_budget(marketer)
    paul = _another_marketer("paul")
    maries_page = {**opened_campaign_page(marketer, campaign), "offer_template": "Marie's {code}"}
    _change(
        paul, campaign, {**opened_campaign_page(paul, campaign), "offer_template": NEW_TEMPLATE}
    )
    refused = _change(marketer, campaign, maries_page)
    assert "offer_template" in form_errors(refused)

    # Told what Paul wrote, she keeps her own SMS and saves the page she was shown.
    shown = refused.context["adminform"].form["loaded_values"].value()
    saved = _change(marketer, campaign, {**maries_page, "loaded_values": shown})

    assert saved.status_code == 302, form_errors(saved)
    campaign.refresh_from_db()
    assert campaign.offer_template == "Marie's {code}"
