"""The Twilio backend: the official SDK, pointed at TWILIO_API_BASE."""

import json
import ssl
import traceback
from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import requests
from django.conf import settings
from django.utils.http import parse_http_date_safe
from twilio.base.exceptions import (
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from urllib3.exceptions import NewConnectionError

from promotions.sms import (
    OutgoingSms,
    PermanentSmsError,
    SentSms,
    TransientSmsError,
    UncertainSmsError,
)

TWILIO_API = "https://api.twilio.com"
STATUS_CALLBACK_PATH = "/webhooks/twilio/status"
# find() reads this many of a number's latest messages: caps allow a customer a few offers
# a day, so the one sought is among them.
FIND_AMONG_LATEST = 20
# Twilio's clock and ours may disagree by this much.
CLOCK_SKEW = timedelta(minutes=5)
# Twilio's own answers that it did not take the message and a retry may succeed: throttled,
# or failed before taking it.
RETRYABLE_STATUSES = {429, 500, 503}
# Twilio's error codes, on other statuses, that say the same: 21611, this sender's queue of
# messages is full (HTTP 400); it drains at the sender's rate.
RETRYABLE_CODES = {21611}


class BaseUrlHttpClient(TwilioHttpClient):
    """The SDK has no base-URL option; tests and egress proxies need one."""

    def __init__(self, base_url: str, timeout: float) -> None:
        # max_retries=0: a retry belongs to the send task, which knows whether it is safe.
        super().__init__(timeout=timeout, max_retries=0)
        self.base_url = base_url.rstrip("/")
        self.retry_after: float | None = None  # the last answer's Retry-After, in seconds
        self.status: int | None = None  # the last answer's HTTP status
        if self.session is not None:
            self.session.trust_env = False  # never route loopback through a proxy variable

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if url.startswith(TWILIO_API):
            url = self.base_url + url[len(TWILIO_API) :]
        self.retry_after = self.status = None
        response = super().request(method, url, *args, **kwargs)
        # The SDK's errors keep no headers: the wait a 429 or a 503 asks for is kept here,
        # and so is the status, which problem details give only as their body says it.
        self.status = response.status_code
        self.retry_after = _retry_after((response.headers or {}).get("Retry-After"))
        return response


class TwilioBackend:
    def __init__(self) -> None:
        self.http = BaseUrlHttpClient(
            settings.TWILIO_API_BASE, timeout=settings.SMS_HTTP_TIMEOUT_SECONDS
        )
        self.client = Client(
            settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, http_client=self.http
        )
        # The SDK reads TWILIO_REGION and TWILIO_EDGE from the environment and calls the host
        # they make (api.dublin.ie1.twilio.com), past TWILIO_API_BASE and an egress proxy
        # there: Twilio's host is TWILIO_API_BASE's alone, a region's included.
        self.client.region = self.client.edge = None

    def send(self, message: OutgoingSms) -> SentSms:
        sender = (
            {"messaging_service_sid": settings.TWILIO_MESSAGING_SERVICE_SID}
            if settings.TWILIO_MESSAGING_SERVICE_SID
            else {"from_": settings.TWILIO_FROM_NUMBER}
        )
        try:
            created = self.client.messages.create(
                to=message.to,
                body=message.body,
                # The delivery rides along: a callback that overtakes the send task, before
                # the sid is recorded, still finds its delivery.
                status_callback=f"{settings.PUBLIC_BASE_URL}{STATUS_CALLBACK_PATH}"
                f"?delivery={quote(message.reference)}",
                # Twilio drops what it could not hand over in time: a late offer is worthless.
                validity_period=(
                    settings.SMS_VALIDITY_SECONDS
                    if message.validity_seconds is None
                    else message.validity_seconds
                ),
                **sender,
            )
        except (TwilioRestException, TwilioServiceException) as error:
            # Twilio's refusal in either shape the SDK reads: its older error body, or the
            # newer RFC 9457 problem details (TwilioServiceException, no subclass of the other).
            said = _refusal_text(error)
            code = _twilio_code(error)
            # The answer's own status: a problem details body's "status" may be a string,
            # null or another number (a gateway's), and the SDK takes it as it is.
            status = self.http.status or error.status
            if status in RETRYABLE_STATUSES or code in RETRYABLE_CODES:
                kind = TransientSmsError
            elif status >= 500:
                # A gateway's answer for Twilio behind it (502 bad gateway, 504 gateway
                # timeout, a CDN's 52x): Twilio may have taken the message.
                raise UncertainSmsError(
                    f"Twilio {status}: {said}; not retried, it may have been sent.",
                    code=code,
                    http_status=status,
                ) from error
            else:
                kind = PermanentSmsError
            raise kind(
                f"Twilio {status}: {said}",
                code=code,
                http_status=status,
                retry_after=self.http.retry_after,
            ) from error
        except (requests.ConnectionError, requests.Timeout) as error:
            if isinstance(error, requests.exceptions.ConnectTimeout) or _not_sent(error):
                raise TransientSmsError(f"Twilio unreachable: {_kinds(error)}") from error
            if isinstance(error, requests.Timeout):
                raise UncertainSmsError(
                    "No answer from Twilio in time; not retried, it may have been sent: "
                    + _kinds(error)
                ) from error
            raise UncertainSmsError(
                f"Twilio's answer was lost; not retried, it may have been sent: {_kinds(error)}"
            ) from error
        except json.JSONDecodeError as error:
            # A success that is no message: a page from a proxy or gateway in front of Twilio,
            # which passed the request on.
            raise _no_message(self.http.status, "its body was not JSON") from error
        if not isinstance(created.sid, str) or not created.sid:
            raise _no_message(self.http.status, "its body named no sid")
        return SentSms(sid=created.sid, status=created.status or "queued")

    def find(self, message: OutgoingSms, *, since: datetime) -> SentSms | None:
        """Twilio keeps no reference of ours on a message: the latest messages to the number
        are searched for one created since `since` with the same text, compared by letters
        and digits (a Messaging Service's Smart Encoding swaps quotes, dashes and spaces for
        plainer ones). The text holds the delivery's unique code, so no other message
        matches."""
        try:
            latest = self.client.messages.list(to=message.to, limit=FIND_AMONG_LATEST)
        except TwilioException as error:
            # A page it could not fetch. Its text quotes Twilio's whole answer, which may name
            # the number: the answer's status tells enough.
            status = next(
                (arg.status_code for arg in error.args if isinstance(arg, Response)), None
            )
            detail = f"HTTP {status}" if status else _kinds(error)
            raise TransientSmsError(
                f"Twilio could not list messages: {detail}", http_status=status
            ) from error
        except requests.RequestException as error:
            raise TransientSmsError(f"Twilio unreachable: {_kinds(error)}") from error
        except json.JSONDecodeError as error:
            # A page from a proxy in front of Twilio: no word on any message, asked again later.
            raise TransientSmsError(
                f"Twilio could not list messages: HTTP {self.http.status} answered no list",
                http_status=self.http.status,
            ) from error
        text = _letters_and_digits(message.body)
        for sent in latest:
            created = sent.date_created
            if (
                (sent.direction or "").startswith("outbound")
                and (created is None or created >= since - CLOCK_SKEW)
                and _letters_and_digits(sent.body or "") == text
            ):
                return SentSms(
                    sid=sent.sid, status=sent.status or "sent", error_code=sent.error_code
                )
        return None

    def forget(self, references: Collection[str]) -> None:
        """Passage keeps nothing of a message Twilio took but its sid; Twilio keeps its own
        message log (see README, Known and left)."""


def _no_message(status: int | None, why: str) -> UncertainSmsError:
    return UncertainSmsError(
        f"Twilio {status} answered no message; not retried, it may have been sent: {why}.",
        http_status=status,
    )


def _refusal_text(error: TwilioRestException | TwilioServiceException) -> str:
    """What Twilio said of a refusal: the older body's message, or the problem details'
    title and, where it says more, their detail."""
    if isinstance(error, TwilioRestException):
        return error.msg
    if error.detail and error.detail != error.title:
        return f"{error.title}: {error.detail}"
    return error.title


def _twilio_code(error: TwilioRestException | TwilioServiceException) -> int | None:
    """The error code the answer gave, as the number Twilio's are; None for one a delivery
    cannot record (a gateway's own problem details: "RATE_LIMITED", or a number out of range),
    and None for an answer that gave none."""
    code = error.code
    if isinstance(error, TwilioRestException) and code == error.status:
        # The SDK's stand-in for a body with no code (a balancer's page, an empty body): the
        # HTTP status, which is no error code of Twilio's (those are five digits).
        return None
    if isinstance(code, str) and code.isascii() and code.isdigit():
        code = int(code)
    if isinstance(code, int) and not isinstance(code, bool) and 0 <= code < 2**31:
        return code
    return None


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds to wait: it is a number of seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    # An HTTP date in any of RFC 9110's three forms, all in GMT: the asctime one names no
    # zone, which the e-mail parser below reads as an unknown one.
    timestamp = parse_http_date_safe(value)
    if timestamp is not None:
        return max(0.0, timestamp - datetime.now(UTC).timestamp())
    try:
        until = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if until.tzinfo is None:
        return None  # "-0000": a date with no known zone
    return max(0.0, (until - datetime.now(UTC)).total_seconds())


def _letters_and_digits(text: str) -> str:
    return "".join(character for character in text if character.isalnum())


def _not_sent(error: requests.RequestException) -> bool:
    """Whether the request failed before a byte of it was written, judged from the errors
    urllib3 chained rather than from their text: no connection was made (a name that did not
    resolve, even for a moment, a refusal, no route: urllib3's NewConnectionError), or the
    TLS handshake failed or timed out (urllib3 writes the request only after it)."""
    return any(
        isinstance(cause, NewConnectionError | ConnectionRefusedError | ssl.CertificateError)
        or _raised_in_handshake(cause)
        for cause in _causes(error)
    )


def _kinds(error: BaseException) -> str:
    """The error told by its type and the types of the errors behind it, with an OS error's
    own words: never by their text, which quotes the request's URL, and a lookup's URL holds
    the phone number it filters on."""
    kinds = [
        f"{type(cause).__name__} ({cause.strerror})"
        if isinstance(cause, OSError) and cause.strerror
        else type(cause).__name__
        for cause in _causes(error)
    ]
    return ", ".join(dict.fromkeys(kinds))


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and every error behind it: requests wraps urllib3's MaxRetryError, whose
    `reason` wraps the socket's or the ssl module's own error."""
    pending: list[object] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        # Not __context__: an error handled on the way (a first address refused, a second
        # one taken) says nothing of the one that ended the request.
        pending.extend([current.__cause__, getattr(current, "reason", None), *current.args])


def _raised_in_handshake(error: BaseException) -> bool:
    # ssl.SSLSocket.do_handshake on the error's way up: raised before the request was
    # written. The same error types raised while the answer was read are not.
    return any(
        frame.f_code.co_name == "do_handshake"
        for frame, _ in traceback.walk_tb(error.__traceback__)
    )
