"""The campaign admin refuses what the API refuses: a beacon zone none of the campaign's
stores has (on the page and when activated), and intent names PostgreSQL cannot store."""

import json
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from promotions.models import (
    Campaign,
    CampaignStatus,
    Delivery,
    OfferCode,
    Redemption,
    TriggerType,
)
from promotions.sms import locmem
from tests.factories import (
    CampaignFactory,
    CustomerFactory,
    DeliveryFactory,
    DeviceFactory,
    StoreFactory,
    ZoneFactory,
    an_entry_the_first_campaign_could_not_text,
)
from tests.processes import started
from tests.promotions.test_engine_api import walk_in
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


@pytest.mark.parametrize("field", ["intent_skus", "allowed_days"])
@pytest.mark.parametrize(
    "typed",
    ["[" * 5000 + "]" * 5000, "[" + "1" * 5000 + "]"],
    ids=["nested-too-deep", "integer-of-5000-digits"],
)
def test_json_the_admin_cannot_read_is_a_message_on_its_field(admin_client, field, typed):
    # The API answers the same text with a 400; the page answered it with a 500.
    response = admin_client.post("/admin/promotions/campaign/add/", campaign_form(**{field: typed}))

    assert form_errors(response)[field] == [
        "Not readable JSON: a number is too long or nesting too deep."
    ]
    assert not Campaign.objects.exists()


def test_the_live_preview_survives_a_half_typed_deep_list(admin_client):
    response = admin_client.post(
        "/admin/promotions/campaign/preview/",
        {"template": "Hi {first_name}, {product_name}", "skus": "[" * 5000},
    )

    assert response.status_code == 200
    assert response.json()["body"].startswith("Hi Léa, X200 headphones")


def test_intent_names_are_stored_trimmed_and_once_each_as_the_api_stores_them(admin_client):
    response = admin_client.post(
        "/admin/promotions/campaign/add/",
        campaign_form(
            intent_skus='[" X200 ", "X200", "B7"]', intent_categories='["audio ", " audio"]'
        ),
    )

    # " X200 " is no SKU a browsing event can carry: the campaign would match nobody.
    assert response.status_code == 302
    campaign = Campaign.objects.get()
    assert (campaign.intent_skus, campaign.intent_categories) == (["X200", "B7"], ["audio"])


@pytest.mark.parametrize(("count", "saved"), [(100, True), (101, False)])
def test_an_intent_names_at_most_100_skus_as_in_the_api(admin_client, count, saved):
    skus = json.dumps([f"SKU-{n}" for n in range(count)])

    response = admin_client.post("/admin/promotions/campaign/add/", campaign_form(intent_skus=skus))

    if saved:
        assert response.status_code == 302
    else:
        assert form_errors(response)["intent_skus"] == ["100 names at most."]
    assert Campaign.objects.exists() == saved


def test_quiet_hours_set_with_seconds_round_trip_through_the_api(admin_client, api):
    # The clock widget's "Now" fills in the seconds; the API reads and writes minutes.
    admin_client.post(
        "/admin/promotions/campaign/add/",
        campaign_form(quiet_hours_start="21:00:41", quiet_hours_end="08:00:00"),
    )
    campaign = Campaign.objects.get()
    stored = (campaign.quiet_hours_start, campaign.quiet_hours_end)
    read = api.get(f"/api/v1/campaigns/{campaign.pk}").json()

    written = api.put(f"/api/v1/campaigns/{campaign.pk}", read, format="json")

    assert written.status_code == 200
    assert read["limits"]["quiet_hours"] == {"start": "21:00", "end": "08:00"}
    campaign.refresh_from_db()
    # Read and written back unchanged, it is unchanged.
    assert (campaign.quiet_hours_start, campaign.quiet_hours_end) == stored


def test_quiet_hours_within_one_minute_are_refused_as_empty(admin_client):
    response = admin_client.post(
        "/admin/promotions/campaign/add/",
        campaign_form(quiet_hours_start="21:00:10", quiet_hours_end="21:00:50"),
    )

    assert form_errors(response)["quiet_hours_end"] == [
        "Quiet hours must end at another time than they start."
    ]


def test_a_day_allowed_twice_is_stored_once(admin_client):
    response = admin_client.post(
        "/admin/promotions/campaign/add/", campaign_form(allowed_days='["sat", "sun", "sat"]')
    )

    assert response.status_code == 302
    assert Campaign.objects.get().allowed_days == ["sat", "sun"]


OPERA = (48.8710, 2.3320)


def test_an_ended_campaign_cannot_be_set_active_again_from_its_page(admin_client, api, settings):
    # Its only store could be deleted once it ended: brought back, it would text in every
    # store. The list's actions leave it ended; so does its page.
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    campaign = CampaignFactory(name="Summer sale", status=CampaignStatus.ENDED)
    campaign.stores.add(StoreFactory(code="RIVOLI"))
    StoreFactory(code="OPERA", latitude=OPERA[0], longitude=OPERA[1])
    assert api.delete("/api/v1/stores/RIVOLI").status_code == 204

    response = admin_client.post(
        f"/admin/promotions/campaign/{campaign.pk}/change/",
        campaign_form(name="Summer sale", status="active"),
    )
    walk_in(api, DeviceFactory(customer=CustomerFactory()).device_id, place=OPERA)

    assert form_errors(response)["status"] == [
        "An ended campaign stays ended, as its stores or zones may be gone; create a new "
        'campaign to run it again (in the admin: "Duplicate as a draft").'
    ]
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.ENDED
    assert locmem.outbox == []


def test_an_ended_campaign_s_page_still_saves_other_changes(admin_client):
    campaign = CampaignFactory(name="Summer sale", status=CampaignStatus.ENDED)

    response = admin_client.post(
        f"/admin/promotions/campaign/{campaign.pk}/change/",
        campaign_form(name="Summer sale 2025", status="ended"),
    )

    assert response.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.name, campaign.status) == ("Summer sale 2025", CampaignStatus.ENDED)


def test_an_ended_campaign_runs_again_as_a_draft_duplicate(admin_client):
    rivoli, opera = StoreFactory(code="RIVOLI"), StoreFactory(code="OPERA")
    ended = CampaignFactory(
        name="Summer sale",
        status=CampaignStatus.ENDED,
        priority=7,
        intent_skus=["X200"],
        offer_valid_days=3,
        holdout_percent=20,
    )
    ended.stores.set([rivoli, opera])
    delivery = DeliveryFactory(campaign=ended)
    OfferCode.objects.create(campaign=ended, code="POOL-1")

    shown = run_action(admin_client, "duplicate", ended)

    copy = Campaign.objects.get(name="Summer sale (copy)")
    assert any(message.startswith("1 draft(s) created: Summer sale (copy).") for message in shown)
    assert any(
        message.startswith("Summer sale (copy): the original drew its codes from an uploaded pool")
        for message in shown
    )
    assert copy.status == CampaignStatus.DRAFT
    assert (copy.priority, copy.intent_skus, copy.offer_valid_days, copy.holdout_percent) == (
        7,
        ["X200"],
        3,
        20,
    )
    assert copy.offer_template == ended.offer_template
    assert set(copy.stores.values_list("code", flat=True)) == {"RIVOLI", "OPERA"}
    assert not copy.code_pool.exists() and not copy.deliveries.exists()
    assert list(Delivery.objects.all()) == [delivery]
    ended.refresh_from_db()
    assert ended.status == CampaignStatus.ENDED
    # The draft goes live from the list as any campaign does.
    assert "1 campaign(s) activated." in run_action(admin_client, "activate", copy)


def test_the_results_page_says_why_in_the_words_the_rest_of_the_admin_uses(admin_client):
    campaign = CampaignFactory()
    DeliveryFactory(campaign=campaign, status="suppressed", reason="no_consent", code=None)
    DeliveryFactory(campaign=campaign, status="holdout", reason="holdout", code=None)

    page = admin_client.get(f"/admin/promotions/campaign/{campaign.pk}/results/").content.decode()

    assert "<th>Suppressed</th><td>1</td>" in page
    assert "<th>&nbsp;&nbsp;because no SMS consent</th><td>1</td>" in page
    assert "<th>&nbsp;&nbsp;because holdout group</th><td>1</td>" in page
    assert "no_consent" not in page


@pytest.mark.parametrize(
    ("statuses", "says"),
    [
        # A holdout of 100%: the holdout bought, and nobody was texted.
        (["holdout", "holdout"], "\u2013 (no customer was texted)"),
        # A holdout of 0%: there is no group to compare with.
        (["sent", "sent"], "\u2013 (no customer was held out)"),
        (["sent", "holdout"], "\u2013 (needs holdout redemptions)"),
    ],
)
def test_the_results_page_says_what_the_lift_is_missing(admin_client, statuses, says):
    campaign = CampaignFactory()
    first, _ = (DeliveryFactory(campaign=campaign, status=status) for status in statuses)
    if first.status == "holdout":
        Redemption.objects.create(delivery=first, redeemed_at=timezone.now(), amount="12.00")

    page = admin_client.get(f"/admin/promotions/campaign/{campaign.pk}/results/").content.decode()

    [lift] = re.findall(r"<th>Lift against the holdout</th>\s*<td>(.*?)</td>", page)
    assert lift == says


def test_the_results_page_counts_an_event_a_campaign_could_not_text_for_as_the_api_does(
    admin_client,
):
    """A campaign ranked first that could not send (its cap) leaves the event to the next
    one, which texts: both counted it (the API's presence_events_matched says so). The page
    must not call the first one's event "won", nor tell the second one's reader that an
    event a campaign ranked before it is not counted."""
    first, second = an_entry_the_first_campaign_could_not_text(StoreFactory(code="RIVOLI"))

    for campaign in (first, second):
        url = f"/admin/promotions/campaign/{campaign.pk}/results/"
        page = admin_client.get(url).content.decode()
        assert '<td id="matched">1</td>' in page
        assert "matched and won" not in page
        assert "ranked before this one is that campaign" not in page
        assert "could not send" in page


def _delete_page(admin_client, campaign: Campaign) -> tuple[str, list[str]]:
    """The campaign's delete page, and the queries that read deliveries' rows for it."""
    with CaptureQueriesContext(connection) as captured:
        page = admin_client.get(f"/admin/promotions/campaign/{campaign.pk}/delete/")
    assert page.status_code == 200
    rows_read = [
        query["sql"]
        for query in captured.captured_queries
        if 'FROM "promotions_delivery"' in query["sql"] and "COUNT(" not in query["sql"]
    ]
    return page.content.decode(), rows_read


def test_the_delete_page_of_a_campaign_with_many_decisions_reads_none_of_them(admin_client):
    # A campaign with a million deliveries: the page loaded every one (Django gathers all
    # that a deletion touches) to say that it cannot go, and never answered.
    campaign = CampaignFactory(name="Soldes", status=CampaignStatus.ENDED)
    DeliveryFactory.create_batch(60, campaign=campaign)

    page, rows_read = _delete_page(admin_client, campaign)

    assert rows_read == []
    assert "60 decisions" in page and "End it instead" in page
    admin_client.post(f"/admin/promotions/campaign/{campaign.pk}/delete/", {"post": "yes"})
    assert Delivery.objects.filter(campaign=campaign).count() == 60


def test_deleting_campaigns_with_decisions_from_the_list_is_refused_naming_them(admin_client):
    soldes = CampaignFactory(name="Soldes", status=CampaignStatus.ENDED)
    DeliveryFactory.create_batch(3, campaign=soldes)
    draft = CampaignFactory(name="Welcome", status=CampaignStatus.DRAFT)
    chosen = {"action": "delete_selected", "_selected_action": [soldes.pk, draft.pk]}

    page = admin_client.post("/admin/promotions/campaign/", chosen).content.decode()
    admin_client.post("/admin/promotions/campaign/", {**chosen, "post": "yes"})

    assert "Soldes" in page and "3 decisions" in page
    assert set(Campaign.objects.values_list("name", flat=True)) == {"Soldes", "Welcome"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="a lock held by another transaction: PostgreSQL"
)
@pytest.mark.parametrize("page", ["delete page", "list"])
def test_a_campaign_deletion_the_database_breaks_off_is_a_message_not_an_error(admin_client, page):
    campaign = CampaignFactory(name="Never ran", status=CampaignStatus.DRAFT)
    # A worker holds the campaign, and PostgreSQL gives up the deletion's wait for it (as
    # when it breaks a deadlock): the deletion's transaction fails.
    worker = started(lambda: list(Campaign.objects.select_for_update().filter(pk=campaign.pk)))
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '200ms'")
    try:
        if page == "list":
            chosen = {"action": "delete_selected", "_selected_action": [campaign.pk], "post": "yes"}
            answer = admin_client.post("/admin/promotions/campaign/", chosen, follow=True)
        else:
            answer = admin_client.post(
                f"/admin/promotions/campaign/{campaign.pk}/delete/", {"post": "yes"}, follow=True
            )
    finally:
        worker.release.set()
        worker.join(10)
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")

    assert answer.status_code == 200
    shown = [str(message) for message in answer.context["messages"]]
    assert shown == [
        "The database could not finish this deletion just now: nothing was deleted. Try again."
    ], shown
    assert Campaign.objects.filter(pk=campaign.pk).exists()


def test_a_campaign_that_has_made_no_decision_is_still_deleted_with_its_pool(admin_client):
    campaign = CampaignFactory(name="Never ran", status=CampaignStatus.DRAFT)
    OfferCode.objects.create(campaign=campaign, code="POOL-1")

    assert "POOL-1" in _delete_page(admin_client, campaign)[0]
    admin_client.post(f"/admin/promotions/campaign/{campaign.pk}/delete/", {"post": "yes"})

    assert not Campaign.objects.filter(pk=campaign.pk).exists()
    assert not OfferCode.objects.exists()


def test_the_holdout_share_says_a_change_applies_to_customers_not_yet_in_the_campaign(
    admin_client,
):
    campaign = CampaignFactory(holdout_percent=10)

    page = admin_client.get(f"/admin/promotions/campaign/{campaign.pk}/change/").content.decode()

    help_text = page[page.index('id="id_holdout_percent_helptext"') :].split("</div>")[0]
    assert "A change applies to customers not yet in the campaign" in help_text


def test_a_marketer_deletes_a_campaign_made_by_mistake(marketer):
    mistake = CampaignFactory(name="Welcome (copy)", status=CampaignStatus.DRAFT)
    OfferCode.objects.create(campaign=mistake, code="POOL-1")

    response = marketer.post(f"/admin/promotions/campaign/{mistake.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Campaign.objects.exists()


def test_a_marketer_cannot_delete_a_campaign_s_results(marketer):
    soldes = CampaignFactory(name="Soldes", status=CampaignStatus.ENDED)
    DeliveryFactory.create_batch(3, campaign=soldes)

    page = marketer.get(f"/admin/promotions/campaign/{soldes.pk}/delete/").content.decode()
    marketer.post(f"/admin/promotions/campaign/{soldes.pk}/delete/", {"post": "yes"})

    assert "3 decisions" in page and "End it instead" in page
    assert Delivery.objects.filter(campaign=soldes).count() == 3
