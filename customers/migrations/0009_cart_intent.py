import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0008_export_permission"),
    ]

    operations = [
        migrations.CreateModel(
            name="CartIntent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("last_seen_at", models.DateTimeField(blank=True, null=True)),
                (
                    "cart_state",
                    models.CharField(
                        blank=True,
                        choices=[("", "None"), ("in_cart", "In cart"), ("abandoned", "Abandoned")],
                        default="",
                        max_length=10,
                    ),
                ),
                ("cart_updated_at", models.DateTimeField(blank=True, null=True)),
                (
                    "score",
                    models.FloatField(default=0.0, help_text="Decayed score as of score_at."),
                ),
                ("score_at", models.DateTimeField(blank=True, null=True)),
                (
                    "customer",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="cart_intent",
                        to="customers.customer",
                    ),
                ),
            ],
        ),
    ]
