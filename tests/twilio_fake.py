"""A local stand-in for Twilio's REST API, for driving the real SDK in tests.

It records every request and answers from a script: a message resource, or one of Twilio's
error bodies (21211 invalid number, 21610 unsubscribed, 429, 500), a gateway's 502 or 504
(for a message Twilio behind it may have taken), a dropped connection, or no answer at all.
It lists the messages it accepted, newest first, as Twilio's Messages.json does.
"""

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from urllib.parse import parse_qs, urlsplit

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "0123456789abcdef" * 2  # 32 hexadecimal digits, as Twilio issues them


@dataclass
class Recorded:
    method: str
    path: str
    form: dict[str, str]
    authorization: str
    status: int = 0  # what the fake answered
    sid: str = ""  # the message's, when accepted
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Answer:
    status: int
    body: dict | None = None
    delay: float = 0.0  # seconds to wait before answering (longer than the client's timeout)
    # Twilio took the message whatever this answer says: a gateway in front of it timed out
    # or lost Twilio's answer.
    accepted: bool = False
    dropped: bool = False  # the connection is closed with no answer at all
    headers: dict[str, str] = field(default_factory=dict)  # Retry-After, say
    # Sent as it is, instead of the body as JSON: a page from something in front of Twilio.
    raw: tuple[str, bytes] | None = None  # (content type, bytes)


def error(status: int, code: int, message: str) -> Answer:
    return Answer(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


INVALID_NUMBER = error(400, 21211, "The 'To' number +33100000000 is not a valid phone number.")
UNSUBSCRIBED = error(400, 21610, "Attempt to send to unsubscribed recipient")
TOO_MANY = error(429, 20429, "Too Many Requests")
SERVER_ERROR = error(500, 20500, "Internal Server Error")
UNAVAILABLE = error(503, 20503, "Service Unavailable")
# A gateway's own pages carry no Twilio error body.
BAD_GATEWAY = Answer(502)
GATEWAY_TIMEOUT = Answer(504)
DROPPED = Answer(0, dropped=True)


@dataclass
class FakeTwilio:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    script: deque[Answer] = field(default_factory=deque)
    sids: count = field(default_factory=lambda: count(1))
    # Called with each accepted message and its sid before Twilio answers: a status callback
    # that overtakes the answer.
    on_accepted: Callable[[Recorded, str], None] | None = None
    # What a message's status has become since (by sid), as the list reports it.
    statuses: dict[str, str] = field(default_factory=dict)
    # And the error code Twilio's record of it gives (failed or undelivered), by sid.
    error_codes: dict[str, int] = field(default_factory=dict)

    def then(self, *answers: Answer) -> "FakeTwilio":
        """Answer the next requests with these, in order; afterwards, accept every message."""
        self.script.extend(answers)
        return self

    @property
    def messages(self) -> list[Recorded]:
        """The messages asked to be sent (lookups aside)."""
        return [
            r for r in self.requests if r.method == "POST" and r.path.endswith("/Messages.json")
        ]

    @property
    def lookups(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "GET"]

    def listing(self, query: dict[str, str]) -> dict:
        """Messages.json's list: the accepted messages, newest first, filtered by To."""
        found = [
            {
                "sid": r.sid,
                "account_sid": ACCOUNT_SID,
                "to": r.form.get("To"),
                "body": r.form.get("Body"),
                "direction": "outbound-api",
                "status": self.statuses.get(r.sid, "sent"),
                "error_code": self.error_codes.get(r.sid),
                "date_created": format_datetime(r.at, usegmt=True),
            }
            for r in reversed(self.accepted)
            if "To" not in query or r.form.get("To") == query["To"]
        ]
        return {"messages": found[: int(query.get("PageSize", 50))], "next_page_uri": None}

    @property
    def accepted(self) -> list[Recorded]:
        """The messages Twilio took: the ones a customer's phone receives."""
        return [r for r in self.messages if r.sid]

    def answer(self) -> Answer:
        if self.script:
            return self.script.popleft()
        return Answer(201, {"sid": self.new_sid(), "status": "queued", "account_sid": ACCOUNT_SID})

    def new_sid(self) -> str:
        return f"SM{next(self.sids):032x}"


def serve() -> tuple[FakeTwilio, ThreadingHTTPServer]:
    fake = FakeTwilio()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            recorded = Recorded("GET", url.path, query, self.headers.get("Authorization", ""))
            fake.requests.append(recorded)
            answer = fake.script.popleft() if fake.script else Answer(200, fake.listing(query))
            recorded.status = answer.status
            self.respond(answer)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {
                key: values[0] for key, values in parse_qs(self.rfile.read(length).decode()).items()
            }
            recorded = Recorded("POST", self.path, form, self.headers.get("Authorization", ""))
            fake.requests.append(recorded)
            answer = fake.answer()
            recorded.status = answer.status
            if answer.status == 201 or answer.accepted:
                recorded.sid = answer.body["sid"] if answer.status == 201 else fake.new_sid()
                if fake.on_accepted:
                    fake.on_accepted(recorded, recorded.sid)
            self.respond(answer)

        def respond(self, answer: Answer) -> None:
            if answer.delay:
                time.sleep(answer.delay)
            if answer.dropped:
                self.close_connection = True
                return
            kind, body = answer.raw or ("application/json", json.dumps(answer.body or {}).encode())
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting, as it should

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return fake, server
