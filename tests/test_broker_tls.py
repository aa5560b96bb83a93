"""An amqps:// broker is trusted for the host its URL names, as https is: a certificate a
trusted CA signed for another host (any other RabbitMQ, or a name bought from that CA) is
refused."""

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.processes import run_python

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="the openssl command makes the test certificates"
)

# What a worker does first: connect to the broker for its tasks, through Celery's own
# connection and the settings' TLS options.
_CONNECT = (
    "import django; django.setup()\n"
    "from config.celery import app\n"
    "try:\n"
    "    app.connection_for_write().ensure_connection(max_retries=0)\n"
    "except Exception as error:\n"
    "    print(type(error).__name__, error)\n"
)


def _self_signed_certificate(folder: Path, host: str) -> tuple[Path, Path]:
    certificate, key = folder / f"{host}.pem", folder / f"{host}.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-nodes", "-days", "1"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host}"),
            *("-keyout", key, "-out", certificate),
        ],
        check=True,
        capture_output=True,
    )
    return certificate, key


@contextmanager
def _tls_server(certificate: Path, key: Path) -> Iterator[tuple[int, list[str]]]:
    """A TLS server on loopback presenting `certificate`; yields its port and, for each
    client, "handshake completed" or why the handshake failed. It then hangs up: no AMQP."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)  # to see `done` soon: closing the socket wakes no accept()
    done = threading.Event()
    outcomes: list[str] = []

    def serve() -> None:
        while not done.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            client.settimeout(5)
            try:
                with context.wrap_socket(client, server_side=True):
                    outcomes.append("handshake completed")
            except (ssl.SSLError, OSError) as error:
                outcomes.append(str(error))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], outcomes
    finally:
        done.set()
        thread.join()
        listener.close()


def _connect_to(url: str, trusted: Path) -> str:
    # SSL_CERT_FILE is OpenSSL's own: the CA a deployment on a private CA trusts this way.
    result = run_python(
        "-c",
        _CONNECT,
        env={
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "CELERY_BROKER_URL": url,
            "SSL_CERT_FILE": str(trusted),
        },
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_an_amqps_broker_whose_certificate_names_another_host_is_refused(tmp_path):
    # The CA is trusted, the chain is good: only the name is wrong. Before, py-amqp was
    # given no host name, and connected: any host with a certificate from that CA (another
    # team's RabbitMQ, a machine on the path) could pose as the broker, read its password
    # and hand workers tasks.
    certificate, key = _self_signed_certificate(tmp_path, "rabbitmq.example.com")

    with _tls_server(certificate, key) as (port, outcomes):
        printed = _connect_to(f"amqps://guest:guest@localhost:{port}//", trusted=certificate)

    assert "Hostname mismatch" in printed, printed
    assert "handshake completed" not in outcomes


def test_an_amqps_broker_whose_certificate_names_its_host_is_accepted(tmp_path):
    certificate, key = _self_signed_certificate(tmp_path, "localhost")

    with _tls_server(certificate, key) as (port, outcomes):
        printed = _connect_to(f"amqps://guest:guest@localhost:{port}//", trusted=certificate)

    # The TLS handshake went through; the server then hung up, having no AMQP to speak.
    assert outcomes[:1] == ["handshake completed"], (outcomes, printed)
    assert "certificate" not in printed, printed
