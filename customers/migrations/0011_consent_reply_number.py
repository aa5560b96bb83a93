"""The consent log keeps the number each reply came from (keyed, as the opted-out numbers
are): a STOP from a number the customer has given up no longer refuses their new one."""

from django.conf import settings
from django.db import migrations, models
from django.utils.crypto import salted_hmac


def number_key(phone: str) -> str:
    """customers.models.opted_out_number_keys(phone)[0], as it was: the key written."""
    return salted_hmac(
        "customers.OptedOutNumber", phone, secret=settings.SECRET_KEY, algorithm="sha256"
    ).hexdigest()


def key_earlier_replies(apps, schema_editor) -> None:
    """The log did not say at which number a customer replied: their current one is taken,
    as 0010 took it for the opted-out numbers. A customer with no number keeps no key: their
    reply holds no number of theirs."""
    ConsentChange = apps.get_model("customers", "ConsentChange")
    unkeyed = ConsentChange.objects.filter(by_reply=True, reply_number_key=None).exclude(
        customer__phone=""
    )
    phones = unkeyed.order_by().values_list("customer__phone", flat=True).distinct()
    for phone in list(phones):
        unkeyed.filter(customer__phone=phone).update(reply_number_key=number_key(phone))


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0010_opted_out_numbers"),
    ]

    operations = [
        migrations.AddField(
            model_name="consentchange",
            name="reply_number_key",
            field=models.CharField(
                blank=True,
                editable=False,
                help_text="For a reply: HMAC-SHA256 of the E.164 number it came from (SECRET_KEY).",
                max_length=64,
                null=True,
            ),
        ),
        migrations.RunPython(key_earlier_replies, migrations.RunPython.noop),
    ]
