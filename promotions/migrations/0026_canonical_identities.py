"""BLE identities stored as typed, made the canonical keys they name.

The release of 2026-11-24 stored a beacon's or device's identity typed in the admin as typed
("IBEACON:{F7826DA6-...}:1:2"); the admin and the API have stored the canonical key since
2026-11-30. Sightings are matched against the canonical key, and the API reads a stored key
back as an identity: such a beacon or device was never recognised, and the beacons list and
the customer's export answered 500. Each becomes its canonical key. One whose key another
beacon or device holds already (typed twice), or that names no identity, is left as typed and
named, for someone to settle in the admin (which stores what it saves canonical), and so is
a device holding a store beacon's identity.
"""

from django.db import migrations

# The parser is pure and only ever learns more spellings: whatever it reads as an identity
# now, the API and the admin read the same way.
from promotions.beacons import BeaconParseError, identity_key_from_text


def canonical_identities(apps, schema_editor):
    Beacon = apps.get_model("promotions", "Beacon")
    Device = apps.get_model("customers", "Device")
    # A key is held by one beacon or one device (see Beacon.clean, Device.clean).
    rows = [
        (Beacon, "identity", pk, key) for pk, key in Beacon.objects.values_list("pk", "identity")
    ]
    rows += [
        (Device, "ble_identity", pk, key)
        for pk, key in Device.objects.exclude(ble_identity=None).values_list("pk", "ble_identity")
    ]
    taken = {key for *_, key in rows}
    left = []
    for model, field, pk, key in rows:
        if key == "" and model is Device:
            # No identity; "" would collide with another device's.
            Device.objects.filter(pk=pk).update(ble_identity=None)
            continue
        try:
            canonical = identity_key_from_text(key)
        except BeaconParseError:
            left.append(f"{model.__name__.lower()} {pk}: {key!r} names no identity")
            continue
        if canonical == key:
            continue
        if canonical in taken:
            left.append(f"{model.__name__.lower()} {pk}: {key!r} is {canonical!r}, held already")
            continue
        model.objects.filter(pk=pk).update(**{field: canonical})
        taken.add(canonical)
    # The release also let a device take a store beacon's identity (Beacon.clean and
    # Device.clean refuse it since): a gateway hearing the beacon places the device's customer
    # in its zone all day. Which one is wrong is for someone to say.
    beacons = dict(Beacon.objects.values_list("identity", "pk"))
    devices = dict(Device.objects.exclude(ble_identity=None).values_list("ble_identity", "pk"))
    for key in sorted(beacons.keys() & devices.keys()):
        left.append(f"device {devices[key]} and beacon {beacons[key]} both advertise {key!r}")
    if left:
        print(f"\n  BLE identities to settle in the admin ({len(left)}): " + "; ".join(left))


class Migration(migrations.Migration):
    dependencies = [
        ("promotions", "0025_campaign_holdout_share_help_text"),
        ("customers", "0016_browsing_event_admin_indexes"),
    ]

    operations = [
        migrations.RunPython(canonical_identities, migrations.RunPython.noop),
    ]
