"""Code pools and the till: a till looks a code up with case, spaces and dashes ignored, so
two codes that differ only so are one code to it. A pool never takes such a pair, and the
lookup never guesses between the pairs stored before that was enforced."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from promotions import decisions
from promotions.dry_run import dry_run_campaign
from promotions.models import Delivery, OfferCode, PresenceEvent, Redemption
from tests.factories import CampaignFactory, CustomerFactory, DeliveryFactory, StoreFactory

pytestmark = pytest.mark.django_db


def upload(api, campaign, codes):
    return api.post(f"/api/v1/campaigns/{campaign.id}/codes", {"codes": codes}, format="json")


def redeem(api, code):
    body = {"code": code, "store_code": "RIVOLI", "redeemed_at": datetime.now(UTC).isoformat()}
    return api.post("/api/v1/redemptions", body, format="json")


@pytest.fixture(autouse=True)
def rivoli():
    return StoreFactory(code="RIVOLI")


# --- Uploads ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "codes", [["SAVE10", "SAVE-10"], ["gift7", "GIFT7"], ["AB 12", "ab12"], ["x-y-z", "XY-Z"]]
)
def test_codes_a_till_cannot_tell_apart_are_refused_in_one_upload(api, codes):
    response = upload(api, CampaignFactory(), [*codes, "OTHER-1"])

    assert response.status_code == 400
    [message] = response.json()["codes"]
    assert f"{codes[0]} and {codes[1]}" in message
    assert not OfferCode.objects.exists()


@pytest.mark.parametrize("same_campaign", [True, False], ids=["same campaign", "another"])
def test_a_code_a_till_cannot_tell_from_a_pooled_one_is_refused(api, same_campaign):
    pooled = CampaignFactory()
    assert upload(api, pooled, ["SAVE10"]).status_code == 201
    campaign = pooled if same_campaign else CampaignFactory()

    response = upload(api, campaign, ["NEW-1", "save 10"])

    assert response.status_code == 400
    assert "save 10 (like SAVE10)" in response.json()["codes"][0]
    assert list(OfferCode.objects.values_list("code", flat=True)) == ["SAVE10"]


def test_a_code_a_till_cannot_tell_from_one_already_sent_is_refused(api):
    DeliveryFactory(code="K7Q2-M9XB")  # a generated code, sent

    response = upload(api, CampaignFactory(), ["k7q2m9xb"])

    assert response.status_code == 400
    assert "k7q2m9xb (like K7Q2-M9XB)" in response.json()["codes"][0]
    assert not OfferCode.objects.exists()


def test_a_code_another_campaign_pooled_is_refused_by_name(api):
    assert upload(api, CampaignFactory(), ["POS-1"]).status_code == 201

    response = upload(api, CampaignFactory(), ["POS-1"])

    assert response.status_code == 400
    assert response.json() == {"codes": ["Codes already used elsewhere: POS-1."]}


def test_uploading_a_pool_again_adds_only_its_new_codes(api):
    campaign = CampaignFactory()
    assert upload(api, campaign, ["POS-1", "POS-2"]).status_code == 201
    # POS-1 was drawn and sent since.
    OfferCode.objects.filter(code="POS-1").update(
        delivery=DeliveryFactory(campaign=campaign, code="POS-1")
    )

    response = upload(api, campaign, ["POS-1", "POS-2", "POS-3"])

    assert response.status_code == 201
    assert response.json() == {"added": 1, "pool_size": 3, "unused": 2}


def test_a_code_of_dashes_alone_is_refused(api):
    response = upload(api, CampaignFactory(), ["--"])

    assert response.status_code == 400
    assert not OfferCode.objects.exists()


# --- The till ---------------------------------------------------------------------------


def test_a_pool_code_is_found_however_the_cashier_types_it(api):
    sent = DeliveryFactory(code="GIFT-CARD-7")

    response = redeem(api, "giftcard 7")

    assert response.status_code == 201
    assert response.json()["delivery"] == sent.id


@pytest.mark.parametrize("codes", [["SAVE10", "SAVE-10"], ["gift7", "GIFT7"]])
def test_codes_pooled_before_the_rule_are_redeemed_by_their_exact_spelling(api, codes):
    # Two customers' SMS carry codes the till cannot tell apart, from a pool uploaded before
    # such pairs were refused.
    first, second = (DeliveryFactory(code=code) for code in codes)

    assert redeem(api, codes[1]).json()["delivery"] == second.id
    assert redeem(api, codes[0]).json()["delivery"] == first.id


def test_a_code_typed_like_two_sent_codes_is_not_credited_to_either(api):
    DeliveryFactory(code="SAVE10")
    DeliveryFactory(code="SAVE-10")

    response = redeem(api, "save 10")

    assert response.status_code == 409
    assert "exactly" in response.json()["detail"]
    assert not Redemption.objects.exists()


# --- The admin --------------------------------------------------------------------------


def test_the_admin_refuses_a_code_a_till_cannot_tell_from_a_pooled_one(admin_client):
    campaign = CampaignFactory()
    OfferCode.objects.create(campaign=campaign, code="SAVE10")

    response = admin_client.post(
        "/admin/promotions/offercode/add/", {"campaign": campaign.id, "code": "SAVE-10"}
    )

    assert response.status_code == 200  # the form again, with its error
    assert "SAVE-10 (like SAVE10)" in response.content.decode()
    assert OfferCode.objects.count() == 1


def test_the_admin_adds_a_code_with_its_key(admin_client):
    campaign = CampaignFactory()

    response = admin_client.post(
        "/admin/promotions/offercode/add/", {"campaign": campaign.id, "code": "pos-9"}
    )

    assert response.status_code == 302
    assert OfferCode.objects.get().code_key == "POS9"


def test_the_admin_cannot_undo_the_link_between_a_drawn_code_and_its_delivery(admin_client):
    delivery = DeliveryFactory(code="SAVE10")
    pooled = OfferCode.objects.create(campaign=delivery.campaign, code="SAVE10", delivery=delivery)

    page = admin_client.get(f"/admin/promotions/offercode/{pooled.pk}/change/")
    admin_client.post(f"/admin/promotions/offercode/{pooled.pk}/change/", {"delivery": ""})

    assert 'name="delivery"' not in page.content.decode()
    pooled.refresh_from_db()
    assert pooled.delivery == delivery


# --- Drawing ---------------------------------------------------------------------------


def entry(store, *, at):
    """A new customer's entry into the store, not decided yet."""
    return PresenceEvent.objects.create(
        customer=CustomerFactory(),
        store=store,
        kind="entered",
        place_key=f"store:{store.id}",
        occurred_at=at,
        created_at=at,
    )


def walk_in(store, *, at):
    """A customer enters the store, and the live engine decides."""
    event = entry(store, at=at)
    decisions.decide_presence_events(event_ids=[event.id], now=at)
    return Delivery.objects.get(presence_event=event)


@pytest.fixture
def pooled(rivoli):
    campaign = CampaignFactory(offer_template="{code}")
    campaign.stores.add(rivoli)
    for code in ("POOL-1", "POOL-2"):
        OfferCode.objects.create(campaign=campaign, code=code)
    return campaign


def test_a_drawn_code_whose_link_was_cleared_is_not_sent_again(rivoli, pooled):
    # Cleared in the admin, say: the SMS that carried it is still its customer's.
    now = timezone.now()
    first = walk_in(rivoli, at=now - timedelta(minutes=2))
    OfferCode.objects.filter(code="POOL-1").update(delivery=None)

    second = walk_in(rivoli, at=now - timedelta(minutes=1))
    third = walk_in(rivoli, at=now)

    assert [d.code for d in (first, second, third)] == ["POOL-1", "POOL-2", None]
    assert (third.status, third.reason) == ("suppressed", "budget")


def test_a_pool_found_empty_at_the_draw_leaves_the_visit_to_the_next_campaign(rivoli, pooled):
    # Counted with a code left (POOL-1, its link cleared in the admin, which the count cannot
    # see), found empty at the draw: the visit goes on to the campaign ranked next, as it
    # would have had the count seen the pool empty.
    now = timezone.now()
    pooled.priority = 10
    pooled.save()
    fallback = CampaignFactory(priority=1, offer_template="{code}")
    fallback.stores.add(rivoli)
    walk_in(rivoli, at=now - timedelta(minutes=2))
    walk_in(rivoli, at=now - timedelta(minutes=1))
    OfferCode.objects.filter(code="POOL-1").update(delivery=None)

    event = entry(rivoli, at=now)
    queued = decisions.decide_presence_events(event_ids=[event.id], now=now)

    decided = Delivery.objects.filter(presence_event=event).order_by("id")
    assert [(d.campaign, d.status, d.reason) for d in decided] == [
        (pooled, "suppressed", "budget"),
        (fallback, "queued", ""),
    ]
    assert queued == [decided[1].id]
    assert decided[1].code and not decided[1].code.startswith("POOL")


def test_a_pool_code_that_collides_is_passed_over_for_the_next(rivoli, pooled):
    # A delivery carries POOL-1 without its key (written by an update that bypassed the
    # model): only the unique code tells, when the delivery is inserted.
    DeliveryFactory(code="POOL-1")
    Delivery.objects.filter(code="POOL-1").update(code_key=None)

    delivery = walk_in(rivoli, at=timezone.now())

    assert (delivery.status, delivery.code) == ("queued", "POOL-2")
    assert OfferCode.objects.get(code="POOL-2").delivery == delivery


def test_a_pool_of_keyless_codes_alone_leaves_the_event_to_the_next_campaign(rivoli, pooled):
    # Codes the till cannot tell apart, kept keyless by migration 0015, are never handed
    # out: the pool counts as spent, and the event goes to the campaign ranked next.
    OfferCode.objects.filter(campaign=pooled).update(code_key=None)
    pooled.priority = 10
    pooled.save()
    fallback = CampaignFactory(priority=1)
    fallback.stores.add(rivoli)

    event = entry(rivoli, at=timezone.now())
    decisions.decide_presence_events(event_ids=[event.id], now=timezone.now())

    decided = Delivery.objects.filter(presence_event=event).order_by("id")
    assert [(d.campaign, d.status, d.reason) for d in decided] == [
        (pooled, "suppressed", "budget"),
        (fallback, "queued", ""),
    ]


# --- Pools stored before the rule ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_settles_pooled_codes_a_till_cannot_tell_apart(api):
    executor = MigrationExecutor(connection)
    executor.migrate([("promotions", "0014_device_track_jump")])
    old = executor.loader.project_state([("promotions", "0014_device_track_jump")]).apps
    try:
        campaign = old.get_model("promotions", "Campaign").objects.create(
            name="Old", status="active", offer_template="{code}"
        )
        deliveries = old.get_model("promotions", "Delivery").objects
        pool = old.get_model("promotions", "OfferCode").objects

        def sent(code):
            return deliveries.create(campaign=campaign, status="sent", code=code)

        pool.create(campaign=campaign, code="gift7")  # unused
        pool.create(campaign=campaign, code="GIFT7", delivery=sent("GIFT7"))
        pool.create(campaign=campaign, code="GIFT-7", delivery=sent("GIFT-7"))
        pool.create(campaign=campaign, code="SAVE10")  # unused, kept
        pool.create(campaign=campaign, code="save-10")  # unused, like the first
        pool.create(campaign=campaign, code="k7q2m9xb")  # unused, like a generated code sent
        sent("K7Q2-M9XB")

        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())

        assert dict(OfferCode.objects.values_list("code", "code_key")) == {
            "GIFT7": "GIFT7",  # the first drawn keeps the key
            "GIFT-7": None,  # drawn too: kept, keyless
            "SAVE10": "SAVE10",
        }
        assert redeem(api, "k7q2 m9xb").json()["code"] == "K7Q2-M9XB"
        assert redeem(api, "gift 7").status_code == 409
        assert redeem(api, "GIFT-7").json()["code"] == "GIFT-7"
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_the_migration_takes_codes_a_till_cannot_read_out_of_the_pool(api, capsys):
    # The old upload took any code but an empty one: "--" is nothing once the till drops its
    # dashes, so a customer sent it could never redeem it.
    executor = MigrationExecutor(connection)
    executor.migrate([("promotions", "0014_device_track_jump")])
    old = executor.loader.project_state([("promotions", "0014_device_track_jump")]).apps
    try:
        campaign = old.get_model("promotions", "Campaign").objects.create(
            name="Old", status="active", offer_template="{code}"
        )
        pool = old.get_model("promotions", "OfferCode").objects
        sent = old.get_model("promotions", "Delivery").objects.create(
            campaign=campaign, status="sent", code="- -"
        )
        pool.create(campaign=campaign, code="--")  # unused
        pool.create(campaign=campaign, code="- -", delivery=sent)
        pool.create(campaign=campaign, code="POS-1")

        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())

        assert dict(OfferCode.objects.values_list("code", "code_key")) == {
            "- -": None,  # drawn: its SMS went out, kept without a key
            "POS-1": "POS1",
        }
        assert "Took 1 unused pool codes the till cannot read" in capsys.readouterr().out
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_the_engine_the_dry_run_and_the_upload_agree_a_keyless_pool_is_spent(api, rivoli, pooled):
    # Kept keyless by migration 0015: never drawn, so never counted as left anywhere.
    OfferCode.objects.filter(campaign=pooled).update(code_key=None)
    at = timezone.now() - timedelta(minutes=5)

    live = walk_in(rivoli, at=at)
    dry = dry_run_campaign(campaign=pooled, since=at - timedelta(hours=1), until=timezone.now())
    uploaded = upload(api, pooled, ["NEW-1"]).json()

    assert (dry["would_send"], dry["by_reason"]["budget"]) == (0, 1)
    assert (live.status, live.reason) == ("suppressed", "budget")
    assert uploaded == {"added": 1, "pool_size": 3, "unused": 1}


# --- Taking codes out of a pool in the admin ----------------------------------------------


def test_a_marketer_takes_a_mistyped_code_out_of_the_pool(marketer, pooled):
    mistyped = OfferCode.objects.get(code="POOL-2")

    response = marketer.post(f"/admin/promotions/offercode/{mistyped.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert list(OfferCode.objects.values_list("code", flat=True)) == ["POOL-1"]


def test_a_code_an_sms_carried_stays_in_its_pool(marketer, rivoli, pooled):
    sent = walk_in(rivoli, at=timezone.now())
    assert sent.code == "POOL-1"
    codes = list(OfferCode.objects.order_by("code").values_list("pk", flat=True))
    selection = {"action": "delete_selected", "_selected_action": codes}

    page = marketer.post("/admin/promotions/offercode/", selection)
    marketer.post("/admin/promotions/offercode/", {**selection, "post": "yes"})
    single = marketer.post(f"/admin/promotions/offercode/{codes[0]}/delete/", {"post": "yes"})

    assert "Code POOL-1: an SMS carried it" in page.content.decode()
    assert single.status_code in (200, 403)
    assert OfferCode.objects.count() == 2
