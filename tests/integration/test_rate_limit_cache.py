"""The ingest rate limit counted in a real Redis, through the cache backend production uses
(config/cache.py): one round trip a request, a counter that always expires, and a Redis
restarted under it."""

import pytest
import redis
from django.core.cache import cache

from promotions.models import Ping
from tests.clock import ago
from tests.factories import DeviceFactory

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_cache(redis_broker, settings) -> redis.Redis:
    settings.CACHES = {"default": {"BACKEND": "config.cache.RedisCache", "LOCATION": redis_broker}}
    return redis.Redis.from_url(redis_broker)


def post_ping(client, device, n):
    ping = {
        "ping_id": f"p{n}",
        "device_id": device.device_id,
        "latitude": 48.85,
        "longitude": 2.35,
        "accuracy": 10,
        "recorded_at": ago(seconds=n),
    }
    return client.post("/api/v1/pings", {"pings": [ping]}, format="json")


def test_a_key_over_its_limit_gets_429_and_its_counter_expires(
    redis_cache, client_with_scopes, settings
):
    settings.INGEST_RATE_LIMIT_PER_MINUTE = 3
    client, device = client_with_scopes("ingest"), DeviceFactory()

    statuses = [post_ping(client, device, n).status_code for n in range(4)]

    assert statuses == [202, 202, 202, 429]
    assert Ping.objects.count() == 3
    (counter,) = redis_cache.keys("*ingest-rate*")
    assert int(redis_cache.get(counter)) == 4
    assert 0 < redis_cache.ttl(counter) <= 120  # a window's counter goes with the window


def test_counting_goes_on_in_a_redis_that_forgot_its_scripts(
    redis_cache, client_with_scopes, settings, caplog
):
    settings.INGEST_RATE_LIMIT_PER_MINUTE = 2
    client, device = client_with_scopes("ingest"), DeviceFactory()
    assert post_ping(client, device, 0).status_code == 202

    redis_cache.script_flush()  # what a restarted Redis knows of the counting script
    statuses = [post_ping(client, device, n).status_code for n in range(1, 3)]

    assert statuses == [202, 429]
    assert "Ingest rate limit not applied" not in caplog.text


def test_incrementing_a_missing_key_creates_nothing(redis_cache):
    with pytest.raises(ValueError):
        cache.incr("absent")

    assert redis_cache.keys("*absent*") == []
    cache.set("present", 41)
    assert cache.incr("present") == 42
    assert cache.decr("present", 2) == 40
