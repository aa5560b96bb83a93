"""Settings read the environment through typed helpers that refuse bad values."""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from config import settings as config


def test_env_helpers_read_typed_values(monkeypatch):
    monkeypatch.setenv("X_INT", "42")
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    monkeypatch.setenv("X_FLOAT", "2.5")

    assert config.env_int("X_INT", 0) == 42
    assert config.env_bool("X_BOOL", False) is True
    assert config.env_list("X_LIST", []) == ["a", "b", "c"]
    assert config.env_float("X_FLOAT", 0.0) == 2.5
    assert config.env_int("X_UNSET", 7) == 7


@pytest.mark.parametrize(
    ("helper", "value", "kwargs", "message"),
    [
        (config.env_int, "many", {"default": 1}, "whole number"),
        (config.env_int, "0", {"default": 1, "minimum": 1}, "in [1"),
        (config.env_bool, "perhaps", {"default": False}, "true/false"),
        (config.env_float, "nan", {"default": 1.0}, "finite"),
        (config.env_url, "ftp://x", {}, "http(s) URL"),
        (config.env_choice, "smoke", {"default": "a", "choices": ("a", "b")}, "one of a, b"),
        (config.env_timezone, "Nowhere/Land", {"default": "UTC"}, "IANA time zone"),
        (config.env_timezone, "America", {"default": "UTC"}, "IANA time zone"),
    ],
)
def test_env_helpers_refuse_bad_values_naming_the_variable(
    monkeypatch, helper, value, kwargs, message
):
    monkeypatch.setenv("X_BAD", value)

    with pytest.raises(ImproperlyConfigured, match="X_BAD") as error:
        helper("X_BAD", **kwargs)
    assert message in str(error.value)


def _settings_in_subprocess(env: dict[str, str], expression: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    return subprocess.run(
        [sys.executable, "-c", f"from config import settings as s; print({expression})"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
        timeout=60,
    )


def test_production_needs_a_secret_key():
    result = _settings_in_subprocess({"DEBUG": "false"}, "s.DEBUG")

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_a_secret_key_turns_debug_off_by_default():
    result = _settings_in_subprocess({"SECRET_KEY": "x" * 50}, "s.DEBUG")

    assert result.stdout.strip() == "False"


def test_without_a_broker_tasks_run_eagerly_and_with_one_on_the_broker():
    eager = _settings_in_subprocess({}, "s.CELERY_TASK_ALWAYS_EAGER")
    queued = _settings_in_subprocess(
        {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"}, "s.CELERY_TASK_ALWAYS_EAGER"
    )

    assert (eager.stdout.strip(), queued.stdout.strip()) == ("True", "False")


def test_database_url_selects_postgresql():
    result = _settings_in_subprocess(
        {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/passage"},
        "s.DATABASES['default']['ENGINE']",
    )

    assert result.stdout.strip() == "django.db.backends.postgresql"


def test_the_twilio_backend_needs_its_credentials():
    result = _settings_in_subprocess({"SMS_BACKEND": "twilio"}, "1")

    assert result.returncode != 0
    assert "TWILIO_ACCOUNT_SID" in result.stderr


def test_a_log_level_logging_does_not_know_is_refused_naming_the_variable():
    process = _settings_in_subprocess({"LOG_LEVEL": "LOUD"}, "s.LOG_LEVEL")

    assert process.returncode != 0
    assert "LOG_LEVEL='LOUD': expected one of DEBUG, INFO" in process.stderr
