from collections.abc import Collection
from datetime import datetime

from promotions.sms import OutgoingSms, SentSms
from promotions.sms.local import local_sid

# Every SMS sent in this process, oldest first; tests read and clear it.
outbox: list[OutgoingSms] = []
# The sid each one was given, by reference.
sids: dict[str, str] = {}


def clear() -> None:
    outbox.clear()
    sids.clear()


class LocmemBackend:
    def send(self, message: OutgoingSms) -> SentSms:
        outbox.append(message)
        sids[message.reference] = local_sid()
        return SentSms(sid=sids[message.reference], status="sent")

    def find(self, message: OutgoingSms, *, since: datetime) -> SentSms | None:
        sid = sids.get(message.reference)
        return None if sid is None else SentSms(sid=sid, status="sent")

    def forget(self, references: Collection[str]) -> None:
        outbox[:] = [message for message in outbox if message.reference not in references]
        for reference in references:
            sids.pop(reference, None)
