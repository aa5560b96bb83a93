"""A marketer's day in the admin: what the pages cost to show, and that they agree with the
API and with the SMS that goes out."""

import html
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from promotions.models import Campaign, OfferCode, PresenceEvent, Sighting, Store, Zone
from promotions.offers import sms_segments
from promotions.sms import locmem
from tests.factories import (
    BeaconFactory,
    CampaignFactory,
    CustomerFactory,
    DeliveryFactory,
    DeviceFactory,
    GatewayFactory,
    StoreFactory,
    ZoneFactory,
)
from tests.promotions.test_engine_api import RIVOLI, walk_in
from tests.test_site import campaign_form, form_errors, store_form

pytestmark = pytest.mark.django_db

# Past a bigint's range: only a forged form holds it.
FORGED_ID = "99999999999999999999"


def _presence_event(zone: Zone, **changes) -> PresenceEvent:
    return PresenceEvent.objects.create(
        **{
            "customer": CustomerFactory(),
            "place_key": f"zone:{zone.pk}",
            "kind": "entered",
            "store": zone.store,
            "zone": zone,
            "occurred_at": timezone.now(),
            **changes,
        }
    )


# --- What the list and add pages cost -----------------------------------------------------


def _beacons(n):
    for i in range(n):
        BeaconFactory(zone=ZoneFactory(code=f"z{i}"))


def _gateways(n):
    for i in range(n):
        GatewayFactory(zone=ZoneFactory(code=f"g{i}"))


def _zone_events(n):
    for i in range(n):
        _presence_event(
            ZoneFactory(code=f"e{i}"), occurred_at=timezone.now() - timedelta(minutes=i)
        )


def _pool_codes_sent(n):
    campaign = CampaignFactory()
    for i in range(n):
        delivery = DeliveryFactory(campaign=campaign, code=f"POOL-{i:03d}")
        OfferCode.objects.create(campaign=campaign, code=f"POOL-{i:03d}", delivery=delivery)


def _zone_sightings(n):
    for i in range(n):
        beacon = BeaconFactory(zone=ZoneFactory(code=f"s{i}"))
        Sighting.objects.create(
            source="app",
            device=DeviceFactory(),
            beacon=beacon,
            store=beacon.store,
            zone=beacon.zone,
            rssi=-60,
            seen_at=timezone.now(),
        )


@pytest.mark.parametrize(
    "page, make, who",
    [
        ("beacon", _beacons, "marketer"),
        ("gateway", _gateways, "marketer"),
        ("presenceevent", _zone_events, "marketer"),
        ("offercode", _pool_codes_sent, "marketer"),
        ("sighting", _zone_sightings, "admin_client"),  # marketers do not see sightings
    ],
)
def test_a_list_page_of_50_rows_reads_them_in_a_bounded_number_of_queries(
    request, django_assert_max_num_queries, page, make, who
):
    browser = request.getfixturevalue(who)
    make(50)
    url = f"/admin/promotions/{page}/"
    assert browser.get(url).status_code == 200  # caches filled on a first view

    with django_assert_max_num_queries(20):
        listed = browser.get(url)

    assert listed.status_code == 200
    assert len(listed.context["cl"].result_list) == 50


@pytest.mark.parametrize("page", ["beacon", "gateway"])
def test_the_beacon_and_gateway_pages_list_50_zones_in_a_bounded_number_of_queries(
    marketer, django_assert_max_num_queries, page
):
    # A chain of 50 stores with an entrance each: the zone menu names each zone by its store.
    for n in range(50):
        ZoneFactory(store=StoreFactory(code=f"S{n:02d}"), code="entrance")
    url = f"/admin/promotions/{page}/add/"
    assert marketer.get(url).status_code == 200

    with django_assert_max_num_queries(20):
        page_shown = marketer.get(url).content.decode()

    assert "S00/entrance" in page_shown and "S49/entrance" in page_shown


# --- The SMS preview ------------------------------------------------------------------------


def _typed_on_two_lines() -> str:
    # With the French footer (44 characters with its line break) and the 9-character code,
    # this template makes an SMS of exactly 160 characters: one segment.
    first = "Bonjour, -20% aujourd'hui: {code}"
    second = "x" * (160 - 44 - (len(first) - len("{code}") + 9) - 1)
    return f"{first}\n{second}"


def test_a_template_typed_on_two_lines_costs_what_the_live_preview_said(marketer, api, settings):
    # A browser posts a textarea's line breaks as CRLF (the HTML form submission rules),
    # while the page's script reads the textarea's value, with LF, for the live preview.
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    typed = _typed_on_two_lines()
    live = marketer.post(
        "/admin/promotions/campaign/preview/", {"template": typed, "valid_days": "7"}
    ).json()
    assert (live["characters"], live["segments"]) == (160, 1)
    rivoli = StoreFactory(code="RIVOLI", latitude=RIVOLI[0], longitude=RIVOLI[1])

    response = marketer.post(
        "/admin/promotions/campaign/add/",
        campaign_form(
            status="active", offer_template=typed.replace("\n", "\r\n"), stores=[rivoli.pk]
        ),
    )

    assert response.status_code == 302
    campaign = Campaign.objects.get()
    saved_page = marketer.get(f"/admin/promotions/campaign/{campaign.pk}/change/").content.decode()
    walk_in(api, DeviceFactory(customer=CustomerFactory(locale="fr-FR")).device_id)
    [sms] = locmem.outbox
    assert (len(sms.body), sms_segments(sms.body)) == (160, 1), repr(sms.body)
    assert "GSM-7 · 1 segment · 160 characters" in saved_page
    assert campaign.offer_template == typed  # as the API stores the same text


def test_the_live_preview_counts_a_template_s_crlf_line_breaks_as_they_will_be_saved(marketer):
    previewed = marketer.post(
        "/admin/promotions/campaign/preview/",
        {"template": _typed_on_two_lines().replace("\n", "\r\n"), "valid_days": "7"},
    ).json()

    assert (previewed["characters"], previewed["segments"]) == (160, 1)


@pytest.mark.parametrize("line_break", ["\r\n", "\r"])
def test_the_api_stores_a_template_s_line_breaks_as_lf(api, line_break):
    from tests.promotions.test_config_api import SPEC_CAMPAIGN

    StoreFactory(code="RIVOLI")
    template = f"Bonjour{line_break}-20%: {{code}}"
    created = api.post("/api/v1/campaigns", {**SPEC_CAMPAIGN, "offer": {"template": template}})

    assert created.status_code == 201, created.json()
    assert created.json()["offer"]["template"] == "Bonjour\n-20%: {code}"


@pytest.mark.django_db(transaction=True)
def test_templates_saved_with_crlf_line_breaks_get_lf_on_upgrade():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from tests.promotions.test_migrations import migrate

    old = migrate([("promotions", "0019_campaign_budget_bounds")])
    try:
        campaigns = old.get_model("promotions", "Campaign").objects
        for name, template in [
            ("admin", "Bonjour\r\n-20%: {code}\r\nA bientot"),
            ("old mac", "Bonjour\r-20%: {code}"),
            ("api", "Bonjour\n-20%: {code}"),
        ]:
            campaigns.create(name=name, offer_template=template)

        new = migrate([("promotions", "0020_campaign_template_line_breaks")])

        templates = new.get_model("promotions", "Campaign").objects.values_list(
            "name", "offer_template"
        )
        assert dict(templates) == {
            "admin": "Bonjour\n-20%: {code}\nA bientot",
            "old mac": "Bonjour\n-20%: {code}",
            "api": "Bonjour\n-20%: {code}",
        }
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


@pytest.mark.parametrize("saved", [False, True])
def test_the_preview_s_expiry_is_the_day_the_first_store_s_customers_would_read(
    marketer, monkeypatch, saved
):
    # 19:00 on 30 November in Los Angeles is already 1 December in UTC. An offer valid 1 day
    # sent now to a shopper of the Los Angeles store (no time zone of their own: the store's)
    # is valid until the end of 30 November, and its SMS says 30/11 (fr-FR, as the sample).
    now = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    monkeypatch.setattr("django.utils.timezone.now", lambda: now)
    la = StoreFactory(code="LA", name="Passage LA", timezone="America/Los_Angeles")
    StoreFactory(code="PARIS", timezone="Europe/Paris")  # not the campaign's
    template = "Valid until {expires_at}: {code}"

    if saved:
        campaign = CampaignFactory(offer_template=template, offer_valid_days=1)
        campaign.stores.add(la)
        shown = marketer.get(f"/admin/promotions/campaign/{campaign.pk}/change/").content
        assert "Valid until 30/11: " in shown.decode()
    else:
        live = marketer.post(
            "/admin/promotions/campaign/preview/",
            {"template": template, "valid_days": "1", "store": [la.pk]},
        ).json()
        assert live["body"].startswith("Valid until 30/11: "), live["body"]


@pytest.mark.parametrize("saved", [False, True])
def test_the_preview_s_expiry_without_a_store_is_the_day_of_the_retailer_s_zone(
    marketer, monkeypatch, settings, saved
):
    # No store yet to take a zone from: the engine reads a customer without a zone of their
    # own in the retailer's (SMS_BUDGET_TIMEZONE), as for a visit whose store was deleted.
    # 19:00 on 30 November in Los Angeles is 1 December in UTC, which the preview showed.
    now = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    monkeypatch.setattr("django.utils.timezone.now", lambda: now)
    settings.SMS_BUDGET_TIMEZONE = "America/Los_Angeles"
    template = "Valid until {expires_at}: {code}"

    if saved:
        campaign = CampaignFactory(offer_template=template, offer_valid_days=1)
        shown = marketer.get(f"/admin/promotions/campaign/{campaign.pk}/change/").content
        assert "Valid until 30/11: " in shown.decode()
    else:
        live = marketer.post(
            "/admin/promotions/campaign/preview/",
            {"template": template, "valid_days": "1"},
        ).json()
        assert live["body"].startswith("Valid until 30/11: "), live["body"]


# --- An intent condition that names nothing ---------------------------------------------------


@pytest.mark.parametrize(
    "views",
    [
        {"intent_min_views": 3, "intent_within_days": 14},
        {"intent_min_views": 3},
        {"intent_within_days": 14},
    ],
)
def test_views_of_nothing_named_are_refused_on_the_page_as_in_the_api(marketer, api, views):
    from tests.promotions.test_config_api import SPEC_CAMPAIGN

    StoreFactory(code="RIVOLI")
    api_intent = {"skus": [], "categories": [], "min_views": 3, "within_days": 14}
    refused = api.post(
        "/api/v1/campaigns",
        {**SPEC_CAMPAIGN, "intent": api_intent, "offer": {"template": "-20%: {code}"}},
    )
    assert refused.status_code == 400, refused.json()
    assert "for no intent condition send null" in refused.json()["intent"]["non_field_errors"][0]

    # Saved, "at least 3 views in the last 14 days" of nothing would text every shopper who
    # walks in, browsing or not.
    response = marketer.post("/admin/promotions/campaign/add/", campaign_form(**views))

    [message] = form_errors(response)["intent_skus"]
    assert "name some, or ask for an abandoned cart" in message
    assert "leave the views at 1 and the days at 30" in message
    assert not Campaign.objects.exists()


@pytest.mark.parametrize(
    "intent",
    [
        {},  # no intent condition: the views and days as the form offers them
        {"intent_skus": '["X200"]', "intent_min_views": 3, "intent_within_days": 14},
        {"intent_categories": '["audio"]', "intent_min_views": 3},
        {"intent_cart_abandoned": "on", "intent_within_days": 14},
    ],
)
def test_the_page_saves_views_of_what_the_intent_names_or_no_intent(marketer, intent):
    response = marketer.post("/admin/promotions/campaign/add/", campaign_form(**intent))

    assert response.status_code == 302
    assert Campaign.objects.count() == 1


def test_a_campaign_stored_with_views_of_nothing_cannot_be_activated(marketer):
    # Saved from the page before the rule: it is held back, not sent to every shopper.
    draft = CampaignFactory(status="draft", intent_min_views=3)

    marketer.post(
        "/admin/promotions/campaign/",
        {"action": "activate", "_selected_action": [draft.pk]},
    )

    draft.refresh_from_db()
    assert draft.status == "draft"


# --- Deleting a visited zone -----------------------------------------------------------------


def _store_page_deleting(store, zone) -> dict:
    form = store_form(
        **{k: getattr(store, k) for k in ("code", "name", "address", "latitude", "longitude")}
    )
    form.update(
        {
            "zones-TOTAL_FORMS": 1,
            "zones-INITIAL_FORMS": 1,
            "zones-0-id": zone.pk,
            "zones-0-store": store.pk,
            "zones-0-code": zone.code,
            "zones-0-name": zone.name,
            "zones-0-rssi_threshold": -80,
            "zones-0-DELETE": "on",
        }
    )
    return form


def test_a_marketer_cannot_delete_a_visited_zone_on_the_store_page_as_on_its_own(marketer):
    rivoli = StoreFactory(code="RIVOLI", radius_m=60)
    shoes = ZoneFactory(store=rivoli, code="shoes", name="Shoes")
    _presence_event(shoes)
    zone_page = marketer.post(f"/admin/promotions/zone/{shoes.pk}/delete/", {"post": "yes"})
    assert zone_page.status_code == 403

    response = marketer.post(
        f"/admin/promotions/store/{rivoli.pk}/change/", _store_page_deleting(rivoli, shoes)
    )

    assert response.status_code == 200
    [formset] = response.context["inline_admin_formsets"]
    [message] = formset.formset.non_form_errors()
    assert "Shoppers entered zone 'shoes'" in message
    assert "your account may not delete presence events" in message
    assert Zone.objects.filter(pk=shoes.pk).exists()
    assert PresenceEvent.objects.filter(zone=shoes).exists()


def test_a_marketer_deletes_a_zone_nobody_entered_on_the_store_page(marketer):
    rivoli = StoreFactory(code="RIVOLI", radius_m=60)
    shoes = ZoneFactory(store=rivoli, code="shoes", name="Shoes")
    _presence_event(ZoneFactory(store=rivoli, code="hifi"))  # another zone's visit

    response = marketer.post(
        f"/admin/promotions/store/{rivoli.pk}/change/", _store_page_deleting(rivoli, shoes)
    )

    assert response.status_code == 302
    assert not Zone.objects.filter(pk=shoes.pk).exists()


def test_whoever_may_delete_presence_events_deletes_a_visited_zone_on_the_store_page(
    admin_client,
):
    rivoli = StoreFactory(code="RIVOLI", radius_m=60)
    shoes = ZoneFactory(store=rivoli, code="shoes", name="Shoes")
    _presence_event(shoes)

    response = admin_client.post(
        f"/admin/promotions/store/{rivoli.pk}/change/", _store_page_deleting(rivoli, shoes)
    )

    assert response.status_code == 302
    assert not Zone.objects.filter(pk=shoes.pk).exists()
    assert not PresenceEvent.objects.exists()


# --- Numbers and ids past what the database holds --------------------------------------------


@pytest.mark.parametrize("field", ["daily_budget", "total_budget"])
def test_the_page_refuses_a_budget_the_api_refuses(marketer, api, field):
    from tests.promotions.test_config_api import SPEC_CAMPAIGN

    StoreFactory(code="RIVOLI")
    too_many = 2**31
    refused = api.post(
        "/api/v1/campaigns",
        {**SPEC_CAMPAIGN, "limits": {**SPEC_CAMPAIGN["limits"], field: too_many}},
    )
    assert refused.status_code == 400, refused.json()

    response = marketer.post(
        "/admin/promotions/campaign/add/", campaign_form(**{field: str(too_many)})
    )

    assert "less than or equal to 2147483647" in form_errors(response)[field][0]
    assert not Campaign.objects.exists()


@pytest.mark.parametrize("forged", [FORGED_ID, f"-{FORGED_ID}", "9223372036854775808", "0"])
def test_a_forged_store_id_is_refused_on_the_campaign_page(marketer, forged):
    rivoli = StoreFactory(code="RIVOLI")

    response = marketer.post(
        "/admin/promotions/campaign/add/", campaign_form(stores=[rivoli.pk, forged])
    )

    assert form_errors(response)["stores"] == [f"“{forged}” is not a valid value."]
    assert not Campaign.objects.exists()


def test_the_largest_id_is_an_unknown_store_on_the_campaign_page(marketer):
    response = marketer.post(
        "/admin/promotions/campaign/add/", campaign_form(stores=[str(2**63 - 1)])
    )

    assert "stores" in form_errors(response)


@pytest.mark.parametrize(
    "page, fields",
    [
        ("offercode", {"campaign": FORGED_ID, "code": "SAVE10"}),
        ("beacon", {"store": FORGED_ID, "identity": "x", "measured_power": -59}),
        ("beacon", {"zone": FORGED_ID, "identity": "x", "measured_power": -59}),
        ("gateway", {"store": FORGED_ID, "gateway_id": "gw-1"}),
        ("gateway", {"zone": FORGED_ID, "gateway_id": "gw-1"}),
        ("zone", {"store": FORGED_ID, "code": "z", "name": "z", "rssi_threshold": -80}),
    ],
)
def test_a_forged_id_in_a_menu_is_refused_on_the_page(marketer, page, fields):
    store = StoreFactory()
    data = {"store": store.pk, "campaign": CampaignFactory().pk, **fields}

    response = marketer.post(f"/admin/promotions/{page}/add/", data)

    [field] = set(fields) & {"campaign", "store", "zone"}
    assert "Select a valid choice" in form_errors(response)[field][0]


# --- A store's zones, its outline, and a page opened before a pause -------------------------


@pytest.mark.parametrize("zones", [2, 40])
def test_a_store_page_with_many_zones_reads_them_in_a_bounded_number_of_queries(
    marketer, django_assert_max_num_queries, zones
):
    store = StoreFactory(code="RIVOLI")
    for number in range(zones):
        ZoneFactory(store=store, code=f"zone-{number}")
    url = f"/admin/promotions/store/{store.pk}/change/"
    assert marketer.get(url).status_code == 200  # caches filled on a first view

    with django_assert_max_num_queries(12):
        page = marketer.get(url)

    assert page.status_code == 200
    assert page.content.decode().count("RIVOLI/zone-") == zones


def _another_marketer(name: str):
    from django.contrib.auth.models import Group, User
    from django.test import Client

    user = User.objects.create_user(name, password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketers"))
    browser = Client()
    browser.force_login(user)
    return browser


def opened_campaign_page(browser, campaign: Campaign) -> dict:
    """What the campaign's change page posts back unchanged: the values of the fields it
    shows, hidden ones included, as the browser holds them when the page has loaded."""
    page = browser.get(f"/admin/promotions/campaign/{campaign.pk}/change/")
    shown, form = page.content.decode(), page.context["adminform"].form
    held = {
        name: form[name].value()
        for name in form.fields
        if f'name="{name}"' in shown and form[name].value() is not None
    }
    return {**held, "stores": [store.pk for store in campaign.stores.all()]}


def _live_campaign(marketer) -> Campaign:
    rivoli = StoreFactory(code="RIVOLI", latitude=RIVOLI[0], longitude=RIVOLI[1])
    marketer.post(
        "/admin/promotions/campaign/add/", campaign_form(status="active", stores=[rivoli.pk])
    )
    return Campaign.objects.get()


STALE_PAGE = "Changed since you opened this page, now: Paused."


def test_a_page_opened_before_a_pause_does_not_set_the_campaign_live_again(marketer, api, settings):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    campaign = _live_campaign(marketer)
    # Marie opens the campaign's page to raise its priority...
    opened = opened_campaign_page(marketer, campaign)
    # ...while Paul pauses it from the list: its SMS must stop.
    _another_marketer("paul").post(
        "/admin/promotions/campaign/", {"action": "pause", "_selected_action": [campaign.pk]}
    )
    # Marie saves the page she opened before the pause.
    saved = marketer.post(
        f"/admin/promotions/campaign/{campaign.pk}/change/", {**opened, "priority": 5}
    )
    walk_in(api, DeviceFactory(customer=CustomerFactory()).device_id)

    assert form_errors(saved)["status"] == [STALE_PAGE]
    campaign.refresh_from_db()
    assert (campaign.status, campaign.priority) == ("paused", 0)
    assert locmem.outbox == []


def test_a_page_reloaded_after_the_pause_saves_its_changes(marketer):
    campaign = _live_campaign(marketer)
    marketer.post(
        "/admin/promotions/campaign/", {"action": "pause", "_selected_action": [campaign.pk]}
    )

    saved = marketer.post(
        f"/admin/promotions/campaign/{campaign.pk}/change/",
        {**opened_campaign_page(marketer, campaign), "priority": 5},
    )

    assert saved.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.status, campaign.priority) == ("paused", 5)


def test_a_page_opened_before_a_pause_may_pause_it_too(marketer):
    campaign = _live_campaign(marketer)
    opened = opened_campaign_page(marketer, campaign)
    _another_marketer("paul").post(
        "/admin/promotions/campaign/", {"action": "pause", "_selected_action": [campaign.pk]}
    )

    saved = marketer.post(
        f"/admin/promotions/campaign/{campaign.pk}/change/",
        {**opened, "status": "paused", "priority": 5},
    )

    assert saved.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.status, campaign.priority) == ("paused", 5)


def test_the_marketer_pauses_and_reactivates_a_campaign_from_its_page(marketer):
    campaign = _live_campaign(marketer)
    url = f"/admin/promotions/campaign/{campaign.pk}/change/"

    paused = marketer.post(url, {**opened_campaign_page(marketer, campaign), "status": "paused"})
    campaign.refresh_from_db()
    assert (paused.status_code, campaign.status) == (302, "paused")
    active = marketer.post(url, {**opened_campaign_page(marketer, campaign), "status": "active"})
    campaign.refresh_from_db()
    assert (active.status_code, campaign.status) == (302, "active")


GEOJSON_IO_POLYGON = {
    "type": "Polygon",
    "coordinates": [
        [[2.341, 48.860], [2.342, 48.860], [2.342, 48.861], [2.341, 48.861], [2.341, 48.860]]
    ],
}
GEOJSON_IO_FEATURE = {"type": "Feature", "properties": {}, "geometry": GEOJSON_IO_POLYGON}
# QGIS writes a layer's polygons as MultiPolygons, however many parts each has.
QGIS_EXPORT = {
    "type": "FeatureCollection",
    "name": "store",
    "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
    "features": [
        {
            "type": "Feature",
            "properties": {"fid": 1},
            "geometry": {
                "type": "MultiPolygon",
                "coordinates": [GEOJSON_IO_POLYGON["coordinates"]],
            },
        }
    ],
}


@pytest.mark.parametrize(
    "pasted",
    [
        {"type": "FeatureCollection", "features": [GEOJSON_IO_FEATURE]},
        GEOJSON_IO_FEATURE,
        QGIS_EXPORT,
    ],
    ids=["a FeatureCollection of one", "a Feature", "a QGIS export (a MultiPolygon of one)"],
)
def test_an_outline_pasted_from_geojson_io_makes_the_store_s_fence(marketer, pasted):
    response = marketer.post(
        "/admin/promotions/store/add/", store_form(radius_m="", polygon=json.dumps(pasted))
    )

    assert response.status_code == 302, form_errors(response)
    assert Store.objects.get().polygon == GEOJSON_IO_POLYGON


def polygon_field_text(page) -> str:
    """What the store page's Polygon field holds as the page opens."""
    found = re.search(r'<textarea[^>]*id="id_polygon"[^>]*>\n?(.*?)</textarea>', page, re.S)
    return html.unescape(found.group(1))


@pytest.mark.parametrize("page", ["add", "change"])
def test_an_outline_pasted_into_the_polygon_field_of_a_radius_store_is_saved(marketer, page):
    # A store fenced by a radius has no polygon: the field is there to paste an outline into.
    store = StoreFactory(code="OPERA", radius_m=60) if page == "change" else None
    url = f"/admin/promotions/store/{store.pk}/change/" if store else "/admin/promotions/store/add/"
    held = polygon_field_text(marketer.get(url).content.decode())

    # Pasted where the field was clicked: after what it held.
    pasted = held + json.dumps(GEOJSON_IO_FEATURE)
    response = marketer.post(url, store_form(radius_m="", polygon=pasted))

    assert held == ""
    assert response.status_code == 302, form_errors(response)
    assert Store.objects.get(code="RIVOLI").polygon == GEOJSON_IO_POLYGON


@pytest.mark.parametrize(
    "pasted",
    [
        {"type": "MultiPolygon", "coordinates": [GEOJSON_IO_POLYGON["coordinates"]] * 2},
        {"type": "FeatureCollection", "features": [GEOJSON_IO_FEATURE] * 2},
    ],
    ids=["a MultiPolygon", "two Features"],
)
def test_two_outlines_pasted_for_a_store_are_refused_saying_to_paste_one(marketer, pasted):
    response = marketer.post(
        "/admin/promotions/store/add/", store_form(radius_m="", polygon=json.dumps(pasted))
    )

    assert form_errors(response)["polygon"] == ["One outline per store: paste a single Polygon."]
    assert not Store.objects.exists()


def test_a_campaign_read_by_someone_who_may_only_view_it_shows_no_loaded_values(client):
    from django.contrib.auth.models import Permission, User

    viewer = User.objects.create_user("viv", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    client.force_login(viewer)

    response = client.get(f"/admin/promotions/campaign/{CampaignFactory().pk}/change/")

    assert response.status_code == 200
    assert "Loaded values" not in response.content.decode()
