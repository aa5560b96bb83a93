"""The consent log marks the customer's own replies; the opted-out numbers, filled from it;
and customers whom a request opted back in over their reply opting out (before such requests
were refused) opted out again."""

from django.conf import settings
from django.db import migrations, models
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone
from django.utils.crypto import salted_hmac

REPLY_SOURCES = ["sms", "twilio"]  # customers.models.ReplySource, as it was
RESTORED = "reply_opt_out_restored"


def mark_replies(apps, schema_editor) -> None:
    """A source named "sms" may be a CRM's (a sign-up by text): a reply is one logged by
    promotions.feedback, whose notes have always read so."""
    ConsentChange = apps.get_model("customers", "ConsentChange")
    ConsentChange.objects.filter(source__in=REPLY_SOURCES).filter(
        Q(note__startswith="Replied ") | Q(note__startswith="Twilio error 21610")
    ).update(by_reply=True)


def number_key(phone: str) -> str:
    """customers.models.opted_out_number_keys(phone)[0], as it was: the key written."""
    return salted_hmac(
        "customers.OptedOutNumber", phone, secret=settings.SECRET_KEY, algorithm="sha256"
    ).hexdigest()


def restore_reply_opt_outs(apps, schema_editor) -> None:
    Customer = apps.get_model("customers", "Customer")
    ConsentChange = apps.get_model("customers", "ConsentChange")
    OptedOutNumber = apps.get_model("customers", "OptedOutNumber")
    replies = ConsentChange.objects.filter(by_reply=True, consent__in=["opted_in", "opted_out"])
    latest_reply = replies.filter(customer=OuterRef("customer_id")).order_by("-changed_at", "-id")
    # From the customers who ever replied, not the whole table: they are few.
    opted_out_by_reply = {
        row["customer_id"]: (row["phone"], row["reply_at"], row["reply_source"])
        for row in replies.order_by()
        .values("customer_id")
        .distinct()
        .annotate(
            phone=F("customer__phone"),
            reply=Subquery(latest_reply.values("consent")[:1]),
            reply_at=Subquery(latest_reply.values("changed_at")[:1]),
            reply_source=Subquery(latest_reply.values("source")[:1]),
        )
        .filter(reply="opted_out")
    }
    # The log does not say at which number a customer replied: their current one is taken.
    numbers: dict[str, tuple] = {}
    for phone, at, source in opted_out_by_reply.values():
        if phone and (phone not in numbers or numbers[phone][0] < at):
            numbers[phone] = (at, source)
    OptedOutNumber.objects.bulk_create(
        OptedOutNumber(number_key=number_key(phone), opted_out_at=at, source=source)
        for phone, (at, source) in numbers.items()
    )
    now = timezone.now()
    opted_in = Customer.objects.filter(sms_consent="opted_in").filter(
        Q(pk__in=opted_out_by_reply) | Q(phone__in=numbers)
    )
    for customer in opted_in:
        if customer.pk in opted_out_by_reply:
            at = opted_out_by_reply[customer.pk][1]
            note = (
                f"They opted out by replying to an SMS on {at:%Y-%m-%dT%H:%M:%SZ}, and were "
                "opted back in by a request: only their own reply (START) does that."
            )
        else:
            at = numbers[customer.phone][0]
            note = (
                f"This number opted out by replying to an SMS on {at:%Y-%m-%dT%H:%M:%SZ}; only "
                "its own reply (START) opts it back in."
            )
        ConsentChange.objects.create(
            customer=customer,
            previous="opted_in",
            consent="opted_out",
            source=RESTORED,
            note=note,
            changed_at=now,
        )
        customer.sms_consent = "opted_out"
        customer.consent_source = RESTORED
        customer.consent_updated_at = now
        customer.save(update_fields=["sms_consent", "consent_source", "consent_updated_at"])


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0009_cart_intent"),
    ]

    operations = [
        migrations.AddField(
            model_name="consentchange",
            name="by_reply",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(mark_replies, migrations.RunPython.noop),
        migrations.CreateModel(
            name="OptedOutNumber",
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
                ("opted_out_at", models.DateTimeField()),
                (
                    "source",
                    models.CharField(
                        choices=[
                            ("sms", "Their reply (STOP, START...)"),
                            ("twilio", "Twilio's error 21610 (they replied STOP to the sender)"),
                        ],
                        max_length=10,
                    ),
                ),
            ],
            options={
                "ordering": ["-opted_out_at"],
            },
        ),
        migrations.RunPython(restore_reply_opt_outs, migrations.RunPython.noop),
    ]
