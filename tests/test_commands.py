"""What an operator sees when a management command cannot do its work."""

import pytest

from tests.processes import run_python


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
    result = run_python(
        "manage.py", *command, env={"DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}
    )

    assert result.returncode == 1
    assert result.stderr.startswith("CommandError: Database not ready: run manage.py migrate (")
    assert "no such table" in result.stderr
    assert "Traceback" not in result.stderr
