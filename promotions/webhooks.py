"""Twilio's webhooks: delivery status callbacks and customers' replies.

Each request must carry a valid `X-Twilio-Signature`, computed over the URL Twilio called.
That URL is rebuilt from PUBLIC_BASE_URL (with any path prefix the site is mounted under),
never from the Host header, which a proxy rewrites and a caller controls.
"""

import re
from xml.sax.saxutils import escape

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from promotions import feedback


def _signed(request: HttpRequest) -> bool:
    signature = request.headers.get("X-Twilio-Signature", "")
    if not settings.TWILIO_AUTH_TOKEN or not signature:
        return False
    # PUBLIC_BASE_URL names any prefix the site is mounted under (SCRIPT_NAME): the path is
    # taken without it. Every value of a repeated form key is signed, so all are passed.
    url = settings.PUBLIC_BASE_URL + request.get_full_path_info()
    return RequestValidator(settings.TWILIO_AUTH_TOKEN).validate(url, request.POST, signature)


def _number(raw: str | None, *, digits: int) -> int | None:
    """A whole number of at most `digits` ASCII digits, else None (str.isdigit alone also
    takes '²', which int() refuses)."""
    return int(raw) if raw and raw.isascii() and raw.isdigit() and len(raw) <= digits else None


# A message's sid as Twilio writes it: SM (MM for a picture message) and 32 hex digits,
# or fewer, as in a sid written by hand (SM1) to try the webhook.
MESSAGE_SID = re.compile(r"(SM|MM)[0-9a-fA-F]{1,32}")


def _sid(raw: str | None) -> str:
    """A message sid of Twilio's shape, else "" (a callback that is then ignored): anything
    longer or with a NUL in it would not fit the stored sid, and the database refuses it."""
    return raw if raw and MESSAGE_SID.fullmatch(raw) else ""


@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest) -> HttpResponse:
    if not _signed(request):
        return HttpResponseForbidden("Invalid or missing X-Twilio-Signature.")
    feedback.apply_status_callback(
        sid=_sid(request.POST.get("MessageSid")),
        status=request.POST.get("MessageStatus", "").lower(),
        error_code=_number(request.POST.get("ErrorCode"), digits=9),
        delivery_id=_number(request.GET.get("delivery"), digits=18),
        now=timezone.now(),
    )
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def twilio_inbound(request: HttpRequest) -> HttpResponse:
    if not _signed(request):
        return HttpResponseForbidden("Invalid or missing X-Twilio-Signature.")
    reply = feedback.handle_inbound_sms(
        from_number=request.POST.get("From", ""),
        body=request.POST.get("Body", ""),
        opt_out_type=request.POST.get("OptOutType", ""),
        message_sid=_sid(request.POST.get("MessageSid")),
        now=timezone.now(),
    )
    message = f"<Message>{escape(reply)}</Message>" if reply else ""
    return HttpResponse(
        f'<?xml version="1.0" encoding="UTF-8"?><Response>{message}</Response>',
        content_type="application/xml",
    )
