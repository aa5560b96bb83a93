import json
import os
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
        # workers never interleave.
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
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
            for line in lines:
                try:
                    sent = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a full disk is not a message
                if isinstance(sent, dict) and sent.get("reference") == message.reference:
                    return SentSms(sid=sent["sid"], status="sent")
        return None
