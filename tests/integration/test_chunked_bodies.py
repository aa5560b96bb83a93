"""Uploads sent with Transfer-Encoding: chunked and no Content-Length, through gunicorn: what
OkHttp's gzip interceptor sends when an Android app compresses its pings."""

import gzip
import json
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from promotions.models import Ping
from tests.factories import DeviceFactory
from tests.integration.test_distributed import HTTPS, walk_in_pings, world  # noqa: F401

pytestmark = pytest.mark.integration


def in_chunks(body: bytes, size: int = 1000) -> Iterator[bytes]:
    """A body requests sends chunked: it cannot know the length of an iterator."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def upload(url: str, key: str, body: bytes) -> requests.Response:
    return requests.post(
        url + "/api/v1/pings",
        data=in_chunks(body),
        headers={
            "Authorization": f"Api-Key {key}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            **HTTPS,
        },
        timeout=30,
    )


def test_a_gzipped_chunked_upload_is_read_whole(processes, world):  # noqa: F811
    devices = [DeviceFactory() for _ in range(50)]
    url = processes.gunicorn()
    body = gzip.compress(json.dumps({"pings": walk_in_pings(devices)}).encode())

    response = upload(url, world["key"], body)

    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in response.request.headers
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 50, "duplicates": 0, "rejected": []}
    assert Ping.objects.count() == 50


def test_a_chunked_upload_over_the_limit_or_broken_stores_nothing(processes, world):  # noqa: F811
    processes.extra["API_MAX_BODY_BYTES"] = "2048"
    devices = [DeviceFactory() for _ in range(50)]
    url = processes.gunicorn()
    too_large = json.dumps({"pings": walk_in_pings(devices)}).encode()
    assert len(too_large) > 2048

    over = upload(url, world["key"], gzip.compress(too_large, compresslevel=0))
    broken = raw_post(url, world["key"], b"zz\r\nnot a chunk size\r\n0\r\n\r\n")

    assert over.status_code == 413, over.text
    assert broken.startswith(b"HTTP/1.1 400"), broken
    assert b"chunked" in broken.split(b"\r\n\r\n", 1)[1]
    assert not Ping.objects.exists()


def raw_post(url: str, key: str, chunked_body: bytes) -> bytes:
    """What the server answers to a body whose chunked framing is sent as given."""
    address = urlsplit(url)
    head = (
        "POST /api/v1/pings HTTP/1.1\r\n"
        f"Host: {address.netloc}\r\n"
        f"Authorization: Api-Key {key}\r\n"
        "X-Forwarded-Proto: https\r\n"
        "Content-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n"
    )
    with socket.create_connection((address.hostname, address.port), timeout=30) as client:
        client.sendall(head.encode() + chunked_body)
        answer = b""
        while data := client.recv(65536):
            answer += data
    return answer
