"""The config API's conditional writes: a resource read or written is answered with an
`ETag`, and a PUT, PATCH or DELETE sent with it in `If-Match` is refused (412, nothing
written) once the resource has changed since, as a campaign paused meanwhile. Two writes
sent with the same ETag at once: one is done, the other refused (PostgreSQL)."""

import pytest
from django.db import connection

from promotions.models import Beacon, Campaign, CampaignStatus, Gateway, Store, Zone
from tests.customers.test_devices_and_identify_api import wait_for
from tests.factories import (
    BEACON_UUID,
    BeaconFactory,
    CampaignFactory,
    GatewayFactory,
    StoreFactory,
    ZoneFactory,
)
from tests.processes import in_thread, sessions_waiting_for_a_lock, started

pytestmark = pytest.mark.django_db

CAMPAIGN = {
    "name": "X200 walk-by",
    "status": "active",
    "stores": ["RIVOLI"],
    "trigger": {"type": "enter"},
    "offer": {"template": "Bonjour {first_name}, -20% at {store_name}: {code}"},
}


@pytest.fixture
def rivoli():
    return StoreFactory(code="RIVOLI", name="Passage Rivoli")


@pytest.fixture
def campaign(api, rivoli):
    created = api.post("/api/v1/campaigns", CAMPAIGN, format="json")
    assert created.status_code == 201, created.json()
    return Campaign.objects.get(pk=created.json()["id"])


def read(api, path):
    """A copy of a resource and its ETag, as a client keeps them."""
    response = api.get(path)
    assert response.status_code == 200
    return response.json(), response["ETag"]


def paused_in_the_admin(admin_client, campaign):
    chosen = {"action": "pause", "_selected_action": [campaign.pk]}
    assert admin_client.post("/admin/promotions/campaign/", chosen).status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED


# --- A campaign paused while a client holds a copy -------------------------------------------


def test_a_put_from_a_copy_read_before_a_pause_is_refused_and_changes_nothing(
    api, admin_client, campaign
):
    copy, etag = read(api, f"/api/v1/campaigns/{campaign.pk}")
    paused_in_the_admin(admin_client, campaign)

    response = api.put(
        f"/api/v1/campaigns/{campaign.pk}",
        {**copy, "priority": 5},
        format="json",
        HTTP_IF_MATCH=etag,
    )

    assert response.status_code == 412
    assert response.json() == {
        "detail": "This campaign has changed since the copy If-Match names was read: nothing "
        "was changed. Read it again, and send the ETag it comes with."
    }
    assert not response.has_header("ETag")
    campaign.refresh_from_db()
    assert (campaign.status, campaign.priority) == (CampaignStatus.PAUSED, 0)


def test_a_patch_of_status_from_a_copy_read_before_a_pause_is_refused(api, admin_client, campaign):
    _, etag = read(api, f"/api/v1/campaigns/{campaign.pk}")
    paused_in_the_admin(admin_client, campaign)

    response = api.patch(
        f"/api/v1/campaigns/{campaign.pk}", {"status": "active"}, HTTP_IF_MATCH=etag
    )

    assert response.status_code == 412
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED


def test_a_patch_from_the_current_copy_is_done_and_answers_the_new_etag(api, campaign):
    _, etag = read(api, f"/api/v1/campaigns/{campaign.pk}")

    response = api.patch(
        f"/api/v1/campaigns/{campaign.pk}", {"status": "paused"}, HTTP_IF_MATCH=etag
    )

    assert response.status_code == 200
    assert response["ETag"] != etag
    assert response["ETag"] == read(api, f"/api/v1/campaigns/{campaign.pk}")[1]
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.PAUSED


def test_the_etag_a_write_answers_is_the_one_the_next_write_may_send(api, campaign):
    path = f"/api/v1/campaigns/{campaign.pk}"
    copy, etag = read(api, path)

    first = api.put(path, {**copy, "priority": 5}, format="json", HTTP_IF_MATCH=etag)
    second = api.patch(path, {"priority": 6}, HTTP_IF_MATCH=first["ETag"])
    again = api.patch(path, {"priority": 7}, HTTP_IF_MATCH=first["ETag"])

    assert (first.status_code, second.status_code, again.status_code) == (200, 200, 412)
    campaign.refresh_from_db()
    assert campaign.priority == 6


def test_a_star_matches_any_current_version(api, admin_client, campaign):
    paused_in_the_admin(admin_client, campaign)

    response = api.patch(f"/api/v1/campaigns/{campaign.pk}", {"priority": 4}, HTTP_IF_MATCH="*")

    assert response.status_code == 200
    campaign.refresh_from_db()
    assert campaign.priority == 4


def test_a_star_still_finds_no_resource_that_is_not_there(api):
    response = api.patch("/api/v1/campaigns/999999", {"priority": 4}, HTTP_IF_MATCH="*")

    assert response.status_code == 404


def test_a_list_of_etags_matches_when_one_of_them_is_current(api, admin_client, campaign):
    _, before = read(api, f"/api/v1/campaigns/{campaign.pk}")
    paused_in_the_admin(admin_client, campaign)
    _, now = read(api, f"/api/v1/campaigns/{campaign.pk}")

    response = api.patch(
        f"/api/v1/campaigns/{campaign.pk}", {"priority": 4}, HTTP_IF_MATCH=f"{before}, {now}"
    )

    assert response.status_code == 200


@pytest.mark.parametrize(
    "if_match",
    ["W/{etag}", "{bare}", ""],
    ids=["weak", "unquoted", "empty"],
)
def test_a_weak_or_malformed_etag_never_matches(api, campaign, if_match):
    _, etag = read(api, f"/api/v1/campaigns/{campaign.pk}")

    response = api.patch(
        f"/api/v1/campaigns/{campaign.pk}",
        {"status": "paused"},
        HTTP_IF_MATCH=if_match.format(etag=etag, bare=etag.strip('"')),
    )

    assert response.status_code == 412
    assert "W/" in response.json()["detail"]
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.ACTIVE


def test_a_delete_from_a_stale_copy_is_refused(api, admin_client, campaign):
    _, etag = read(api, f"/api/v1/campaigns/{campaign.pk}")
    paused_in_the_admin(admin_client, campaign)

    refused = api.delete(f"/api/v1/campaigns/{campaign.pk}", HTTP_IF_MATCH=etag)
    _, current = read(api, f"/api/v1/campaigns/{campaign.pk}")
    deleted = api.delete(f"/api/v1/campaigns/{campaign.pk}", HTTP_IF_MATCH=current)

    assert (refused.status_code, deleted.status_code) == (412, 204)
    assert not Campaign.objects.exists()


def test_a_write_without_if_match_is_done_as_before(api, admin_client, campaign):
    paused_in_the_admin(admin_client, campaign)

    response = api.patch(f"/api/v1/campaigns/{campaign.pk}", {"status": "active"})

    assert response.status_code == 200
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.ACTIVE


def test_a_list_carries_no_etag(api, campaign):
    assert not api.get("/api/v1/campaigns").has_header("ETag")


# --- Every config resource --------------------------------------------------------------------


def _store(rivoli):
    return "/api/v1/stores/RIVOLI"


def _zone(rivoli):
    return f"/api/v1/zones/{ZoneFactory(store=rivoli, code='entrance').pk}"


def _beacon(rivoli):
    entrance = ZoneFactory(store=rivoli, code="entrance")
    return f"/api/v1/beacons/{BeaconFactory(store=rivoli, zone=entrance).pk}"


def _gateway(rivoli):
    ZoneFactory(store=rivoli, code="entrance")
    GatewayFactory(gateway_id="gw-1", store=rivoli, zone=None)
    return "/api/v1/gateways/gw-1"


def _campaign(rivoli):
    campaign = CampaignFactory(name="walk-by")
    campaign.stores.add(rivoli)
    return f"/api/v1/campaigns/{campaign.pk}"


# A resource, a change someone else makes meanwhile, and the change a stale copy would make.
RESOURCES = {
    "store": (_store, {"name": "Rivoli (closed Mondays)"}, {"radius_m": 150}),
    "zone": (_zone, {"rssi_threshold": -70}, {"name": "Front door"}),
    "beacon": (_beacon, {"measured_power": -62}, {"zone": None}),
    "gateway": (_gateway, {"zone": "entrance"}, {"zone": None}),
    "campaign": (_campaign, {"status": "paused"}, {"priority": 3}),
}


@pytest.mark.parametrize("resource", RESOURCES)
def test_every_config_resource_refuses_a_write_from_a_stale_copy(api, rivoli, resource):
    located, someone_elses, stale = RESOURCES[resource]
    path = located(rivoli)
    copy, etag = read(api, path)
    assert api.patch(path, someone_elses, format="json").status_code == 200
    now, _ = read(api, path)

    refused = api.patch(path, stale, format="json", HTTP_IF_MATCH=etag)
    deletion = api.delete(path, HTTP_IF_MATCH=etag)

    assert (refused.status_code, deletion.status_code) == (412, 412)
    assert read(api, path)[0] == now != copy


@pytest.mark.parametrize("resource", RESOURCES)
def test_every_write_answers_the_etag_a_read_then_gives(api, rivoli, resource):
    located, change, _ = RESOURCES[resource]
    path = located(rivoli)
    copy, etag = read(api, path)

    patched = api.patch(path, change, format="json", HTTP_IF_MATCH=etag)
    assert patched.status_code == 200
    assert patched["ETag"] == read(api, path)[1] != etag
    put = api.put(path, copy, format="json", HTTP_IF_MATCH=patched["ETag"])
    assert put.status_code == 200
    assert put["ETag"] == read(api, path)[1]


def test_a_created_resource_answers_the_etag_a_read_then_gives(api, rivoli):
    ZoneFactory(store=rivoli, code="entrance")
    bodies = {
        "stores": {
            "code": "OPERA",
            "name": "Passage Opéra",
            "latitude": 48.8712,
            "longitude": 2.3319,
            "radius_m": None,
            # Keys in the order jsonb does not keep them in.
            "polygon": {
                "coordinates": [
                    [
                        [2.331, 48.871],
                        [2.333, 48.871],
                        [2.333, 48.872],
                        [2.331, 48.872],
                        [2.331, 48.871],
                    ]
                ],
                "type": "Polygon",
            },
            "timezone": "Europe/Paris",
        },
        "zones": {"store": "RIVOLI", "code": "tills", "name": "Tills"},
        "beacons": {
            "store": "RIVOLI",
            "zone": "entrance",
            "ibeacon": {"uuid": BEACON_UUID, "major": 3, "minor": 4},
        },
        "gateways": {"gateway_id": "gw-new", "store": "RIVOLI", "zone": "entrance"},
        "campaigns": {
            **CAMPAIGN,
            "starts_at": "2026-12-24T08:00:00+01:00",
            "limits": {"quiet_hours": {"start": "21:00", "end": "08:00"}},
        },
    }
    keys = {"stores": "code", "gateways": "gateway_id"}

    for collection, body in bodies.items():
        created = api.post(f"/api/v1/{collection}", body, format="json")
        assert created.status_code == 201, created.json()
        key = created.json()[keys.get(collection, "id")]
        assert created["ETag"] == read(api, f"/api/v1/{collection}/{key}")[1], collection
    assert (Store.objects.count(), Zone.objects.count(), Beacon.objects.count()) == (2, 2, 1)
    assert Gateway.objects.count() == 1


# --- Two writes sent with the same ETag at once ----------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="two concurrent writers need PostgreSQL"
)
def test_of_two_patches_sent_with_the_same_etag_at_once_one_is_done(client_with_scopes, rivoli):
    campaign = CampaignFactory(name="walk-by")
    campaign.stores.add(rivoli)
    path = f"/api/v1/campaigns/{campaign.pk}"
    head_office, store_manager = client_with_scopes(), client_with_scopes()
    _, etag = read(head_office, path)
    answers = {}

    # The head office's pause has checked its ETag and written, and not committed yet...
    pause = started(
        lambda: answers.setdefault(
            "pause", head_office.patch(path, {"status": "paused"}, HTTP_IF_MATCH=etag)
        )
    )
    # ...when the store manager's change, from the same copy, comes.
    change = in_thread(
        lambda: answers.setdefault(
            "change", store_manager.patch(path, {"priority": 9}, HTTP_IF_MATCH=etag)
        )
    )
    assert wait_for(sessions_waiting_for_a_lock), "the second PATCH must wait for the first"
    pause.release.set()
    pause.join(10)
    change.join(10)

    assert (answers["pause"].status_code, answers["change"].status_code) == (200, 412)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.priority) == (CampaignStatus.PAUSED, 0)
