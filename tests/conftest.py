import contextlib
import socket
import threading
from collections.abc import Callable

import pytest
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient

from promotions.models import Scope
from promotions.services import create_api_key

# No deadline for any example: Hypothesis's default (200 ms) would fail an example for
# being slow, a timing assertion that a loaded machine trips. Loaded here, before any test
# module builds its own settings on top of it.
hypothesis_settings.register_profile("passage", deadline=None)
hypothesis_settings.load_profile("passage")


@pytest.fixture(autouse=True)
def fresh_cache():
    """Rate-limit counters live in the cache; each test starts with none."""
    from django.core.cache import cache

    from promotions.api.throttles import forget_cache_failure

    cache.clear()
    forget_cache_failure()


@pytest.fixture
def client_with_scopes(db) -> Callable[..., APIClient]:
    """An API client whose key carries the given scopes (all of them when none are given)."""

    def make(*scopes: str) -> APIClient:
        _, key = create_api_key(name="tests", scopes=list(scopes or Scope.values))
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return client

    return make


@pytest.fixture
def api(client_with_scopes) -> APIClient:
    return client_with_scopes()


@pytest.fixture
def hung_broker():
    """A Redis URL (a broker's or a cache's) whose server accepts connections and never
    answers: a hung Redis, or a proxy in front of one that died."""
    server = socket.create_server(("127.0.0.1", 0), backlog=100)
    server.settimeout(0.2)
    accepted, stop = [], threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):  # no connection within the timeout
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


@pytest.fixture
def twilio(settings):
    """The Twilio backend, through the real SDK, against a local fake of Twilio's API."""
    from tests import twilio_fake

    fake, server = twilio_fake.serve()
    settings.SMS_BACKEND = "twilio"
    settings.TWILIO_ACCOUNT_SID = twilio_fake.ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = twilio_fake.AUTH_TOKEN
    settings.TWILIO_FROM_NUMBER = "+15005550006"
    settings.TWILIO_MESSAGING_SERVICE_SID = None
    settings.TWILIO_API_BASE = fake.url
    settings.PUBLIC_BASE_URL = "https://passage.example.com"
    yield fake
    server.shutdown()
    server.server_close()


def pytest_terminal_summary(terminalreporter) -> None:
    from tests import fault_reports

    if fault_reports.LINES:
        terminalreporter.section("fault tests: what went in and what came out")
        for line in fault_reports.LINES:
            terminalreporter.write_line(line)


@pytest.fixture
def nominatim():
    """A local stand-in for a Nominatim server: the one address it knows."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            known = "rivoli" in query.get("q", [""])[0].lower()
            places = [{"lat": "48.8606", "lon": "2.3417", "display_name": "Rivoli"}]
            body = json.dumps(places if known else []).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def marketer(client):
    """A client logged in as staff in the Marketers group (promotions.roles)."""
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user("marie", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Marketers"))
    client.force_login(user)
    return client
