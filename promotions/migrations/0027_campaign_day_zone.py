"""The time zone each recorded campaign day was counted in.

Days were cut at UTC midnight until 2026-12-01, and are counted in SMS_BUDGET_TIMEZONE since,
the day daily budgets count: the rows recorded before were counted in UTC, and say so. Where
the budget's zone is another, the results page counts those days again from the deliveries
rather than show them under the wrong day.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("promotions", "0026_canonical_identities"),
    ]

    operations = [
        migrations.AddField(
            model_name="campaignday",
            name="zone",
            field=models.CharField(
                default="UTC",
                help_text="The time zone the day was counted in: a row counted in a zone other "
                "than SMS_BUDGET_TIMEZONE is not shown, its day is counted again.",
                max_length=64,
            ),
            preserve_default=False,
        ),
    ]
