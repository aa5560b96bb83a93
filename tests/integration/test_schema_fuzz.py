"""schemathesis against the running app (gunicorn, production settings) with a real key:
every operation of /api/schema/, generated valid and invalid input; no 5xx, and every
response as the schema describes it. `make fuzz` runs it longer (FUZZ_EXAMPLES)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from promotions.services import create_api_key
from tests.factories import (
    CampaignFactory,
    CustomerFactory,
    DeviceFactory,
    StoreFactory,
    ZoneFactory,
)
from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))


def test_no_input_gets_a_server_error_and_every_answer_matches_the_schema(processes):
    store = StoreFactory(code="RIVOLI")
    ZoneFactory(store=store, code="entrance")
    CampaignFactory().stores.add(store)
    DeviceFactory(customer=CustomerFactory(external_id="C-1001"), device_id="lea-iphone")
    _, key = create_api_key(
        name="fuzz", scopes=["ingest", "customers", "redemptions", "config", "reports"]
    )
    # TLS ends at the load balancer, which redirects plain HTTP itself.
    processes.extra["SECURE_SSL_REDIRECT"] = "false"
    url = processes.gunicorn()

    st = Path(sys.executable).with_name("st")
    result = subprocess.run(
        [
            str(st),
            "run",
            f"{url}/api/schema/",
            "--header",
            f"Authorization: Api-Key {key}",
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--max-examples",
            str(EXAMPLES),
            "--phases",
            "examples,coverage,fuzzing",
            # One thread: CPython 3.11.7 tracks ast.parse's recursion depth in global state
            # (gh-106905), and hypothesis parses lambdas' source while it generates; two
            # threads at once ended a run with "SystemError: AST constructor recursion depth
            # mismatch", every request having passed.
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--seed",
            "1",
            "--generation-database",
            "none",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
