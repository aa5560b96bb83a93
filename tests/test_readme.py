"""What the README tells a newcomer holds: the map finds every file, and the walkthrough and
the production commands can be run as written."""

import re
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
README = (BASE_DIR / "README.md").read_text()


def section(heading: str) -> str:
    return README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def code_files() -> list[Path]:
    """The apps' own files a newcomer may look for: modules, templates, scripts, images
    (migrations have their own list, tests/migrations.sha256)."""
    found = []
    for folder in ("config", "customers", "promotions", "bench"):
        for path in sorted((BASE_DIR / folder).rglob("*")):
            parts = path.relative_to(BASE_DIR).parts
            if path.is_dir() or "migrations" in parts or "__pycache__" in parts:
                continue
            if path.name != "__init__.py":
                found.append(path)
    return found


def test_the_map_of_the_code_names_every_file_of_the_apps():
    the_map = section("Map of the code")

    unnamed = [
        str(path.relative_to(BASE_DIR))
        for path in code_files()
        if not re.search(rf"(?<![\w.]){re.escape(path.stem)}(?!\w)", the_map)
    ]

    assert unnamed == []
