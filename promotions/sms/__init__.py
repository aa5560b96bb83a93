"""SMS backends, chosen by settings.SMS_BACKEND like Django's e-mail backends.

`console` prints (make run), `locmem` keeps messages in a list (tests), `file` appends JSON
lines, `twilio` sends through the official SDK. Only `promotions.sms.twilio` imports twilio.
"""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module
from typing import Protocol

from django.conf import settings


@dataclass(frozen=True)
class OutgoingSms:
    to: str
    body: str
    reference: str  # our delivery id, for logs
    # How long the provider may hold the message before dropping it: what is left of the
    # offer's validity. None: the whole of SMS_VALIDITY_SECONDS.
    validity_seconds: int | None = None


@dataclass(frozen=True)
class SentSms:
    sid: str
    status: str
    # The provider's error code for a message it failed or could not deliver (found later).
    error_code: int | None = None


class SmsError(Exception):
    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        # Seconds the provider asked us to wait before trying again (Retry-After), if it did.
        self.retry_after = retry_after


class TransientSmsError(SmsError):
    """Nothing was accepted, and a retry may succeed: throttling (429), a provider error
    (500, 503), no connection (DNS, refused, a failed TLS handshake)."""


class PermanentSmsError(SmsError):
    """Never retried: the provider refused the message (an invalid or unsubscribed number,
    bad credentials)."""


class UncertainSmsError(SmsError):
    """The request went out and its answer never came (a timeout, a dropped connection), or
    came from a gateway in front of the provider (502, 504), or a success that names no
    message (a proxy's page): the provider may have accepted the message, so a retry could
    text twice. Never retried; the provider is asked later
    (`SmsBackend.find`)."""


class SmsBackend(Protocol):
    def send(self, message: OutgoingSms) -> SentSms: ...

    def find(self, message: OutgoingSms, *, since: datetime) -> SentSms | None:
        """The message the provider took for `message` (same recipient and text, same
        reference where the provider keeps one) since `since`, or None if it took none.
        Raises TransientSmsError when the provider cannot be asked now."""
        ...

    def forget(self, references: Collection[str]) -> None:
        """Drop what Passage keeps of the messages with these references (our delivery ids),
        their recipient and text: their customer was erased. A provider's own log is the
        provider's (Twilio's: see README, Known and left)."""
        ...


BACKENDS = {
    "console": "promotions.sms.console.ConsoleBackend",
    "locmem": "promotions.sms.locmem.LocmemBackend",
    "file": "promotions.sms.file.FileBackend",
    "twilio": "promotions.sms.twilio.TwilioBackend",
}


def get_backend() -> SmsBackend:
    module, _, name = BACKENDS[settings.SMS_BACKEND].rpartition(".")
    return getattr(import_module(module), name)()


def sender_id() -> str:
    """Who sends, for pacing: the Messaging Service, else the From number, else the backend."""
    if settings.SMS_BACKEND == "twilio":
        return settings.TWILIO_MESSAGING_SERVICE_SID or settings.TWILIO_FROM_NUMBER
    return settings.SMS_BACKEND
