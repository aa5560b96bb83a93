import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from promotions.demo import DemoRefused, load_demo
from promotions.management.commands._database import database_ready
from promotions.models import ApiKey, Scope
from promotions.services import create_api_key

ADMIN_USERNAME = "admin"
DEMO_KEY_NAME = "demo (make run)"


class Command(BaseCommand):
    help = (
        "Load or refresh the demo stores, shoppers and campaigns, give the 'admin' user a new "
        "generated password and create a fresh demo API key; prints both."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args: Any, base_url: str, **options: Any) -> None:
        if settings.SMS_BACKEND == "twilio":
            raise CommandError(
                "The demo shoppers have real-looking phone numbers: refusing to load them "
                "while SMS_BACKEND=twilio."
            )
        with database_ready():
            self.load(base_url)

    def load(self, base_url: str) -> None:
        try:
            counts = load_demo()
        except DemoRefused as error:
            raise CommandError(str(error)) from None
        password = secrets.token_urlsafe(12)
        admin, _ = get_user_model().objects.get_or_create(
            username=ADMIN_USERNAME, defaults={"is_staff": True, "is_superuser": True}
        )
        admin.set_password(password)
        admin.save()
        # Keys are kept hashed, so the demo key cannot be shown again: replace it each time.
        ApiKey.objects.filter(name=DEMO_KEY_NAME).delete()
        _, key = create_api_key(name=DEMO_KEY_NAME, scopes=list(Scope.values))
        summary = ", ".join(f"{count} {name}" for name, count in counts.items())
        self.stdout.write(f"Demo data loaded: {summary}.")
        self.stdout.write("")
        self.stdout.write(f"  Admin:    {base_url}/admin/")
        self.stdout.write(f"  Login:    {ADMIN_USERNAME} / {password}")
        self.stdout.write(f"  API docs: {base_url}/api/docs/")
        self.stdout.write(f"  API key:  {key}")
        self.stdout.write("")
