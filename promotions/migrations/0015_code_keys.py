"""Codes as the till looks them up (case, spaces and dashes ignored), stored beside each code:
indexed on deliveries, unique in code pools.

Pools could hold codes the till cannot tell apart (SAVE10 and SAVE-10) before this, and the
unique key cannot be built over them. They are settled so that no ambiguity is added, and
nothing a customer was sent is touched:
- In each group of pool codes sharing a key, the key goes to one code (the first drawn, else
  the first uploaded).
- The others already drawn keep their rows and their deliveries, without a key: their SMS
  went out, and the till's lookup, which prefers the exact spelling and refuses to guess
  between the rest, is what keeps their redemptions apart.
- The others not drawn yet, and any code not drawn yet that the till cannot tell apart from a
  code already sent, are taken out of the pool: sending one would hand a customer a code
  whose redemption could be credited to someone else.
- A code the till cannot read at all (dashes and spaces alone, such as "--", which the old
  upload took: looked up, it is nothing, a 404) is taken out of the pool if not drawn yet,
  and kept without a key if drawn: its SMS went out.
The number and first few of the codes taken out are printed; the retailer's till may still
honour them, no customer will have them.
"""

import re

from django.db import migrations, models

CHUNK = 2000


def code_key(code):
    # offers.normalise_code as it was written with this migration.
    return re.sub(r"[\s-]", "", code).upper()


def store_code_keys(apps, schema_editor):
    deliveries = apps.get_model("promotions", "Delivery")
    pool = apps.get_model("promotions", "OfferCode")

    last_id = 0
    while True:
        chunk = list(
            deliveries.objects.filter(id__gt=last_id)
            .exclude(code=None)
            .order_by("id")
            .only("id", "code")[:CHUNK]
        )
        if not chunk:
            break
        for delivery in chunk:
            delivery.code_key = code_key(delivery.code)
        deliveries.objects.bulk_update(chunk, ["code_key"])
        last_id = chunk[-1].id

    groups = {}
    withdrawn, keyed = [], []
    for offer_code in pool.objects.order_by("id").only("id", "code", "delivery_id"):
        key = code_key(offer_code.code)
        if key:
            groups.setdefault(key, []).append(offer_code)
        elif offer_code.delivery_id is None:
            # No key to find it by: a customer sent it could never redeem it.
            withdrawn.append(offer_code)
    for key, codes in groups.items():
        # The first drawn, else the first uploaded: sorted() is stable on the id order.
        first, *others = sorted(codes, key=lambda c: c.delivery_id is None)
        first.code_key = key
        keyed.append(first)
        withdrawn += [c for c in others if c.delivery_id is None]
    # A code not drawn whose key a delivery's code has (a generated code, a pool code since
    # deleted from its pool): the SMS with that other code may have gone out.
    unused = {c.code_key: c for c in keyed if c.delivery_id is None}
    keys = list(unused)
    for start in range(0, len(keys), CHUNK):
        taken = deliveries.objects.filter(code_key__in=keys[start : start + CHUNK])
        withdrawn += [unused[key] for key in set(taken.values_list("code_key", flat=True))]
    withdrawn_ids = {c.id for c in withdrawn}
    keyed = [c for c in keyed if c.id not in withdrawn_ids]
    for start in range(0, len(withdrawn), CHUNK):
        ids = [c.id for c in withdrawn[start : start + CHUNK]]
        pool.objects.filter(id__in=ids, delivery=None).delete()
    pool.objects.bulk_update(keyed, ["code_key"], batch_size=CHUNK)
    if withdrawn:
        names = ", ".join(sorted(c.code for c in withdrawn)[:20])
        print(
            f"\n  Took {len(withdrawn)} unused pool codes the till cannot read or cannot tell "
            f"apart from another code out of their pools: "
            f"{names}{'...' if len(withdrawn) > 20 else ''}"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("promotions", "0014_device_track_jump"),
    ]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="code_key",
            field=models.CharField(
                blank=True,
                editable=False,
                help_text="The code as the till looks it up (offers.normalise_code).",
                max_length=120,
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="offercode",
            name="code_key",
            field=models.CharField(
                editable=False,
                help_text="The code as the till looks it up (offers.normalise_code).",
                max_length=120,
                null=True,
            ),
        ),
        migrations.RunPython(store_code_keys, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="delivery",
            name="code_key",
            field=models.CharField(
                blank=True,
                db_index=True,
                editable=False,
                help_text="The code as the till looks it up (offers.normalise_code).",
                max_length=120,
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="offercode",
            name="code_key",
            field=models.CharField(
                editable=False,
                help_text="The code as the till looks it up (offers.normalise_code).",
                max_length=120,
                null=True,
                unique=True,
            ),
        ),
    ]
