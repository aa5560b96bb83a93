"""Celery tasks: each loads by id, calls one service, and retries only what is transient.

Every task is idempotent in the data (unique constraints, conditional claims), so late
acknowledgement is safe: a batch redelivered after a worker died is processed once.
"""

import logging
import random
from collections.abc import Iterable
from datetime import UTC, timedelta

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from promotions import decisions, sending, services, sms, tracking
from promotions.models import Delivery

logger = logging.getLogger(__name__)

# A database that is restarting or failing over answers again within a minute or two.
DATABASE_ERRORS = (OperationalError, InterfaceError)
# The longest a send waits before its retry, whatever the provider's Retry-After says.
MAX_SEND_BACKOFF_SECONDS = 60


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=DATABASE_ERRORS,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def process_location_batch(self, batch_id: int) -> int:
    """A stored batch of pings or sightings: presence, then decisions, then sends."""
    return queue_sends(decisions.process_location_batch(batch_id=batch_id, now=timezone.now()))


@shared_task(bind=True, acks_late=True, max_retries=settings.SMS_MAX_RETRIES)
def send_sms(self, delivery_id: int) -> str:
    final = self.request.retries >= self.max_retries
    try:
        outcome = sending.send_delivery(
            delivery_id=delivery_id, now=timezone.now(), final_attempt=final
        )
    except sms.TransientSmsError as error:
        # Exponential backoff, or the wait the provider asked for (a 429's Retry-After), with
        # jitter, so a fleet of retries does not hit Twilio in step.
        wait = 2**self.request.retries if error.retry_after is None else error.retry_after
        backoff = timedelta(seconds=min(wait, MAX_SEND_BACKOFF_SECONDS) + random.uniform(0, 1))
        retry_at = sending.schedule_retry(
            delivery_id=delivery_id, now=timezone.now(), backoff=backoff
        )
        raise self.retry(exc=error, eta=retry_at) from None
    return outcome.status


@shared_task(
    bind=True, acks_late=True, autoretry_for=DATABASE_ERRORS, retry_backoff=True, max_retries=3
)
def tick_presence(self) -> int:
    """Celery beat, every minute: presences that timed out, and dwells reached in silence."""
    return queue_sends(decisions.process_presence_tick(now=timezone.now()))


@shared_task(
    bind=True, acks_late=True, autoretry_for=DATABASE_ERRORS, retry_backoff=True, max_retries=3
)
def purge_location_history(self) -> int:
    """Celery beat: raw pings and sightings older than LOCATION_RETENTION_DAYS."""
    return services.purge_location_history(now=timezone.now())


@shared_task(
    bind=True, acks_late=True, autoretry_for=DATABASE_ERRORS, retry_backoff=True, max_retries=3
)
def record_campaign_days(self) -> int:
    """Celery beat, every hour: each campaign's figures for the two UTC days before today
    (the SMS statuses of a day keep arriving for a while after it ends)."""
    now = timezone.now()
    today = now.astimezone(UTC).date()
    days = [today - timedelta(days=n) for n in (2, 1)]
    return services.record_campaign_days(days=days, now=now)


@shared_task(
    bind=True, acks_late=True, autoretry_for=DATABASE_ERRORS, retry_backoff=True, max_retries=3
)
def sweep_unprocessed(self) -> int:
    """Celery beat, every minute: process any stored batch whose task was lost (a broker down
    when it was accepted, or restarted with the queue in memory), so every accepted ping is
    processed. It processes in place, a bounded amount per run, instead of enqueuing: when
    the workers are merely behind, enqueuing again would only grow the backlog."""
    now = timezone.now()
    batch_ids = tracking.unprocessed_batches(
        now=now, older_than=timedelta(seconds=settings.SWEEP_AFTER_SECONDS), limit=10
    )
    for batch_id in batch_ids:
        queue_sends(decisions.process_location_batch(batch_id=batch_id, now=now))
    late = now - timedelta(seconds=settings.SWEEP_AFTER_SECONDS)
    queue_sends(decisions.stranded_deliveries(due_before=late))
    return len(batch_ids)


@shared_task(
    bind=True, acks_late=True, autoretry_for=DATABASE_ERRORS, retry_backoff=True, max_retries=3
)
def settle_claimed_sends(self) -> int:
    """Celery beat, every five minutes: sends claimed and never recorded (a worker died
    mid-send, or the provider's answer never came), asked of the provider once their offer
    expired. A provider that cannot be asked now is asked at the next run."""
    try:
        return sending.settle_claimed_sends(now=timezone.now())
    except sms.TransientSmsError as error:
        logger.warning("Could not ask the SMS provider about claimed sends: %s", error)
        return 0


def queue_sends(delivery_ids: Iterable[int]) -> int:
    """Enqueue one send per queued delivery at its paced slot; returns how many."""
    slots = Delivery.objects.filter(id__in=list(delivery_ids)).values_list("id", "send_after")
    count = 0
    for delivery_id, send_after in slots:
        send_sms.apply_async((delivery_id,), eta=send_after)
        count += 1
    return count


def enqueue_location_batch(batch_id: int | None) -> None:
    """Hand a stored batch to the workers. The batch is already durable; if the broker
    cannot take it, the answer to the client still stands, the failure is logged, and the
    sweep processes the batch later."""
    if batch_id is None:
        return
    try:
        process_location_batch.delay(batch_id)
    except Exception:
        if settings.CELERY_TASK_ALWAYS_EAGER:
            raise
        logger.exception("Could not enqueue location batch %d.", batch_id)
