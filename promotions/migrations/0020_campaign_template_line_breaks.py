from django.db import migrations
from django.db.models import Value
from django.db.models.functions import Replace


def templates_with_unix_line_breaks(apps, schema_editor):
    """A template saved from the admin holds the browser's CRLF line breaks, each a character
    the live preview did not count: its SMS could be a segment longer than the marketer was
    shown. Saved ones get LF, as Campaign.clean keeps them now (a lone CR too)."""
    Campaign = apps.get_model("promotions", "Campaign")
    Campaign.objects.filter(offer_template__contains="\r").update(
        offer_template=Replace(
            Replace("offer_template", Value("\r\n"), Value("\n")), Value("\r"), Value("\n")
        )
    )


class Migration(migrations.Migration):
    dependencies = [
        ("promotions", "0019_campaign_budget_bounds"),
    ]

    operations = [
        migrations.RunPython(templates_with_unix_line_breaks, migrations.RunPython.noop),
    ]
