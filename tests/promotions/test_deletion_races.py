"""A store, a zone or a campaign deleted while a campaign or a delivery that uses it is being
written: whichever comes second waits for the other and is told what happened, through the
API and in the admin, and nothing is left half-written (a campaign targeting a store that
is gone, or watching a zone that is gone). Two real transactions at once: PostgreSQL only."""

import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from promotions import decisions, services
from promotions.models import Campaign, Delivery, LocationBatch, Ping, Store, TriggerType, Zone
from tests.factories import (
    CampaignFactory,
    CustomerFactory,
    DeviceFactory,
    StoreFactory,
    ZoneFactory,
)
from tests.processes import in_thread, sessions_waiting_for_a_lock, started
from tests.promotions.test_admin_places import STORE_FIELDS
from tests.test_site import campaign_form, form_errors, store_form

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
    ),
]

CAMPAIGN = {
    "name": "Rivoli walk-in",
    "status": "active",
    "stores": ["RIVOLI"],
    "trigger": {"type": "enter"},
    "offer": {"template": "Bonjour {first_name}, -20% at {store_name}: {code}"},
}
WATCHING_THE_ENTRANCE = {**CAMPAIGN, "trigger": {"type": "beacon_zone", "zone": "entrance"}}


def while_held(first, second):
    """`first` done in a transaction held open while `second` runs in another (which may
    wait for it); then `first` commits. Returns `first`'s outcome and `second`'s."""
    held = started(first)
    outcome = []
    other = in_thread(lambda: outcome.append(second()))
    other.join(0.5)  # done, or waiting for `first`
    held.release.set()
    held.join(10)
    other.join(10)
    assert held.error is None and outcome, (held.error, outcome)
    return held.result, outcome[0]


# --- A store --------------------------------------------------------------------------------


def test_a_store_is_not_deleted_under_a_campaign_being_saved_to_target_it(client_with_scopes):
    StoreFactory(code="RIVOLI")
    marketer, other = client_with_scopes(), client_with_scopes()

    created, deleted = while_held(
        lambda: marketer.post("/api/v1/campaigns", CAMPAIGN, format="json"),
        lambda: other.delete("/api/v1/stores/RIVOLI"),
    )

    assert created.status_code == 201
    assert deleted.status_code == 409
    assert "Rivoli walk-in" in deleted.json()["detail"]
    campaign = Campaign.objects.get()
    assert [store.code for store in campaign.stores.all()] == ["RIVOLI"]


def test_a_campaign_saved_while_its_store_is_deleted_is_told_the_store_is_gone(api):
    rivoli = StoreFactory(code="RIVOLI")

    _, created = while_held(
        lambda: services.delete_stores(stores=[rivoli]),
        lambda: api.post("/api/v1/campaigns", CAMPAIGN, format="json"),
    )

    assert created.status_code == 400
    assert "RIVOLI" in str(created.json()["stores"])
    assert not Campaign.objects.exists()
    assert not Store.objects.exists()


def test_a_store_deleted_in_the_admin_under_a_campaign_being_saved_is_a_message(
    admin_client, client_with_scopes
):
    rivoli = StoreFactory(code="RIVOLI")
    marketer = client_with_scopes()
    # The confirmation page, which no campaign protects the store on yet.
    assert admin_client.get(f"/admin/promotions/store/{rivoli.pk}/delete/").status_code == 200

    _, deleted = while_held(
        lambda: marketer.post("/api/v1/campaigns", CAMPAIGN, format="json"),
        lambda: admin_client.post(
            f"/admin/promotions/store/{rivoli.pk}/delete/", {"post": "yes"}, follow=True
        ),
    )

    assert deleted.status_code == 200
    shown = [str(message) for message in deleted.context["messages"]]
    assert any("Rivoli walk-in" in message for message in shown), shown
    assert Store.objects.filter(code="RIVOLI").exists()


def test_stores_deleted_from_the_admin_list_under_a_campaign_being_saved_is_a_message(
    admin_client, client_with_scopes
):
    rivoli, opera = StoreFactory(code="RIVOLI"), StoreFactory(code="OPERA")
    marketer = client_with_scopes()
    chosen = {"action": "delete_selected", "_selected_action": [rivoli.pk, opera.pk]}
    assert admin_client.post("/admin/promotions/store/", chosen).status_code == 200

    _, deleted = while_held(
        lambda: marketer.post("/api/v1/campaigns", CAMPAIGN, format="json"),
        lambda: admin_client.post(
            "/admin/promotions/store/", {**chosen, "post": "yes"}, follow=True
        ),
    )

    assert deleted.status_code == 200
    shown = [str(message) for message in deleted.context["messages"]]
    assert any("Rivoli walk-in" in message for message in shown), shown
    assert not any("Successfully deleted" in message for message in shown), shown
    assert set(Store.objects.values_list("code", flat=True)) == {"RIVOLI", "OPERA"}


def test_a_campaign_saved_in_the_admin_while_its_store_is_deleted_is_a_message(admin_client):
    admin_client.raise_request_exception = False
    rivoli = StoreFactory(code="RIVOLI")
    assert admin_client.get("/admin/promotions/campaign/add/").status_code == 200

    _, saved = while_held(
        lambda: services.delete_stores(stores=[rivoli]),
        lambda: admin_client.post(
            "/admin/promotions/campaign/add/", campaign_form(stores=[rivoli.pk])
        ),
    )

    assert "RIVOLI" in str(form_errors(saved)["stores"])
    assert not Campaign.objects.exists()


# --- A zone ---------------------------------------------------------------------------------


def test_a_zone_is_not_deleted_under_a_campaign_being_saved_to_watch_it(client_with_scopes):
    entrance = ZoneFactory(store=StoreFactory(code="RIVOLI"), code="entrance")
    marketer, other = client_with_scopes(), client_with_scopes()

    created, deleted = while_held(
        lambda: marketer.post("/api/v1/campaigns", WATCHING_THE_ENTRANCE, format="json"),
        lambda: other.delete(f"/api/v1/zones/{entrance.pk}"),
    )

    assert created.status_code == 201
    assert deleted.status_code == 409
    assert "Rivoli walk-in" in deleted.json()["detail"]
    assert Zone.objects.filter(pk=entrance.pk).exists()


def test_a_campaign_saved_to_watch_a_zone_being_deleted_is_told_it_is_gone(api):
    entrance = ZoneFactory(store=StoreFactory(code="RIVOLI"), code="entrance")

    _, created = while_held(
        lambda: services.delete_zones(zones=[entrance]),
        lambda: api.post("/api/v1/campaigns", WATCHING_THE_ENTRANCE, format="json"),
    )

    assert created.status_code == 400
    assert "No zone 'entrance'" in str(created.json())
    assert not Campaign.objects.exists()


def test_a_zone_deleted_in_the_admin_under_a_campaign_being_saved_is_a_message(
    admin_client, client_with_scopes
):
    entrance = ZoneFactory(store=StoreFactory(code="RIVOLI"), code="entrance")
    marketer = client_with_scopes()
    assert admin_client.get(f"/admin/promotions/zone/{entrance.pk}/delete/").status_code == 200

    _, deleted = while_held(
        lambda: marketer.post("/api/v1/campaigns", WATCHING_THE_ENTRANCE, format="json"),
        lambda: admin_client.post(
            f"/admin/promotions/zone/{entrance.pk}/delete/", {"post": "yes"}, follow=True
        ),
    )

    assert deleted.status_code == 200
    shown = [str(message) for message in deleted.context["messages"]]
    assert any("Rivoli walk-in" in message for message in shown), shown
    assert Zone.objects.filter(pk=entrance.pk).exists()


def test_a_zone_deleted_from_its_store_page_under_a_campaign_being_saved_is_a_message(
    admin_client, client_with_scopes
):
    form = store_form()
    rivoli = StoreFactory(**{name: form[name] for name in STORE_FIELDS})
    entrance = ZoneFactory(store=rivoli, code="entrance", name="Entrance")
    marketer = client_with_scopes()
    page = f"/admin/promotions/store/{rivoli.pk}/change/"
    assert admin_client.get(page).status_code == 200
    form.update(
        {
            "zones-TOTAL_FORMS": 1,
            "zones-INITIAL_FORMS": 1,
            "zones-0-id": entrance.pk,
            "zones-0-store": rivoli.pk,
            "zones-0-code": "entrance",
            "zones-0-name": "Entrance",
            "zones-0-rssi_threshold": -80,
            "zones-0-DELETE": "on",
        }
    )

    # The page's zone form locks the zone (Zone.clean), which waits for the campaign's hold.
    _, saved = while_held(
        lambda: marketer.post("/api/v1/campaigns", WATCHING_THE_ENTRANCE, format="json"),
        lambda: admin_client.post(page, form),
    )

    assert saved.status_code == 200
    assert (
        "Deleting zone &#x27;entrance&#x27; would leave campaign Rivoli walk-in with no zone "
        "&#x27;entrance&#x27; in its store RIVOLI." in saved.content.decode()
    )
    assert Zone.objects.filter(pk=entrance.pk).exists()


def test_two_zones_of_one_code_deleted_at_once_leave_the_campaign_for_every_store_one(api):
    rivoli = ZoneFactory(store=StoreFactory(code="RIVOLI"), code="entrance")
    opera = ZoneFactory(store=StoreFactory(code="OPERA"), code="entrance")
    CampaignFactory(
        name="Every entrance", trigger_type=TriggerType.BEACON_ZONE, trigger_zone="entrance"
    )

    # Each deletion, alone, leaves the other entrance to the campaign.
    _, deleted = while_held(
        lambda: services.delete_zones(zones=[rivoli]),
        lambda: api.delete(f"/api/v1/zones/{opera.pk}"),
    )

    assert deleted.status_code == 409
    assert "Every entrance" in deleted.json()["detail"]
    assert list(Zone.objects.values_list("pk", flat=True)) == [opera.pk]


def test_two_stores_whose_zones_are_a_code_s_last_deleted_at_once_leave_one(api):
    rivoli, opera = StoreFactory(code="RIVOLI"), StoreFactory(code="OPERA")
    ZoneFactory(store=rivoli, code="entrance")
    ZoneFactory(store=opera, code="entrance")
    CampaignFactory(
        name="Every entrance", trigger_type=TriggerType.BEACON_ZONE, trigger_zone="entrance"
    )

    _, deleted = while_held(
        lambda: services.delete_stores(stores=[rivoli]),
        lambda: api.delete("/api/v1/stores/OPERA"),
    )

    assert deleted.status_code == 409
    assert "Every entrance" in deleted.json()["detail"]
    assert list(Store.objects.values_list("code", flat=True)) == ["OPERA"]


# --- A zone renamed -------------------------------------------------------------------------


EVERY_ENTRANCE = {"name": "Every entrance", "trigger_type": TriggerType.BEACON_ZONE}


def the_two_last_entrances() -> tuple[Zone, Zone]:
    """RIVOLI's and OPERA's entrances, the last of their code, which a campaign for every
    store watches: either may go while the other stays, not both."""
    rivoli = ZoneFactory(store=StoreFactory(code="RIVOLI"), code="entrance", name="Entrance")
    opera = ZoneFactory(store=StoreFactory(code="OPERA"), code="entrance", name="Entrance")
    CampaignFactory(**EVERY_ENTRANCE, trigger_zone="entrance")
    return rivoli, opera


def seen_waiting(first, second):
    """`first` done in a transaction held open while `second` runs in another; whether
    `second` was seen waiting for a lock before `first` committed, and both outcomes."""
    held = started(first)
    other = in_thread(second)
    waited = False
    for _ in range(200):  # until `second` waits, or is done without waiting
        waited = sessions_waiting_for_a_lock() > 0
        if waited or not other.is_alive():
            break
        time.sleep(0.05)
    held.release.set()
    held.join(10)
    other.join(10)
    assert held.error is None and other.error is None, (held.error, other.error)
    return waited, held.result, other.result


def test_a_zone_renamed_while_the_other_of_its_code_is_deleted_waits_and_is_refused(api):
    rivoli, opera = the_two_last_entrances()

    waited, _, renamed = seen_waiting(
        lambda: services.delete_zones(zones=[opera]),
        lambda: api.patch(f"/api/v1/zones/{rivoli.pk}", {"code": "door"}),
    )

    assert waited
    assert renamed.status_code == 400
    assert "Every entrance" in renamed.json()["code"][0]
    assert list(Zone.objects.values_list("code", flat=True)) == ["entrance"]


def test_a_zone_deleted_while_the_other_of_its_code_is_renamed_waits_and_is_refused(
    client_with_scopes,
):
    rivoli, opera = the_two_last_entrances()
    marketer, other = client_with_scopes(), client_with_scopes()

    waited, renamed, deleted = seen_waiting(
        lambda: marketer.patch(f"/api/v1/zones/{rivoli.pk}", {"code": "door"}),
        lambda: other.delete(f"/api/v1/zones/{opera.pk}"),
    )

    assert waited
    assert renamed.status_code == 200
    assert deleted.status_code == 409
    assert "Every entrance" in deleted.json()["detail"]
    assert sorted(Zone.objects.values_list("code", flat=True)) == ["door", "entrance"]


def test_the_two_last_zones_of_a_code_renamed_at_once_leave_one(client_with_scopes):
    rivoli, opera = the_two_last_entrances()
    marketer, other = client_with_scopes(), client_with_scopes()

    waited, renamed, last_renamed = seen_waiting(
        lambda: marketer.patch(f"/api/v1/zones/{rivoli.pk}", {"code": "door"}),
        lambda: other.patch(f"/api/v1/zones/{opera.pk}", {"code": "way-in"}),
    )

    assert waited
    assert renamed.status_code == 200
    assert last_renamed.status_code == 400
    assert "Every entrance" in last_renamed.json()["code"][0]
    assert Zone.objects.get(pk=opera.pk).code == "entrance"


def test_a_zone_renamed_in_the_admin_while_the_other_of_its_code_is_deleted_is_a_message(
    admin_client,
):
    rivoli, opera = the_two_last_entrances()
    page = f"/admin/promotions/zone/{rivoli.pk}/change/"
    assert admin_client.get(page).status_code == 200

    waited, _, renamed = seen_waiting(
        lambda: services.delete_zones(zones=[opera]),
        lambda: admin_client.post(
            page,
            {"store": rivoli.store_id, "code": "door", "name": "Door", "rssi_threshold": -80},
        ),
    )

    assert waited
    assert "Every entrance" in form_errors(renamed)["code"][0]
    assert list(Zone.objects.values_list("code", flat=True)) == ["entrance"]


def test_a_zone_moved_while_the_other_of_the_campaign_s_stores_loses_its_own_is_refused(
    client_with_scopes,
):
    # A campaign for RIVOLI and OPERA runs on either entrance: one may go, not both.
    rivoli = ZoneFactory(store=StoreFactory(code="RIVOLI"), code="entrance", name="Entrance")
    opera = ZoneFactory(store=StoreFactory(code="OPERA"), code="entrance", name="Entrance")
    StoreFactory(code="LOUVRE")
    campaign = CampaignFactory(**EVERY_ENTRANCE, trigger_zone="entrance")
    campaign.stores.set([rivoli.store, opera.store])
    marketer, other = client_with_scopes(), client_with_scopes()

    waited, deleted, moved = seen_waiting(
        lambda: marketer.delete(f"/api/v1/zones/{opera.pk}"),
        lambda: other.patch(f"/api/v1/zones/{rivoli.pk}", {"store": "LOUVRE"}),
    )

    assert waited
    assert deleted.status_code == 204
    assert moved.status_code == 400
    assert "Every entrance" in moved.json()["code"][0]
    assert list(Zone.objects.values_list("store__code", "code")) == [("RIVOLI", "entrance")]


def test_a_zone_deleted_from_its_store_page_while_the_other_of_its_code_goes_is_a_message(
    admin_client,
):
    form = store_form()
    rivoli_store = StoreFactory(**{name: form[name] for name in STORE_FIELDS})
    rivoli = ZoneFactory(store=rivoli_store, code="entrance", name="Entrance")
    opera = ZoneFactory(store=StoreFactory(code="OPERA"), code="entrance", name="Entrance")
    CampaignFactory(**EVERY_ENTRANCE, trigger_zone="entrance")
    page = f"/admin/promotions/store/{rivoli_store.pk}/change/"
    form.update(
        {
            "zones-TOTAL_FORMS": 1,
            "zones-INITIAL_FORMS": 1,
            "zones-0-id": rivoli.pk,
            "zones-0-store": rivoli_store.pk,
            "zones-0-code": "entrance",
            "zones-0-name": "Entrance",
            "zones-0-rssi_threshold": -80,
            "zones-0-DELETE": "on",
        }
    )

    waited, _, saved = seen_waiting(
        lambda: services.delete_zones(zones=[opera]),
        lambda: admin_client.post(page, form),
    )

    assert waited
    assert saved.status_code == 200
    assert (
        "would leave campaign Every entrance with no zone &#x27;entrance&#x27; in any store"
        in saved.content.decode()
    )
    assert list(Zone.objects.values_list("pk", flat=True)) == [rivoli.pk]


# --- A campaign -----------------------------------------------------------------------------


def _a_shopper_walks_into(store: Store) -> LocationBatch:
    now = timezone.now()
    ping = Ping.objects.create(
        device=DeviceFactory(customer=CustomerFactory()),
        latitude=store.latitude,
        longitude=store.longitude,
        accuracy=10,
        recorded_at=now,
    )
    return LocationBatch.objects.create(ping_ids=[ping.id])


def test_a_campaign_is_not_deleted_under_the_decision_a_worker_is_recording(api):
    campaign = CampaignFactory(name="Every store")
    batch = _a_shopper_walks_into(StoreFactory(code="RIVOLI"))

    queued, deleted = while_held(
        lambda: decisions.process_location_batch(batch_id=batch.pk, now=timezone.now()),
        lambda: api.delete(f"/api/v1/campaigns/{campaign.pk}"),
    )

    assert len(queued) == 1
    assert deleted.status_code == 409
    assert "1 decision" in deleted.json()["detail"]
    assert Delivery.objects.get().campaign == campaign


def test_a_campaign_deleted_in_the_admin_under_a_decision_being_recorded_is_a_message(
    admin_client,
):
    campaign = CampaignFactory(name="Every store")
    batch = _a_shopper_walks_into(StoreFactory(code="RIVOLI"))
    page = admin_client.get(f"/admin/promotions/campaign/{campaign.pk}/delete/")
    assert page.status_code == 200 and "decision" not in page.content.decode()

    _, deleted = while_held(
        lambda: decisions.process_location_batch(batch_id=batch.pk, now=timezone.now()),
        lambda: admin_client.post(
            f"/admin/promotions/campaign/{campaign.pk}/delete/", {"post": "yes"}, follow=True
        ),
    )

    assert deleted.status_code == 200
    shown = [str(message) for message in deleted.context["messages"]]
    assert any("1 decision" in message for message in shown), shown
    assert Campaign.objects.filter(pk=campaign.pk).exists()


def test_a_worker_deciding_while_a_campaign_is_deleted_decides_without_it():
    gone = CampaignFactory(name="Every store", priority=10)
    kept = CampaignFactory(name="Every store too")
    batch = _a_shopper_walks_into(StoreFactory(code="RIVOLI"))

    _, queued = while_held(
        lambda: services.delete_campaigns(campaigns=[gone]),
        lambda: decisions.process_location_batch(batch_id=batch.pk, now=timezone.now()),
    )

    assert not Campaign.objects.filter(pk=gone.pk).exists()
    [delivery] = Delivery.objects.filter(id__in=queued)
    assert delivery.campaign == kept
    assert LocationBatch.objects.get().processed_at is not None


def test_campaigns_deleted_in_the_admin_while_a_worker_decides_for_them_wait_for_it(
    admin_client, monkeypatch
):
    every = CampaignFactory(name="Every store")
    budgeted = CampaignFactory(name="Every store, budgeted", daily_budget=100)
    assert every.pk < budgeted.pk
    batch = _a_shopper_walks_into(StoreFactory(code="RIVOLI"))
    # The worker paused once it has locked the budgeted campaign, before it holds the
    # other one to record its decision, as a slow worker is while the deletion comes.
    budgets_locked, go_on = threading.Event(), threading.Event()
    decided_before = decisions._decided_before

    def pause_after_locking_budgets(events):
        budgets_locked.set()
        go_on.wait(10)
        return decided_before(events)

    monkeypatch.setattr(decisions, "_decided_before", pause_after_locking_budgets)
    worker = in_thread(
        lambda: decisions.process_location_batch(batch_id=batch.pk, now=timezone.now())
    )
    assert budgets_locked.wait(10)
    chosen = {
        "action": "delete_selected",
        "_selected_action": [every.pk, budgeted.pk],
        "post": "yes",
    }
    deletion = in_thread(
        lambda: admin_client.post("/admin/promotions/campaign/", chosen, follow=True)
    )
    for _ in range(200):  # until the deletion waits for the worker
        if sessions_waiting_for_a_lock():
            break
        time.sleep(0.05)
    go_on.set()
    worker.join(20)
    deletion.join(20)

    assert worker.error is None, worker.error
    assert len(worker.result) == 1
    assert deletion.error is None, deletion.error
    assert deletion.result.status_code == 200
    shown = [str(message) for message in deletion.result.context["messages"]]
    assert any("1 decision" in message for message in shown), shown
    assert Campaign.objects.count() == 2
