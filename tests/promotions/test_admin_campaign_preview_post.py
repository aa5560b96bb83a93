"""The campaign page's live preview is posted (review 6): as a GET query, a campaign in 400
stores made a request line gunicorn refuses (over 4,094 bytes), and the page kept showing
the previous preview."""

import re
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.test import Client

from promotions.models import Campaign, Store
from tests.factories import StoreFactory
from tests.test_site import campaign_form

pytestmark = pytest.mark.django_db

PREVIEW = "/admin/promotions/campaign/preview/"
FORM = "application/x-www-form-urlencoded"  # how the page's script posts it


def test_the_live_preview_of_a_campaign_in_400_stores_is_posted_and_answered(admin_client):
    # As a query, 400 store ids of four digits alone ("&store=1234", 11 bytes each) are over
    # gunicorn's 4,094-byte request line.
    stores = [StoreFactory(code=f"S{n:03}", name=f"Passage {n:03}") for n in range(400)]
    form = {
        "template": "Bonjour {first_name}, -20% at {store_name}: {code}",
        "valid_days": "7",
        "skus": "[]",
        "categories": "[]",
        "store": [store.pk for store in stores],
    }

    posted = admin_client.post(PREVIEW, urlencode(form, doseq=True), content_type=FORM)

    assert posted.status_code == 200
    assert posted.json()["body"].startswith("Bonjour Léa, -20% at Passage 000: ")
    assert posted.json()["segments"] == 1


def test_the_live_preview_is_no_longer_asked_for_in_a_query(admin_client):
    assert admin_client.get(PREVIEW, {"template": "Hi {code}"}).status_code == 405


def test_the_live_preview_takes_the_campaign_page_s_csrf_token(admin_user):
    # As campaign_preview.js sends it: the page's token in the X-CSRFToken header.
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    page = browser.get("/admin/promotions/campaign/add/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urlencode({"template": "Hi {code}"})

    forged = browser.post(PREVIEW, form, content_type=FORM)
    from_the_page = browser.post(PREVIEW, form, content_type=FORM, headers={"X-CSRFToken": token})

    assert forged.status_code == 403
    assert from_the_page.status_code == 200
    assert from_the_page.json()["body"].startswith("Hi ")


def test_a_refused_preview_gives_its_reason_for_the_page_to_show():
    client = Client()
    client.force_login(User.objects.create_user("paul", is_staff=True))

    refused = client.post(PREVIEW, {"template": "Hi {code}"})

    assert refused.status_code == 403
    assert refused.json() == {"error": "Your account may not write campaigns."}


def _chain_of(count: int) -> list[int]:
    Store.objects.bulk_create(
        Store(
            code=f"S{n:04}",
            name=f"Passage {n:04}",
            latitude=48.8,
            longitude=2.3,
            radius_m=50,
            timezone="Europe/Paris",
        )
        for n in range(count)
    )
    return list(Store.objects.values_list("pk", flat=True))


def test_a_campaign_in_1100_stores_is_saved_and_previewed_from_its_page(admin_client):
    # The page posts each chosen store as a field of its own: past Django's default of
    # 1,000 fields a request, the save and the preview were a bare "Bad Request (400)" page,
    # though the API takes such a campaign.
    stores = _chain_of(1_100)
    page = urlencode(campaign_form(stores=stores), doseq=True)

    saved = admin_client.post("/admin/promotions/campaign/add/", page, content_type=FORM)
    # The chosen box lists stores in the order they were moved into it: the first by code
    # last, here.
    chosen = {"template": "Hi {code} at {store_name}", "store": stores[::-1]}
    previewed = admin_client.post(PREVIEW, urlencode(chosen, doseq=True), content_type=FORM)

    assert saved.status_code == 302
    assert Campaign.objects.get().stores.count() == 1_100
    assert previewed.status_code == 200
    assert previewed.json()["body"].startswith("Hi ")
    assert " at Passage 0000\n" in previewed.json()["body"]  # the campaign's first store
