"""Per-key rate limits on ingest: a fixed one-minute window counted in the shared cache."""

import logging
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from promotions.models import Scope

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
# After the cache fails, this process leaves the limit aside for this long before trying the
# cache again: a Redis that never answers costs one request its socket timeout, not every
# request (a sync worker held 0.5 s a request serves two requests a second).
CACHE_RETRY_SECONDS = 10.0
# When this process last found the cache failing (time.monotonic()), or None.
_cache_failed_at: float | None = None


class IngestRateThrottle(BaseThrottle):
    """At most INGEST_RATE_LIMIT_PER_MINUTE requests per API key and endpoint in a minute, on
    every view whose `required_scope` is ingest; other views are not counted.

    It is the default throttle (REST_FRAMEWORK in config/settings.py), so a new ingest view is
    limited without having to say so.

    A counter per window is one atomic increment in Redis, where DRF's own throttles keep a
    list of every request's time: at tens of thousands of requests a minute that list is
    the hot path's largest cost."""

    def allow_request(self, request: Request, view: Any) -> bool:
        limit = settings.INGEST_RATE_LIMIT_PER_MINUTE
        api_key = request.auth
        if not limit or api_key is None or getattr(view, "required_scope", None) != Scope.INGEST:
            return True
        if _cache_set_aside():
            return True
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        key = f"ingest-rate:{api_key.pk}:{view.__class__.__name__}:{window}"
        try:
            count = _count_request(key)
        # Django's cache API has no error class of its own: each backend raises its client
        # library's (redis.ConnectionError, OSError...). The limit is a safeguard, so with its
        # cache down ingest goes on unlimited rather than answering 500 to every request.
        except Exception as error:
            _cache_failed(error)
            return True
        self.retry_after = (window + 1) * WINDOW_SECONDS - now
        return count <= limit

    def wait(self) -> float | None:
        return max(1.0, self.retry_after)


def _cache_set_aside() -> bool:
    """Whether this process found the cache failing less than CACHE_RETRY_SECONDS ago."""
    failed_at = _cache_failed_at
    return failed_at is not None and time.monotonic() - failed_at < CACHE_RETRY_SECONDS


def _cache_failed(error: Exception) -> None:
    global _cache_failed_at
    _cache_failed_at = time.monotonic()
    logger.warning(
        "Ingest rate limit not applied for %g s: the cache failed (%r).",
        CACHE_RETRY_SECONDS,
        error,
    )


def forget_cache_failure() -> None:
    """Try the cache on the next request (tests start each with a cache that works)."""
    global _cache_failed_at
    _cache_failed_at = None


def _count_request(key: str) -> int:
    """This window's request count for `key`, this request included."""
    try:
        return cache.incr(key)
    except ValueError:  # the window's first request (or a race with another's add)
        return 1 if cache.add(key, 1, timeout=WINDOW_SECONDS * 2) else cache.incr(key)
