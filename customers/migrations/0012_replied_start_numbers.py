"""The numbers that replied START, and when each last did, kept apart from the consent log:
a START that changed no consent (the customer's STOP never reached us) logs nothing there,
yet outdates a 21610 for an SMS sent before it. Filled from the STARTs the log holds."""

from django.conf import settings
from django.db import migrations, models
from django.db.models import Max
from django.utils.crypto import salted_hmac


def number_key(phone: str) -> str:
    """customers.models.opted_out_number_keys(phone)[0], as it was: the key written."""
    return salted_hmac(
        "customers.OptedOutNumber", phone, secret=settings.SECRET_KEY, algorithm="sha256"
    ).hexdigest()


def fill_from_the_consent_log(apps, schema_editor) -> None:
    """Each number's latest START in the log, under the key it was logged with. A reply
    logged without its number (its customer had none at 0011) was read as from its
    customer's current number: so it is taken here."""
    ConsentChange = apps.get_model("customers", "ConsentChange")
    RepliedStartNumber = apps.get_model("customers", "RepliedStartNumber")
    starts = ConsentChange.objects.filter(by_reply=True, consent="opted_in").order_by()
    latest: dict[str, object] = {}
    keyed = (
        starts.exclude(reply_number_key=None)
        .values("reply_number_key")
        .annotate(at=Max("changed_at"))
        .values_list("reply_number_key", "at")
    )
    unkeyed = (
        starts.filter(reply_number_key=None)
        .exclude(customer__phone="")
        .values("customer__phone")
        .annotate(at=Max("changed_at"))
        .values_list("customer__phone", "at")
    )
    replies = [*keyed, *((number_key(phone), at) for phone, at in unkeyed)]
    for key, at in replies:
        if key not in latest or at > latest[key]:
            latest[key] = at
    RepliedStartNumber.objects.bulk_create(
        RepliedStartNumber(number_key=key, replied_at=at) for key, at in latest.items()
    )


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0011_consent_reply_number"),
    ]

    operations = [
        migrations.CreateModel(
            name="RepliedStartNumber",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "number_key",
                    models.CharField(
                        help_text="HMAC-SHA256 of the E.164 number (SECRET_KEY).",
                        max_length=64,
                        unique=True,
                    ),
                ),
                ("replied_at", models.DateTimeField()),
            ],
            options={
                "ordering": ["-replied_at"],
            },
        ),
        migrations.RunPython(fill_from_the_consent_log, migrations.RunPython.noop),
    ]
