"""What an operator sees when a management command cannot do its work."""

import os
import subprocess
import sys

import pytest
from django.conf import settings


@pytest.mark.parametrize(
    "command",
    [
        ["create_api_key", "ops", "--scopes", "all"],
        ["load_demo"],
        ["record_campaign_days", "--days", "2"],
        ["simulate", "--shoppers", "2", "--quiet"],
    ],
)
def test_a_command_on_an_unmigrated_database_says_to_migrate(tmp_path, command):
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}",
    }

    result = subprocess.run(
        [sys.executable, "manage.py", *command],
        env=env,
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
        timeout=120,
    )

    assert result.returncode == 1
    assert result.stderr.startswith("CommandError: Database not ready: run manage.py migrate (")
    assert "no such table" in result.stderr
    assert "Traceback" not in result.stderr
