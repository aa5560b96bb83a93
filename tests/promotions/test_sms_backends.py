"""The SMS backends. Twilio is faked at the HTTP boundary: the real SDK talks to a local
server (tests/twilio_fake.py), and to Prism's mock of Twilio's own OpenAPI description."""

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import requests

from promotions import sms
from promotions.sms import (
    OutgoingSms,
    PermanentSmsError,
    TransientSmsError,
    UncertainSmsError,
    locmem,
)
from tests import twilio_fake

MESSAGE = OutgoingSms(to="+33612345678", body="Bonjour Léa, -20%: K7Q2-M9XB", reference="42")
OTHER = OutgoingSms(to="+33612345678", body="Bonjour Léa, -20%: P4RT-2KZW", reference="43")
A_MINUTE_AGO = datetime.now(UTC) - timedelta(minutes=1)


def test_the_console_backend_prints_the_sms(settings, capsys):
    settings.SMS_BACKEND = "console"
    sent = sms.get_backend().send(MESSAGE)
    printed = capsys.readouterr().out
    assert "+33612345678" in printed and MESSAGE.body in printed and "GSM-7" in printed
    assert sent.sid.startswith("SM")


def test_the_locmem_backend_keeps_the_sms(settings):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    sms.get_backend().send(MESSAGE)
    assert locmem.outbox == [MESSAGE]


def test_the_file_backend_appends_json_lines(settings, tmp_path):
    settings.SMS_BACKEND = "file"
    settings.SMS_FILE_PATH = str(tmp_path / "out" / "sms.jsonl")
    sms.get_backend().send(MESSAGE)
    sms.get_backend().send(MESSAGE)
    lines = [json.loads(line) for line in Path(settings.SMS_FILE_PATH).read_text().splitlines()]
    assert [(line["to"], line["body"], line["reference"]) for line in lines] == [
        ("+33612345678", MESSAGE.body, "42")
    ] * 2
    assert lines[0]["sid"] != lines[1]["sid"]


def test_the_file_backend_forgets_the_lines_of_the_messages_named(settings, tmp_path):
    settings.SMS_BACKEND = "file"
    settings.SMS_FILE_PATH = str(tmp_path / "sms.jsonl")
    sms.get_backend().send(MESSAGE)
    with open(settings.SMS_FILE_PATH, "a") as file:
        file.write('{"to": "+3361\n')  # a line cut short by a full disk
    sms.get_backend().send(OTHER)

    sms.get_backend().forget({"42"})

    lines = Path(settings.SMS_FILE_PATH).read_text().splitlines()
    assert lines[0] == '{"to": "+3361'
    assert [json.loads(line)["reference"] for line in lines[1:]] == ["43"]
    assert sms.get_backend().find(MESSAGE, since=A_MINUTE_AGO) is None
    sms.get_backend().send(MESSAGE)  # appended after the rewrite, whole
    assert json.loads(Path(settings.SMS_FILE_PATH).read_text().splitlines()[-1])["to"] == MESSAGE.to


def test_the_locmem_backend_forgets_the_messages_named(settings):
    settings.SMS_BACKEND = "locmem"
    locmem.clear()
    sms.get_backend().send(MESSAGE)
    sms.get_backend().send(OTHER)

    sms.get_backend().forget({"42"})

    assert locmem.outbox == [OTHER]
    assert sms.get_backend().find(MESSAGE, since=A_MINUTE_AGO) is None


def test_twilio_gets_the_message_with_its_callback_and_validity(twilio, settings):
    sent = sms.get_backend().send(MESSAGE)

    [request] = twilio.messages
    assert request.path == f"/2010-04-01/Accounts/{twilio_fake.ACCOUNT_SID}/Messages.json"
    assert request.form == {
        "To": "+33612345678",
        "From": "+15005550006",
        "Body": MESSAGE.body,
        "StatusCallback": "https://passage.example.com/webhooks/twilio/status?delivery=42",
        "ValidityPeriod": "600",
    }
    assert request.authorization.startswith("Basic ")
    assert sent.sid == "SM" + "0" * 31 + "1"


def test_twilio_holds_the_message_no_longer_than_the_offer_has_left(twilio):
    sms.get_backend().send(replace(MESSAGE, validity_seconds=30))

    [request] = twilio.messages
    assert request.form["ValidityPeriod"] == "30"


def test_a_messaging_service_sends_instead_of_a_from_number(twilio, settings):
    settings.TWILIO_MESSAGING_SERVICE_SID = "MG" + "1" * 32
    sms.get_backend().send(MESSAGE)
    [request] = twilio.messages
    assert request.form["MessagingServiceSid"] == "MG" + "1" * 32
    assert "From" not in request.form
    assert sms.sender_id() == "MG" + "1" * 32


@pytest.mark.parametrize(
    "environment",
    [{"TWILIO_REGION": "ie1"}, {"TWILIO_EDGE": "dublin"}, {"TWILIO_REGION": "au1"}],
)
def test_the_sdks_region_and_edge_variables_do_not_lead_past_twilio_api_base(
    twilio, monkeypatch, environment
):
    # The SDK reads TWILIO_REGION and TWILIO_EDGE from the environment and rewrites the host
    # it calls (api.dublin.ie1.twilio.com): past TWILIO_API_BASE, an egress proxy or this fake.
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    resolve = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        if host != "127.0.0.1":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)  # never the internet

    sent = sms.get_backend().send(MESSAGE)

    assert [request.form["To"] for request in twilio.messages] == [MESSAGE.to]
    assert sent.sid == twilio.accepted[0].sid


@pytest.mark.parametrize(
    ("answer", "kind", "code"),
    [
        (twilio_fake.INVALID_NUMBER, PermanentSmsError, 21211),
        (twilio_fake.UNSUBSCRIBED, PermanentSmsError, 21610),
        (twilio_fake.TOO_MANY, TransientSmsError, 20429),
        (twilio_fake.SERVER_ERROR, TransientSmsError, 20500),
        (twilio_fake.UNAVAILABLE, TransientSmsError, 20503),
        # The sender's queue is full: Twilio took nothing, and the queue drains.
        (
            twilio_fake.error(
                400, 21611, "This 'From' number has exceeded the maximum number of queued messages"
            ),
            TransientSmsError,
            21611,
        ),
        (twilio_fake.error(401, 20003, "Authenticate"), PermanentSmsError, 20003),
        # A gateway answering for Twilio behind it, which may have taken the message. Its
        # page has no Twilio error code (the SDK's stand-in, the HTTP status, is none).
        (twilio_fake.BAD_GATEWAY, UncertainSmsError, None),
        (twilio_fake.GATEWAY_TIMEOUT, UncertainSmsError, None),
    ],
)
def test_twilio_errors_are_permanent_transient_or_uncertain_with_their_code(
    twilio, answer, kind, code
):
    twilio.then(answer)
    with pytest.raises(kind) as raised:
        sms.get_backend().send(MESSAGE)
    assert raised.value.code == code
    assert raised.value.http_status == answer.status
    assert len(twilio.messages) == 1  # the SDK does not retry behind our back


@pytest.mark.parametrize(
    ("retry_after", "seconds"),
    [
        ("7", 7),
        ("in 90 s, as an HTTP date", 90),
        # The two obsolete forms RFC 9110 has recipients accept, both in GMT: the asctime one
        # names no zone, and was taken for no wait asked (retried after 1, 2, 4... s, each
        # throttled again, until the delivery failed).
        ("in 90 s, as an RFC 850 date", 90),
        ("in 90 s, as an asctime date", 90),
        ("soon", None),
        (None, None),
    ],
)
def test_a_throttled_send_says_how_long_twilio_asked_to_wait(twilio, retry_after, seconds):
    in_90_s = datetime.now(UTC) + timedelta(seconds=90)
    if retry_after == "in 90 s, as an HTTP date":
        retry_after = format_datetime(in_90_s, usegmt=True)
    elif retry_after == "in 90 s, as an RFC 850 date":
        retry_after = in_90_s.strftime("%A, %d-%b-%y %H:%M:%S GMT")
    elif retry_after == "in 90 s, as an asctime date":
        retry_after = f"{in_90_s:%a %b} {in_90_s.day:2} {in_90_s:%H:%M:%S %Y}"
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    twilio.then(replace(twilio_fake.TOO_MANY, headers=headers))
    with pytest.raises(TransientSmsError) as raised:
        sms.get_backend().send(MESSAGE)
    if seconds is None:
        assert raised.value.retry_after is None
    else:
        assert raised.value.retry_after == pytest.approx(seconds, abs=2)


def test_twilio_unreachable_is_transient(twilio, settings):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        settings.TWILIO_API_BASE = f"http://127.0.0.1:{closed.getsockname()[1]}"
    with pytest.raises(TransientSmsError):
        sms.get_backend().send(MESSAGE)


def test_an_answer_that_never_comes_is_not_retried(twilio, settings):
    settings.SMS_HTTP_TIMEOUT_SECONDS = 0.5
    twilio.then(twilio_fake.Answer(201, {"sid": "SMlate", "status": "queued"}, delay=2))
    with pytest.raises(UncertainSmsError, match="may have been sent"):
        sms.get_backend().send(MESSAGE)


def test_a_connection_dropped_after_the_request_went_out_is_not_retried(twilio):
    twilio.then(twilio_fake.DROPPED)
    with pytest.raises(UncertainSmsError, match="may have been sent"):
        sms.get_backend().send(MESSAGE)
    assert len(twilio.messages) == 1


def test_a_name_that_does_not_resolve_for_a_moment_is_transient(twilio, settings, monkeypatch):
    settings.TWILIO_API_BASE = "http://twilio-egress.internal:8080"

    def try_again(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", try_again)
    with pytest.raises(TransientSmsError, match="unreachable"):
        sms.get_backend().send(MESSAGE)


@pytest.fixture
def not_tls():
    """A local server that takes connections and speaks no TLS: it answers a client's TLS
    hello with `reply`, or with nothing at all. Returns its https:// address."""
    stop = threading.Event()
    listeners: list[socket.socket] = []
    held: list[socket.socket] = []

    def start(reply: bytes | None) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.1)
        listeners.append(listener)

        def serve() -> None:
            while not stop.is_set():
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:  # closed at the end of the test
                    return
                held.append(connection)
                if reply is not None:
                    connection.recv(4096)
                    connection.sendall(reply)
                    connection.close()

        threading.Thread(target=serve, daemon=True).start()
        return f"https://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    stop.set()
    for connection in held + listeners:
        connection.close()


@pytest.mark.parametrize(
    "reply", [b"HTTP/1.1 400 Bad Request\r\n\r\n", None], ids=["refused", "no answer"]
)
def test_a_tls_handshake_that_fails_sends_nothing_and_is_transient(
    twilio, settings, not_tls, reply
):
    settings.SMS_HTTP_TIMEOUT_SECONDS = 0.5
    settings.TWILIO_API_BASE = not_tls(reply)
    with pytest.raises(TransientSmsError, match="unreachable"):
        sms.get_backend().send(MESSAGE)


# --- Asking a backend whether it took a message ------------------------------------------


@pytest.mark.parametrize("backend", ["locmem", "file"])
def test_a_local_backend_finds_what_it_sent_by_reference(backend, settings, tmp_path):
    settings.SMS_BACKEND = backend
    settings.SMS_FILE_PATH = str(tmp_path / "sms.jsonl")
    locmem.clear()
    assert sms.get_backend().find(MESSAGE, since=A_MINUTE_AGO) is None

    sent = sms.get_backend().send(MESSAGE)

    assert sms.get_backend().find(MESSAGE, since=A_MINUTE_AGO) == sent
    assert sms.get_backend().find(OTHER, since=A_MINUTE_AGO) is None


def test_twilio_finds_a_message_by_its_recipient_and_text(twilio):
    sent = sms.get_backend().send(MESSAGE)
    sms.get_backend().send(OTHER)
    twilio.statuses[sent.sid] = "delivered"

    found = sms.get_backend().find(MESSAGE, since=A_MINUTE_AGO)

    assert (found.sid, found.status) == (sent.sid, "delivered")
    assert twilio.lookups[0].form["To"] == MESSAGE.to
    # Created before the claim (beyond the clocks' disagreement): an older message.
    assert sms.get_backend().find(MESSAGE, since=datetime.now(UTC) + timedelta(hours=1)) is None


def test_twilio_finds_a_message_its_smart_encoding_rewrote(twilio):
    # Twilio's record holds the plainer characters Smart Encoding sent in place of ours.
    sms.get_backend().send(
        OutgoingSms(to=MESSAGE.to, body="L'offre - -20% : K7Q2-M9XB", reference="7")
    )
    ours = OutgoingSms(
        to=MESSAGE.to, body="L\u2019offre \u2014 -20%\u00a0: K7Q2-M9XB", reference="7"
    )

    assert sms.get_backend().find(ours, since=A_MINUTE_AGO) is not None
    assert sms.get_backend().find(MESSAGE, since=A_MINUTE_AGO) is None


def test_twilio_that_cannot_be_asked_is_transient(twilio):
    twilio.then(twilio_fake.TOO_MANY)
    with pytest.raises(TransientSmsError):
        sms.get_backend().find(MESSAGE, since=A_MINUTE_AGO)


# --- Against Prism's mock of Twilio's OpenAPI description -------------------------------

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT.parent / "shared" / "peers" / "twilio" / "twilio_api_v2010.json"
PRISM = ROOT / ".tools" / "node_modules" / ".bin" / "prism"


def _missing(what: str) -> None:
    message = f"{what} is missing: the Prism test of the Twilio backend cannot run."
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def prism_url():
    if not SPEC.exists():
        # The peers folder sits beside the checkout on our machines; a clone elsewhere
        # has none, and the peers' README asks for a skip then, on CI too.
        pytest.skip(f"Twilio's OpenAPI description is not at {SPEC}.")
    if not PRISM.exists() or not shutil.which("node"):
        _missing("Prism (`make prism` installs it with npm)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [str(PRISM), "mock", "--errors", "-h", "127.0.0.1", "-p", str(port), str(SPEC)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                requests.get(url, timeout=1)
                break
            # Listening but slow to answer its first request on a loaded machine: not a
            # failure yet.
            except (requests.ConnectionError, requests.ReadTimeout):
                time.sleep(0.5)
        else:
            pytest.fail("Prism did not start within 60 s.")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.integration
def test_twilios_own_api_description_accepts_our_request(twilio, settings, prism_url):
    settings.TWILIO_API_BASE = prism_url
    sent = sms.get_backend().send(MESSAGE)
    assert sent.sid.startswith("SM")


@pytest.mark.integration
def test_twilios_own_api_description_accepts_our_lookup(twilio, settings, prism_url):
    settings.TWILIO_API_BASE = prism_url
    backend = sms.get_backend()
    # Prism checks the request against the description and answers 422 naming what breaks
    # it. The page it makes up in answer breaks the description's own "uri" format, which
    # Prism answers with a 500 naming the response's faults: none may be the request's.
    try:
        found = backend.find(MESSAGE, since=A_MINUTE_AGO)
    except TransientSmsError:
        found = None
    answer = backend.client.http_client._test_only_last_response
    violations = json.loads(answer.headers.get("sl-violations", "[]"))
    assert answer.status_code != 422
    assert [v for v in violations if v["location"][0] != "response"] == []
    assert found is None  # the description's example messages are not ours


@pytest.mark.integration
def test_twilios_own_api_description_refuses_bad_credentials(twilio, settings, prism_url):
    settings.TWILIO_API_BASE = prism_url
    settings.TWILIO_ACCOUNT_SID = "not-an-account"
    with pytest.raises(PermanentSmsError):
        sms.get_backend().send(MESSAGE)
