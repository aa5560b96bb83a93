"""Celery tasks: each loads by id, calls one service, and retries only what is transient.

Every task is idempotent in the data (unique constraints, conditional claims), so late
acknowledgement is safe: a batch redelivered after a worker died is processed once.
"""

import functools
import inspect
import logging
import random
from collections.abc import Callable, Iterable
from typing import ParamSpec, TypeVar

from celery import Task, shared_task
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from promotions import decisions, feedback, sending, services, sms
from promotions.database import database_unavailable

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class DatabaseUnavailable(Exception):
    """A database error that passes (database_unavailable): what the tasks retry."""


# A database that is restarting or failing over answers again within a minute or two.
DATABASE_ERRORS = (DatabaseUnavailable,)


def _retried_while_database_unavailable(run: Callable[P, R]) -> Callable[P, R]:
    """The task raises DatabaseUnavailable for a database that is away, which its
    autoretry_for (DATABASE_ERRORS) retries; any other database error fails it. Celery's
    autoretry_for matches by class only, and a read-only standby's error shares its class
    (InternalError) with errors no retry helps."""

    @functools.wraps(run)
    def task(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return run(*args, **kwargs)
        except DatabaseError as error:
            if database_unavailable(error):
                raise DatabaseUnavailable(f"{type(error).__name__}: {error}") from error
            raise

    # Celery checks a call's arguments against the task's signature: keep the task's own.
    task.__signature__ = inspect.signature(run)  # type: ignore[attr-defined]
    return task


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=DATABASE_ERRORS,
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
@_retried_while_database_unavailable
def process_location_batch(self: Task, batch_id: int) -> int:
    """A stored batch of pings or sightings: presence, then decisions, then sends."""
    return queue_sends(decisions.process_location_batch(batch_id=batch_id, now=timezone.now()))


@shared_task(bind=True, acks_late=True, max_retries=settings.SMS_MAX_RETRIES)
def send_sms(self: Task, delivery_id: int) -> str:
    final = self.request.retries >= self.max_retries
    try:
        outcome = sending.send_delivery(
            delivery_id=delivery_id,
            now=timezone.now(),
            final_attempt=final,
            retry=self.request.retries > 0,
        )
    except sms.TransientSmsError as error:
        backoff = sending.retry_wait(
            self.request.retries, error.retry_after, jitter=random.uniform(0, 1)
        )
        retry_at = sending.schedule_retry(
            delivery_id=delivery_id, now=timezone.now(), backoff=backoff
        )
        raise self.retry(exc=error, eta=retry_at) from None
    return outcome.status


@shared_task(
    bind=True, acks_late=True, autoretry_for=DATABASE_ERRORS, retry_backoff=True, max_retries=3
)
@_retried_while_database_unavailable
def tick_presence(self: Task) -> int:
    """Celery beat, every minute: presences that timed out, and dwells reached in silence."""
    return queue_sends(decisions.process_presence_tick(now=timezone.now()))


@shared_task(
    bind=True, acks_late=True, autoretry_for=DATABASE_ERRORS, retry_backoff=True, max_retries=3
)
@_retried_while_database_unavailable
def purge_location_history(self: Task) -> int:
    """Celery beat, every hour: raw pings and sightings older than LOCATION_RETENTION_DAYS,
    and the sids of replies acted on older than feedback.REPLAY_WINDOW. Returns how many
    pings and sightings."""
    now = timezone.now()
    feedback.forget_handled_replies(now=now)
    return services.purge_location_history(now=now)


@shared_task(
    bind=True, acks_late=True, autoretry_for=DATABASE_ERRORS, retry_backoff=True, max_retries=3
)
@_retried_while_database_unavailable
def record_campaign_days(self: Task) -> int:
    """Celery beat, every hour: each campaign's figures for the two days before today, in
    SMS_BUDGET_TIMEZONE (the SMS statuses of a day keep arriving for a while after it ends)."""
    now = timezone.now()
    return services.record_campaign_days(days=services.budget_days_before(now, 2), now=now)


@shared_task(
    bind=True, acks_late=True, autoretry_for=DATABASE_ERRORS, retry_backoff=True, max_retries=3
)
@_retried_while_database_unavailable
def sweep_unprocessed(self: Task) -> int:
    """Celery beat, every minute: process any stored batch whose task was lost (a broker down
    when it was accepted, or restarted with the queue in memory), so every accepted ping is
    processed. It processes in place, oldest first, for most of a beat period, instead of
    enqueuing: when the workers are merely behind, enqueuing again would only grow the
    backlog. Returns how many batches it processed."""
    now = timezone.now()
    swept = decisions.decide_lost_batches(
        now=now, budget_seconds=0.75 * settings.BEAT_EVERY_SECONDS, queue_sends=queue_sends
    )
    # queue_sends passes over the lost sends failed as past due.
    queue_sends(sending.lost_sends(swept_at=now, now=timezone.now()))
    return swept


@shared_task(
    bind=True, acks_late=True, autoretry_for=DATABASE_ERRORS, retry_backoff=True, max_retries=3
)
@_retried_while_database_unavailable
def settle_claimed_sends(self: Task) -> int:
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
    slots = sending.queued_send_slots(delivery_ids)
    for delivery_id, send_after in slots:
        send_sms.apply_async((delivery_id,), eta=send_after)
    return len(slots)


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
