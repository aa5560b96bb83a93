"""A batch's hundreds of values as one parameter of a query.

Django puts each value of an `__in` list or a bulk insert into the statement as a parameter
of its own, and for a batch of a thousand that costs milliseconds of Python (compiling,
quoting, psycopg splitting the query text), more than the database takes to run it. One
array or JSON text, unpacked by the database, costs a join or a json.dumps. The spelling
differs between PostgreSQL and SQLite, and it is kept here.
"""

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Field, FloatField, ForeignObject, Func, Lookup


def _postgresql() -> bool:
    return connection.vendor == "postgresql"


class InBatch(Lookup):
    """`filter(id__in_batch=ids)`: `__in` for a batch's hundreds of values, as one parameter.

    On PostgreSQL it is `= ANY('{...}')`: a constant array, which the planner turns into
    index lookups or, scanning a table, a hash probe per row. Pass a set: Django walks a
    list or tuple value by value, looking for expressions, before any lookup sees it."""

    lookup_name = "in_batch"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, params = self.process_lhs(compiler, connection)
        values = list(self.rhs)
        if connection.vendor == "postgresql":
            cast = self.lhs.output_field.cast_db_type(connection)
            return f"{lhs} = ANY(%s::{cast}[])", [*params, _array_literal(values)]
        return f"{lhs} IN (SELECT value FROM json_each(%s))", [*params, json.dumps(values)]


def _array_literal(values: list[int | str]) -> str:
    """PostgreSQL's text form of an array: {1,2} or {"a","b \\"c\\""}."""
    if all(type(value) is int for value in values):
        return "{" + ",".join(map(str, values)) + "}"
    quoted = (str(value).replace("\\", "\\\\").replace('"', '\\"') for value in values)
    return "{" + ",".join(f'"{value}"' for value in quoted) + "}"


# Relations keep lookups of their own, apart from other fields'.
Field.register_lookup(InBatch)
ForeignObject.register_lookup(InBatch)


def json_rows(casts: Sequence[str]) -> str:
    """A SELECT of the rows of the JSON array of arrays given as its one parameter, one
    column per cast (PostgreSQL's type names; SQLite takes the values as they are). Write
    the "timestamptz" columns with json_time_writer.

    To feed an INSERT ... ON CONFLICT, select from it with a WHERE: SQLite would otherwise
    read the ON of ON CONFLICT as a join's."""
    if _postgresql():
        columns = ", ".join(
            f"to_timestamp((r->>{n})::float8)" if cast == "timestamptz" else f"(r->>{n})::{cast}"
            for n, cast in enumerate(casts)
        )
        return f"SELECT {columns} FROM json_array_elements(%s::json) AS r"
    columns = ", ".join(f"value->>{n}" for n in range(len(casts)))
    return f"SELECT {columns} FROM json_each(%s)"


def json_time_writer() -> Callable[[datetime], float | str]:
    """How to write a time in a row for json_rows: seconds since the epoch for PostgreSQL
    (a float holds them to the microsecond, and is far cheaper to write than ISO 8601
    text), the text Django stores for SQLite. Asked once per batch, not once per row."""
    if _postgresql():
        return datetime.timestamp
    return connection.ops.adapt_datetimefield_value


class EpochSeconds(Func):
    """A time column read as seconds since the epoch, a float: psycopg reads a timestamptz
    for Django with a parser in Python, at more than ten microseconds a value. Turn it
    back with `datetime.fromtimestamp(seconds, UTC)`."""

    output_field = FloatField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list]:
        template = "EXTRACT(EPOCH FROM %(expressions)s)::float8"
        return self.as_sql(compiler, connection, template=template)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list]:
        # Django stores "YYYY-MM-DD HH:MM:SS.ffffff". strftime('%s') would round the
        # fraction to milliseconds, into the next second at .9995: it gets whole seconds.
        template = (
            "(CAST(strftime('%%%%s', substr(%(expressions)s, 1, 19)) AS REAL)"
            " + COALESCE(CAST(substr(%(expressions)s, 20) AS REAL), 0))"
        )
        return self.as_sql(compiler, connection, template=template)
