"""Django's Redis cache, with a counter that costs one round trip.

The cache holds the ingest rate limit (promotions/api/throttles.py), one increment a
request. Django's client builds a new `redis.Redis` for every command (with its table of
some 170 reply callbacks, a third of a millisecond) and increments in two commands, EXISTS
then INCRBY: two round trips, and a key that expires between them comes back as a counter
with no expiry, kept for ever.
"""

from typing import Any

import redis
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient
from redis.commands.core import Script

# INCRBY on a key that exists; nil (None) on one that does not, which Django's `incr`
# turns into its ValueError. Atomic: Redis runs a script whole.
_INCREMENT_EXISTING = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.call('INCRBY', KEYS[1], ARGV[1])
end
return false
"""


class _Client(RedisCacheClient):
    def __init__(self, servers: list[str], **options: Any) -> None:
        super().__init__(servers, **options)
        # One client a connection pool, with its counting script: a client takes a connection
        # from its pool for each command, so threads can share it.
        self._clients: dict[int, tuple[redis.Redis, Script]] = {}

    def _pooled(self, write: bool) -> tuple[redis.Redis, Script]:
        pool = self._get_connection_pool(write)
        pooled = self._clients.get(id(pool))
        if pooled is None:
            client = self._client(connection_pool=pool)
            # EVALSHA, and EVAL once when a restarted Redis has forgotten the script.
            pooled = (client, client.register_script(_INCREMENT_EXISTING))
            self._clients[id(pool)] = pooled
        return pooled

    def get_client(self, key: Any = None, *, write: bool = False) -> redis.Redis:
        return self._pooled(write)[0]

    def incr(self, key: str, delta: int) -> int:
        _, increment_existing = self._pooled(write=True)
        value = increment_existing(keys=[key], args=[delta])
        if value is None:
            raise ValueError(f"Key '{key}' not found.")
        return value


class RedisCache(DjangoRedisCache):
    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = _Client
