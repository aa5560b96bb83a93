"""Two uploads of one code at once: each checks the pools before the other has committed,
and the unique code and code key decide. These tests run two real transactions at once, so
they need PostgreSQL."""

import pytest
from django.db import connection

from promotions import feedback
from promotions.models import OfferCode
from tests.factories import CampaignFactory
from tests.processes import in_thread, started

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
    ),
]


def upload_while_another_commits(api, first_campaign, first_code, campaign, code):
    """`code` uploaded for `campaign` through the API while an upload of `first_code` for
    `first_campaign` holds its transaction open; the response, once both are done."""
    first = started(lambda: feedback.add_pool_codes(campaign=first_campaign, codes=[first_code]))
    responses = []
    second = in_thread(
        lambda: responses.append(
            api.post(f"/api/v1/campaigns/{campaign.id}/codes", {"codes": [code]}, format="json")
        )
    )
    second.join(0.5)
    assert second.is_alive(), "the second upload must wait to learn whether the code is taken"
    first.release.set()
    first.join(10)
    second.join(10)
    assert first.error is None
    [response] = responses
    return response


@pytest.mark.parametrize("codes", [("POS-1", "POS-1"), ("SAVE10", "save-10")])
def test_a_code_uploaded_for_two_campaigns_at_once_goes_to_one(api, codes):
    first, other = CampaignFactory(), CampaignFactory()

    response = upload_while_another_commits(api, first, codes[0], other, codes[1])

    assert response.status_code == 400
    assert codes[1] in response.json()["codes"][0]
    assert list(OfferCode.objects.values_list("campaign", "code")) == [(first.id, codes[0])]


def test_a_pool_uploaded_twice_at_once_is_stored_once(api):
    campaign = CampaignFactory()

    response = upload_while_another_commits(api, campaign, "POS-1", campaign, "POS-1")

    assert response.status_code == 201
    assert response.json() == {"added": 0, "pool_size": 1, "unused": 1}
