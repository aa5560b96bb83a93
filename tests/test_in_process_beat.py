"""The beat `make run` runs in its serving process (config/beat.py): CELERY_BEAT_SCHEDULE's
tasks, each when Celery's schedule says it is due on the clock given, and a failing one
stopping nothing."""

import logging
from datetime import UTC, datetime, timedelta

import pytest
from celery import Celery
from django.core.management import get_commands

from config.beat import InProcessBeat, start_in_process_beat


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def ran():
    return []


@pytest.fixture
def app(ran):
    """A Celery app configured as the project's (eager, failures not propagated), with
    tasks of its own."""
    app = Celery("beat-test", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")

    @app.task(name="record", shared=False)
    def record(name: str) -> None:
        ran.append(name)

    @app.task(name="fail", shared=False)
    def fail() -> None:
        raise RuntimeError("the database went away")

    return app


def every(seconds: float, task: str = "record", *args: str) -> dict:
    return {"task": task, "schedule": seconds, "args": list(args), "options": {"expires": seconds}}


def test_each_task_runs_once_when_its_interval_has_passed(app, clock, ran):
    schedule = {"tick": every(60, "record", "tick"), "purge": every(3600, "record", "purge")}
    beat = InProcessBeat(schedule, app=app, clock=clock)

    beat.run_due()
    clock.advance(seconds=59)
    beat.run_due()
    assert ran == []

    clock.advance(seconds=1)
    assert beat.run_due() == 60
    beat.run_due()
    assert ran == ["tick"]

    clock.advance(seconds=3540)
    beat.run_due()
    assert ran == ["tick", "tick", "purge"]


def test_it_says_how_long_until_the_next_task_is_due(app, clock):
    beat = InProcessBeat({"tick": every(60), "settle": every(300)}, app=app, clock=clock)

    clock.advance(seconds=45)

    assert beat.run_due() == 15


def test_a_failing_task_is_logged_and_the_others_still_run(app, clock, ran, caplog):
    schedule = {
        "broken": every(60, "fail"),
        "unknown": every(60, "promotions.tasks.no_such_task"),
        "tick": every(60, "record", "tick"),
    }
    beat = InProcessBeat(schedule, app=app, clock=clock)

    clock.advance(seconds=60)
    with caplog.at_level(logging.ERROR):
        beat.run_due()
    clock.advance(seconds=60)
    beat.run_due()

    assert ran == ["tick", "tick"]
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "the database went away" in logged
    assert "unknown" in logged


def test_it_is_not_started_beside_a_broker(settings, caplog):
    # With a broker, `celery beat` runs the schedule: a second beat would run it twice.
    settings.CELERY_TASK_ALWAYS_EAGER = False

    with caplog.at_level(logging.WARNING):
        assert start_in_process_beat() is None

    assert "CELERY_BROKER_URL" in caplog.text


def test_runserver_is_the_one_that_starts_the_beat():
    # Django takes a command from the first app that has it: staticfiles' would win over
    # config's if config came after it in INSTALLED_APPS.
    assert get_commands()["runserver"] == "config"
