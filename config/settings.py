"""Passage settings: every environment variable is read here, through typed helpers.

A bad value stops the process with a message naming the variable, instead of surfacing
later as a confusing error. Nothing differs between environments except through the
environment; the defaults run everything in one process on SQLite with no servers.
"""

import importlib.util
import ipaddress
import math
import os
import re
import secrets
import ssl
import sys
from datetime import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dj_database_url
import phonenumbers
from django.core.exceptions import ImproperlyConfigured
from django.http.request import split_domain_port, validate_host

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(name: str, default: str | None = None) -> str | None:
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}={value!r}: expected one of true/false, 1/0, yes/no, on/off."
    )


def _check_range(name: str, number: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and maximum is not None:
        expected = f"in [{minimum}, {maximum}]"
    elif minimum is not None:
        expected = f"of at least {minimum}"
    else:
        expected = f"of at most {maximum}"
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ImproperlyConfigured(f"{name}={number}: expected a number {expected}.")


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: expected a whole number.") from None
    _check_range(name, number, minimum, maximum)
    return number


def env_float(
    name: str, default: float, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: expected a number.") from None
    if not math.isfinite(number):
        raise ImproperlyConfigured(f"{name}={value!r}: expected a finite number.")
    _check_range(name, number, minimum, maximum)
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return default
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        # Set, yet empty (" , "): an ALLOWED_HOSTS so read refuses every request, a 400.
        raise ImproperlyConfigured(
            f"{name}={value!r}: expected at least one item (comma-separated), or leave it unset."
        )
    return items


def env_hosts(name: str, default: list[str]) -> list[str]:
    """Host names as Django matches them against a request's Host: "*", a name, ".name" for
    it and its subdomains, an address ([::1] in brackets). A URL or a port never matches,
    and every request but /healthz would be refused (a 400) without a word here."""
    hosts = env_list(name, default)
    for host in hosts:
        domain, port = split_domain_port(host)
        if host != "*" and (not domain or port):
            raise ImproperlyConfigured(
                f"{name}={','.join(hosts)!r}: {host!r} is not a host Django can match; "
                "expected host names without a scheme, path or port, such as "
                "passage.example.com, or .example.com for it and its subdomains."
            )
    return hosts


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r}: expected one of {', '.join(choices)}.")
    return value


def env_url(name: str, default: str | None = None) -> str | None:
    value = env_str(name, default)
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        # Read now, as env_url_any does: a port such as "8o" would otherwise surface in
        # every Twilio callback URL or send, and "https://[host" raises here, a traceback.
        parts.port  # noqa: B018
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ImproperlyConfigured(
            f"{name}={value!r}: expected an http(s) URL such as https://host."
        )
    # Paths are appended to it: "https://host/?from=console" would make every Twilio
    # callback "https://host/?from=console/api/v1/...", which reaches the wrong page.
    if "?" in value or "#" in value:
        raise ImproperlyConfigured(
            f"{name}={value!r}: expected an http(s) URL with no query or fragment, such as "
            "https://host."
        )
    return value.rstrip("/")


def env_tiles_url(name: str) -> str:
    """A map tile URL as Leaflet takes one, https://host/{z}/{x}/{y}.png ({s} may name a
    subdomain). The marketer's browser loads it: a mistyped one drew every map with no
    tiles, or one tile repeated, with nothing said. "none" turns tiles off (empty is unset,
    which means OpenStreetMap's): fences still draw, and the browser asks no tile server."""
    value = env_str(name, "https://tile.openstreetmap.org/{z}/{x}/{y}.png")
    if value.lower() == "none":
        return ""
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    placeholders = all(part in value for part in ("{z}", "{x}", "{y}"))
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or not placeholders
    ):
        raise ImproperlyConfigured(
            f"{name}={value!r}: expected an http(s) URL with {{z}}/{{x}}/{{y}} in it, such as "
            "https://tile.openstreetmap.org/{z}/{x}/{y}.png."
        )
    return value


def env_time_window(name: str) -> tuple[time, time] | None:
    """A daily window written "21:00-08:00" (it may span midnight); unset means none."""
    value = _raw(name)
    if value is None:
        return None
    try:
        start, end = (time.fromisoformat(part.strip()) for part in value.split("-"))
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}={value!r}: expected a window such as 21:00-08:00."
        ) from None
    if start.tzinfo or end.tzinfo:
        # Quiet hours are local to each customer: a fixed offset would mean one place.
        raise ImproperlyConfigured(
            f"{name}={value!r}: expected local times without an offset, such as 21:00-08:00."
        )
    if start == end:
        raise ImproperlyConfigured(f"{name}={value!r}: the window must end at another time.")
    return start, end


def env_timezone(name: str, default: str) -> str:
    value = env_str(name, default)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "America" is a folder of zones
        raise ImproperlyConfigured(f"{name}={value!r}: expected an IANA time zone.") from None
    return value


def _without_password(url: str) -> str:
    """The URL as a message may repeat it: amqp://user:secret@host shown as user:***@host."""
    try:
        password = urlsplit(url).password
    except ValueError:  # not even a URL: nothing in it reads as a password
        return url
    return url.replace(f":{password}@", ":***@") if password else url


def env_url_any(name: str, schemes: tuple[str, ...]) -> str | None:
    value = env_str(name)
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        # Read now: urlsplit leaves a port such as "abc" to whoever asks, here a worker
        # failing with a traceback, or the rate limits' cache silently off.
        parts.port  # noqa: B018
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in schemes or not parts.netloc:
        written = ", ".join(f"{scheme}://" for scheme in schemes)
        raise ImproperlyConfigured(
            f"{name}={_without_password(value)!r}: expected a URL starting {written}, "
            f"such as {schemes[0]}://host:port/0."
        )
    # redis-py and kombu read no host as localhost: another server than the one meant.
    if not parts.hostname:
        raise ImproperlyConfigured(
            f"{name}={_without_password(value)!r}: names no host; expected one such as "
            f"{schemes[0]}://host:port/0."
        )
    # redis-py read a database that is no number ("/x") as database 0, without a word.
    if parts.scheme in ("redis", "rediss") and not re.fullmatch(r"/?|/\d+", parts.path):
        raise ImproperlyConfigured(
            f"{name}={_without_password(value)!r}: expected a database number after the "
            f"host, such as {parts.scheme}://host:port/0."
        )
    return value


# Passage runs on SQLite or PostgreSQL (psycopg is what requirements.txt installs);
# dj_database_url knows more schemes, whose drivers are not installed.
DATABASE_SCHEMES = ("sqlite", "postgres", "postgresql", "pgsql")


def env_database(name: str, default: str) -> dict:
    """Django's DATABASES entry for a URL naming SQLite or PostgreSQL."""
    value = env_str(name, default)
    try:
        scheme = urlsplit(value).scheme
    except ValueError:  # "postgres://[host": urlsplit refuses what it cannot split
        scheme = None
    if scheme not in DATABASE_SCHEMES:
        written = ", ".join(f"{known}://" for known in DATABASE_SCHEMES)
        raise ImproperlyConfigured(
            f"{name}={_without_password(value)!r}: expected a URL starting {written}, "
            "such as postgres://user:password@host:5432/passage or sqlite:///path/db.sqlite3."
        )
    try:
        database = dj_database_url.parse(value, conn_max_age=60)
    except ValueError as error:
        raise ImproperlyConfigured(f"{name}: {error}") from None
    # Django would take NAME "" until the first query, then fail it without naming the
    # variable (migrate, and /healthz with a 500). A libpq service file may name it instead.
    if (
        scheme != "sqlite"
        and not database["NAME"]
        and not database.get("OPTIONS", {}).get("service")
    ):
        raise ImproperlyConfigured(
            f"{name}={_without_password(value)!r}: names no database; expected one such as "
            "postgres://user:password@host:5432/passage."
        )
    return database


def env_writable_file(name: str, default: str) -> str:
    """A file the process appends to: not a directory, and in one it may write to (or may
    create, as the nearest existing directory allows)."""
    value = env_str(name, default)
    path = Path(value).absolute()
    if path.is_dir():
        raise ImproperlyConfigured(
            f"{name}={value!r}: is a directory; expected a file path such as var/sms.jsonl."
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise ImproperlyConfigured(f"{name}={value!r}: this process cannot write to the file.")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ImproperlyConfigured(
            f"{name}={value!r}: this process cannot create files in {str(folder)!r}."
        )
    return value


def env_sms_sender(name: str) -> str | None:
    """Who an SMS comes from: a phone number in E.164 (+ and digits only) that phonenumbers
    knows valid, an alphanumeric sender ID as Twilio takes one where carriers allow it
    (France, the UK...): up to 11 letters, digits and spaces, with a letter, or a short code
    (5 or 6 digits, with no + nor country code, as Twilio's console shows it and its API
    takes it: the usual sender of marketing SMS in the US, Canada and the UK)."""
    value = env_str(name)
    if value is None:
        return None
    if re.fullmatch(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}", value) or re.fullmatch(
        r"[0-9]{5,6}", value
    ):
        return value
    try:
        number = phonenumbers.parse(value)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise ImproperlyConfigured(
            f"{name}={value!r}: expected a valid phone number in E.164, such as +33612345678, "
            "or an alphanumeric sender ID of up to 11 letters, digits and spaces, or a short code "
            "of 5 or 6 digits."
        )
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if value != e164:
        raise ImproperlyConfigured(f"{name}={value!r}: expected E.164, here {e164}.")
    return value


def env_twilio_sid(name: str, prefix: str, kind: str) -> str | None:
    """A Twilio SID: two letters naming its kind, then 32 hexadecimal digits."""
    value = env_str(name)
    if value is not None and not re.fullmatch(rf"{prefix}[0-9a-fA-F]{{32}}", value):
        raise ImproperlyConfigured(
            f"{name}={value[:6]!r}...: expected {kind}, {prefix} followed by 32 hexadecimal "
            "characters, as Twilio's console shows it."
        )
    return value


def env_twilio_auth_token(name: str) -> str | None:
    """Twilio's Auth Token: 32 hexadecimal digits. Quotes an env file left in, or a space,
    failed every send (401) and every webhook's signature check (403), with nothing said at
    start. The message does not repeat it: it is a secret."""
    value = env_str(name)
    if value is not None and not re.fullmatch(r"[0-9a-fA-F]{32}", value):
        raise ImproperlyConfigured(
            f"{name}: expected 32 hexadecimal characters, as Twilio's console shows the Auth "
            "Token (no quotes or spaces)."
        )
    return value


def _is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _served_host(url: str) -> str:
    # As Django reads a request's Host: lower case, no port, an IPv6 address in brackets.
    domain, _ = split_domain_port(urlsplit(url).netloc.rpartition("@")[2])
    return domain


def _development_secret_key() -> str:
    # Kept in a git-ignored file so that admin sessions survive a restart of `make run`.
    path = BASE_DIR / ".dev-secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        print(f"SECRET_KEY is not set: generated a development key in {path}.", file=sys.stderr)
    return path.read_text().strip()


# --- Core -------------------------------------------------------------------------------

# Production must set SECRET_KEY; without one this is a development machine, where DEBUG
# defaults to on. With a SECRET_KEY, DEBUG defaults to off.
SECRET_KEY = env_str("SECRET_KEY")
DEBUG = env_bool("DEBUG", default=SECRET_KEY is None)
if SECRET_KEY is None:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = _development_secret_key()

# Keys retired by a rotation, still accepted for what they signed: sessions, and the keyed
# hashes of numbers that opted out by reply or replied START (customers.models.OptedOutNumber,
# RepliedStartNumber).
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])
ALLOWED_HOSTS = env_hosts("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
# Whether the operator said where Twilio reaches us: its default only suits `make run`.
_PUBLIC_BASE_URL_SET = env_str("PUBLIC_BASE_URL") is not None
PUBLIC_BASE_URL = env_url("PUBLIC_BASE_URL", "http://127.0.0.1:8000")
# An origin is a scheme and a host: a path prefix (a site mounted under /passage) is no part.
CSRF_TRUSTED_ORIGINS = ["{0.scheme}://{0.netloc}".format(urlsplit(PUBLIC_BASE_URL))]

INSTALLED_APPS = [
    # Before staticfiles: its runserver starts the beat of `make run` (config/beat.py).
    "config",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "customers",
    "promotions",
]

MIDDLEWARE = [
    # First: a load balancer's probe is answered before Host validation, redirects and CSRF.
    "config.health.HealthzMiddleware",
    "config.body.LengthRequiredMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# An admin account reads every customer's phone and location history: no "password".
_PASSWORD_VALIDATION = "django.contrib.auth.password_validation"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"{_PASSWORD_VALIDATION}.UserAttributeSimilarityValidator"},
    {"NAME": f"{_PASSWORD_VALIDATION}.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": f"{_PASSWORD_VALIDATION}.CommonPasswordValidator"},
    {"NAME": f"{_PASSWORD_VALIDATION}.NumericPasswordValidator"},
]

# --- Database ---------------------------------------------------------------------------

DATABASES = {"default": env_database("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers proceed while a batch is written; IMMEDIATE takes the write lock at
    # BEGIN, so two writers queue on the busy timeout instead of failing with "locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # libpq waits for ever on a server that accepts the connection and never answers (a
    # pgbouncer whose PostgreSQL is gone, a failover's dead address): every request and
    # /healthz would hang instead of answering 503. Keepalives and tcp_user_timeout notice
    # a kept connection whose server went away. The URL's own values (?connect_timeout=)
    # win.
    _DATABASE_OPTIONS = DATABASES["default"].setdefault("OPTIONS", {})
    for _option, _value in {
        "connect_timeout": 3,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "tcp_user_timeout": 30_000,  # milliseconds
    }.items():
        _DATABASE_OPTIONS.setdefault(_option, _value)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Internationalisation ---------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------------------

STATIC_URL = "static/"
# Only `collectstatic` needs a folder; WhiteNoise serves the apps' files without one.
STATIC_ROOT = env_str("STATIC_ROOT")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve the admin's assets from the app folders under gunicorn too, without collectstatic.
WHITENOISE_USE_FINDERS = True
# Leaflet (the admin's maps) comes from the django-leaflet package. Its Django app needs
# GeoDjango, which Passage does not use, so only its static folder is served.
_LEAFLET = importlib.util.find_spec("leaflet")
STATICFILES_DIRS = [Path(_LEAFLET.submodule_search_locations[0]) / "static"] if _LEAFLET else []

# --- Maps and geocoding (admin) ---------------------------------------------------------

# Map tiles load in the marketer's browser; the map still draws fences without them (offline,
# or MAP_TILES_URL=none, which leaves this empty).
MAP_TILES_URL = env_tiles_url("MAP_TILES_URL")
# Address to coordinates through geopy: "nominatim" (OpenStreetMap's, or your own server at
# GEOCODER_URL); unset, marketers type coordinates or move the pin.
GEOCODER = env_choice("GEOCODER", "none", ("none", "nominatim"))
GEOCODER_URL = env_url("GEOCODER_URL", "https://nominatim.openstreetmap.org")
GEOCODER_USER_AGENT = env_str("GEOCODER_USER_AGENT", "passage-admin")

# --- Security (production) --------------------------------------------------------------

_PUBLIC_HTTPS = PUBLIC_BASE_URL.startswith("https://")
SESSION_COOKIE_SECURE = _PUBLIC_HTTPS
CSRF_COOKIE_SECURE = _PUBLIC_HTTPS
# Messages wait for the next page in the session, not a cookie: the admin shows a new API
# key in one, and a cookie is only signed, readable by whoever holds it.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if env_bool("SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Served over HTTPS (PUBLIC_BASE_URL says so): plain HTTP is redirected, and browsers are told
# to keep to HTTPS. A load balancer's health probe over plain HTTP still reaches /healthz,
# which config.health.HealthzMiddleware answers before the redirect.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=_PUBLIC_HTTPS)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if _PUBLIC_HTTPS else 0, minimum=0)
# Whether every subdomain is HTTPS-only, and whether to join browsers' preload list, is the
# retailer's decision about its whole domain, not this service's: off unless set, and the
# deploy checks that would push them on are silenced for that reason.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=False)
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]

# --- Cache ------------------------------------------------------------------------------

# Shared by every process when set (rate limits count across web processes); in-process
# otherwise, which suits one `make run`.
CACHE_URL = env_url_any("CACHE_URL", ("redis", "rediss"))
CACHES = {
    "default": (
        {
            "BACKEND": "config.cache.RedisCache",
            "LOCATION": CACHE_URL,
            # The cache holds only the ingest rate limit, which lets requests through when
            # the cache fails: a Redis that drops packets must fail fast, not stall ingest.
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- API --------------------------------------------------------------------------------

# A batch of 1,000 browsing events with long URLs stays well under this. At most 1 GiB: each
# web process holds a body whole, decompressed too, and a number typed for "no limit" failed
# every compressed upload (zlib takes the limit as a C size: OverflowError, a 500).
API_MAX_BODY_BYTES = env_int(
    "API_MAX_BODY_BYTES", 4 * 1024 * 1024, minimum=1024, maximum=1024 * 1024 * 1024
)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
# The admin's campaign page posts each chosen store as a field of its own: Django's default
# of 1,000 fields a form refused a campaign in about 975 stores, which the API takes, with a
# bare "Bad Request". Still bounded: a form of this many fields is parsed in tens of ms.
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10_000

# Requests per API key per minute on each ingest endpoint; 0 turns the limit off. One key
# usually serves a whole app fleet, so the default is generous: it stops a runaway client,
# not traffic.
INGEST_RATE_LIMIT_PER_MINUTE = env_int("INGEST_RATE_LIMIT_PER_MINUTE", 60_000, minimum=0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["promotions.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["promotions.api.auth.HasScope"],
    "DEFAULT_PARSER_CLASSES": ["promotions.api.parsers.JsonBodyParser"],
    # Counts only the views whose required scope is ingest; see its docstring.
    "DEFAULT_THROTTLE_CLASSES": ["promotions.api.throttles.IngestRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "promotions.api.negotiation.NamedFormatsOnly",
    # django-filter's, refusing a query parameter that names no filter.
    "DEFAULT_FILTER_BACKENDS": ["promotions.api.filtering.KnownFiltersBackend"],
    "DEFAULT_PAGINATION_CLASS": "promotions.api.pagination.PageNumbers",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "promotions.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "promotions.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Passage API",
    "DESCRIPTION": (
        "Location pings, beacon sightings and browsing events in; one right SMS offer out. "
        "Authenticate with `Authorization: Api-Key <key>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI is served from the package, not a CDN: the machine may be offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Request and response components apart: a field a response always carries is required
    # in the response's, and stays optional in the request's when a client may leave it out.
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "promotions.api.schema.require_response_fields",
    ],
    "ENUM_NAME_OVERRIDES": {
        "SmsConsentEnum": "customers.models.SmsConsent.choices",
        "CampaignStatusEnum": "promotions.models.CampaignStatus.choices",
        # Named once whatever fields carry them; a name another choice set also uses (the
        # type of a trigger and of an event) would otherwise be resolved with a hash.
        "BrowsingEventTypeEnum": "customers.models.EventType.choices",
        "DeliveryStatusEnum": "promotions.models.DeliveryStatus.choices",
        "DeliveryReasonEnum": "promotions.models.DeliveryReason.choices",
        "PresenceKindEnum": "promotions.models.PresenceKind.choices",
        "SightingSourceEnum": "promotions.models.SightingSource.choices",
    },
}

# --- Ingest and intent ------------------------------------------------------------------

# The time spans below have a maximum (a day, a year, ten years: what each can mean): a
# number typed for "for ever" put a cutoff such as "now minus the span" before year 1, and
# every purge, upload or decision reading it failed (OverflowError).

INGEST_MAX_BATCH = env_int("INGEST_MAX_BATCH", 1000, minimum=1, maximum=10_000)
# Phones' clocks drift; a time further ahead than this is a client bug, not a late ping.
INGEST_MAX_CLOCK_SKEW_SECONDS = env_int(
    "INGEST_MAX_CLOCK_SKEW_SECONDS", 300, minimum=0, maximum=86_400
)
# Apps queue pings while offline; older ones can no longer trigger anything useful.
INGEST_MAX_PING_AGE_HOURS = env_int("INGEST_MAX_PING_AGE_HOURS", 72, minimum=1, maximum=8_784)
# No phone reports an accuracy circle wider than this; a larger one is garbage.
INGEST_MAX_ACCURACY_M = env_float("INGEST_MAX_ACCURACY_M", 50_000.0, minimum=1.0)
INTENT_HALF_LIFE_DAYS = env_float("INTENT_HALF_LIFE_DAYS", 7.0, minimum=0.01)
# Daily view counts are kept this long; it bounds a campaign's "within N days".
INTENT_WINDOW_DAYS = env_int("INTENT_WINDOW_DAYS", 90, minimum=1, maximum=366)

# --- Presence ---------------------------------------------------------------------------

# A fix this vague cannot cause an entry, nor keep one alive: a presence only vaguer fixes
# follow ends by timeout.
PRESENCE_MAX_ENTRY_ACCURACY_M = env_float("PRESENCE_MAX_ENTRY_ACCURACY_M", 200.0, minimum=1.0)
# A fix counts as inside when its distance plus this share of its accuracy fits the fence.
PRESENCE_ACCURACY_SHARE = env_float("PRESENCE_ACCURACY_SHARE", 0.5, minimum=0.0, maximum=1.0)
# An exit needs the fix's whole accuracy circle this far beyond the fence, so GPS jitter
# at the edge cannot flap.
PRESENCE_EXIT_MARGIN_M = env_float("PRESENCE_EXIT_MARGIN_M", 50.0, minimum=0.0)
PRESENCE_TIMEOUT_MINUTES = env_int("PRESENCE_TIMEOUT_MINUTES", 15, minimum=1, maximum=1_440)
PRESENCE_TELEPORT_KMH = env_float("PRESENCE_TELEPORT_KMH", 300.0, minimum=10.0)
# A store's smoothing window holds 64 readings at most (promotions.presence._WINDOW_CAP):
# needing more, no beacon would ever let anyone in.
BEACON_MIN_SIGHTINGS = env_int("BEACON_MIN_SIGHTINGS", 2, minimum=1, maximum=64)
# A beacon unread this long ends a visit it held, as PRESENCE_TIMEOUT_MINUTES (a day at most)
# does for fixes.
BEACON_WINDOW_SECONDS = env_int("BEACON_WINDOW_SECONDS", 30, minimum=1, maximum=86_400)
# Raw pings and sightings are personal location data: kept this long, then purged.
LOCATION_RETENTION_DAYS = env_int("LOCATION_RETENTION_DAYS", 30, minimum=1, maximum=3_660)
# A stored batch still unprocessed after this long lost its task; the sweep enqueues it again.
SWEEP_AFTER_SECONDS = env_int("SWEEP_AFTER_SECONDS", 120, minimum=10, maximum=86_400)

# --- Decisions --------------------------------------------------------------------------

# Across all campaigns, a customer gets at most this many SMS in this many days.
SMS_GLOBAL_CAP_COUNT = env_int("SMS_GLOBAL_CAP_COUNT", 3, minimum=0)
SMS_GLOBAL_CAP_DAYS = env_int("SMS_GLOBAL_CAP_DAYS", 7, minimum=1, maximum=366)
# And never two SMS to one customer closer together than this (walking past, then in).
SMS_GLOBAL_MIN_GAP_MINUTES = env_int("SMS_GLOBAL_MIN_GAP_MINUTES", 60, minimum=0, maximum=527_040)
# Quiet hours for every campaign, in each customer's timezone, as "21:00-08:00"; empty: none.
SMS_GLOBAL_QUIET_HOURS = env_time_window("SMS_GLOBAL_QUIET_HOURS")
# Campaigns' daily budgets count SMS per calendar day in this timezone.
SMS_BUDGET_TIMEZONE = env_timezone("SMS_BUDGET_TIMEZONE", "UTC")
# A proximity offer is worthless once the customer has walked on: Twilio drops a message it
# could not hand over within this time, and a send still waiting after it is skipped.
SMS_VALIDITY_SECONDS = env_int("SMS_VALIDITY_SECONDS", 600, minimum=60, maximum=14_400)
# A sender's throughput limit (a long code sends 1 a second; a short code or a Messaging
# Service with many numbers more). Sends are spaced to it instead of queueing at Twilio.
SMS_SENDER_MPS = env_float("SMS_SENDER_MPS", 1.0, minimum=0.01, maximum=10_000.0)
SMS_MAX_RETRIES = env_int("SMS_MAX_RETRIES", 5, minimum=0, maximum=20)

# --- Celery -----------------------------------------------------------------------------

# Without a broker every task runs in the calling process, so one `make run` is the system.
_BROKER_URL = env_url_any("CELERY_BROKER_URL", ("redis", "rediss", "amqp", "amqps"))
CELERY_TASK_ALWAYS_EAGER = _BROKER_URL is None
# Eager tasks still build a producer for this URL: naming the host keeps kombu from warning
# "No hostname was supplied" at the first task of every run.
CELERY_BROKER_URL = _BROKER_URL or "memory://localhost/"
# kombu connects to a rediss:// broker without checking its certificate unless told to (it
# logs "defaulting to insecure SSL behaviour"), where redis-py checks it: anyone on the path
# could pose as Redis. Checked, then, unless the URL's ssl_cert_reqs says. For amqps://,
# py-amqp checks the chain but matches the certificate to a host only when given one, and
# kombu gives none: any certificate the CA signed, for any host, would pass. The URL's host
# is named here, not left to kombu (server_hostname None), which would name 127.0.0.1 for
# "localhost" and write the first host into this dict, shared by every connection.
_BROKER_PARTS = urlsplit(_BROKER_URL or "")
if _BROKER_PARTS.scheme == "rediss" and "ssl_cert_reqs" not in parse_qs(_BROKER_PARTS.query):
    CELERY_BROKER_USE_SSL = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
elif _BROKER_PARTS.scheme == "amqps":
    CELERY_BROKER_USE_SSL = {
        "cert_reqs": ssl.CERT_REQUIRED,
        "server_hostname": _BROKER_PARTS.hostname,
    }
else:
    CELERY_BROKER_USE_SSL = False
# An eager task's failure is logged, not raised into the request that enqueued it: the
# request's own work (a stored batch) stands, as it would with a broker. It also lets an
# eager task's retries run, which a propagated Retry would cut short.
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"
# A task is acknowledged after it ran, so a worker killed mid-batch leaves it to another;
# every task is idempotent in the data (unique constraints, conditional claims).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Celery's Django fixup closes the database connection around every task unless told to
# reuse it, and a new PostgreSQL connection costs a backend process and its cold caches,
# more than a small batch's work. Workers keep connections the way web processes do
# instead (config/celery.py): this turns the fixup's closing off.
CELERY_DB_REUSE_MAX = 2**31
# A web process must not hang on a broker that is down: it fails fast, the batch it stored
# stands, and the sweep processes it.
CELERY_BROKER_CONNECTION_TIMEOUT = 2.0
# How long a command waits for the broker's answer once connected (Redis; see below).
BROKER_SOCKET_TIMEOUT_SECONDS = 3.0
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
# Redis redelivers a task that was not acknowledged within this time: how soon a batch held by
# a worker that died is taken up again. It should exceed the longest task, and the longest a
# paced send waits in its worker for its slot (up to SMS_VALIDITY_SECONDS): Redis would hand
# a waiting send to another worker every period, one copy more each time (promotions.checks
# warns of a shorter one). A shorter one only risks a batch run twice, which the data makes
# harmless.
CELERY_VISIBILITY_TIMEOUT_SECONDS = env_int(
    "CELERY_VISIBILITY_TIMEOUT_SECONDS", max(600, SMS_VALIDITY_SECONDS + 60), minimum=5
)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT_SECONDS,
    # Look for overdue messages every few seconds; kombu's default (every ~100 s) would
    # leave a dead worker's batch waiting long after its timeout.
    "unacked_restore_interval": max(1, min(10, CELERY_VISIBILITY_TIMEOUT_SECONDS // 2)),
    "unacked_restore_throttle": 1,
    # kombu's Redis transport ignores CELERY_BROKER_CONNECTION_TIMEOUT and sets no socket
    # timeouts: a Redis that accepts connections and never answers (hung, or a dead proxy
    # in front of it) would hold every ingest request and every worker's command forever.
    # A healthy Redis answers in milliseconds; consumers wait on their 1 s BRPOP by polling
    # the socket, which this timeout does not cut short.
    "socket_connect_timeout": CELERY_BROKER_CONNECTION_TIMEOUT,
    "socket_timeout": BROKER_SOCKET_TIMEOUT_SECONDS,
}
# How often beat runs the presence tick and the sweep (seconds); tests shorten them. At most
# an hour: slower, visits stay open and dwells unannounced that long, and a number typed for
# "never" (1e12) overflowed each run's expiry, or (1e308) crashed `celery beat` at start.
BEAT_EVERY_SECONDS = env_float("BEAT_EVERY_SECONDS", 60.0, minimum=1.0, maximum=3600.0)
# A run that waited too long in the queue (workers down) is dropped: the next one does its
# work, and sixty queued sweeps run back to back would each enqueue the same lost sends. The
# tick and the sweep wait as long as an SMS stays worth sending, though: workers that are up
# but a few minutes behind must still end visits, announce dwells and resend lost sends.
BEAT_EXPIRES_SECONDS = max(BEAT_EVERY_SECONDS, float(SMS_VALIDITY_SECONDS))
# Without a broker there is no `celery beat`: runserver then runs this schedule in its
# serving process (config/beat.py). `make run` turns it on; beside a broker it is ignored.
BEAT_IN_PROCESS = env_bool("BEAT_IN_PROCESS", False)
CELERY_BEAT_SCHEDULE = {
    "presence-timeouts-and-dwell": {
        "task": "promotions.tasks.tick_presence",
        "schedule": BEAT_EVERY_SECONDS,
        "options": {"expires": BEAT_EXPIRES_SECONDS},
    },
    "sweep-unprocessed-location": {
        "task": "promotions.tasks.sweep_unprocessed",
        "schedule": BEAT_EVERY_SECONDS,
        "options": {"expires": BEAT_EXPIRES_SECONDS},
    },
    "settle-claimed-sends": {
        "task": "promotions.tasks.settle_claimed_sends",
        "schedule": 300.0,
        "options": {"expires": 300.0},
    },
    "purge-location-history": {
        "task": "promotions.tasks.purge_location_history",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
    "daily-campaign-statistics": {
        "task": "promotions.tasks.record_campaign_days",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
}

# --- SMS --------------------------------------------------------------------------------

SMS_BACKEND = env_choice("SMS_BACKEND", "console", ("console", "locmem", "file", "twilio"))
_SMS_FILE_DEFAULT = str(BASE_DIR / "var" / "sms.jsonl")
# Checked only where used: a directory here would make every send fail after its claim.
SMS_FILE_PATH = (
    env_writable_file("SMS_FILE_PATH", _SMS_FILE_DEFAULT)
    if SMS_BACKEND == "file"
    else env_str("SMS_FILE_PATH", _SMS_FILE_DEFAULT)
)
TWILIO_ACCOUNT_SID = env_twilio_sid("TWILIO_ACCOUNT_SID", "AC", "an Account SID")
TWILIO_AUTH_TOKEN = env_twilio_auth_token("TWILIO_AUTH_TOKEN")
TWILIO_FROM_NUMBER = env_sms_sender("TWILIO_FROM_NUMBER")
TWILIO_MESSAGING_SERVICE_SID = env_twilio_sid(
    "TWILIO_MESSAGING_SERVICE_SID", "MG", "a Messaging Service SID"
)
TWILIO_API_BASE = env_url("TWILIO_API_BASE", "https://api.twilio.com")
# How long to wait for Twilio's answer; an answer that never comes is not retried.
SMS_HTTP_TIMEOUT_SECONDS = env_float("SMS_HTTP_TIMEOUT_SECONDS", 10.0, minimum=0.1, maximum=120.0)
if SMS_BACKEND == "twilio":
    if not (TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN):
        raise ImproperlyConfigured(
            "SMS_BACKEND=twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN."
        )
    if not (TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID):
        raise ImproperlyConfigured(
            "SMS_BACKEND=twilio needs TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID."
        )
    # Twilio sends from the Messaging Service when it is given one, and the From number
    # would be ignored without a word (and the pace kept for the wrong sender).
    if TWILIO_FROM_NUMBER and TWILIO_MESSAGING_SERVICE_SID:
        raise ImproperlyConfigured(
            "SMS_BACKEND=twilio: set TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID, not "
            "both (the Messaging Service would send, and the From number be ignored)."
        )
    # Status callback URLs and webhook signatures are built from PUBLIC_BASE_URL: with the
    # development default every callback would go nowhere and every signature check fail.
    if not _PUBLIC_BASE_URL_SET:
        raise ImproperlyConfigured(
            "SMS_BACKEND=twilio needs PUBLIC_BASE_URL: the address Twilio reaches this "
            "service at, such as https://passage.example.com."
        )
    if _is_loopback_url(PUBLIC_BASE_URL) and not DEBUG:
        raise ImproperlyConfigured(
            f"PUBLIC_BASE_URL={PUBLIC_BASE_URL!r}: Twilio cannot reach a loopback address; "
            "set the public address (a loopback one is allowed only with DEBUG on)."
        )
    # Twilio calls back at PUBLIC_BASE_URL's host: a host ALLOWED_HOSTS refuses would have every
    # status callback and STOP reply answered 400 (DisallowedHost), with nothing said here.
    _public_host = _served_host(PUBLIC_BASE_URL)
    if not validate_host(_public_host, ALLOWED_HOSTS):
        raise ImproperlyConfigured(
            f"PUBLIC_BASE_URL={PUBLIC_BASE_URL!r}: ALLOWED_HOSTS={','.join(ALLOWED_HOSTS)!r} "
            f"does not serve {_public_host!r}, so every Twilio webhook would be refused; "
            "add it to ALLOWED_HOSTS."
        )

# --- Logging ----------------------------------------------------------------------------

LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Django names the path of every request it answers with an error, and runserver of
    # every request, path and query: the path holds customers' ids (an e-mail address at
    # some retailers). The lines name the route instead (config/logs.py).
    "filters": {
        "request_routes": {"()": "config.logs.RequestRoutes"},
        "outgoing_queries": {"()": "config.logs.OutgoingQueries"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        # Django's own for runserver's lines, which this configuration takes over.
        "django.server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "django.server": {"class": "logging.StreamHandler", "formatter": "django.server"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # The Twilio SDK's HTTP clients dump every request at INFO: its URL and query,
        # which hold the phone number a lookup of sent messages filters on. They are kept
        # at WARNING whatever LOG_LEVEL is, so customers' numbers stay out of the logs
        # (they log nothing above INFO).
        **{
            name: {"level": "WARNING"}
            for name in ("twilio.http_client", "twilio.async_http_client")
        },
        # Django's own console handler (DEBUG only) would write each of its lines a second
        # time beside root's; listing the logger drops it and keeps Django's INFO level.
        "django": {},
        # Django's loggers that name a request's path (log_response).
        **{
            name: {"filters": ["request_routes"]}
            for name in ("django.request", "django.security.csrf")
        },
        # urllib3's line of each request it makes (DEBUG) gives its query whole, which
        # names the number a lookup of the messages sent to it filters on.
        "urllib3.connectionpool": {"filters": ["outgoing_queries"]},
        "django.server": {
            "handlers": ["django.server"],
            "level": "INFO",
            "propagate": False,
            "filters": ["request_routes"],
        },
    },
}
