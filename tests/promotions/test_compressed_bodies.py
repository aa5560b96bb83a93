"""Request bodies sent compressed, as mobile SDKs send their uploads to save cellular data:
gzip and deflate are read (the pings' fast path too), never past the body size limit once
decompressed; any other coding is refused naming the ones understood."""

import gzip
import io
import json
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from django.test import RequestFactory

from customers.models import Device
from promotions.api.parsers import PingBatchParser
from promotions.api.ping_batch import PingBatchIn
from promotions.models import Ping
from tests.factories import CustomerFactory, DeviceFactory

pytestmark = pytest.mark.django_db

COMPRESSED = {"gzip": gzip.compress, "deflate": zlib.compress}


@pytest.fixture
def phone():
    return DeviceFactory(device_id="lea-phone")


def batch(count: int) -> bytes:
    now = datetime.now(UTC)
    pings = [
        {
            "ping_id": f"3f2a9c4e-{n:04d}-4b1d-9e0f-5a7c3d2b1e{n % 100:02d}",
            "device_id": "lea-phone",
            "latitude": 48.8606 + n * 1e-5,
            "longitude": 2.3417 + n * 1e-5,
            "accuracy": 12.5,
            "recorded_at": (now - timedelta(seconds=n)).isoformat(),
            "speed": 1.2,
            "mocked": False,
        }
        for n in range(count)
    ]
    return json.dumps({"pings": pings}).encode()


def post(api, body: bytes, coding: str, path: str = "/api/v1/pings"):
    return api.generic(
        "POST", path, body, content_type="application/json", HTTP_CONTENT_ENCODING=coding
    )


@pytest.mark.parametrize("coding", ["gzip", "deflate", "GZIP"])
def test_a_compressed_batch_of_pings_is_stored(api, phone, coding):
    response = post(api, COMPRESSED[coding.lower()](batch(1000)), coding)

    assert response.status_code == 202, response.json()
    assert response.json() == {"accepted": 1000, "duplicates": 0, "rejected": []}
    assert Ping.objects.count() == 1000


def test_a_compressed_batch_of_pings_takes_the_fast_path():
    body = gzip.compress(batch(3))
    request = RequestFactory().post(
        "/api/v1/pings", body, content_type="application/json", HTTP_CONTENT_ENCODING="gzip"
    )

    parsed = PingBatchParser().parse(io.BytesIO(body), "application/json", {"request": request})

    # Typed items straight from the bytes, not the dicts of the general JSON path.
    assert isinstance(parsed, PingBatchIn)
    assert len(parsed.pings) == 3


def test_other_endpoints_read_a_compressed_body_too(api):
    CustomerFactory(external_id="C-1")
    body = gzip.compress(json.dumps({"device_id": "lea-phone", "customer_id": "C-1"}).encode())

    response = post(api, body, "gzip", path="/api/v1/devices")

    assert response.status_code == 201, response.json()
    assert Device.objects.get().device_id == "lea-phone"


def test_a_compressed_batch_is_read_under_the_largest_body_limit(api, phone, settings):
    settings.API_MAX_BODY_BYTES = 2**30  # the most config/settings.py takes

    response = post(api, gzip.compress(batch(3)), "gzip")

    assert response.status_code == 202, response.json()


def test_a_body_over_the_limit_once_decompressed_is_413(api, phone, settings):
    settings.API_MAX_BODY_BYTES = 1024 * 1024
    # 16 MB of spaces inside valid JSON, compressed to a few kilobytes: a zip bomb.
    bomb = gzip.compress(b'{"pings": [' + b" " * 16_000_000 + b"]}")
    assert len(bomb) < 100_000

    response = post(api, bomb, "gzip")

    assert response.status_code == 413
    assert "limit decompressed" in response.json()["detail"]
    assert not Ping.objects.exists()


def test_a_body_that_is_not_what_its_coding_says_is_400(api, phone):
    truncated = gzip.compress(batch(10))[:-20]

    for body in (batch(1), truncated, gzip.compress(batch(1)) + b"junk"):
        response = post(api, body, "gzip")
        assert response.status_code == 400
        assert "gzip" in response.json()["detail"]
    assert not Ping.objects.exists()


@pytest.mark.parametrize("coding", ["br", "compress", "gzip, br"])
def test_another_coding_is_415_naming_the_codings_understood(api, phone, coding):
    response = post(api, batch(1), coding)

    assert response.status_code == 415
    assert response["Accept-Encoding"] == "gzip, deflate"
    assert f"Content-Encoding '{coding}' is not supported" in response.json()["detail"]
    assert not Ping.objects.exists()
