from django.db import migrations


def set_fillfactor(apps, schema_editor):
    # Every fix rewrites its device's track. With room left in each page PostgreSQL updates
    # the row in place (a HOT update), without new entries in the table's two indexes.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE promotions_devicetrack SET (fillfactor = 50)")


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE promotions_devicetrack RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("promotions", "0005_ping_device_index_covered_by_constraints")]

    operations = [migrations.RunPython(set_fillfactor, reset_fillfactor)]
