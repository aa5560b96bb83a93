"""The consent log keeps the number each reply came from (keyed, as the opted-out numbers
are): a STOP from a number the customer has given up no longer refuses their new one."""

from django.conf import settings
from django.db import migrations, models
from django.db.models import Q
from django.utils.crypto import salted_hmac

REPLY_SOURCES = ["sms", "twilio"]  # customers.models.ReplySource, as it was


def number_key(phone: str) -> str:
    """customers.models.opted_out_number_keys(phone)[0], as it was: the key written."""
    return salted_hmac(
        "customers.OptedOutNumber", phone, secret=settings.SECRET_KEY, algorithm="sha256"
    ).hexdigest()


def add_by_reply_if_missing(apps, schema_editor) -> None:
    """0010 as first released (on main from 17:10 to 17:42 on 2026-11-30) did not add
    `by_reply`: the field came with an edit of 0010, which a database that had applied it
    never runs. Such a database gets the field here, its replies marked as 0010 marks them."""
    ConsentChange = apps.get_model("customers", "ConsentChange")
    introspection = schema_editor.connection.introspection
    with schema_editor.connection.cursor() as cursor:
        table = introspection.get_table_description(cursor, ConsentChange._meta.db_table)
    if "by_reply" in {column.name for column in table}:
        return
    schema_editor.add_field(ConsentChange, ConsentChange._meta.get_field("by_reply"))
    # 0010's mark_replies: a reply is one logged by promotions.feedback, whose notes have
    # always read so (a CRM may name its own source "sms").
    ConsentChange.objects.filter(source__in=REPLY_SOURCES).filter(
        Q(note__startswith="Replied ") | Q(note__startswith="Twilio error 21610")
    ).update(by_reply=True)


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
        migrations.RunPython(add_by_reply_if_missing, migrations.RunPython.noop),
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
