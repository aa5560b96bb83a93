"""Settings read the environment through typed helpers that refuse bad values."""

import secrets
import subprocess

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured

from config import settings as config
from promotions import presence
from tests.processes import run_python


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
        (config.env_int, "0", {"default": 1, "minimum": 1}, "expected a number of at least 1."),
        (config.env_int, "9", {"default": 1, "minimum": 1, "maximum": 5}, "in [1, 5]."),
        (config.env_float, "9", {"default": 1.0, "maximum": 5.0}, "of at most 5.0."),
        (config.env_bool, "perhaps", {"default": False}, "true/false"),
        (config.env_list, " , ", {"default": ["localhost"]}, "expected at least one item"),
        (config.env_hosts, "https://passage.example.com", {"default": []}, "host names"),
        (config.env_hosts, "passage.example.com:443", {"default": []}, "scheme, path or port"),
        (config.env_hosts, "*.example.com", {"default": []}, ".example.com"),
        (config.env_tiles_url, "ftp://tiles.example.com/{z}/{x}/{y}.png", {}, "{z}/{x}/{y}"),
        (config.env_tiles_url, "https://tiles.example.com/tile.png", {}, "{z}/{x}/{y}"),
        (config.env_tiles_url, "tiles.example.com/{z}/{x}/{y}.png", {}, "https://"),
        (config.env_float, "nan", {"default": 1.0}, "finite"),
        (config.env_url, "ftp://x", {}, "http(s) URL"),
        (config.env_url, "https://passage.example.com/?from=console", {}, "no query"),
        (config.env_url, "https://passage.example.com/#", {}, "no query"),
        (config.env_choice, "smoke", {"default": "a", "choices": ("a", "b")}, "one of a, b"),
        (config.env_timezone, "Nowhere/Land", {"default": "UTC"}, "IANA time zone"),
        (config.env_timezone, "America", {"default": "UTC"}, "IANA time zone"),
        (config.env_time_window, "21:00-late", {}, "such as 21:00-08:00"),
        (config.env_time_window, "21:00-21:00", {}, "end at another time"),
        (config.env_time_window, "21:00+01:00-08:00+01:00", {}, "without an offset"),
        (config.env_time_window, "21:00Z-08:00Z", {}, "without an offset"),
    ],
)
def test_env_helpers_refuse_bad_values_naming_the_variable(
    monkeypatch, helper, value, kwargs, message
):
    monkeypatch.setenv("X_BAD", value)

    with pytest.raises(ImproperlyConfigured, match="X_BAD") as error:
        helper("X_BAD", **kwargs)
    assert message in str(error.value)


def test_allowed_hosts_take_the_patterns_django_matches(monkeypatch):
    monkeypatch.setenv("X_HOSTS", "passage.example.com, .example.com, 127.0.0.1, [::1], *")

    assert config.env_hosts("X_HOSTS", []) == [
        "passage.example.com",
        ".example.com",
        "127.0.0.1",
        "[::1]",
        "*",
    ]


@pytest.mark.parametrize(
    "url",
    [
        "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        "https://{s}.tiles.example.com/{z}/{x}/{y}@2x.png?key=abc",
    ],
)
def test_map_tiles_take_a_leaflet_tile_url(monkeypatch, url):
    monkeypatch.setenv("X_TILES", url)

    assert config.env_tiles_url("X_TILES") == url


def _settings_in_subprocess(env: dict[str, str], expression: str) -> subprocess.CompletedProcess:
    return run_python("-c", f"from config import settings as s; print({expression})", env=env)


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


def test_tasks_run_without_a_broker_print_no_broker_warning():
    # What every `make run` and in-process simulate does at its first task.
    code = (
        "import django; django.setup()\n"
        "from config.celery import app\n"
        "@app.task\n"
        "def noop():\n"
        "    return 1\n"
        "noop.delay()"
    )
    result = run_python("-c", code, env={"DJANGO_SETTINGS_MODULE": "config.settings"})

    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr


@pytest.mark.parametrize("url", ["mysql://user@host/passage", "oracle://host/passage", "garbage"])
def test_a_database_url_passage_cannot_use_is_one_line_naming_the_variable(url):
    result = _manage_py({"DATABASE_URL": url}, "check")

    assert result.returncode == 1
    assert result.stderr == (
        f"Configuration error: DATABASE_URL={url!r}: expected a URL starting sqlite://, "
        "postgres://, postgresql://, pgsql://, such as "
        "postgres://user:password@host:5432/passage or sqlite:///path/db.sqlite3.\n"
    )


def test_a_refused_database_url_does_not_repeat_its_password():
    result = _manage_py({"DATABASE_URL": "mysql://passage:s3cret@db/passage"}, "check")

    assert "DATABASE_URL='mysql://passage:***@db/passage'" in result.stderr
    assert "s3cret" not in result.stderr


@pytest.mark.parametrize(
    "name",
    [
        "INGEST_MAX_CLOCK_SKEW_SECONDS",
        "INGEST_MAX_PING_AGE_HOURS",
        "PRESENCE_TIMEOUT_MINUTES",
        "LOCATION_RETENTION_DAYS",
        "SWEEP_AFTER_SECONDS",
        "SMS_GLOBAL_CAP_DAYS",
        "SMS_GLOBAL_MIN_GAP_MINUTES",
    ],
)
def test_a_time_span_too_long_for_the_calendar_is_refused_at_start(name):
    # LOCATION_RETENTION_DAYS=1000000 ("keep it all") had every hourly purge fail with
    # OverflowError (a cutoff before year 1); a ping age so long, every upload a 500.
    result = _manage_py({name: "1000000000"}, "check")

    assert result.returncode == 1
    assert result.stderr.startswith(f"Configuration error: {name}=1000000000: expected a number")
    assert "in [" in result.stderr


@pytest.mark.parametrize(
    "url", ["postgres://", "postgres:///", "postgres://db.example.com", "postgresql://u:s3cret@db/"]
)
def test_a_postgresql_url_naming_no_database_is_refused_at_start(url):
    # Django read it as NAME "" and said so only at the first query, without naming the
    # variable: migrate failed, and /healthz answered a 500 instead of its 503.
    result = _manage_py({"DATABASE_URL": url}, "check")

    assert result.returncode == 1
    assert result.stderr.startswith("Configuration error: DATABASE_URL=")
    assert "names no database" in result.stderr
    assert "s3cret" not in result.stderr


def test_a_postgresql_url_naming_a_service_instead_of_a_database_is_accepted():
    url = "postgres://?service=passage"

    result = _settings_in_subprocess({"DATABASE_URL": url}, "s.DATABASES['default']['OPTIONS']")

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("scheme", ["sqlite", "postgres", "postgresql", "pgsql"])
def test_the_database_urls_passage_runs_on_are_accepted(scheme):
    url = "sqlite:///:memory:" if scheme == "sqlite" else f"{scheme}://u@db.example.com/passage"

    result = _settings_in_subprocess({"DATABASE_URL": url}, "s.DATABASES['default']['ENGINE']")

    assert result.returncode == 0, result.stderr
    assert result.stdout.split(".")[-1].strip() in ("sqlite3", "postgresql")


def test_an_sms_file_path_that_is_a_directory_is_refused_at_start(tmp_path):
    result = _manage_py({"SMS_BACKEND": "file", "SMS_FILE_PATH": str(tmp_path)}, "check")

    assert result.returncode == 1
    assert result.stderr == (
        f"Configuration error: SMS_FILE_PATH={str(tmp_path)!r}: is a directory; expected a "
        "file path such as var/sms.jsonl.\n"
    )


def test_an_sms_file_path_inside_a_file_is_refused_at_start(tmp_path):
    (tmp_path / "notes.txt").write_text("")
    path = str(tmp_path / "notes.txt" / "sms.jsonl")

    result = _manage_py({"SMS_BACKEND": "file", "SMS_FILE_PATH": path}, "check")

    assert result.returncode == 1
    assert result.stderr.startswith(f"Configuration error: SMS_FILE_PATH={path!r}: this process ")


def test_an_sms_file_path_in_directories_still_to_create_is_accepted(tmp_path):
    path = str(tmp_path / "var" / "sms" / "sms.jsonl")

    result = _settings_in_subprocess(
        {"SMS_BACKEND": "file", "SMS_FILE_PATH": path}, "s.SMS_FILE_PATH"
    )

    assert result.stdout.strip() == path


def test_the_twilio_backend_needs_its_credentials():
    result = _settings_in_subprocess({"SMS_BACKEND": "twilio"}, "1")

    assert result.returncode != 0
    assert "TWILIO_ACCOUNT_SID" in result.stderr


def test_a_log_level_logging_does_not_know_is_refused_naming_the_variable():
    process = _settings_in_subprocess({"LOG_LEVEL": "LOUD"}, "s.LOG_LEVEL")

    assert process.returncode != 0
    assert "LOG_LEVEL='LOUD': expected one of DEBUG, INFO" in process.stderr


def _manage_py(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return run_python("manage.py", *args, env=env)


def test_a_bad_environment_value_is_one_line_from_manage_py_not_a_traceback():
    result = _manage_py({"LOG_LEVEL": "LOUD"}, "check")

    assert result.returncode == 1
    assert result.stderr == (
        "Configuration error: LOG_LEVEL='LOUD': expected one of DEBUG, INFO, WARNING, ERROR, "
        "CRITICAL.\n"
    )


@pytest.mark.parametrize(("server", "status"), [("wsgi", 4), ("asgi", 1)])
def test_a_bad_environment_value_is_one_line_from_a_server_loading_the_app(server, status):
    # What gunicorn or uvicorn print when a worker imports the application.
    result = run_python("-c", f"import config.{server}", env={"LOG_LEVEL": "LOUD"})

    assert result.returncode == status
    assert result.stderr.startswith("Configuration error: LOG_LEVEL='LOUD'")
    assert "Traceback" not in result.stderr


def test_gunicorn_stops_on_a_bad_environment_value_instead_of_booting_workers_again():
    # The README's command line: the master loads the app before forking, so it stops (a
    # worker that exits 1 would be replaced, for ever) and says why once.
    command = ["-m", "gunicorn", "config.wsgi", "--preload", "--bind", "127.0.0.1:0"]

    result = run_python(*command, "--workers", "2", env={"LOG_LEVEL": "LOUD"}, timeout=60)

    assert result.returncode == 4
    assert result.stderr.count("Configuration error: LOG_LEVEL='LOUD'") == 1
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("program", ["worker", "beat"])
def test_a_bad_environment_value_is_one_line_from_celery(program):
    # The broker is never reached: the settings are read before Celery connects.
    env = {"LOG_LEVEL": "LOUD", "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"}
    result = run_python("-m", "celery", "-A", "config", program, env=env)

    assert result.returncode == 1
    assert result.stderr.startswith("Configuration error: LOG_LEVEL='LOUD'")
    assert "Traceback" not in result.stderr


# As Twilio issues them: 32 hexadecimal digits.
TWILIO_AUTH_TOKEN = "0123456789abcdef" * 2
TWILIO = {
    "SMS_BACKEND": "twilio",
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
    "TWILIO_FROM_NUMBER": "+15005550006",
}


def test_the_twilio_backend_needs_the_address_twilio_reaches_us_at():
    result = _settings_in_subprocess(TWILIO, "1")

    assert result.returncode != 0
    assert "SMS_BACKEND=twilio needs PUBLIC_BASE_URL" in result.stderr


def test_the_twilio_backend_refuses_a_loopback_address_unless_debugging():
    loopback = {**TWILIO, "PUBLIC_BASE_URL": "http://127.0.0.1:8000"}

    production = _settings_in_subprocess({**loopback, "SECRET_KEY": "x" * 50}, "1")
    debugging = _settings_in_subprocess({**loopback, "DEBUG": "true"}, "s.PUBLIC_BASE_URL")
    public = _settings_in_subprocess(
        {**TWILIO, "SECRET_KEY": "x" * 50, **PASSAGE_EXAMPLE_COM}, "s.PUBLIC_BASE_URL"
    )

    assert production.returncode != 0
    assert "PUBLIC_BASE_URL='http://127.0.0.1:8000': Twilio cannot reach" in production.stderr
    assert debugging.stdout.strip() == "http://127.0.0.1:8000"
    assert public.stdout.strip() == "https://passage.example.com"


PASSAGE_EXAMPLE_COM = {
    "ALLOWED_HOSTS": "passage.example.com",
    "PUBLIC_BASE_URL": "https://passage.example.com",
}


def test_the_twilio_backend_refuses_an_address_this_site_does_not_serve():
    # Every status callback and STOP reply would be answered 400 (DisallowedHost), unseen.
    served_elsewhere = {**PASSAGE_EXAMPLE_COM, "ALLOWED_HOSTS": "admin.internal.example.com"}

    refused = _settings_in_subprocess({**TWILIO, "SECRET_KEY": "x" * 50, **served_elsewhere}, "1")

    assert refused.returncode != 0
    assert "ALLOWED_HOSTS" in refused.stderr and "passage.example.com" in refused.stderr


@pytest.mark.parametrize(
    ("allowed_hosts", "public_base_url"),
    [
        ("passage.example.com", "https://passage.example.com"),
        (".example.com", "https://passage.example.com:8443/passage"),
        ("*", "https://passage.example.com"),
        ("[2001:db8::1]", "https://[2001:db8::1]:8443"),
    ],
)
def test_the_twilio_backend_loads_when_this_site_serves_its_address(allowed_hosts, public_base_url):
    env = {"ALLOWED_HOSTS": allowed_hosts, "PUBLIC_BASE_URL": public_base_url}

    result = _settings_in_subprocess({**TWILIO, "SECRET_KEY": "x" * 50, **env}, "1")

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0612345678", "expected a valid phone number in E.164"),
        ("+33 6 12 34 56 78", "expected E.164, here +33612345678"),
        ("Passage Rivoli", "or an alphanumeric sender ID of up to 11"),
        ("Passage-2", "or an alphanumeric sender ID of up to 11"),
        ("+3361234", "expected a valid phone number in E.164"),
        # Short codes have 5 or 6 digits: fewer or more is a mistyped number.
        ("1234", "or a short code of 5 or 6 digits"),
        ("1234567", "or a short code of 5 or 6 digits"),
    ],
)
def test_the_twilio_sender_must_be_an_e164_number_or_a_sender_id(monkeypatch, value, message):
    monkeypatch.setenv("TWILIO_FROM_NUMBER", value)

    with pytest.raises(ImproperlyConfigured, match="TWILIO_FROM_NUMBER") as error:
        config.env_sms_sender("TWILIO_FROM_NUMBER")
    assert message in str(error.value)


@pytest.mark.parametrize(
    "value",
    [
        "+33612345678",
        "Passage",
        "PASSAGE 75",
        # A short code, as Twilio's console shows it and its API takes it (no + nor country
        # code): the usual sender of marketing SMS in the US, refused at start.
        "12345",
        "898211",
    ],
)
def test_an_e164_number_a_sender_id_or_a_short_code_is_accepted(monkeypatch, value):
    monkeypatch.setenv("TWILIO_FROM_NUMBER", value)

    assert config.env_sms_sender("TWILIO_FROM_NUMBER") == value


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TWILIO_ACCOUNT_SID", "SK" + "0" * 32, "expected an Account SID, AC followed by"),
        ("TWILIO_ACCOUNT_SID", "AC123", "expected an Account SID, AC followed by"),
        ("TWILIO_MESSAGING_SERVICE_SID", "AC" + "0" * 32, "expected a Messaging Service SID"),
    ],
)
def test_twilio_sids_are_refused_unless_of_their_kind(name, value, message):
    result = _settings_in_subprocess({name: value}, "1")

    assert result.returncode != 0
    assert f"{name}=" in result.stderr and message in result.stderr


@pytest.mark.parametrize(
    "sender",
    [
        {"TWILIO_FROM_NUMBER": "+33612345678"},
        {"TWILIO_FROM_NUMBER": "", "TWILIO_MESSAGING_SERVICE_SID": "MG" + "ab12" * 8},
    ],
)
def test_good_twilio_values_are_accepted(sender):
    result = _settings_in_subprocess(
        {**TWILIO, **sender, **PASSAGE_EXAMPLE_COM},
        "(s.TWILIO_FROM_NUMBER, s.TWILIO_MESSAGING_SERVICE_SID)",
    )

    expected = (
        sender.get("TWILIO_FROM_NUMBER") or None,
        sender.get("TWILIO_MESSAGING_SERVICE_SID"),
    )
    assert result.stdout.strip() == repr(expected)


def test_a_from_number_and_a_messaging_service_together_are_refused():
    result = _settings_in_subprocess(
        {
            **TWILIO,
            "TWILIO_MESSAGING_SERVICE_SID": "MG" + "ab12" * 8,
            "PUBLIC_BASE_URL": "https://passage.example.com",
        },
        "1",
    )

    assert result.returncode != 0
    assert "set TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID, not both" in result.stderr


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:6379/0", "rediss://cache:6380/0", "amqp://u:p@mq:5672//", "amqps://mq/"],
)
def test_a_redis_or_rabbitmq_broker_is_accepted(url):
    result = _settings_in_subprocess({"CELERY_BROKER_URL": url}, "s.CELERY_BROKER_URL")

    assert result.stdout.strip() == url


@pytest.mark.parametrize("url", ["127.0.0.1:6379", "http://mq:5672", "memory://", "redis://"])
def test_a_broker_url_celery_cannot_use_is_refused_naming_the_variable(url):
    result = _settings_in_subprocess({"CELERY_BROKER_URL": url}, "1")

    assert result.returncode != 0
    assert f"CELERY_BROKER_URL={url!r}: expected a URL starting redis://" in result.stderr


def test_a_refused_broker_url_does_not_repeat_its_password():
    result = _settings_in_subprocess({"CELERY_BROKER_URL": "ampq://guest:s3cret@mq//"}, "1")

    assert "CELERY_BROKER_URL='ampq://guest:***@mq//'" in result.stderr
    assert "s3cret" not in result.stderr


def _readme_production_environment() -> dict[str, str]:
    readme = (settings.BASE_DIR / "README.md").read_text()
    block = readme.split("## Running it for real", 1)[1].split("```sh", 1)[1].split("```")[0]
    lines = iter(block.split("export ", 1)[1].splitlines())
    exported = []
    for line in lines:
        exported += line.split("#")[0].replace("\\", " ").split()
        if not line.split("#")[0].rstrip().endswith("\\"):
            break
    # The README's placeholders, filled with values of their kind.
    fill = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": "postgres://passage@db.example.com:5432/passage",
        "CELERY_BROKER_URL": "redis://redis.example.com:6379/0",
        "CACHE_URL": "redis://redis.example.com:6379/1",
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
        "TWILIO_MESSAGING_SERVICE_SID": "MG" + "0" * 32,
    }
    pairs = dict(item.split("=", 1) for item in exported)
    return {name: fill[name] if "..." in value else value for name, value in pairs.items()}


def test_the_readme_s_production_environment_sends_through_twilio_and_passes_deploy_checks():
    env = _readme_production_environment()

    result = _manage_py(env, "check", "--deploy", "--fail-level", "WARNING")

    assert env["SMS_BACKEND"] == "twilio"
    assert {"TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL"} <= set(env)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://shop.example/passage", "https://shop.example"),
        ("https://shop.example:8443", "https://shop.example:8443"),
    ],
)
def test_the_admin_trusts_the_origin_of_the_public_address_not_its_path(url, origin):
    # A browser's Origin header never carries a path: a site mounted under /passage is
    # still posted to from https://shop.example, and its admin login must not be a 403.
    result = _settings_in_subprocess({"PUBLIC_BASE_URL": url}, "s.CSRF_TRUSTED_ORIGINS")

    assert result.stdout.strip() == repr([origin])


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("CELERY_BROKER_URL", "redis://127.0.0.1:abc/0"),
        ("CELERY_BROKER_URL", "amqp://guest:secret@mq:56 72//"),
        ("CELERY_BROKER_URL", "redis://[127.0.0.1/0"),
        ("CACHE_URL", "redis://127.0.0.1:abc/1"),
    ],
)
def test_a_broker_or_cache_url_whose_port_is_no_number_is_refused_at_start(name, url):
    result = run_python("manage.py", "check", env={name: url})

    assert result.returncode == 1
    assert result.stderr.startswith(f"Configuration error: {name}=")
    assert "secret" not in result.stderr


def test_a_database_url_s_own_connect_timeout_wins_over_passage_s():
    # Passage's default gives up on a PostgreSQL that never answers (see test_operations).
    default = _settings_in_subprocess(
        {"DATABASE_URL": "postgres://postgres@db:5432/passage"},
        "s.DATABASES['default']['OPTIONS']['connect_timeout']",
    )
    own = _settings_in_subprocess(
        {"DATABASE_URL": "postgres://postgres@db:5432/passage?connect_timeout=30"},
        "s.DATABASES['default']['OPTIONS']['connect_timeout']",
    )

    assert (default.stdout.strip(), own.stdout.strip()) == ("3", "30")


VISIBILITY = "s.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout']"


def test_redis_does_not_hand_a_send_waiting_for_its_slot_to_another_worker():
    # A paced send waits in its worker up to SMS_VALIDITY_SECONDS for its slot; Redis would
    # hand it to another worker every visibility timeout meanwhile, one copy more each time.
    broker = {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"}
    long_validity = _settings_in_subprocess({**broker, "SMS_VALIDITY_SECONDS": "3600"}, VISIBILITY)
    default = _settings_in_subprocess(broker, VISIBILITY)

    assert int(long_validity.stdout) > 3600
    assert int(default.stdout) == 660


def test_a_visibility_timeout_shorter_than_the_validity_is_warned_of(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.SMS_VALIDITY_SECONDS = 3600
    settings.CELERY_VISIBILITY_TIMEOUT_SECONDS = 600

    [warning] = [message for message in run_checks() if message.id == "passage.W002"]

    assert "CELERY_VISIBILITY_TIMEOUT_SECONDS=600" in warning.msg


def test_a_validity_past_rabbitmq_s_consumer_timeout_is_warned_of(settings):
    settings.CELERY_BROKER_URL = "amqp://guest:guest@mq:5672//"
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.SMS_VALIDITY_SECONDS = 3600

    [warning] = [message for message in run_checks() if message.id == "passage.W003"]

    assert "consumer_timeout" in warning.msg


def test_the_default_broker_settings_need_no_warning(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    settings.CELERY_TASK_ALWAYS_EAGER = False

    warned = {message.id for message in run_checks()}
    assert not warned & {"passage.W002", "passage.W003"}


def test_a_beat_task_that_waited_out_its_use_in_the_queue_is_dropped():
    # Workers down for an hour leave beat's sixty sweeps queued: run back to back, each would
    # redo the work of the one before it. A tick or sweep is of use while an SMS it leads to
    # is still worth sending; the others until their next run.
    frequent = {"presence-timeouts-and-dwell", "sweep-unprocessed-location"}
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        expires = entry.get("options", {}).get("expires")
        limit = settings.SMS_VALIDITY_SECONDS if name in frequent else entry["schedule"]
        assert expires is not None and expires <= max(limit, entry["schedule"]), name


def test_a_tick_queued_behind_a_backlog_of_a_few_minutes_still_runs():
    # Workers up but three minutes behind: visits must still end and dwells be announced.
    for name in ("presence-timeouts-and-dwell", "sweep-unprocessed-location"):
        expires = settings.CELERY_BEAT_SCHEDULE[name]["options"]["expires"]
        assert expires >= settings.SMS_VALIDITY_SECONDS > 180, name


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("PUBLIC_BASE_URL", "https://[passage.example.com"),
        ("PUBLIC_BASE_URL", "https://passage.example.com:8o"),
        ("TWILIO_API_BASE", "https://api.twilio.com:99999"),
        ("GEOCODER_URL", "https://[nominatim"),
    ],
)
def test_an_http_url_that_does_not_split_or_whose_port_is_no_number_is_refused_at_start(name, url):
    # An address Twilio's callbacks or the SMS sends would be built on, refused at start
    # with its name, not a traceback (an unsplittable host) nor sends failing later.
    result = run_python("manage.py", "check", env={name: url})

    assert result.returncode == 1
    assert result.stderr == (
        f"Configuration error: {name}={url!r}: expected an http(s) URL such as https://host.\n"
    )


_BROKER_TLS = (
    "import django, ssl; django.setup()\n"
    "from django.test import Client\n"
    "from config.celery import app\n"
    "print(app.connection_for_write().ssl.get('ssl_cert_reqs') == ssl.CERT_REQUIRED)\n"
    "print(Client().get('/healthz').json()['broker'])\n"
)


def test_a_rediss_broker_s_certificate_is_checked():
    # kombu connects to a rediss:// broker without checking its certificate unless told
    # to, logging "defaulting to insecure SSL behaviour": anyone on the path could pose as
    # Redis, read the password and hand workers tasks. Port 1 refuses at once.
    result = run_python(
        "-c",
        _BROKER_TLS,
        env={
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "CELERY_BROKER_URL": "rediss://127.0.0.1:1/0",
        },
    )

    assert result.stdout.splitlines() == ["True", "unreachable: OperationalError"], result.stderr
    assert "insecure" not in result.stderr


def test_a_rediss_broker_url_s_own_certificate_check_wins():
    url = "rediss://127.0.0.1:1/0?ssl_cert_reqs=none"
    result = run_python(
        "-c",
        _BROKER_TLS,
        env={"DJANGO_SETTINGS_MODULE": "config.settings", "CELERY_BROKER_URL": url},
    )

    assert result.stdout.splitlines()[0] == "False", result.stderr


@pytest.mark.parametrize("value", ["1e12", "1e308", "86400"])
def test_a_beat_period_longer_than_an_hour_is_refused_at_start(value):
    # 1e12 overflowed each beat entry's expiry, 1e308 crashed `celery beat` at start; a
    # tick once a day would leave visits open and dwells unannounced for hours.
    result = _manage_py({"BEAT_EVERY_SECONDS": value}, "check")

    assert result.returncode == 1
    assert result.stderr.startswith("Configuration error: BEAT_EVERY_SECONDS=")
    assert "in [1.0, 3600.0]" in result.stderr


def test_a_beat_period_of_an_hour_is_accepted():
    result = _settings_in_subprocess({"BEAT_EVERY_SECONDS": "3600"}, "s.BEAT_EVERY_SECONDS")

    assert result.stdout.strip() == "3600.0", result.stderr


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        # A number typed for "for ever" put every batch with a sighting before year 1
        # (OverflowError), and a larger one every location batch, GPS pings too.
        ("BEACON_WINDOW_SECONDS", "1000000000000", "in [1, 86400]"),
        ("BEACON_WINDOW_SECONDS", "86401", "in [1, 86400]"),
        # A store's smoothing window holds this many readings at most: needing more, no
        # beacon ever let anyone in, and nothing said so.
        ("BEACON_MIN_SIGHTINGS", str(presence._WINDOW_CAP + 1), f"in [1, {presence._WINDOW_CAP}]"),
    ],
)
def test_a_beacon_rule_no_shopper_could_meet_is_refused_at_start(name, value, expected):
    result = _manage_py({name: value}, "check")

    assert result.returncode == 1
    assert result.stderr.startswith(f"Configuration error: {name}={value}: "), result.stderr
    assert expected in result.stderr


def test_the_longest_beacon_window_and_the_most_sightings_it_can_hold_are_accepted():
    result = _settings_in_subprocess(
        {"BEACON_WINDOW_SECONDS": "86400", "BEACON_MIN_SIGHTINGS": str(presence._WINDOW_CAP)},
        "s.BEACON_WINDOW_SECONDS, s.BEACON_MIN_SIGHTINGS",
    )

    assert result.stdout.strip() == f"86400 {presence._WINDOW_CAP}", result.stderr


@pytest.mark.parametrize("value", [str(2**63), str(2**30 + 1)])
def test_a_body_limit_no_web_process_could_hold_is_refused_at_start(value):
    # A number typed for "no limit" made every gzip or deflate upload fail (OverflowError,
    # a 500): the body is decompressed up to the limit, which zlib takes as a C size.
    result = _manage_py({"API_MAX_BODY_BYTES": value}, "check")

    assert result.returncode == 1
    assert result.stderr.startswith(f"Configuration error: API_MAX_BODY_BYTES={value}: ")
    assert f"in [1024, {2**30}]" in result.stderr


@pytest.mark.parametrize(
    ("name", "url", "message"),
    [
        # redis-py read a database that is no number as database 0, without a word.
        ("CACHE_URL", "redis://cache.example.com:6379/x", "a database number"),
        ("CELERY_BROKER_URL", "redis://redis.example.com:6379/1x", "a database number"),
        # No host means localhost to redis-py and kombu: not what anyone deploying meant.
        ("CACHE_URL", "redis://:6379/0", "names no host"),
        ("CELERY_BROKER_URL", "redis://:6379/0", "names no host"),
        ("CELERY_BROKER_URL", "amqp://guest:s3cret@:5672//", "names no host"),
    ],
)
def test_a_cache_or_broker_url_that_would_reach_another_server_or_database_is_refused(
    monkeypatch, name, url, message
):
    monkeypatch.setenv(name, url)

    with pytest.raises(ImproperlyConfigured, match=name) as error:
        config.env_url_any(name, ("redis", "rediss", "amqp", "amqps"))
    assert message in str(error.value)
    assert "s3cret" not in str(error.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://redis.example.com:6379/1",
        "redis://redis.example.com:6379",
        "redis://redis.example.com/",
        "rediss://:s3cret@cache:6380/1?ssl_ca_certs=/path/ca.pem",
        "amqp://guest:guest@mq:5672//",
        "amqps://10.0.0.5//",
    ],
)
def test_the_cache_and_broker_urls_the_readme_documents_are_accepted(monkeypatch, url):
    monkeypatch.setenv("X_URL", url)

    assert config.env_url_any("X_URL", ("redis", "rediss", "amqp", "amqps")) == url


def test_a_cache_url_naming_no_database_number_is_refused_at_start():
    result = _manage_py({"CACHE_URL": "redis://cache.example.com:6379/x"}, "check")

    assert result.returncode == 1
    assert result.stderr.startswith("Configuration error: CACHE_URL='redis://cache")


@pytest.mark.parametrize(
    "token",
    [
        f'"{TWILIO_AUTH_TOKEN}"',  # quotes an env file kept
        f"'{TWILIO_AUTH_TOKEN}'",
        f"{TWILIO_AUTH_TOKEN[:16]} {TWILIO_AUTH_TOKEN[16:]}",
        TWILIO_AUTH_TOKEN[:31],
        "s3cret",
    ],
)
def test_a_twilio_auth_token_twilio_never_issues_is_refused_without_repeating_it(
    monkeypatch, token
):
    # Every send (401) and every webhook's signature check (403) failed, nothing said at start.
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", token)

    with pytest.raises(ImproperlyConfigured, match="TWILIO_AUTH_TOKEN") as error:
        config.env_twilio_auth_token("TWILIO_AUTH_TOKEN")
    assert "32 hexadecimal" in str(error.value)
    assert token.strip("'\"") not in str(error.value)


def test_a_twilio_auth_token_is_refused_at_start():
    result = _settings_in_subprocess({"TWILIO_AUTH_TOKEN": f'"{TWILIO_AUTH_TOKEN}"'}, "1")

    assert result.returncode != 0
    assert "TWILIO_AUTH_TOKEN: expected 32 hexadecimal" in result.stderr


def test_a_twilio_auth_token_as_twilio_s_console_shows_it_is_accepted(monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_AUTH_TOKEN.upper())

    assert config.env_twilio_auth_token("TWILIO_AUTH_TOKEN") == TWILIO_AUTH_TOKEN.upper()


@pytest.mark.parametrize("value", ["none", "NONE"])
def test_map_tiles_can_be_turned_off_from_the_environment(monkeypatch, value):
    # Empty means unset, which loads OpenStreetMap's: an offline or private admin had no way
    # to draw its maps without asking a tile server for every view.
    monkeypatch.setenv("MAP_TILES_URL", value)

    assert config.env_tiles_url("MAP_TILES_URL") == ""
