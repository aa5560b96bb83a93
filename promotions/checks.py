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


# RabbitMQ closes the channel of a consumer holding a message unacknowledged longer than
# its consumer_timeout (30 minutes unless its configuration says otherwise).
RABBITMQ_CONSUMER_TIMEOUT_SECONDS = 1800


@register()
def paced_sends_outlast_the_broker(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """A paced send (or a retry) waits in its worker, unacknowledged, up to
    SMS_VALIDITY_SECONDS for its slot. Redis hands a message unacknowledged for longer than
    its visibility timeout to another worker, once a period: copies of the send pile up.
    RabbitMQ closes the channel of a consumer that holds one past its consumer_timeout."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return []
    validity = settings.SMS_VALIDITY_SECONDS
    visibility = settings.CELERY_VISIBILITY_TIMEOUT_SECONDS
    scheme = settings.CELERY_BROKER_URL.partition("://")[0]
    if scheme in ("redis", "rediss") and visibility < validity:
        return [
            Warning(
                f"CELERY_VISIBILITY_TIMEOUT_SECONDS={visibility} "
                f"is shorter than SMS_VALIDITY_SECONDS={validity}: Redis hands a send still "
                "waiting for its paced slot to another worker once a period.",
                hint="Unset CELERY_VISIBILITY_TIMEOUT_SECONDS, or set it above "
                "SMS_VALIDITY_SECONDS.",
                id="passage.W002",
            )
        ]
    if scheme in ("amqp", "amqps") and validity > RABBITMQ_CONSUMER_TIMEOUT_SECONDS:
        return [
            Warning(
                f"SMS_VALIDITY_SECONDS={validity} is longer than RabbitMQ's consumer_timeout "
                f"({RABBITMQ_CONSUMER_TIMEOUT_SECONDS} s by default): a send waiting that long "
                "for its paced slot has its worker's channel closed, and goes to another worker.",
                hint="Raise consumer_timeout in RabbitMQ's configuration above "
                "SMS_VALIDITY_SECONDS, or lower SMS_VALIDITY_SECONDS.",
                id="passage.W003",
            )
        ]
    return []
