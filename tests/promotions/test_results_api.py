"""What comes back and what marketers read: redemptions, deliveries, statistics, dry-runs,
code pools, and the periodic work of Celery beat."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from customers.models import SmsConsent
from promotions import services, tasks, tracking
from promotions.models import (
    Delivery,
    LocationBatch,
    OfferCode,
    Ping,
    PresenceEvent,
    Redemption,
)
from promotions.sms import locmem
from tests.clock import ago
from tests.factories import (
    CampaignFactory,
    CustomerFactory,
    DeliveryFactory,
    DeviceFactory,
    StoreFactory,
    an_entry_the_first_campaign_could_not_text,
)
from tests.test_schema import openapi

pytestmark = pytest.mark.django_db


@pytest.fixture
def rivoli():
    return StoreFactory(code="RIVOLI", name="Passage Rivoli", latitude=48.8606, longitude=2.3417)


def now_iso():
    return datetime.now(UTC).isoformat()


def redeem(api, code, store="RIVOLI", **extra):
    body = {"code": code, "store_code": store, "redeemed_at": now_iso(), **extra}
    return api.post("/api/v1/redemptions", body)


# --- Redemptions ------------------------------------------------------------------------


def test_a_code_is_redeemed_once(api, rivoli):
    delivery = DeliveryFactory(code="K7Q2-M9XB", store=rivoli)

    first = redeem(api, "K7Q2-M9XB", amount="59.90")
    assert first.status_code == 201
    assert first.json() == {
        "id": first.json()["id"],
        "code": "K7Q2-M9XB",
        "store_code": "RIVOLI",
        "amount": "59.90",
        "redeemed_at": first.json()["redeemed_at"],
        "delivery": delivery.id,
        "campaign": delivery.campaign_id,
    }
    assert redeem(api, "K7Q2-M9XB").status_code == 409


def test_a_409_says_where_and_when_a_code_was_redeemed_and_knows_the_tills_own_retry(api, rivoli):
    # The till's answer was lost and it sends the purchase again: the cashier is told it was
    # recorded, not that the customer's code was used already. Another purchase with the code
    # is told where and when it was.
    StoreFactory(code="OPERA")
    given = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    DeliveryFactory(code="K7Q2-M9XB", store=rivoli, created_at=given)
    purchase = {"redeemed_at": "2026-11-30T16:05:00+01:00", "amount": "59.90"}
    assert redeem(api, "K7Q2-M9XB", **purchase).status_code == 201

    again = redeem(api, "k7q2m9xb", **purchase)
    elsewhere = redeem(api, "K7Q2-M9XB", store="OPERA", amount="12.00")

    assert again.status_code == elsewhere.status_code == 409
    assert again.json()["detail"] == "This purchase was already recorded."
    assert elsewhere.json()["detail"] == (
        "This offer was already redeemed, at RIVOLI on 2026-11-30T15:05:00Z."
    )


@pytest.mark.parametrize("typed", ["k7q2-m9xb", "K7Q2M9XB", " k7q2 m9xb "])
def test_a_code_typed_loosely_at_the_till_is_found(api, rivoli, typed):
    DeliveryFactory(code="K7Q2-M9XB")
    assert redeem(api, typed).status_code == 201


@pytest.mark.parametrize(
    "typed",
    [
        "K7Q2\u2013M9XB",  # an en dash: a keyboard's autocorrection
        "K7Q2\u2014M9XB",  # an em dash
        "K7Q2\u2011M9XB",  # a non-breaking hyphen
        "K7Q2\u2212M9XB",  # a minus sign
        "\uff2b\uff17\uff31\uff12\uff0d\uff2d\uff19\uff38\uff22",  # full width: an IME's
        "\uff4b\uff17\uff51\uff12 \uff4d\uff19\uff58\uff42",
        "K7Q2\u00adM9XB",  # a soft hyphen
        "\u200eK7Q2-M9XB\u200f",  # direction marks, copied with an SMS
        "K7Q2\u200bM9XB",  # a zero-width space
    ],
)
def test_a_code_typed_with_other_dashes_or_full_width_at_the_till_is_found(api, rivoli, typed):
    """The README's "case, spaces and dashes" ignored: every dash, and the forms a
    keyboard, an input method or a copied SMS puts in for the characters codes are
    printed with."""
    delivery = DeliveryFactory(code="K7Q2-M9XB")

    response = redeem(api, typed)

    assert response.status_code == 201, response.json()
    assert response.json()["delivery"] == delivery.id


def test_a_pool_code_printed_with_an_en_dash_is_found_as_typed(api, rivoli):
    DeliveryFactory(code="SAVE\u201310")
    DeliveryFactory(code="SAVE10")

    assert redeem(api, "SAVE\u201310").json()["code"] == "SAVE\u201310"
    assert redeem(api, "save10").json()["code"] == "SAVE10"


def test_an_unknown_code_is_404(api, rivoli):
    assert redeem(api, "NOPE-NOPE").status_code == 404


@pytest.mark.parametrize("status", ["holdout", "suppressed", "queued", "failed"])
def test_a_code_that_never_reached_the_customer_is_unknown_to_the_till(api, rivoli, status):
    DeliveryFactory(code="K7Q2-M9XB", status=status)
    assert redeem(api, "K7Q2-M9XB").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"code": "K7Q2-M9XB", "store_code": "NOWHERE", "redeemed_at": "2026-11-24T10:00:00Z"},
        {"code": "K7Q2-M9XB", "store_code": "RIVOLI", "redeemed_at": "2026-11-24T10:00:00"},
        {"code": "K7Q2-M9XB", "store_code": "RIVOLI"},
        {"store_code": "RIVOLI", "redeemed_at": "2026-11-24T10:00:00Z"},
        {
            "code": "K7Q2-M9XB",
            "customer_id": "C-1",
            "store_code": "RIVOLI",
            "redeemed_at": "2026-11-24T10:00:00Z",
        },
        {"code": "K7Q2-M9XB", "store_code": "RIVOLI", "redeemed_at": now_iso(), "amount": "-1"},
        {"code": ["K7Q2-M9XB"], "store_code": "RIVOLI", "redeemed_at": now_iso()},
    ],
)
def test_bad_redemptions_are_400_and_store_nothing(api, rivoli, body):
    DeliveryFactory(code="K7Q2-M9XB")
    assert api.post("/api/v1/redemptions", body).status_code == 400
    assert not Redemption.objects.exists()


@pytest.mark.parametrize(
    "amount, says",
    [
        # A till's floating-point sum, as JSON writes it (19.99 + 39.91).
        (59.900000000000006, "Ensure that there are no more than 2 decimal places."),
        ("0.30000000000000004", "Ensure that there are no more than 2 decimal places."),
        (
            "123456789012.5",
            "Ensure that there are no more than 10 digits before the decimal point.",
        ),
    ],
)
def test_an_amount_refused_says_which_of_its_rules_it_breaks(api, rivoli, amount, says):
    DeliveryFactory(code="K7Q2-M9XB")
    response = redeem(api, "K7Q2-M9XB", amount=amount)
    assert response.status_code == 400
    assert response.json() == {"amount": [says]}


@pytest.mark.parametrize("amount", ["59.900", "59.9000", "59.90000000", "59.9E0", "5990E-2"])
def test_an_amount_written_with_more_zeros_than_cents_is_taken_to_the_cent(api, rivoli, amount):
    """A till's money type may write its amounts with four places (SQL Server's `money`:
    "59.9000"): the same cents, not a sum of floating-point noise."""
    DeliveryFactory(code="K7Q2-M9XB")

    response = redeem(api, "K7Q2-M9XB", amount=amount)

    assert response.status_code == 201, response.json()
    assert response.json()["amount"] == "59.90"
    assert str(Redemption.objects.get().amount) == "59.90"


def test_redemptions_need_their_scope(client_with_scopes, rivoli):
    DeliveryFactory(code="K7Q2-M9XB")
    assert redeem(client_with_scopes("reports"), "K7Q2-M9XB").status_code == 403
    assert redeem(client_with_scopes("redemptions"), "K7Q2-M9XB").status_code == 201


def test_a_loyalty_card_attributes_a_purchase_to_the_holdout_offer(api, rivoli):
    customer = CustomerFactory(external_id="C-7")
    holdout = DeliveryFactory(customer=customer, status="holdout", code="HOLD-0001")

    response = api.post(
        "/api/v1/redemptions",
        {"customer_id": "C-7", "store_code": "RIVOLI", "redeemed_at": now_iso()},
    )

    assert response.status_code == 201
    assert response.json()["delivery"] == holdout.id


def test_a_loyalty_card_without_a_current_offer_is_404(api, rivoli):
    customer = CustomerFactory(external_id="C-7")
    DeliveryFactory(customer=customer, expires_at=timezone.now() - timedelta(days=1))
    response = api.post(
        "/api/v1/redemptions",
        {"customer_id": "C-7", "store_code": "RIVOLI", "redeemed_at": now_iso()},
    )
    assert response.status_code == 404


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+00:00", "0001-01-02T01:00:00Z"])
def test_a_loyalty_card_purchase_dated_by_an_unset_till_clock_is_404_not_a_500(api, rivoli, when):
    """A till whose clock was never set writes the first instant of year 1 (.NET's
    DateTimeOffset.MinValue): a day before it falls outside the calendar."""
    DeliveryFactory(customer=CustomerFactory(external_id="C-7"), status="holdout")

    response = api.post(
        "/api/v1/redemptions", {"customer_id": "C-7", "store_code": "RIVOLI", "redeemed_at": when}
    )

    assert response.status_code == 404
    assert response.json() == {"detail": "No current offer."}
    assert not Redemption.objects.exists()


def test_a_loyalty_card_attributes_a_purchase_to_the_offer_it_followed_not_a_later_one(api, rivoli):
    customer = CustomerFactory(external_id="C-7")
    now = timezone.now()
    offers = [
        DeliveryFactory(
            customer=customer,
            created_at=now - timedelta(days=days_ago),
            expires_at=now + timedelta(days=7),
        )
        for days_ago in (3, 1)
    ]

    response = api.post(
        "/api/v1/redemptions",
        {"customer_id": "C-7", "store_code": "RIVOLI", "redeemed_at": ago(days=2)},
    )

    # Bought on day 2: the day-1 offer led to it; the day-3 one did not exist yet.
    assert response.status_code == 201, response.json()
    assert response.json()["delivery"] == offers[0].id


def test_an_expired_code_is_409_saying_when_it_expired(api, rivoli):
    expires_at = (datetime.now(UTC) - timedelta(days=30)).replace(microsecond=0)
    DeliveryFactory(
        code="K7Q2-M9XB", created_at=expires_at - timedelta(days=7), expires_at=expires_at
    )

    response = redeem(api, "K7Q2-M9XB")

    assert response.status_code == 409
    assert response.json() == {"detail": f"This code expired on {expires_at:%Y-%m-%dT%H:%M:%SZ}."}
    assert not Redemption.objects.exists()


def test_a_code_is_redeemable_until_the_moment_it_expires(api, rivoli):
    expires_at = timezone.now() - timedelta(hours=1)
    DeliveryFactory(
        code="K7Q2-M9XB", created_at=expires_at - timedelta(days=7), expires_at=expires_at
    )

    assert redeem(api, "K7Q2-M9XB", redeemed_at=expires_at.isoformat()).status_code == 201


def test_a_code_redeemed_before_it_was_issued_is_400_on_redeemed_at(api, rivoli):
    DeliveryFactory(code="K7Q2-M9XB")

    response = redeem(api, "K7Q2-M9XB", redeemed_at=ago(days=300))

    assert response.status_code == 400
    [message] = response.json()["redeemed_at"]
    assert "before this code was issued" in message
    assert not Redemption.objects.exists()


def test_a_redemption_dated_in_the_future_is_400_on_redeemed_at(api, rivoli):
    DeliveryFactory(code="K7Q2-M9XB")
    tomorrow = (timezone.now() + timedelta(days=1)).isoformat()

    response = redeem(api, "K7Q2-M9XB", redeemed_at=tomorrow)

    assert response.status_code == 400
    assert "ahead of the server's clock" in response.json()["redeemed_at"][0]
    assert not Redemption.objects.exists()


@pytest.mark.parametrize("path", ["code", "customer_id"])
def test_a_till_clock_a_few_minutes_behind_the_servers_still_redeems(api, rivoli, path):
    customer = CustomerFactory(external_id="C-7")
    DeliveryFactory(customer=customer, code="K7Q2-M9XB")
    wanted = {"code": "K7Q2-M9XB"} if path == "code" else {"customer_id": "C-7"}

    response = api.post(
        "/api/v1/redemptions",
        {**wanted, "store_code": "RIVOLI", "redeemed_at": ago(minutes=4)},
    )

    assert response.status_code == 201


@pytest.mark.django_db(transaction=True)
def test_two_tills_redeeming_one_code_at_once_redeem_it_once(client_with_scopes, rivoli):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers; the race needs PostgreSQL (the second run).")
    DeliveryFactory(code="K7Q2-M9XB")
    api = client_with_scopes("redemptions")
    statuses = []
    barrier = threading.Barrier(4)

    def till():
        barrier.wait()
        statuses.append(redeem(api, "K7Q2-M9XB").status_code)
        connection.close()

    threads = [threading.Thread(target=till) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201, 409, 409, 409]
    assert Redemption.objects.count() == 1


# --- Deliveries and statistics ----------------------------------------------------------


def test_deliveries_read_exactly_as_the_spec_says(api, rivoli):
    delivery = DeliveryFactory(store=rivoli, twilio_sid="SM1", sent_at=timezone.now())
    [item] = api.get("/api/v1/deliveries").json()["results"]
    assert set(item) == {
        "id",
        "customer_id",
        "campaign",
        "store",
        "status",
        "reason",
        "code",
        "body",
        "twilio_sid",
        "error_code",
        "created_at",
        "sent_at",
    }
    assert item["customer_id"] == delivery.customer.external_id
    assert (item["campaign"], item["store"], item["status"]) == (
        delivery.campaign_id,
        "RIVOLI",
        "sent",
    )


def test_deliveries_filter_by_customer_campaign_and_status(api, rivoli):
    lea = CustomerFactory(external_id="C-1001")
    mine = DeliveryFactory(customer=lea)
    other = DeliveryFactory(status="suppressed", reason="quiet_hours", code=None)

    def ids(query):
        response = api.get(f"/api/v1/deliveries?{query}")
        assert response.status_code == 200
        return [item["id"] for item in response.json()["results"]]

    assert ids("customer_id=C-1001") == [mine.id]
    assert ids(f"campaign={other.campaign_id}") == [other.id]
    assert ids("status=suppressed") == [other.id]
    assert ids("status=sent&customer_id=C-1001") == [mine.id]


@pytest.mark.parametrize(
    ("query", "unknown"),
    [
        ("campaign_id={campaign}", "campaign_id"),  # the body of a delivery says "campaign"
        ("customer=C-1001", "customer"),
        ("status=sent&reason=quiet_hours", "reason"),
        ("created_since=2026-11-30T10:00:00Z", "created_since"),
    ],
)
def test_an_unknown_filter_of_the_deliveries_is_400_not_every_delivery(api, query, unknown):
    """Ignored, a misspelt filter answers every delivery as if they were the ones asked for:
    an export of one campaign's results would count every campaign's."""
    mine = DeliveryFactory(customer=CustomerFactory(external_id="C-1001"))
    DeliveryFactory()

    response = api.get(f"/api/v1/deliveries?{query.format(campaign=mine.campaign_id)}")

    assert response.status_code == 400
    assert list(response.json()) == [unknown]
    assert "campaign" in response.json()[unknown][0]


@pytest.mark.parametrize(
    ("query", "repeated"),
    [
        ("status=sent&status=holdout", "status"),
        ("campaign={campaign}&campaign={other}", "campaign"),
        ("customer_id=C-1001&customer_id=C-1002", "customer_id"),
        ("page=1&page=2", "page"),
    ],
)
def test_a_filter_given_twice_is_400_not_the_last_value_alone(api, query, repeated):
    """Read as its last value, `?status=sent&status=holdout` answered the holdout deliveries
    alone, as if they were every delivery sent or held out: an export of both would count
    none of the SMS sent."""
    mine = DeliveryFactory(customer=CustomerFactory(external_id="C-1001"))
    other = DeliveryFactory(status="holdout", customer=CustomerFactory(external_id="C-1002"))
    filled = query.format(campaign=mine.campaign_id, other=other.campaign_id)

    response = api.get(f"/api/v1/deliveries?{filled}")

    assert response.status_code == 400
    assert list(response.json()) == [repeated]
    assert "once" in response.json()[repeated][0]


@pytest.mark.parametrize(
    "query", ["customer_id=", "campaign=", "status=", "created_after=", "status=sent&customer_id="]
)
def test_a_filter_given_no_value_is_400_not_every_delivery(api, query):
    """Ignored, `?customer_id=` (a blank field of the tool asking) answered every customer's
    deliveries, their first names and codes included, as if they were that customer's."""
    DeliveryFactory(customer=CustomerFactory(external_id="C-1001"))
    DeliveryFactory(customer=CustomerFactory(external_id="C-1002"))
    empty = next(part.split("=")[0] for part in query.split("&") if part.endswith("="))

    response = api.get(f"/api/v1/deliveries?{query}")

    assert response.status_code == 400
    assert list(response.json()) == [empty]
    assert "no value" in response.json()[empty][0]


@pytest.mark.parametrize("page", ["abc", "0", "-1", "1.5", "1e2", "%EF%BC%92"])
def test_a_page_that_is_no_page_number_is_400_not_404(api, page):
    """A 404 read as "no such list" or "no such page": `?page=0` asks for a page numbered
    from 0, and `?page=abc` for none at all."""
    DeliveryFactory()

    response = api.get(f"/api/v1/deliveries?page={page}")

    assert response.status_code == 400
    assert list(response.json()) == ["page"]


def test_a_page_past_the_last_is_404_and_the_last_one_is_found(api):
    DeliveryFactory()

    assert api.get("/api/v1/deliveries?page=2").status_code == 404
    assert api.get("/api/v1/deliveries?page=last").status_code == 200


def test_the_page_is_no_unknown_filter(api):
    assert api.get("/api/v1/deliveries?page=1&status=sent").status_code == 200


@pytest.mark.parametrize("query", ["status=nonsense", "campaign=abc", "campaign=1e999"])
def test_an_invalid_filter_is_400(api, query):
    assert api.get(f"/api/v1/deliveries?{query}").status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        "campaign=99999999999999999999999",
        "campaign=9223372036854775808",
        "campaign=1e19",
        "campaign=1.5",
        "campaign=1.0",
        "campaign=0",
        "campaign=-1",
        "campaign=NaN",
        "campaign=%EF%BC%91",  # a full-width digit one
        "customer_id=%00",
        f"customer_id={'x' * 101}",
    ],
)
def test_an_id_filter_no_row_could_match_is_400_naming_the_filter(api, query):
    DeliveryFactory(campaign=CampaignFactory(id=1))

    response = api.get(f"/api/v1/deliveries?{query}")

    assert response.status_code == 400
    name = query.split("=")[0]
    [message] = response.json()[name]
    assert message


def test_the_largest_campaign_id_is_a_filter_that_finds_nothing(api):
    DeliveryFactory()

    response = api.get("/api/v1/deliveries?campaign=9223372036854775807")

    assert response.status_code == 200
    assert response.json()["results"] == []


def test_an_erased_customers_deliveries_stay_anonymised(api, rivoli):
    customer = CustomerFactory(external_id="C-9")
    DeliveryFactory(customer=customer)
    assert api.delete("/api/v1/customers/C-9").status_code == 204
    [item] = api.get("/api/v1/deliveries").json()["results"]
    assert (item["customer_id"], item["body"]) == (None, "")
    assert Delivery.objects.get().to == ""


def test_stats_count_the_funnel_and_the_lift_against_the_holdout(api, rivoli):
    campaign = CampaignFactory()
    treated = [DeliveryFactory(campaign=campaign) for _ in range(4)]
    DeliveryFactory(campaign=campaign, status="delivered")
    held = [DeliveryFactory(campaign=campaign, status="holdout") for _ in range(4)]
    DeliveryFactory(campaign=campaign, status="suppressed", reason="quiet_hours", code=None)
    DeliveryFactory(campaign=campaign, status="suppressed", reason="no_consent", code=None)
    for delivery in treated[:2] + held[:1]:
        Redemption.objects.create(
            delivery=delivery, store=rivoli, amount="10.10", redeemed_at=timezone.now()
        )

    stats = api.get(f"/api/v1/campaigns/{campaign.id}/stats").json()

    assert stats["decisions"]["total"] == 11
    assert stats["decisions"]["by_status"] == {
        "suppressed": 2,
        "holdout": 4,
        "queued": 0,
        "sent": 4,
        "delivered": 1,
        "undelivered": 0,
        "failed": 0,
    }
    assert stats["decisions"]["by_reason"]["quiet_hours"] == 1
    assert stats["decisions"]["by_reason"]["budget"] == 0
    assert (stats["sent"], stats["delivered"], stats["redeemed"]) == (5, 1, 2)
    assert stats["treated"] == {"customers": 5, "redeemed": 2, "rate": 0.4, "revenue": "20.20"}
    assert stats["holdout"] == {"customers": 4, "redeemed": 1, "rate": 0.25, "revenue": "10.10"}
    assert stats["lift"] == pytest.approx(0.6)
    # What the SMS brought in: the holdout bought without one.
    assert stats["revenue"] == "20.20"


def test_stats_count_a_customer_decided_into_both_groups_once_in_their_first(api, rivoli):
    """Before a customer's group was kept, a holdout share edited mid-campaign could text a
    customer held out before, or hold out one texted before: each counts in the group their
    first decision put them in, erased or not."""
    campaign = CampaignFactory()
    lea, tom, ana = (CustomerFactory(external_id=name) for name in ("lea", "tom", "ana"))
    first, then = timezone.now() - timedelta(days=2), timezone.now() - timedelta(days=1)
    texted = DeliveryFactory(campaign=campaign, customer=lea, created_at=first)
    DeliveryFactory(campaign=campaign, customer=lea, status="holdout", created_at=then)
    held = DeliveryFactory(campaign=campaign, customer=tom, status="holdout", created_at=first)
    texted_later = DeliveryFactory(campaign=campaign, customer=tom, created_at=then)
    DeliveryFactory(campaign=campaign, customer=ana, created_at=then)
    for delivery, amount in ((texted, "10.00"), (held, "5.00"), (texted_later, "7.00")):
        Redemption.objects.create(
            delivery=delivery, store=rivoli, amount=amount, redeemed_at=timezone.now()
        )
    stats_url = f"/api/v1/campaigns/{campaign.id}/stats"

    stats = api.get(stats_url).json()

    assert stats["treated"] == {"customers": 2, "redeemed": 1, "rate": 0.5, "revenue": "10.00"}
    assert stats["holdout"] == {"customers": 1, "redeemed": 1, "rate": 1.0, "revenue": "5.00"}
    # Every SMS a till redeemed, as before: Tom's came, whichever group he is in.
    assert (stats["sent"], stats["redeemed"], stats["revenue"]) == (3, 2, "17.00")
    assert api.delete("/api/v1/customers/tom").status_code == 204
    assert api.get(stats_url).json() == stats


def test_erasing_a_customer_leaves_the_campaign_s_results_as_they_were(api, rivoli):
    campaign = CampaignFactory()
    lea, tom, ana = (CustomerFactory(external_id=name) for name in ("lea", "tom", "ana"))
    # Léa was texted twice by the campaign and redeemed the second offer.
    DeliveryFactory(campaign=campaign, customer=lea)
    redeemed = DeliveryFactory(campaign=campaign, customer=lea)
    Redemption.objects.create(delivery=redeemed, store=rivoli, redeemed_at=timezone.now())
    DeliveryFactory(campaign=campaign, customer=tom)
    DeliveryFactory(campaign=campaign, customer=ana, status="holdout")
    stats_url = f"/api/v1/campaigns/{campaign.id}/stats"
    before = api.get(stats_url).json()

    assert api.delete("/api/v1/customers/lea").status_code == 204
    assert api.delete("/api/v1/customers/ana").status_code == 204

    assert api.get(stats_url).json() == before
    assert before["treated"] == {"customers": 2, "redeemed": 1, "rate": 0.5, "revenue": "0.00"}
    assert before["holdout"]["customers"] == 1
    assert before["presence_events_matched"] == 4


def test_an_event_a_campaign_could_not_text_for_counts_for_it_and_for_the_next_one(api, rivoli):
    """Live, a campaign ranked first that cannot send (its cap) leaves the event to the next
    one, which texts: each was judged for it, and each one's stats count it, as its schema
    says."""
    first, second = an_entry_the_first_campaign_could_not_text(rivoli)

    counted = [
        api.get(f"/api/v1/campaigns/{campaign.id}/stats").json()["presence_events_matched"]
        for campaign in (first, second)
    ]
    described = openapi()["components"]["schemas"]["CampaignStats"]["properties"][
        "presence_events_matched"
    ]["description"]

    assert counted == [1, 1]
    assert "ranked it first" not in described
    assert "could not send" in described


def test_stats_of_an_unknown_campaign_are_404(api):
    assert api.get("/api/v1/campaigns/999999/stats").status_code == 404


def test_reports_need_their_scope(client_with_scopes):
    assert client_with_scopes("ingest").get("/api/v1/deliveries").status_code == 403


# --- Dry run ----------------------------------------------------------------------------


def walk_in(device, minutes_ago, *, on_time=False):
    """A fix inside Rivoli `minutes_ago`, processed now, or, `on_time`, as it was taken (the
    live engine decides only what reaches it within the SMS validity)."""
    now = timezone.now()
    at = now - timedelta(minutes=minutes_ago)
    pings = [
        Ping.objects.create(
            device=device, latitude=48.8606, longitude=2.3417, accuracy=10, recorded_at=at
        )
    ]
    tracking.process_location_batch(ping_ids=[p.id for p in pings], now=at if on_time else now)


def test_a_dry_run_replays_stored_presence_and_sends_nothing(api, rivoli, settings):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    opted_in = [CustomerFactory() for _ in range(3)]
    opted_out = CustomerFactory(sms_consent=SmsConsent.OPTED_OUT)
    for n, customer in enumerate([*opted_in, opted_out]):
        walk_in(DeviceFactory(customer=customer), minutes_ago=60 * (n + 1), on_time=True)
    campaign = CampaignFactory(status="draft", daily_budget=2)
    campaign.stores.add(rivoli)

    response = api.post(
        f"/api/v1/campaigns/{campaign.id}/dry-run", {"since": ago(days=1), "until": now_iso()}
    )

    assert response.status_code == 200, response.json()
    result = response.json()
    assert (result["presence_events"], result["matched"]) == (4, 4)
    assert result["by_reason"]["no_consent"] == 1
    # Whether the budget bites depends on whether the walk-ins fall on one calendar day.
    assert result["would_send"] + result["by_reason"]["budget"] == 3
    assert result["would_send"] == result["customers_reached"]
    assert locmem.outbox == []
    assert not Delivery.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"since": "2026-11-24T10:00:00Z"},
        {"since": "2026-11-24T10:00:00Z", "until": "2026-11-23T10:00:00Z"},
        {"since": "2020-01-01T00:00:00Z", "until": "2026-11-23T10:00:00Z"},
        {"since": "yesterday", "until": "2026-11-23T10:00:00Z"},
    ],
)
def test_a_bad_dry_run_period_is_400(api, body):
    campaign = CampaignFactory()
    assert api.post(f"/api/v1/campaigns/{campaign.id}/dry-run", body).status_code == 400


# --- Code pools -------------------------------------------------------------------------


def test_a_campaign_draws_its_codes_from_an_uploaded_pool(api, rivoli, settings):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    campaign = CampaignFactory(offer_template="Your code: {code}")
    campaign.stores.add(rivoli)
    response = api.post(f"/api/v1/campaigns/{campaign.id}/codes", {"codes": ["POS-1", "POS-1"]})
    assert response.json() == {"added": 1, "pool_size": 1, "unused": 1}

    for n in range(2):
        device = DeviceFactory(customer=CustomerFactory())
        body = {
            "pings": [
                {
                    "device_id": device.device_id,
                    "latitude": 48.8606,
                    "longitude": 2.3417,
                    "accuracy": 10,
                    "recorded_at": ago(seconds=30 + n),
                }
            ]
        }
        api.post("/api/v1/pings", body)

    assert [sms.body.split("\n")[0] for sms in locmem.outbox] == ["Your code: POS-1"]
    assert OfferCode.objects.get().delivery.code == "POS-1"
    spent = Delivery.objects.get(status="suppressed")
    assert spent.reason == "budget"


def test_a_pool_code_used_elsewhere_is_refused(api):
    DeliveryFactory(code="TAKEN-1")
    campaign = CampaignFactory()
    response = api.post(f"/api/v1/campaigns/{campaign.id}/codes", {"codes": ["TAKEN-1", "NEW"]})
    assert response.status_code == 400
    assert not OfferCode.objects.exists()


# --- Celery beat ------------------------------------------------------------------------


def test_the_tick_times_out_presence_and_announces_dwells(rivoli, settings):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    campaign = CampaignFactory(trigger_type="dwell", trigger_minutes=5)
    campaign.stores.add(rivoli)
    customer = CustomerFactory()
    walk_in(DeviceFactory(customer=customer), minutes_ago=6)

    tasks.tick_presence.delay()
    assert [e.kind for e in PresenceEvent.objects.order_by("occurred_at")] == ["entered", "dwelled"]
    assert len(locmem.outbox) == 1

    tasks.tick_presence.delay()  # idempotent
    assert PresenceEvent.objects.count() == 2
    assert len(locmem.outbox) == 1


def test_the_tick_ends_a_presence_without_signal(rivoli):
    walk_in(DeviceFactory(), minutes_ago=20)
    tasks.tick_presence.delay()
    tasks.tick_presence.delay()
    assert [e.kind for e in PresenceEvent.objects.order_by("occurred_at")] == ["entered", "exited"]


def test_the_purge_removes_raw_location_past_retention_and_keeps_presence(rivoli, settings):
    settings.LOCATION_RETENTION_DAYS = 30
    device = DeviceFactory()
    walk_in(device, minutes_ago=5)
    old = Ping.objects.create(
        device=device,
        latitude=1,
        longitude=1,
        accuracy=5,
        recorded_at=timezone.now() - timedelta(days=40),
    )
    Ping.objects.filter(id=old.id).update(received_at=timezone.now() - timedelta(days=31))

    tasks.purge_location_history.delay()
    tasks.purge_location_history.delay()

    assert Ping.objects.count() == 1
    assert PresenceEvent.objects.count() == 1


def test_the_purge_goes_a_chunk_at_a_time_and_clears_the_evidence_links(
    rivoli, settings, django_assert_max_num_queries
):
    settings.LOCATION_RETENTION_DAYS = 30
    device = DeviceFactory()
    walk_in(device, minutes_ago=5)
    [entry] = PresenceEvent.objects.all()
    month_ago = timezone.now() - timedelta(days=31)
    Ping.objects.bulk_create(
        Ping(
            device=device,
            latitude=1,
            longitude=1,
            accuracy=5,
            recorded_at=month_ago - timedelta(minutes=n),
            received_at=month_ago,
        )
        for n in range(25)
    )
    # The entry's own ping, too, is past retention now.
    Ping.objects.filter(pk=entry.ping_id).update(received_at=month_ago)

    # 26 pings, 10 a chunk: three chunks of a select, an update and a delete, whatever the
    # number of rows, plus what sightings and batches cost, and a select of each by time
    # taken (those uploaded late: none here).
    with django_assert_max_num_queries(22):
        removed = services.purge_location_history(now=timezone.now(), chunk=10)

    assert removed == 26 and not Ping.objects.exists()
    entry.refresh_from_db()
    assert (entry.kind, entry.ping_id) == ("entered", None)


def stored_batch(*, received_at):
    """A ping and its batch as ingest stores them, with no task run for it."""
    ping = Ping.objects.create(
        device=DeviceFactory(),
        latitude=48.8606,
        longitude=2.3417,
        accuracy=10,
        recorded_at=received_at - timedelta(seconds=5),
        received_at=received_at,
    )
    return LocationBatch.objects.create(received_at=received_at, ping_ids=[ping.id])


def test_the_sweep_processes_a_batch_whose_task_was_lost(rivoli, settings):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    campaign = CampaignFactory()
    campaign.stores.add(rivoli)
    # Stored, but its task never ran: the broker was down when the batch came in.
    batch = stored_batch(
        received_at=timezone.now() - timedelta(seconds=settings.SWEEP_AFTER_SECONDS + 1)
    )

    tasks.sweep_unprocessed.delay()
    tasks.sweep_unprocessed.delay()

    batch.refresh_from_db()
    assert batch.processed_at is not None
    assert len(locmem.outbox) == 1


def test_the_sweep_leaves_fresh_batches_to_their_task(rivoli):
    batch = stored_batch(received_at=timezone.now())
    tasks.sweep_unprocessed.delay()
    batch.refresh_from_db()
    assert batch.processed_at is None


def test_a_batch_purged_before_its_task_ran_is_nothing_to_do(rivoli):
    batch = stored_batch(received_at=timezone.now())
    LocationBatch.objects.filter(pk=batch.pk).delete()

    assert tasks.process_location_batch.delay(batch.pk).get() == 0
    assert PresenceEvent.objects.count() == 0


def test_an_accepted_batch_is_processed_as_one_batch(api, rivoli):
    device = DeviceFactory()
    body = {
        "pings": [
            {
                "device_id": device.device_id,
                "latitude": 48.8606,
                "longitude": 2.3417,
                "accuracy": 10,
                "recorded_at": ago(seconds=5 + n),
                "ping_id": f"p{n}",
            }
            for n in range(3)
        ]
    }
    api.post("/api/v1/pings", body)
    api.post("/api/v1/pings", body)  # all duplicates: nothing new to process

    [batch] = LocationBatch.objects.all()
    assert sorted(batch.ping_ids) == sorted(Ping.objects.values_list("id", flat=True))
    assert batch.processed_at is not None
    assert PresenceEvent.objects.filter(kind="entered").count() == 1
