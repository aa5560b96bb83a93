"""The simulator drives shoppers through the real API and reports what happened."""

import re

import pytest
from django.core.management import call_command

from customers.models import Customer
from promotions.models import Delivery, Ping, PresenceEvent
from promotions.simulation import walk

pytestmark = pytest.mark.django_db


def test_the_simulator_reports_a_funnel_that_matches_the_data(capsys):
    call_command("load_demo", base_url="http://127.0.0.1:8000")
    capsys.readouterr()

    call_command("simulate", shoppers=12, minutes=8, seed=4, quiet=True)

    out = capsys.readouterr().out
    shoppers = Customer.objects.filter(external_id__startswith="SIM-")
    assert shoppers.count() == 12
    pings = Ping.objects.filter(device__customer__in=shoppers).count()
    assert re.search(rf"pings sent / accepted\s+{pings} / {pings}", out)
    decisions = Delivery.objects.filter(customer__in=shoppers).count()
    assert re.search(rf"decisions\s+{decisions}\n", out)
    assert PresenceEvent.objects.filter(customer__in=shoppers, kind="entered").exists()
    sent = Delivery.objects.filter(customer__in=shoppers, status="sent").count()
    assert re.search(rf"SMS sent\s+{sent}\n", out)


def test_a_shopper_who_enters_ends_inside_and_one_who_passes_never_does():
    import random
    from datetime import UTC, datetime

    start = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
    rng = random.Random(1)
    entering = walk(
        latitude=48.86, longitude=2.34, radius_m=60, enters=True, start=start, minutes=8, rng=rng
    )
    passing = walk(
        latitude=48.86, longitude=2.34, radius_m=60, enters=False, start=start, minutes=8, rng=rng
    )
    assert entering[-1].inside and not entering[0].inside
    assert not any(fix.inside for fix in passing)
    assert len(entering) == 17  # a fix every 30 s for 8 minutes
