import sys
from collections.abc import Collection
from datetime import datetime

from promotions import offers
from promotions.sms import OutgoingSms, SentSms
from promotions.sms.local import local_sid


class ConsoleBackend:
    """Prints each SMS: what a developer watches under `make run`."""

    def send(self, message: OutgoingSms) -> SentSms:
        encoding = offers.sms_encoding(message.body)
        segments = offers.sms_segments(message.body)
        rule = "-" * 60
        print(
            f"{rule}\nSMS to {message.to} (delivery {message.reference}, {encoding}, "
            f"{segments} segment{'s' if segments > 1 else ''})\n{message.body}\n{rule}",
            file=sys.stdout,
            flush=True,
        )
        return SentSms(sid=local_sid(), status="sent")

    def find(self, message: OutgoingSms, *, since: datetime) -> SentSms | None:
        """A print keeps no record: a message printed by a worker that stopped before
        recording it is not found (and not printed again)."""
        return None

    def forget(self, references: Collection[str]) -> None:
        """Nothing is kept: what was printed is the terminal's."""
