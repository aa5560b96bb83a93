from promotions.sms import OutgoingSms, SentSms
from promotions.sms.local import local_sid

# Every SMS sent in this process, oldest first; tests read and clear it.
outbox: list[OutgoingSms] = []


def clear() -> None:
    outbox.clear()


class LocmemBackend:
    def send(self, message: OutgoingSms) -> SentSms:
        outbox.append(message)
        return SentSms(sid=local_sid(), status="sent")
