"""A dry run judges each visit with the customer's consent as it stood when the live engine
decided it, read from the consent log: one who opted in yesterday was not reach for last
week's visit, and one who replied STOP yesterday was."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from customers.models import Customer, SmsConsent
from customers.services import set_sms_consent
from promotions import feedback
from promotions.dry_run import dry_run_campaign
from tests.factories import CampaignFactory, CustomerFactory, StoreFactory
from tests.promotions.test_dry_run import (
    decide_live,
    dry_decisions,
    dry_run,
    live_decisions,
    presence_event,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def rivoli():
    return StoreFactory(code="RIVOLI", latitude=48.8606, longitude=2.3417)


@pytest.fixture
def campaign(rivoli):
    campaign = CampaignFactory()
    campaign.stores.add(rivoli)
    return campaign


def test_a_customer_who_opted_in_after_a_visit_was_not_reach_for_it(api, rivoli, campaign):
    api.put("/api/v1/customers/LEA", {"phone": "+33612345678", "sms_consent": "unknown"})
    lea = Customer.objects.get(external_id="LEA")
    visit = presence_event(lea, rivoli, at=timezone.now() - timedelta(days=6))
    decide_live(visit)
    live = live_decisions(campaign)
    assert live["by_reason"] == {"no_consent": 1}

    response = api.put("/api/v1/customers/LEA", {"sms_consent": "opted_in"})
    assert response.status_code == 200

    result = dry_run(api, campaign, since=visit.occurred_at - timedelta(hours=1))

    assert dry_decisions(result) == live
    assert (result["would_send"], result["customers_reached"]) == (0, 0)


def test_a_customer_who_replied_stop_after_a_visit_was_reach_for_it(api, rivoli, campaign):
    customer = CustomerFactory(phone="+33612345678", sms_consent=SmsConsent.OPTED_IN)
    visit = presence_event(customer, rivoli, at=timezone.now() - timedelta(days=6))
    decide_live(visit)
    live = live_decisions(campaign)
    assert live["by_status"] == {"queued": 1}

    feedback.handle_inbound_sms(from_number="+33612345678", body="STOP", now=timezone.now())
    customer.refresh_from_db()
    assert customer.sms_consent == SmsConsent.OPTED_OUT

    result = dry_run(api, campaign, since=visit.occurred_at - timedelta(hours=1))

    assert dry_decisions(result) == live
    assert (result["would_send"], result["customers_reached"]) == (1, 1)


def change_consent(customer, consent: str, *, at):
    set_sms_consent(customer=customer, consent=consent, source="crm", at=at)
    customer.save()


def test_each_visit_is_judged_with_the_consent_of_its_own_moment(rivoli, campaign):
    """Out, in, out again: the log says which held at each visit, the latest change before
    it (a change in the same instant as the visit's decision included)."""
    now = timezone.now()
    customer = CustomerFactory(phone="+33612345678", sms_consent=SmsConsent.OPTED_OUT)
    visits = []
    for days_ago, consent in [(5, None), (4, SmsConsent.OPTED_IN), (3, SmsConsent.OPTED_OUT)]:
        at = now - timedelta(days=days_ago)
        if consent is not None:
            change_consent(customer, consent, at=at)
        visits.append(presence_event(customer, rivoli, at=at))
        decide_live(visits[-1])
    live = live_decisions(campaign)
    assert live == {"by_status": {"suppressed": 2, "queued": 1}, "by_reason": {"no_consent": 2}}
    change_consent(customer, SmsConsent.OPTED_IN, at=now - timedelta(days=1))

    result = dry_run_campaign(campaign=campaign, since=now - timedelta(days=6), until=now)

    assert dry_decisions(result) == live


def test_a_dry_run_reads_the_consent_log_in_one_query_whatever_the_number_of_customers(
    rivoli, campaign
):
    now = timezone.now()

    def queries_for(count: int) -> int:
        for _ in range(count):
            customer = CustomerFactory(sms_consent=SmsConsent.OPTED_OUT)
            change_consent(customer, SmsConsent.OPTED_IN, at=now - timedelta(days=3))
            presence_event(customer, rivoli, at=now - timedelta(days=2))
            change_consent(customer, SmsConsent.OPTED_OUT, at=now - timedelta(days=1))
        with CaptureQueriesContext(connection) as captured:
            result = dry_run_campaign(campaign=campaign, since=now - timedelta(days=6), until=now)
        return len(captured), result

    few, one_customer = queries_for(1)
    many, six_customers = queries_for(5)

    assert many == few
    assert (one_customer["would_send"], six_customers["would_send"]) == (1, 6)
