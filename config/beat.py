"""The beat of `make run`. Without a broker there is no `celery beat` to run
CELERY_BEAT_SCHEDULE, and then nothing announces a dwell reached in silence, ends a visit
whose pings stopped, purges old history or records the daily figures. With
BEAT_IN_PROCESS, runserver's serving process runs that schedule itself, each task eagerly,
in one daemon thread (config/management/commands/runserver.py starts it)."""

import copy
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from celery import Celery
from celery.beat import ScheduleEntry
from celery.schedules import maybe_schedule
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from config.celery import app as celery_app

logger = logging.getLogger(__name__)


class InProcessBeat:
    """A schedule shaped as CELERY_BEAT_SCHEDULE, each entry run when Celery's own schedule
    says it is due on `clock`: as `celery beat` starting afresh does, one period after the
    beat started, then every period."""

    def __init__(
        self,
        schedule: Mapping[str, Mapping[str, Any]],
        *,
        app: Celery,
        clock: Callable[[], datetime] = timezone.now,
    ) -> None:
        self._app = app
        self._entries = [
            self._entry(name, definition, clock) for name, definition in schedule.items()
        ]

    def _entry(
        self, name: str, definition: Mapping[str, Any], clock: Callable[[], datetime]
    ) -> ScheduleEntry:
        relative = definition.get("relative", False)
        # A copy: a schedule object given in the settings keeps its own clock.
        when = copy.copy(maybe_schedule(definition["schedule"], relative, app=self._app))
        when.nowfun = clock
        return ScheduleEntry(
            name=name,
            task=definition["task"],
            schedule=when,
            args=definition.get("args", ()),
            kwargs=definition.get("kwargs"),
            options=definition.get("options"),
            relative=relative,
            app=self._app,
        )

    def run_due(self) -> float:
        """Run each entry that is due, once; returns the seconds until the next is due."""
        waits = []
        for index, entry in enumerate(self._entries):
            due, wait = entry.is_due()
            if due:
                self._entries[index] = entry = next(entry)
                self._run(entry)
            waits.append(wait)
        return min(waits, default=60.0)

    def _run(self, entry: ScheduleEntry) -> None:
        logger.debug("Beat in the web process: running %s (%s)", entry.name, entry.task)
        try:
            task = self._app.tasks[entry.task]
            # Eager: the task runs here, and a failure inside it is logged by Celery.
            task.apply_async(entry.args, entry.kwargs, **entry.options)
        except Exception:
            logger.exception("Beat in the web process: %s (%s) failed", entry.name, entry.task)


def start_in_process_beat() -> threading.Thread | None:
    """The beat thread of the serving process, or None beside a broker: there `celery beat`
    runs the schedule, and a second beat would run everything twice."""
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        logger.warning(
            "BEAT_IN_PROCESS is ignored: CELERY_BROKER_URL is set, so `celery beat` runs "
            "the schedule."
        )
        return None
    beat = InProcessBeat(settings.CELERY_BEAT_SCHEDULE, app=celery_app)
    thread = threading.Thread(target=_beat_forever, args=(beat,), name="beat", daemon=True)
    thread.start()
    logger.info(
        "Beat in the web process: %d periodic tasks scheduled.", len(settings.CELERY_BEAT_SCHEDULE)
    )
    return thread


def _beat_forever(beat: InProcessBeat) -> None:
    while True:
        wait = beat.run_due()
        # No request ends in this thread to close what its tasks opened, as Django does
        # after each request (CONN_MAX_AGE, a connection left broken).
        close_old_connections()
        time.sleep(wait)
