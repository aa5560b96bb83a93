"""What 0015 and 0016 as first released left, settled as they settle it now. Both were edited
after they reached main (0015 on 2026-11-30 from 07:33 to 08:07, 0016 from 10:05 to 10:15): a
database that had applied the first version never ran the edit. On any other, nothing
matches and nothing changes.
- 0016 refused readings at or above 0 dBm without bringing such zone thresholds below 0:
  the zone could never fire again. It gets the strongest threshold a reading can have.
- 0015 gave a code the till cannot read at all (dashes and spaces alone, such as "--") the
  empty key, which makes it drawable though the till finds nothing by it. Not drawn yet, it
  is taken out of its pool; drawn, it keeps its row without a key, as 0015 keeps it now.
"""

from django.db import migrations


def settle(apps, schema_editor):
    Zone = apps.get_model("promotions", "Zone")
    Zone.objects.filter(rssi_threshold__gte=0).update(rssi_threshold=-1)

    OfferCode = apps.get_model("promotions", "OfferCode")
    unreadable = OfferCode.objects.filter(code_key="")
    withdrawn = list(unreadable.filter(delivery=None).values_list("code", flat=True))
    unreadable.filter(delivery=None).delete()
    unreadable.update(code_key=None)
    if withdrawn:
        print(
            f"\n  Took {len(withdrawn)} unused pool code the till cannot read out of its pool: "
            f"{', '.join(withdrawn)}"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("promotions", "0022_delivery_list_indexes"),
    ]

    operations = [
        migrations.RunPython(settle, migrations.RunPython.noop),
    ]
