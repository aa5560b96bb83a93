import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from promotions.management.commands._database import database_ready
from promotions.services import budget_days_before, record_campaign_days


def _days(value: str) -> int:
    days = int(value) if value.isascii() and value.isdigit() else 0
    if not 1 <= days <= 3660:
        raise argparse.ArgumentTypeError("a number of days from 1 to 3660")
    return days


class Command(BaseCommand):
    help = (
        "Record each campaign's daily statistics for the last DAYS days before today (days in "
        "SMS_BUDGET_TIMEZONE, as daily budgets count them): "
        "what Celery beat does every hour for two days, for a backfill after an outage or "
        "an upgrade."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=_days, default=2, metavar="N")

    def handle(self, *args: Any, days: int, **options: Any) -> None:
        now = timezone.now()
        span = budget_days_before(now, days)
        with database_ready():
            rows = record_campaign_days(days=span, now=now)
        self.stdout.write(f"Recorded {rows} campaign days from {span[0]} to {span[-1]}.")
