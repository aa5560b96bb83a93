"""A batch's hundreds of values as one parameter of a query.

Django puts each value of an `__in` list or a bulk insert into the statement as a parameter
of its own, and for a batch of a thousand that costs milliseconds of Python (compiling,
quoting, psycopg splitting the query text), more than the database takes to run it. One
array or JSON text, unpacked by the database, costs a join or a json.dumps. The spelling
differs between PostgreSQL and SQLite, and it is kept here.
"""

import json
from collections.abc import Sequence
from typing import Any

import msgspec
from django.db import connection
from django.db.models import Field, FloatField, ForeignObject, Func, Lookup, QuerySet


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
            kind = "bigint" if cast in ("bigint", "integer", "smallint") else "text"
            return f"{lhs} = ANY(%s::{cast}[])", [*params, array_literal(values, kind)]
        return f"{lhs} IN (SELECT value FROM json_each(%s))", [*params, json.dumps(values)]


# Relations keep lookups of their own, apart from other fields'.
Field.register_lookup(InBatch)
ForeignObject.register_lookup(InBatch)


def rows_source(casts: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[str, list[str]]:
    """A SELECT of `rows` and its parameters: one column per cast (PostgreSQL's type names:
    "bigint", "float8", "varchar", "boolean", "timestamptz" for aware datetimes; SQLite
    takes the values as they are). None is NULL.

    On PostgreSQL each column travels as one array, unnested by the server: parsing an array
    of numbers costs it a fraction of reading the same values out of JSON. To feed an
    INSERT ... ON CONFLICT, select from it with a WHERE: SQLite would otherwise read the ON
    of ON CONFLICT as a join's."""
    if not _postgresql():
        adapt = connection.ops.adapt_datetimefield_value
        times = [n for n, cast in enumerate(casts) if cast == "timestamptz"]
        if times:
            rows = [[adapt(v) if n in times else v for n, v in enumerate(row)] for row in rows]
        columns = ", ".join(f"value->>{n}" for n in range(len(casts)))
        return f"SELECT {columns} FROM json_each(%s)", [json.dumps(rows)]
    names = [f"c{n}" for n in range(len(casts))]
    columns = ", ".join(
        f"to_timestamp({name})" if cast == "timestamptz" else name
        for name, cast in zip(names, casts, strict=True)
    )
    arrays = ", ".join(
        "%s::float8[]" if cast == "timestamptz" else f"%s::{cast}[]" for cast in casts
    )
    values = list(zip(*rows, strict=True)) if rows else [() for _ in casts]
    params = [array_literal(column, cast) for column, cast in zip(values, casts, strict=True)]
    return f"SELECT {columns} FROM unnest({arrays}) AS r({', '.join(names)})", params


_json = msgspec.json.Encoder()
_PYTHON_TYPES: dict[str, type] = {"bigint": int, "integer": int, "smallint": int, "boolean": bool}


def array_literal(values: Sequence[Any], cast: str) -> str:
    """One column of rows in PostgreSQL's text form of an array: a parameter to cast to
    `cast[]` ("varchar" or "text" for strings). psycopg adapts a list of strings in Python,
    element by element, at about a microsecond each.

    Written as a JSON array by msgspec, some twenty times faster than repr() and a join:
    JSON's numbers, true, false and null are PostgreSQL's array elements too (it reads NULL
    in any case), and so are JSON's quoted strings when they hold no escape. Numbers must
    be finite: JSON has no NaN or infinity, and msgspec writes them as null."""
    if cast in ("varchar", "text"):
        texts = [None if v is None else str(v) for v in values]
        encoded = _json.encode(texts)
        if b"\\" not in encoded:
            return "{" + encoded[1:-1].decode() + "}"
        quoted = (
            "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
            for v in texts
        )
        return "{" + ",".join(quoted) + "}"
    if cast == "timestamptz":
        # Seconds since the epoch: a float holds them to the microsecond, and is far cheaper
        # to write and to parse than ISO 8601 text.
        values = [None if v is None else v.timestamp() for v in values]
    # Through the column's Python type: numpy's numbers, which msgspec does not take, too.
    kind = _PYTHON_TYPES.get(cast, float)
    encoded = _json.encode([None if v is None else kind(v) for v in values])
    return "{" + encoded[1:-1].decode() + "}"


def raw_rows(queryset: QuerySet) -> list[tuple]:
    """The rows of a `values_list` query as the database driver returns them: without the
    per-value conversions of Django's iterator, a few milliseconds over a batch of rows
    bound for numpy anyway. For number and boolean columns only (SQLite's booleans come
    back as 0 and 1)."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


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
