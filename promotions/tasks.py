"""Celery tasks: each loads by id, calls one service, and retries only what is transient.

Every task is idempotent in the data (unique constraints, conditional claims), so late
acknowledgement is safe: a batch redelivered after a worker died is processed once.
"""

import functools
import inspect
import logging
import random
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import ParamSpec, TypeVar

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from promotions import decisions, sending, services, sms, tracking
from promotions.database import database_unavailable
from promotions.models import Delivery, DeliveryStatus
from promotions.times import local_day

logger = logging.getLogger(__name__)

# The longest a send waits before its retry, whatever the provider's Retry-After says.
MAX_SEND_BACKOFF_SECONDS = 60
# The sweep's batches are read this many at a time, oldest first.
SWEEP_PAGE = 100

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
def process_location_batch(self, batch_id: int) -> int:
    """A stored batch of pings or sightings: presence, then decisions, then sends."""
    return queue_sends(decisions.process_location_batch(batch_id=batch_id, now=timezone.now()))


@shared_task(bind=True, acks_late=True, max_retries=settings.SMS_MAX_RETRIES)
def send_sms(self, delivery_id: int) -> str:
    final = self.request.retries >= self.max_retries
    try:
        outcome = sending.send_delivery(
            delivery_id=delivery_id,
            now=timezone.now(),
            final_attempt=final,
            retry=self.request.retries > 0,
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
@_retried_while_database_unavailable
def tick_presence(self) -> int:
    """Celery beat, every minute: presences that timed out, and dwells reached in silence."""
    return queue_sends(decisions.process_presence_tick(now=timezone.now()))


@shared_task(
    bind=True, acks_late=True, autoretry_for=DATABASE_ERRORS, retry_backoff=True, max_retries=3
)
@_retried_while_database_unavailable
def purge_location_history(self) -> int:
    """Celery beat: raw pings and sightings older than LOCATION_RETENTION_DAYS."""
    return services.purge_location_history(now=timezone.now())


@shared_task(
    bind=True, acks_late=True, autoretry_for=DATABASE_ERRORS, retry_backoff=True, max_retries=3
)
@_retried_while_database_unavailable
def record_campaign_days(self) -> int:
    """Celery beat, every hour: each campaign's figures for the two UTC days before today
    (the SMS statuses of a day keep arriving for a while after it ends)."""
    now = timezone.now()
    today = local_day(now, UTC)
    days = [today - timedelta(days=n) for n in (2, 1)]
    return services.record_campaign_days(days=days, now=now)


@shared_task(
    bind=True, acks_late=True, autoretry_for=DATABASE_ERRORS, retry_backoff=True, max_retries=3
)
@_retried_while_database_unavailable
def sweep_unprocessed(self) -> int:
    """Celery beat, every minute: process any stored batch whose task was lost (a broker down
    when it was accepted, or restarted with the queue in memory), so every accepted ping is
    processed. It processes in place, oldest first, for most of a beat period, instead of
    enqueuing: when the workers are merely behind, enqueuing again would only grow the
    backlog. Returns how many batches it processed."""
    now = timezone.now()
    swept = sweep_lost_batches(now=now, budget_seconds=0.75 * settings.BEAT_EVERY_SECONDS)
    late = now - timedelta(seconds=settings.SWEEP_AFTER_SECONDS)
    stranded = decisions.stranded_deliveries(due_before=late)
    # Their send would only fail them: after a worker outage, thousands, and queued sweeps
    # would enqueue them again each. queue_sends passes over the failed ones.
    sending.fail_past_due(stranded, now=timezone.now())
    queue_sends(stranded)
    return swept


def sweep_lost_batches(*, now: datetime, budget_seconds: float) -> int:
    """Process unprocessed batches older than SWEEP_AFTER_SECONDS until none is left or the
    time budget is spent; returns how many were processed. Kept under a beat period, so
    that runs rarely overlap (two that do are safe: each batch's row is claimed once). A
    broker outage leaves a backlog of thousands of batches, more than any fixed count per
    run would clear in hours. A batch whose processing fails (a bug, a row the code did not
    expect) is logged and passed over: first in line, it would otherwise fail every run and
    hold up every lost batch behind it. A database that is away fails the whole run, for
    the task to retry."""
    deadline = time.monotonic() + min(budget_seconds, settings.CELERY_TASK_SOFT_TIME_LIMIT / 2)
    older_than = timedelta(seconds=settings.SWEEP_AFTER_SECONDS)
    failed: set[int] = set()
    swept = 0
    while time.monotonic() < deadline:
        # Failed batches stay unprocessed, first in line: read past them.
        page = tracking.unprocessed_batches(
            now=now, older_than=older_than, limit=len(failed) + SWEEP_PAGE
        )
        batch_ids = [batch_id for batch_id in page if batch_id not in failed]
        if not batch_ids:
            break
        for batch_id in batch_ids:
            if time.monotonic() >= deadline:
                break
            try:
                decided = decisions.process_location_batch(batch_id=batch_id, now=timezone.now())
                queue_sends(decided)
            except Exception as error:
                if database_unavailable(error):
                    raise
                logger.exception("The sweep could not process location batch %d.", batch_id)
                failed.add(batch_id)
            else:
                swept += 1
    return swept


@shared_task(
    bind=True, acks_late=True, autoretry_for=DATABASE_ERRORS, retry_backoff=True, max_retries=3
)
@_retried_while_database_unavailable
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
    # A delivery failed while its slot was booked (expired before any slot) has none to keep.
    slots = Delivery.objects.filter(
        id__in=list(delivery_ids), status=DeliveryStatus.QUEUED
    ).values_list("id", "send_after")
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
