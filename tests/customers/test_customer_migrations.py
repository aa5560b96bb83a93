"""Upgrading a live database: each earlier release of the customers app migrates to this one."""

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from customers.models import ConsentChange, opted_out_number_keys
from tests.promotions.test_migrations import migrate

pytestmark = pytest.mark.django_db(transaction=True)


def consent_log_columns() -> set[str]:
    with connection.cursor() as cursor:
        description = connection.introspection.get_table_description(
            cursor, "customers_consentchange"
        )
    return {column.name for column in description}


def test_a_database_that_took_0010_as_first_released_migrates_and_its_replies_are_marked():
    # customers.0010 as first released (on main on 2026-11-30, from 17:10 to 17:42) added no
    # `by_reply`: the column came with an edit of 0010 itself, which a database that had
    # applied it never runs. 0011 then failed on the missing column.
    old = migrate([("customers", "0009_cart_intent")])
    consent_log = old.get_model("customers", "ConsentChange")
    try:
        customer = old.get_model("customers", "Customer").objects.create(
            external_id="C-1", phone="+33612345678", sms_consent="opted_out"
        )
        at = datetime(2026, 11, 30, 17, 20, tzinfo=UTC)
        # As promotions.feedback logged a STOP, and as a CRM naming its channel "sms" did.
        consent_log.objects.create(
            customer=customer,
            previous="opted_in",
            consent="opted_out",
            source="sms",
            note="Replied STOP",
            changed_at=at,
        )
        consent_log.objects.create(
            customer=customer, previous="unknown", consent="opted_in", source="sms", changed_at=at
        )
        new = migrate([("customers", "0010_opted_out_numbers")])
        with connection.schema_editor() as editor:  # the schema 0010 as first released left
            model = new.get_model("customers", "ConsentChange")
            editor.remove_field(model, model._meta.get_field("by_reply"))

        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

        reply = ConsentChange.objects.get(note="Replied STOP")
        assert reply.by_reply
        assert reply.reply_number_key == opted_out_number_keys("+33612345678")[0]
        assert not ConsentChange.objects.get(source="sms", note="").by_reply
    finally:
        if "by_reply" not in consent_log_columns():  # the migration failed: the test's schema
            with connection.schema_editor() as editor:
                model = migrate([("customers", "0010_opted_out_numbers")]).get_model(
                    "customers", "ConsentChange"
                )
                editor.add_field(model, model._meta.get_field("by_reply"))
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
