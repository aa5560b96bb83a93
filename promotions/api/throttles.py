"""Per-key rate limits on ingest: a fixed one-minute window counted in the shared cache."""

import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

WINDOW_SECONDS = 60


class IngestRateThrottle(BaseThrottle):
    """At most INGEST_RATE_LIMIT_PER_MINUTE requests per API key and endpoint in a minute.

    A counter per window is one atomic increment in Redis, where DRF's own throttles keep a
    list of every request's time: at tens of thousands of requests a minute that list is
    the hot path's largest cost."""

    def allow_request(self, request: Request, view: Any) -> bool:
        limit = settings.INGEST_RATE_LIMIT_PER_MINUTE
        api_key = request.auth
        if not limit or api_key is None:
            return True
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        key = f"ingest-rate:{api_key.pk}:{view.__class__.__name__}:{window}"
        try:
            count = cache.incr(key)
        except ValueError:  # the window's first request (or a race with another's add)
            count = 1 if cache.add(key, 1, timeout=WINDOW_SECONDS * 2) else cache.incr(key)
        self.retry_after = (window + 1) * WINDOW_SECONDS - now
        return count <= limit

    def wait(self) -> float | None:
        return max(1.0, self.retry_after)
