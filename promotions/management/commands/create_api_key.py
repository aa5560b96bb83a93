from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from promotions.management.commands._database import database_ready
from promotions.models import Scope
from promotions.services import create_api_key


class Command(BaseCommand):
    help = "Create an API key. The key is printed alone on the last line, and only once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Who uses the key, e.g. 'ios-app' or 'pos-rivoli'.")
        parser.add_argument(
            "--scopes",
            required=True,
            help=f"Comma-separated, from {','.join(Scope.values)}; or 'all'.",
        )

    def handle(self, *args: Any, name: str, scopes: str, **options: Any) -> None:
        requested = [scope.strip() for scope in scopes.split(",") if scope.strip()]
        if requested == ["all"]:
            requested = list(Scope.values)
        # Checked here, not left to the service: only this command takes 'all'.
        if not requested or set(requested) - set(Scope.values):
            raise CommandError(
                f"Scopes are {', '.join(Scope.values)} (comma-separated), or 'all' alone; "
                f"got {scopes.strip()!r}."
            )
        try:
            with database_ready():
                api_key, key = create_api_key(name=name, scopes=requested)
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            f"Created API key '{api_key.name}' with scopes {', '.join(api_key.scopes)}. "
            "Store it now: only its hash is kept."
        )
        self.stdout.write(key)
