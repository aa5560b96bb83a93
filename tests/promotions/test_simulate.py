"""The simulator drives shoppers through the real API and reports what happened."""

import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

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


def test_in_process_the_funnel_counts_what_happened_with_a_broker_configured(settings, capsys):
    # A deployment's environment names a broker: in-process, the pings were handed to
    # workers and the funnel printed at once, before any was processed (no presence event,
    # no decision), and --quiet kept nothing from the workers' SMS backend.
    from config.celery import app

    call_command("load_demo")
    capsys.readouterr()
    settings.CELERY_TASK_ALWAYS_EAGER = False
    app.conf.task_always_eager = False  # tasks go to a memory:// queue no worker reads
    try:
        call_command("simulate", shoppers=12, minutes=8, seed=4, quiet=True)
        assert not app.conf.task_always_eager  # the run's own setting only
    finally:
        app.conf.task_always_eager = True

    out = capsys.readouterr().out
    shoppers = Customer.objects.filter(external_id__startswith="SIM-")
    assert PresenceEvent.objects.filter(customer__in=shoppers, kind="entered").exists()
    decisions = Delivery.objects.filter(customer__in=shoppers).count()
    assert decisions and re.search(rf"decisions\s+{decisions}\n", out)
    sent = Delivery.objects.filter(customer__in=shoppers, status="sent").count()
    assert sent and re.search(rf"SMS sent\s+{sent}\n", out)


def test_the_simulator_refuses_a_key_without_reports_before_creating_any_shopper(monkeypatch):
    # As with `--api-key` naming a key made without the reports scope: the SMS would go out
    # and the funnel, which lists deliveries, would print zeros.
    import promotions.services as services

    create_api_key = services.create_api_key

    def without_reports(*, name, scopes):
        return create_api_key(name=name, scopes=[s for s in scopes if s != "reports"])

    call_command("load_demo")
    monkeypatch.setattr(services, "create_api_key", without_reports)

    with pytest.raises(CommandError) as error:
        call_command("simulate", shoppers=3, minutes=2, seed=1, quiet=True)

    assert str(error.value) == (
        "The API key lacks the reports scope: the simulator needs config, customers, ingest, "
        "reports."
    )
    assert not Customer.objects.filter(external_id__startswith="SIM-").exists()


def test_the_simulator_says_when_the_deliveries_cannot_be_listed_instead_of_printing_zeros(
    monkeypatch, capsys
):
    from promotions.management.commands.simulate import InProcessApi

    call = InProcessApi.call

    def deliveries_unavailable(self, method, path, body=None):
        if path.startswith("/api/v1/deliveries?page="):
            return 503, {"detail": "Service unavailable."}
        return call(self, method, path, body)

    call_command("load_demo")
    monkeypatch.setattr(InProcessApi, "call", deliveries_unavailable)
    capsys.readouterr()

    with pytest.raises(CommandError) as error:
        call_command("simulate", shoppers=3, minutes=2, seed=1, quiet=True)

    assert str(error.value) == (
        "GET /api/v1/deliveries answered 503: {'detail': 'Service unavailable.'}"
    )
    assert "decisions" not in capsys.readouterr().out


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


def test_every_number_the_simulator_gives_is_valid_and_reserved_for_fiction():
    from customers.phones import normalise_phone
    from promotions.simulation import MAX_SHOPPERS, fictional_phone

    numbers = [fictional_phone(n) for n in range(MAX_SHOPPERS)]

    assert len(set(numbers)) == MAX_SHOPPERS
    for number in numbers:
        # North America keeps 555-0100 to 555-0199 for fiction in every area code.
        assert re.fullmatch(r"\+1\d{3}55501\d\d", number)
        assert normalise_phone(number) == number


def test_simulated_shoppers_get_numbers_reserved_for_fiction(capsys):
    call_command("load_demo")
    call_command("simulate", shoppers=3, minutes=2, seed=1, quiet=True)

    phones = Customer.objects.filter(external_id__startswith="SIM-").values_list("phone", flat=True)
    assert sorted(phones) == ["+12015550100", "+12015550101", "+12015550102"]


@pytest.mark.parametrize("allowed_hosts", [["*"], [".shop.example"], ["passage.example"]])
def test_the_simulator_runs_in_process_whatever_hosts_the_settings_allow(
    settings, capsys, allowed_hosts
):
    settings.ALLOWED_HOSTS = allowed_hosts
    call_command("load_demo")
    call_command("simulate", shoppers=2, minutes=2, seed=1, quiet=True)

    assert Ping.objects.filter(device__customer__external_id__startswith="SIM-").exists()


def test_the_simulator_refuses_to_run_in_process_with_twilio(settings):
    settings.SMS_BACKEND = "twilio"

    with pytest.raises(CommandError, match="SMS_BACKEND=twilio"):
        call_command("simulate", shoppers=2, quiet=True)
    assert not Customer.objects.exists()


def test_an_api_key_without_a_server_is_refused_not_ignored():
    # Run in-process, the key would go unused: the operator meant a server and forgot its URL.
    with pytest.raises(CommandError, match="--api-key needs --base-url"):
        call_command("simulate", shoppers=2, api_key="k" * 40, quiet=True)
    assert not Customer.objects.exists()


def test_the_simulator_caps_shoppers_at_the_numbers_it_has():
    from promotions.simulation import MAX_SHOPPERS

    with pytest.raises(CommandError, match=f"between 1 and {MAX_SHOPPERS}"):
        call_command("simulate", shoppers=MAX_SHOPPERS + 1)
    assert MAX_SHOPPERS == 10_000


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://host", "http://", "http://host:port"])
def test_the_simulator_refuses_a_server_address_that_is_not_a_url(url):
    with pytest.raises(CommandError, match=r"expected an http\(s\) URL"):
        call_command("simulate", base_url=url, api_key="psg_x")


@pytest.mark.parametrize("key", ["\u201cpsg_x\u201d", "psg_x\n", "psg x"])
def test_the_simulator_refuses_a_key_pasted_with_quotes_or_spaces_before_any_request(key):
    # Typographic quotes a chat or a document put around the key stopped the run with a
    # UnicodeEncodeError traceback; a line break was blamed on the server ("Cannot reach").
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(CommandError) as error:
        call_command("simulate", base_url=f"http://127.0.0.1:{port}", api_key=key)
    assert str(error.value) == (
        "--api-key: expected the key as create_api_key printed it (letters, digits, - and _), "
        "without quotes or spaces."
    )


def test_the_simulator_says_when_the_server_cannot_be_reached():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(CommandError) as error:
        call_command("simulate", base_url=f"http://127.0.0.1:{port}", api_key="psg_x")
    assert str(error.value) == f"Cannot reach http://127.0.0.1:{port}: connection refused."


def test_the_simulator_says_when_the_server_does_not_answer_json():
    class Html(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>It works!</html>")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(CommandError, match="with text/html, not JSON"):
            call_command(
                "simulate", base_url=f"http://127.0.0.1:{server.server_port}", api_key="psg_x"
            )
    finally:
        server.shutdown()
        server.server_close()
