"""Redemptions by the time they were made.

A campaign's results count a day's redemptions: today's on each view of its results page, and
the days Celery beat records every hour. Without an index on the time, each count read every
campaign's redemptions of every day.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("promotions", "0027_campaign_day_zone"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="redemption",
            index=models.Index(fields=["redeemed_at"], name="redemption_redeemed_at"),
        ),
    ]
