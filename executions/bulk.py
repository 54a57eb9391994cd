"""Statements the ORM cannot say in one round trip: a conditional UPDATE that
returns the rows it changed (with their action and pack), and one UPDATE of
many rows with a value set of their own each.

Every execution passes through these on the hot path, so each is one
statement where the ORM would need an UPDATE and a SELECT, or an UPDATE
per row. Values go through each field's own conversion both ways, so the
rows come back exactly as ``Model.objects.get`` would build them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection, models
from django.db.models.expressions import Col


def _convert(field: models.Field[Any, Any], value: Any) -> Any:
    col = Col(field.model._meta.db_table, field)
    for converter in connection.ops.get_db_converters(col) + field.get_db_converters(connection):
        value = converter(value, col, connection)
    return value


def _columns(model: type[models.Model], alias: str) -> list[str]:
    q = connection.ops.quote_name
    return [f"{alias}.{q(f.column)}" for f in model._meta.concrete_fields]


def build(model: type[models.Model], values: Sequence[Any]) -> models.Model:
    fields = model._meta.concrete_fields
    return model.from_db(
        connection.alias,
        [f.attname for f in fields],
        [_convert(f, v) for f, v in zip(fields, values, strict=True)],
    )


def _assignments(model: type[models.Model], fields: dict[str, Any]) -> tuple[list[str], list[Any]]:
    q = connection.ops.quote_name
    sql, params = [], []
    for name, value in fields.items():
        field = model._meta.get_field(name)
        sql.append(f"{q(field.column)} = %s")
        params.append(field.get_db_prep_save(value, connection))
    return sql, params


def update_returning(
    model: type[models.Model],
    pk: Any,
    *,
    fields: dict[str, Any],
    where: dict[str, Any],
    status_in: Iterable[str],
    status_sql: tuple[str, list[Any]] | None = None,
    related: Sequence[tuple[str, type[models.Model], str]] = (),
) -> tuple[models.Model, ...] | None:
    """UPDATE one row of ``model`` if its status is in ``status_in`` and it
    matches ``where`` (field = value); return the changed row and the rows
    ``related`` names, joined on (alias, model, foreign key column of the
    previous model), or None if nothing matched.

    ``status_sql`` is an SQL expression over the row's old values for the
    new status (e.g. a CASE), with its parameters; ``fields`` may give
    ``status`` instead. On databases whose UPDATE cannot return joined rows
    (SQLite), the related rows are read by a second statement.
    """
    q = connection.ops.quote_name
    table = q(model._meta.db_table)
    sets, params = _assignments(model, fields)
    if status_sql is not None:
        sets.insert(0, f"{q('status')} = {status_sql[0]}")
        params = [*status_sql[1], *params]
    statuses = list(status_in)
    conditions = [
        f"e.{q(model._meta.pk.column)} = %s",
        f"e.{q('status')} IN ({', '.join(['%s'] * len(statuses))})",
    ]
    params += [model._meta.pk.get_db_prep_value(pk, connection), *statuses]
    for name, value in where.items():
        field = model._meta.get_field(name)
        conditions.append(f"e.{q(field.column)} = %s")
        params.append(field.get_db_prep_value(value, connection))
    joined = connection.vendor == "postgresql" and bool(related)
    returning = _columns(model, "e")
    from_sql = ""
    if joined:
        previous = "e"
        joins = []
        for alias, related_model, fk_column in related:
            returning += _columns(related_model, alias)
            joins.append((alias, related_model, previous, fk_column))
            previous = alias
        first_alias, first_model, _, first_fk = joins[0]
        from_sql = f" FROM {q(first_model._meta.db_table)} AS {first_alias}"
        conditions.append(f"{first_alias}.{q(first_model._meta.pk.column)} = e.{q(first_fk)}")
        for alias, related_model, previous, fk_column in joins[1:]:
            from_sql += (
                f" JOIN {q(related_model._meta.db_table)} AS {alias}"
                f" ON {alias}.{q(related_model._meta.pk.column)} = {previous}.{q(fk_column)}"
            )
    sql = (
        f"UPDATE {table} AS e SET {', '.join(sets)}{from_sql} "
        f"WHERE {' AND '.join(conditions)} RETURNING {', '.join(returning)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    counts = [len(model._meta.concrete_fields)]
    counts += [len(related_model._meta.concrete_fields) for _, related_model, _ in related] if joined else []
    objects, offset = [], 0
    for target, count in zip([model, *[m for _, m, _ in related]], counts, strict=False):
        objects.append(build(target, row[offset : offset + count]))
        offset += count
    if not joined:
        previous_obj = objects[0]
        for _, related_model, fk_column in related:
            fk_value = next(
                getattr(previous_obj, f.attname)
                for f in previous_obj._meta.concrete_fields
                if f.column == fk_column
            )
            previous_obj = related_model._default_manager.get(pk=fk_value)
            objects.append(previous_obj)
    return tuple(objects)


def update_many(
    model: type[models.Model],
    rows: Sequence[tuple[Any, dict[str, Any]]],
    *,
    status_in: Iterable[str],
    shared: dict[str, Any] | None = None,
) -> set[str]:
    """One UPDATE giving each row its own values: ``rows`` are (primary
    key, {field: value}) with the same fields in every dict; ``shared``
    fields take one value for all. Only rows whose status is in
    ``status_in`` change. Returns the primary keys (as str) that changed.
    """
    if not rows:
        return set()
    q = connection.ops.quote_name
    meta = model._meta
    names = list(rows[0][1])
    fields = [meta.pk, *(meta.get_field(name) for name in names)]
    # PostgreSQL types a VALUES list from its text parameters, so each needs
    # a cast; SQLite has no column types to match, and its CAST to a
    # declared type like "datetime" would turn a timestamp into a number.
    if connection.vendor == "postgresql":
        casts = ", ".join(f"CAST(%s AS {field.db_type(connection)})" for field in fields)
    else:
        casts = ", ".join("%s" for _ in fields)
    values_sql = ", ".join(f"({casts})" for _ in rows)
    params: list[Any] = []
    for pk, values in rows:
        params.append(meta.pk.get_db_prep_value(pk, connection))
        for name, field in zip(names, fields[1:], strict=True):
            params.append(field.get_db_prep_save(values[name], connection))
    table = q(meta.db_table)
    value_columns = ["v_pk", *(f"v_{field.column}" for field in fields[1:])]
    sets = [
        f"{q(field.column)} = v.{column}" for field, column in zip(fields[1:], value_columns[1:], strict=True)
    ]
    shared_sets, shared_params = _assignments(model, shared or {})
    statuses = list(status_in)
    sql = (
        f"WITH v ({', '.join(value_columns)}) AS (VALUES {values_sql}) "
        f"UPDATE {table} SET {', '.join(sets + shared_sets)} FROM v "
        f"WHERE {table}.{q(meta.pk.column)} = v.v_pk "
        f"AND {table}.{q('status')} IN ({', '.join(['%s'] * len(statuses))}) "
        f"RETURNING {table}.{q(meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *shared_params, *statuses])
        changed = cursor.fetchall()
    return {str(_convert(meta.pk, pk)) for (pk,) in changed}
