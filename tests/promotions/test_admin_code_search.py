"""A code found in the admin as the till finds it: a marketer types what the customer reads
out, in any case, with or without its dash."""

import pytest

from promotions.models import OfferCode
from tests.factories import CampaignFactory, DeliveryFactory


@pytest.mark.django_db
@pytest.mark.parametrize("typed", ["JJ6PKR7R", "jj6p kr7r", " jj6p-kr7r "])
def test_a_delivery_is_found_by_its_code_however_it_is_typed(admin_client, typed):
    wanted = DeliveryFactory(code="JJ6P-KR7R")
    DeliveryFactory(code="QQ6P-KR7R")

    page = admin_client.get("/admin/promotions/delivery/", {"q": typed})

    assert [row.pk for row in page.context["cl"].result_list] == [wanted.pk]


@pytest.mark.django_db
def test_a_pool_code_is_found_by_its_code_however_it_is_typed(admin_client):
    campaign = CampaignFactory()
    wanted = OfferCode.objects.create(campaign=campaign, code="SUMMER-10")
    OfferCode.objects.create(campaign=campaign, code="WINTER-10")

    page = admin_client.get("/admin/promotions/offercode/", {"q": "summer10"})

    assert [row.pk for row in page.context["cl"].result_list] == [wanted.pk]
