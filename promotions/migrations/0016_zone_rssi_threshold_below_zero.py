import django.core.validators
from django.db import migrations, models


def bring_thresholds_below_zero(apps, schema_editor):
    """A zone saved with a threshold at or above 0 dBm was one only a reading of 0 (a phone
    saying it could not measure) could enter; such readings are refused now, so the
    threshold becomes the strongest a reading can have."""
    Zone = apps.get_model("promotions", "Zone")
    Zone.objects.filter(rssi_threshold__gte=0).update(rssi_threshold=-1)


class Migration(migrations.Migration):
    dependencies = [
        ("promotions", "0015_code_keys"),
    ]

    operations = [
        migrations.AlterField(
            model_name="zone",
            name="rssi_threshold",
            field=models.IntegerField(
                default=-80,
                help_text="Median RSSI (dBm, below 0) a phone must reach to count as in the zone.",
                validators=[
                    django.core.validators.MinValueValidator(-127),
                    django.core.validators.MaxValueValidator(-1),
                ],
            ),
        ),
        migrations.RunPython(bring_thresholds_below_zero, migrations.RunPython.noop),
    ]
