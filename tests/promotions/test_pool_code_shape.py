"""A pool code the till could not look up is refused wherever it is added: uploaded through
the API or typed in the admin."""

import pytest

from promotions.models import OfferCode
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db

REFUSED = "Codes are 1 to 40 characters, not only spaces and dashes."


@pytest.mark.parametrize("code", ["---", "- -", " - "])
def test_a_code_the_till_cannot_look_up_is_refused_in_the_api_and_the_admin(
    api, admin_client, code
):
    campaign = CampaignFactory()

    uploaded = api.post(f"/api/v1/campaigns/{campaign.pk}/codes", {"codes": [code]})
    typed = admin_client.post(
        "/admin/promotions/offercode/add/", {"campaign": campaign.pk, "code": code}
    )

    assert uploaded.status_code == 400
    assert uploaded.json() == {"codes": [REFUSED]}
    assert typed.status_code == 200
    assert REFUSED in typed.content.decode()
    assert not OfferCode.objects.exists()


def test_a_code_with_dashes_between_its_characters_is_added_in_the_admin(admin_client):
    campaign = CampaignFactory()

    added = admin_client.post(
        "/admin/promotions/offercode/add/", {"campaign": campaign.pk, "code": "K7Q2-M9"}
    )

    assert added.status_code == 302
    assert OfferCode.objects.get().code_key == "K7Q2M9"
