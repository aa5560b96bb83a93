"""Migrations are frozen once on main, and models never drift from them.

A database that applied a migration never runs it again: an edit reaches new databases
only, and old and new then differ (three edits did, each settled by a later migration).
Every migration file's SHA-256 is listed in tests/migrations.sha256.
"""

from io import StringIO

import pytest
from django.core.management import call_command

from tests.freeze_migrations import migration_files, read_manifest, sha256_of

HOW_TO_ADD = "run `make freeze-migrations` (python -m tests.freeze_migrations) and commit"


def test_no_listed_migration_has_changed():
    listed = read_manifest()
    changed = [path for path in migration_files() if path in listed]
    changed = [path for path in changed if sha256_of(path) != listed[path]]

    assert not changed, (
        f"{', '.join(changed)}: migrations are frozen once on main: undo the edit and add a "
        "new migration that makes the change (databases that applied the old one never run it "
        "again)."
    )


def test_no_listed_migration_is_gone():
    gone = sorted(set(read_manifest()) - set(migration_files()))

    assert not gone, (
        f"{', '.join(gone)}: listed in tests/migrations.sha256 but missing: migrations are "
        "frozen once on main. Only one renumbered before it reached main may be renamed: "
        "rename its line in tests/migrations.sha256 too."
    )


def test_every_migration_is_listed():
    new = [path for path in migration_files() if path not in read_manifest()]

    assert not new, f"{', '.join(new)}: not in tests/migrations.sha256: {HOW_TO_ADD}."


@pytest.mark.django_db
def test_the_models_need_no_migration_the_repository_lacks():
    # A model changed without its migration: new databases would lack the change (a column,
    # an index, a constraint) the code relies on.
    output = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=output, stderr=output)
    except SystemExit:  # what --check does when a migration is missing
        pytest.fail(
            "The models differ from their migrations: run `manage.py makemigrations`, name the "
            f"migration for what it does, then {HOW_TO_ADD}.\n{output.getvalue()}",
            pytrace=False,
        )
