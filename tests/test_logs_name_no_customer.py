"""What a web process logs of a request it answered with an error names no customer: Django
writes a line for every 4xx and 5xx ("Not Found: /api/v1/customers/jane.doe@example.com"),
whose path carries the customer's id. The lines give the status, the method and the route
instead, which is what an operator needs to see which calls fail."""

import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from urllib.error import HTTPError
from urllib.parse import quote
from urllib.request import urlopen

import pytest
from django.conf import settings
from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer
from django.core.wsgi import get_wsgi_application
from django.test import Client
from rest_framework.test import APIClient

from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

JANE = "jane.doe@example.com"  # a retailer whose customer ids are their e-mail addresses


def request_lines(caplog) -> list[str]:
    """The lines Django logged of the requests, as the console writes them (less the time)."""
    return [
        f"{record.levelname} {record.name} {record.getMessage()}"
        for record in caplog.records
        if record.name.startswith("django.")
    ]


@pytest.fixture(autouse=True)
def logged(caplog):
    caplog.set_level(logging.INFO)


def test_looking_up_a_customer_not_stored_logs_the_route_not_their_id(api, caplog):
    assert api.get(f"/api/v1/customers/{JANE}").status_code == 404
    assert api.get(f"/api/v1/customers/{JANE}/export").status_code == 404

    assert request_lines(caplog) == [
        "WARNING django.request Not Found: GET /api/v1/customers/<external_id>",
        "WARNING django.request Not Found: GET /api/v1/customers/<external_id>/export",
    ]
    assert JANE not in caplog.text


def test_a_refused_update_logs_the_route_not_their_id(api, caplog):
    assert api.put(f"/api/v1/customers/{JANE}", {"phone": "+33 1"}).status_code == 400

    assert request_lines(caplog) == [
        "WARNING django.request Bad Request: PUT /api/v1/customers/<external_id>"
    ]
    assert JANE not in caplog.text


def test_an_erasure_retried_after_it_went_through_logs_no_id(api, caplog):
    CustomerFactory(external_id=JANE)
    assert api.delete(f"/api/v1/customers/{JANE}").status_code == 204

    # The CRM's retry, its first answer lost on the way back.
    assert api.delete(f"/api/v1/customers/{JANE}").status_code == 404

    assert request_lines(caplog) == [
        "WARNING django.request Not Found: DELETE /api/v1/customers/<external_id>"
    ]
    assert JANE not in caplog.text


def test_a_request_without_a_key_logs_no_id(caplog):
    assert APIClient().get(f"/api/v1/customers/{JANE}").status_code == 401

    assert request_lines(caplog) == [
        "WARNING django.request Unauthorized: GET /api/v1/customers/<external_id>"
    ]


def test_a_path_no_route_takes_keeps_only_the_routes_own_words(api, caplog):
    # A trailing slash: the API's routes take none, and the id is in no route's place.
    assert api.get(f"/api/v1/customers/{JANE}/").status_code == 404
    assert api.get(f"/api/v1/clients/{JANE}").status_code == 404

    assert request_lines(caplog) == [
        "WARNING django.request Not Found: GET /api/v1/customers/<redacted>/",
        "WARNING django.request Not Found: GET /api/v1/<redacted>/<redacted>",
    ]


def test_an_admin_form_refused_for_its_csrf_token_logs_the_route_not_the_customer(
    admin_user, caplog
):
    customer = CustomerFactory(external_id=JANE)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    path = f"/admin/customers/customer/{customer.pk}/change/"
    assert client.post(path, {"first_name": "Jane"}).status_code == 403

    assert request_lines(caplog) == [
        "WARNING django.security.csrf Forbidden (CSRF cookie not set.): "
        "POST /admin/customers/customer/<object_id>/change/"
    ]


def through_runserver(paths: list[str], caplog) -> list[int]:
    """The paths asked of `make run`'s server (runserver's own server and request handler)
    on a free port, its statuses returned once it has logged each (the django.server logger,
    which writes its lines itself, captured too)."""
    server = WSGIServer(("127.0.0.1", 0), WSGIRequestHandler)
    server.set_app(get_wsgi_application())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    access = logging.getLogger("django.server")
    access.addHandler(caplog.handler)
    thread.start()
    statuses = []
    try:
        for path in paths:
            try:
                with urlopen(f"http://127.0.0.1:{server.server_address[1]}{path}", timeout=10):
                    statuses.append(200)
            except HTTPError as refused:
                statuses.append(refused.code)
    finally:
        # It answers one request at a time and logs it after the answer: once stopped, the
        # last line is written.
        server.shutdown()
        server.server_close()
        thread.join()
        access.removeHandler(caplog.handler)
    return statuses


def test_the_development_server_logs_routes_and_query_names_only(caplog):
    paths = [
        f"/api/v1/customers/{quote(JANE)}",
        f"/api/v1/deliveries?customer_id={quote(JANE)}&status=sent",
    ]

    assert through_runserver(paths, caplog) == [401, 401]  # no key: logged all the same

    assert [r.getMessage() for r in caplog.records if r.name == "django.server"] == [
        '"GET /api/v1/customers/<external_id> HTTP/1.1" 401 58',
        '"GET /api/v1/deliveries?customer_id=<redacted>&status=<redacted> HTTP/1.1" 401 58',
    ]
    assert "jane" not in caplog.text


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ask(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        return connection.recv(100).split(b"\r\n")[0]


def test_gunicorn_logs_no_id_of_a_request_it_cannot_parse_nor_of_one_it_serves(tmp_path):
    # The README's command line, with the access log a deployment may turn on.
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DJANGO_SETTINGS_MODULE")}
    env |= {
        "SECRET_KEY": "a-secret-key-for-this-test-only-" + "x" * 32,
        "ALLOWED_HOSTS": "passage.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    command = [sys.executable, "-m", "gunicorn", "config.wsgi", "--preload", "--workers", "1"]
    command += ["--bind", f"127.0.0.1:{port}", "--access-logfile", "-"]
    # Its control socket is one path for the machine: another gunicorn's is left alone.
    command.append("--no-control-socket")
    server = subprocess.Popen(
        command,
        env=env,
        cwd=settings.BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(300):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.1)
        host = b"Host: passage.example.com\r\n"
        # A client that does not percent-encode the id's space, nor a filter's.
        assert ask(port, b"GET /api/v1/customers/Jane Doe HTTP/1.1\r\n" + host + b"\r\n") == (
            b"HTTP/1.1 400 Bad Request"
        )
        unencoded = b"GET /api/v1/deliveries?customer_id=Jane Doe&status=sent HTTP/1.1\r\n"
        assert ask(port, unencoded + host + b"\r\n") == b"HTTP/1.1 400 Bad Request"
        # One it serves (no key: 401), from the admin's search for her.
        referer = b"Referer: https://passage.example.com/admin/customers/customer/?q=Jane+Doe\r\n"
        encoded = b"GET /api/v1/deliveries?customer_id=Jane%20Doe HTTP/1.1\r\n"
        assert ask(port, encoded + host + referer + b"\r\n") == b"HTTP/1.1 401 Unauthorized"
    finally:
        server.terminate()
        access, errors = server.communicate(timeout=30)

    assert "jane" not in access.lower() + errors.lower()
    assert "doe" not in access.lower() + errors.lower()
    invalid = [line.split("] ")[-1] for line in errors.splitlines() if "Invalid request" in line]
    assert invalid == ["Invalid request from ip=127.0.0.1: Invalid HTTP Version"] * 2
    assert '"GET /api/v1/deliveries?customer_id=<redacted> HTTP/1.1" 401 ' in access
    assert '"https://passage.example.com/admin/customers/customer/?q=<redacted>"' in access


def test_make_run_writes_each_refused_request_once():
    """`make run` runs with DEBUG on, where Django's own console handler wrote every
    request it refused a second time, beside the configured line."""
    snippet = (
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "Client(HTTP_HOST='127.0.0.1').get('/api/v1/customers/someone')\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "true"}
    env.pop("DATABASE_URL", None)
    run = subprocess.run(
        [sys.executable, "-c", snippet], env=env, capture_output=True, text=True, timeout=60
    )

    assert run.returncode == 0, run.stderr
    assert run.stderr.count("Unauthorized: GET /api/v1/customers/<external_id>") == 1
