"""What an operator sees when a management command cannot do its work."""

import io
import os
import shutil
import signal
import socket
import subprocess

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

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


def test_one_app_migrated_first_on_a_new_database_then_the_rest(tmp_path):
    # An operator rolling out one app's migrations first: the Marketers group waits for auth.
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'new.sqlite3'}"}

    first = run_python("manage.py", "migrate", "customers", "0012", "-v", "0", env=env)
    rest = run_python("manage.py", "migrate", "-v", "0", env=env)
    groups = run_python(
        "manage.py",
        "shell",
        "-v",
        "0",
        "-c",
        "from django.contrib.auth.models import Group;"
        "print(Group.objects.get(name='Marketers').permissions.count())",
        env=env,
    )

    assert (first.returncode, first.stderr) == (0, "")
    assert (rest.returncode, rest.stderr) == (0, "")
    assert int(groups.stdout) > 0


@pytest.mark.parametrize(
    "command",
    [
        ["create_api_key", "ops", "--scopes", "all"],
        ["record_campaign_days", "--days", "2"],
    ],
)
def test_a_command_whose_database_is_unreachable_says_to_check_database_url(command):
    # Running migrate would not help: it would fail the same way.
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = run_python(
        "manage.py", *command, env={"DATABASE_URL": f"postgres://postgres@127.0.0.1:{port}/x"}
    )

    assert result.returncode == 1
    assert result.stderr.startswith("CommandError: Database not reachable (")
    assert result.stderr.rstrip().endswith("): check DATABASE_URL.")
    assert "migrate" not in result.stderr
    assert "Traceback" not in result.stderr


def make_run(port: str, database) -> tuple[int, str]:
    """`make run` on its own database; its return code and what it wrote to stderr."""
    make = subprocess.Popen(
        ["make", "-s", "run", f"PORT={port}"],
        env={"PATH": os.environ["PATH"], "DATABASE_URL": f"sqlite:///{database}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=settings.BASE_DIR,
        start_new_session=True,  # a server it started anyway is stopped with it
    )
    try:
        _, stderr = make.communicate(timeout=30)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGTERM)
            make.wait()
    return make.returncode, stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("port", ["abc", "0", "65536"])
def test_make_run_refuses_a_port_before_touching_the_database(tmp_path, port):
    # runserver would refuse it only after migrate and load_demo had replaced the admin's
    # password and the demo key.
    database = tmp_path / "db.sqlite3"

    returncode, stderr = make_run(port, database)

    assert returncode != 0
    assert stderr.splitlines()[0] == f"PORT='{port}': expected a port number from 1 to 65535."
    assert not database.exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_a_second_make_run_on_a_busy_port_leaves_the_first_ones_demo_alone(tmp_path):
    # The usual mistake, `make run` in a second terminal: the first server's key and admin
    # password must survive it.
    database = tmp_path / "db.sqlite3"
    with socket.socket() as first:
        first.bind(("127.0.0.1", 0))
        first.listen()
        port = str(first.getsockname()[1])

        returncode, stderr = make_run(port, database)

    assert returncode != 0
    assert stderr.splitlines()[0] == (
        f"127.0.0.1:{port} is already in use (another make run?): nothing was changed; "
        "set PORT to a free port."
    )
    assert not database.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("scopes", ["bogus", "all,ingest", " , "])
def test_create_api_key_s_refusal_of_its_scopes_offers_all(scopes):
    # The command takes 'all' where the service does not: its message must say so, or an
    # operator who typed "all,ingest" is told only of the five scopes and never why.
    with pytest.raises(CommandError) as refused:
        call_command("create_api_key", "ops", scopes=scopes, stdout=io.StringIO())

    assert "'all'" in str(refused.value)
    assert "ingest, customers, redemptions, config, reports" in str(refused.value)
