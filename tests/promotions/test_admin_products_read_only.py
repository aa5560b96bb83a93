"""Products are the web site's catalogue (review 6): an edit made in the admin did not hold
(the next browsing event put the site's name back) or broke the SMS (a SKU changed there
unhooked the campaigns and intent naming it). So the admin shows them, read-only."""

import pytest
from django.contrib.auth.models import Group

from customers.models import Product
from promotions.sms import locmem
from tests.clock import ago
from tests.factories import CustomerFactory, DeviceFactory, StoreFactory
from tests.promotions.test_engine_api import RIVOLI, browse, walk_in, x200_campaign

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


def product_form(product: Product, **changes) -> dict:
    """The product page's form, as a browser would post it were it editable."""
    return {
        "sku": product.sku,
        "name": product.name,
        "category": product.category,
        "named_at_0": "",
        "named_at_1": "",
        "categorised_at_0": "",
        "categorised_at_1": "",
        **changes,
    }


@pytest.mark.parametrize("account", ["marketer", "admin_client"])
def test_nobody_edits_a_product_s_sku_or_name_in_the_admin(
    request, account, api, rivoli, lea, outbox
):
    client = request.getfixturevalue(account)
    x200_campaign(rivoli)
    product = Product.objects.get(sku="X200")
    url = f"/admin/customers/product/{product.pk}/change/"

    page = client.get(url).content.decode()
    posted = client.post(url, product_form(product, sku="X200-BK", name="Casque X200"))
    walk_in(api, "lea-phone")

    assert 'name="sku"' not in page and 'name="name"' not in page
    assert "X200 headphones" in page
    assert "browsing events name them" in page
    assert posted.status_code == 403
    product.refresh_from_db()
    assert (product.sku, product.name) == ("X200", "X200 headphones")
    [sms] = outbox
    assert "X200 headphones" in sms.body, sms.body


@pytest.mark.parametrize("account", ["marketer", "admin_client"])
def test_nobody_adds_or_deletes_a_product_in_the_admin(request, account, api, lea):
    client = request.getfixturevalue(account)
    product = Product.objects.get(sku="X200")

    listed = client.get("/admin/customers/product/").content.decode()
    added = client.get("/admin/customers/product/add/")
    deleted = client.post(f"/admin/customers/product/{product.pk}/delete/", {"post": "yes"})

    assert "browsing events name them" in listed
    assert "/admin/customers/product/add/" not in listed
    assert (added.status_code, deleted.status_code) == (403, 403)
    assert Product.objects.filter(sku="X200").exists()


def test_the_site_s_events_keep_naming_the_products(api, lea):
    # What the admin no longer offers, the site does: its events set the name.
    api.post(
        "/api/v1/events",
        {
            "events": [
                {
                    "event_id": "renamed",
                    "customer_id": "C-1001",
                    "type": "product_view",
                    "sku": "X200",
                    "product_name": "Casque X200",
                    "occurred_at": ago(minutes=1),
                }
            ]
        },
    )

    assert Product.objects.get(sku="X200").name == "Casque X200"


def test_marketers_may_view_products_only():
    granted = set(
        Group.objects.get(name="Marketers")
        .permissions.filter(content_type__app_label="customers", codename__endswith="_product")
        .values_list("codename", flat=True)
    )

    assert granted == {"view_product"}
