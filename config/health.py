"""GET /healthz: is this process alive, and can it reach its database and broker?"""

from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from kombu import Connection

BROKER_TIMEOUT_SECONDS = 2
PATH = "/healthz"


def _database_state() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:
        return f"unreachable: {error.__class__.__name__}"
    return "ok"


def _broker_state() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "none (tasks run in the web process)"
    try:
        # The transport options carry the socket timeouts that bound a broker which accepts
        # the connection and never answers (kombu's Redis transport has none of its own).
        with Connection(
            settings.CELERY_BROKER_URL,
            connect_timeout=BROKER_TIMEOUT_SECONDS,
            ssl=settings.CELERY_BROKER_USE_SSL,
            transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        ) as broker:
            # One attempt: a broker that refuses the connection refuses a retry too, and
            # kombu sleeps 2 s before it, past many load balancers' probe timeout.
            broker.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT_SECONDS)
    except Exception as error:  # kombu surfaces each transport's own errors
        return f"unreachable: {error.__class__.__name__}"
    return "ok"


def healthz(request: HttpRequest) -> HttpResponse:
    """200 with the state of the database and the broker, 503 when either is unreachable;
    HEAD answers the same status without a body."""
    if request.method not in ("GET", "HEAD"):
        refused = JsonResponse({"detail": f'Method "{request.method}" not allowed.'}, status=405)
        refused["Allow"] = "GET, HEAD"
        return refused
    database, broker = _database_state(), _broker_state()
    healthy = database == "ok" and not broker.startswith("unreachable")
    response = JsonResponse(
        {"status": "ok" if healthy else "degraded", "database": database, "broker": broker},
        status=200 if healthy else 503,
    )
    if request.method == "HEAD":
        response.content = b""
    return response


class HealthzMiddleware:
    """Answers /healthz ahead of every other middleware. A load balancer probes each
    instance by its address (a Host that ALLOWED_HOSTS rightly refuses), over plain HTTP
    behind an HTTPS redirect, with HEAD or a POST carrying no CSRF token: none of that
    concerns a liveness probe, and a refusal would take a healthy instance out of service."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info == PATH:
            return healthz(request)
        return self.get_response(request)
