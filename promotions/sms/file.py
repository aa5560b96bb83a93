import fcntl
import json
import os
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings

from promotions.sms import OutgoingSms, SentSms
from promotions.sms.local import local_sid


class FileBackend:
    """Appends one JSON object per SMS to SMS_FILE_PATH."""

    def send(self, message: OutgoingSms) -> SentSms:
        sid = local_sid()
        line = json.dumps(
            {
                "to": message.to,
                "body": message.body,
                "reference": message.reference,
                "sid": sid,
                "sent_at": datetime.now(UTC).isoformat(),
            },
            ensure_ascii=False,
        )
        path = Path(settings.SMS_FILE_PATH)
        path.parent.mkdir(parents=True, exist_ok=True)
        # One write of a whole line to a file opened for appending: lines from several
        # workers never interleave. Under the file's lock, which an erasure rewriting it
        # holds: a line appended between its read and its rewrite would be lost.
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            os.write(descriptor, (line + "\n").encode())
        finally:
            os.close(descriptor)
        return SentSms(sid=sid, status="sent")

    def find(self, message: OutgoingSms, *, since: datetime) -> SentSms | None:
        """Read back from the file: a line with the message's reference."""
        path = Path(settings.SMS_FILE_PATH)
        if not path.exists():
            return None
        with path.open(encoding="utf-8") as lines:
            fcntl.flock(lines, fcntl.LOCK_SH)
            for line in lines:
                sent = _message(line)
                if sent is not None and sent.get("reference") == message.reference:
                    return SentSms(sid=sent["sid"], status="sent")
        return None

    def forget(self, references: Collection[str]) -> None:
        """Rewrite the file without these messages' lines: the file holds each one's number
        and text, which their customer's erasure removes. In place, under the lock senders
        take: a sender that opened the file before a rename would append to the old one."""
        path = Path(settings.SMS_FILE_PATH)
        if not references or not path.exists():
            return
        with path.open("r+b") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            lines = file.read().splitlines(keepends=True)
            kept = [line for line in lines if _reference(line) not in references]
            if len(kept) == len(lines):
                return
            file.seek(0)
            file.write(b"".join(kept))
            file.truncate()


def _message(line: str | bytes) -> dict | None:
    try:
        sent = json.loads(line)
    except ValueError:
        return None  # a line cut short by a full disk is not a message
    return sent if isinstance(sent, dict) else None


def _reference(line: bytes) -> str | None:
    sent = _message(line)
    return None if sent is None else sent.get("reference")
