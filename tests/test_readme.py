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


def production_commands() -> list[str]:
    block = section("Running it for real").split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("#")[0].strip() for line in block.replace("\\\n", " ").splitlines()]


def test_the_production_commands_create_the_first_admin_account():
    # make run prints a generated login; a deployment has no account until one is made, and
    # the admin is where marketers configure stores and campaigns.
    assert any("manage.py createsuperuser" in command for command in production_commands())


def test_the_production_commands_make_the_folder_beat_keeps_its_schedule_in():
    # celery beat dies with FileNotFoundError on a --schedule whose folder does not exist.
    commands = production_commands()
    beat = next(command for command in commands if "celery -A config beat" in command)
    folder = str(Path(beat.split("--schedule", 1)[1].split()[0]).parent)

    assert any(
        command.startswith("mkdir -p") and folder in command.split()
        for command in commands[: commands.index(beat)]
    )


def test_the_walkthrough_redeems_the_code_the_newcomer_s_sms_carried():
    # Codes are drawn at random: the README's example SMS shows one no other database gives,
    # and a redemption sending it as written answers 404 "No offer matches this code."
    using = section("Using the API")
    example_codes = set(re.findall(r"\b[A-Z0-9]{4}-[A-Z0-9]{4}\b", using))
    posted = re.findall(r'"code": "([^"]*)"', using)

    assert example_codes
    assert posted
    assert not example_codes & set(posted)
