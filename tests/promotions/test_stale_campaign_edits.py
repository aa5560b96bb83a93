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
    marketer,  # noqa: F401 (a fixture)
    opened_campaign_page,
)
from tests.promotions.test_config_api import store_body
from tests.promotions.test_engine_api import RIVOLI, walk_in
from tests.test_site import campaign_form, form_errors

pytestmark = pytest.mark.django_db


def test_a_page_opened_before_an_api_pause_does_not_set_the_campaign_live_again(
    marketer,  # noqa: F811
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
