"""Which product a category offer names when the site lists a product under two
categories (a headphone in "Audio" and in "Sale"): the customer's most viewed product in
the campaign's category, as SPEC says, whichever category the product was seen in last."""

import pytest

from customers.models import ProductIntent
from promotions.sms import locmem
from tests.clock import ago
from tests.factories import CampaignFactory, CustomerFactory, DeviceFactory, StoreFactory
from tests.promotions.test_engine_api import RIVOLI, walk_in

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def outbox(settings):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    return locmem.outbox


@pytest.fixture
def lea():
    customer = CustomerFactory(external_id="C-1001", phone="+33612345678", first_name="Léa")
    DeviceFactory(device_id="lea-phone", customer=customer)
    return customer


def audio_campaign(**fields):
    campaign = CampaignFactory(
        name="Audio walk-by",
        intent_categories=["audio"],
        intent_min_views=3,
        intent_within_days=14,
        offer_template="{first_name}: -20% on {product_name} at {store_name}: {code}",
        **fields,
    )
    campaign.stores.add(
        StoreFactory(code="RIVOLI", name="Rivoli", latitude=RIVOLI[0], longitude=RIVOLI[1])
    )
    return campaign


def view(api, n, sku, name, category, **when):
    event = {
        "event_id": f"view-{n}",
        "customer_id": "C-1001",
        "type": "product_view",
        "sku": sku,
        "product_name": name,
        "category": category,
        "occurred_at": ago(**when),
    }
    assert api.post("/api/v1/events", {"events": [event]}).status_code == 202


def test_a_category_offer_names_the_product_viewed_in_it_though_last_seen_in_another(
    api, lea, outbox
):
    audio_campaign()
    # Léa looks at the X200 three times in the audio department, then once more from the
    # sale page, which lists it under "sale".
    for n in range(3):
        view(api, n, "X200", "X200 headphones", "audio", hours=5 - n)
    view(api, 3, "X200", "X200 headphones", "sale", hours=1)

    walk_in(api, "lea-phone")

    [sms] = outbox
    assert sms.body.startswith("Léa: -20% on X200 headphones at Rivoli: "), sms.body


def test_a_category_offer_names_the_most_viewed_product_in_it(api, lea, outbox):
    audio_campaign()
    # The X200 three times in audio (then once on the sale page), the S9 once in audio.
    for n in range(3):
        view(api, n, "X200", "X200 headphones", "audio", hours=5 - n)
    view(api, 3, "S9", "S9 speaker", "audio", hours=2)
    view(api, 4, "X200", "X200 headphones", "sale", hours=1)

    walk_in(api, "lea-phone")

    [sms] = outbox
    assert sms.body.startswith("Léa: -20% on X200 headphones at Rivoli: "), sms.body


def test_the_export_lists_every_category_a_product_was_seen_in(api, lea):
    view(api, 0, "X200", "X200 headphones", "Audio", hours=3)
    view(api, 1, "X200", "X200 headphones", "sale", hours=2)
    view(api, 2, "X200", "X200 headphones", "", hours=1)  # counts towards its latest

    [x200] = api.get("/api/v1/customers/C-1001/export").json()["product_intent"]

    assert (x200["category"], x200["categories"]) == ("sale", ["audio", "sale"])


def test_a_product_stored_before_its_categories_were_kept_stays_in_its_category(api, lea, outbox):
    audio_campaign()
    for n in range(3):
        view(api, n, "X200", "X200 headphones", "audio", hours=5 - n)
    # As a deployment upgraded to this version holds it: its category alone.
    ProductIntent.objects.filter(sku="X200").update(categories=[])
    view(api, 3, "X200", "X200 headphones", "sale", hours=1)

    walk_in(api, "lea-phone")

    [sms] = outbox
    assert sms.body.startswith("Léa: -20% on X200 headphones at Rivoli: "), sms.body
