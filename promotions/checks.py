"""System checks: settings that work but not as a deployment expects. They show in
`manage.py check`, `migrate` and `runserver`."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning, register


@register()
def twilio_without_a_broker(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Real SMS with tasks run in the web process: a send goes out inside the request that
    decided it, and a Celery eta (the sender's pace, a retry's backoff) means nothing
    there. Requests are never made to sleep instead, so this is said rather than mended."""
    if settings.SMS_BACKEND != "twilio" or not settings.CELERY_TASK_ALWAYS_EAGER:
        return []
    return [
        Warning(
            "SMS_BACKEND=twilio without CELERY_BROKER_URL: sends go out inside the request, "
            "without pacing (SMS_SENDER_MPS) or retry backoff.",
            hint="Set CELERY_BROKER_URL and run a worker.",
            id="passage.W001",
        )
    ]
