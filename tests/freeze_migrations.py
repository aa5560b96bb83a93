"""Adds the migrations not yet listed in tests/migrations.sha256 to it: `make freeze-migrations`.

A migration on main has run on databases this repository never sees: editing it changes
nothing there, only on new databases, and the two then differ (three edits did, each settled
by a later migration). tests/test_migrations_frozen.py fails when a listed file changes. This
script lists new files only: it never rewrites a line, so it cannot bless an edit.
"""

import hashlib
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
MANIFEST = BASE_DIR / "tests" / "migrations.sha256"


def migration_files() -> list[str]:
    """Every app's numbered migrations, as paths from the repository's root."""
    return sorted(
        path.relative_to(BASE_DIR).as_posix() for path in BASE_DIR.glob("*/migrations/[0-9]*.py")
    )


def sha256_of(path: str) -> str:
    return hashlib.sha256((BASE_DIR / path).read_bytes()).hexdigest()


def read_manifest() -> dict[str, str]:
    """Path to SHA-256, from lines as `sha256sum` writes them (`sha256sum -c` reads it too)."""
    listed = {}
    for line in MANIFEST.read_text().splitlines():
        digest, path = line.split(maxsplit=1)
        listed[path] = digest
    return listed


def main() -> None:
    listed = read_manifest()
    new = [path for path in migration_files() if path not in listed]
    listed.update((path, sha256_of(path)) for path in new)
    MANIFEST.write_text("".join(f"{listed[path]}  {path}\n" for path in sorted(listed)))
    for path in new:
        print(f"frozen: {path}")
    if not new:
        print("every migration was already listed.")


if __name__ == "__main__":
    main()
