"""The simulator against a deployment: gunicorn answers before the workers decide and send,
so the funnel it prints must wait for them."""

import re

import pytest
from django.core.management import call_command

from customers.models import Customer
from promotions.models import Delivery
from promotions.services import create_api_key

pytestmark = pytest.mark.integration


def test_the_funnel_printed_against_a_server_is_what_its_workers_did(processes, capsys):
    call_command("load_demo")
    _, key = create_api_key(name="simulator", scopes=["ingest", "customers", "config", "reports"])
    # Plain HTTP on loopback, as a developer runs the simulator beside a deployment's copy.
    processes.extra["SECURE_SSL_REDIRECT"] = "false"
    processes.worker()
    url = processes.gunicorn()
    capsys.readouterr()

    call_command("simulate", base_url=url, api_key=key, shoppers=12, minutes=8, seed=4)

    out = capsys.readouterr().out
    shoppers = Customer.objects.filter(external_id__startswith="SIM-")
    decisions = Delivery.objects.filter(customer__in=shoppers)
    assert decisions.exists()
    assert re.search(rf"decisions\s+{decisions.count()}\n", out), out
    sent = decisions.filter(status="sent").count()
    assert sent and re.search(rf"SMS sent\s+{sent}\n", out), out
    assert not decisions.filter(status="queued").exists()
