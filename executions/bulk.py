"""Statements the ORM cannot say in one round trip: a conditional UPDATE that
returns the row it changed (with the columns of its action and pack that
the caller asks for), and one UPDATE of many rows with values of their own.

Every execution passes through these on the hot path, so each is one
statement where the ORM would need an UPDATE and a SELECT, or an UPDATE
per row, and the SQL and the column conversions of each shape of call are
worked out once per process. Values go through each field's own
conversion both ways, so the returned rows are what the ORM would build
(with only the asked-for fields loaded; reading another one queries it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Col

Converter = Callable[[Any, Any, Any], Any]


@dataclass(frozen=True)
class Returned:
    """What one model contributes to a RETURNING list."""

    model: type[models.Model]
    attnames: tuple[str, ...]
    converters: tuple[tuple[Col, tuple[Converter, ...]], ...]

    def build(self, values: Sequence[Any], db: BaseDatabaseWrapper) -> models.Model:
        converted = []
        for value, (col, converters) in zip(values, self.converters, strict=True):
            for converter in converters:
                value = converter(value, col, db)
            converted.append(value)
        return self.model.from_db(db.alias, list(self.attnames), converted)


def _returned(model: type[models.Model], names: Sequence[str] | None) -> Returned:
    fields = [
        f for f in model._meta.concrete_fields if names is None or f.name in names or f.attname in names
    ]
    converters = []
    for field in fields:
        col = Col(model._meta.db_table, field)
        found = connection.ops.get_db_converters(col) + field.get_db_converters(connection)
        converters.append((col, tuple(found)))
    return Returned(model, tuple(f.attname for f in fields), tuple(converters))


def _column_list(returned: Returned, alias: str) -> list[str]:
    q = connection.ops.quote_name
    meta = returned.model._meta
    return [f"{alias}.{q(meta.get_field(name).column)}" for name in _field_names(returned)]


def _field_names(returned: Returned) -> list[str]:
    by_attname = {f.attname: f.name for f in returned.model._meta.concrete_fields}
    return [by_attname[attname] for attname in returned.attnames]


Prep = Callable[[Any, Any], Any]
_NOT_FLUSHED = "SET LOCAL synchronous_commit TO OFF; "


@dataclass(frozen=True)
class _UpdatePlan:
    sql: str
    returned: tuple[Returned, ...]
    # Related rows read by a second statement where UPDATE cannot join.
    fetch_related: tuple[tuple[type[models.Model], str, tuple[str, ...] | None], ...]
    # Each parameter's conversion, in statement order (SET fields, the
    # primary key, WHERE fields), looked up once rather than per call.
    set_preps: tuple[Prep, ...]
    pk_prep: Prep
    where_preps: tuple[Prep, ...]


@lru_cache(maxsize=64)
def _update_plan(
    model: type[models.Model],
    set_names: tuple[str, ...],
    where_names: tuple[str, ...],
    status_count: int,
    status_sql: str,
    returning: tuple[str, ...] | None,
    related: tuple[tuple[str, type[models.Model], str, tuple[str, ...] | None], ...],
    vendor: str,
) -> _UpdatePlan:
    q = connection.ops.quote_name
    meta = model._meta
    # SQLite's UPDATE takes no alias; PostgreSQL's needs one to join.
    e = "e" if vendor == "postgresql" else q(meta.db_table)
    sets = [f"{q('status')} = {status_sql}"]
    sets += [f"{q(meta.get_field(name).column)} = %s" for name in set_names]
    conditions = [
        f"{e}.{q(meta.pk.column)} = %s",
        f"{e}.{q('status')} IN ({', '.join(['%s'] * status_count)})",
    ]
    conditions += [f"{e}.{q(meta.get_field(name).column)} = %s" for name in where_names]
    own = _returned(model, returning)
    columns = _column_list(own, e)
    returned = [own]
    from_sql = ""
    joined = vendor == "postgresql" and bool(related)
    if joined:
        previous = e
        for index, (alias, related_model, fk_column, names) in enumerate(related):
            part = _returned(related_model, names)
            returned.append(part)
            columns += _column_list(part, alias)
            table = q(related_model._meta.db_table)
            on = f"{alias}.{q(related_model._meta.pk.column)} = {previous}.{q(fk_column)}"
            if index == 0:
                from_sql = f" FROM {table} AS {alias}"
                conditions.append(on)
            else:
                from_sql += f" JOIN {table} AS {alias} ON {on}"
            previous = alias
    sql = (
        f"UPDATE {q(meta.db_table)}{' AS e' if vendor == 'postgresql' else ''} "
        f"SET {', '.join(sets)}{from_sql} "
        f"WHERE {' AND '.join(conditions)} RETURNING {', '.join(columns)}"
    )
    fetch = () if joined else tuple((m, fk, names) for _, m, fk, names in related)
    return _UpdatePlan(
        sql,
        tuple(returned),
        fetch,
        set_preps=tuple(meta.get_field(name).get_db_prep_save for name in set_names),
        pk_prep=meta.pk.get_db_prep_value,
        where_preps=tuple(meta.get_field(name).get_db_prep_value for name in where_names),
    )


def update_returning(
    model: type[models.Model],
    pk: Any,
    *,
    fields: dict[str, Any],
    where: dict[str, Any],
    status_in: Sequence[str],
    status_sql: tuple[str, list[Any]],
    returning: Sequence[str] | None = None,
    related: Sequence[tuple[str, type[models.Model], str, Sequence[str] | None]] = (),
    durable: bool = True,
) -> tuple[models.Model, ...] | None:
    """UPDATE one row of ``model`` if its status is in ``status_in`` and it
    matches ``where`` (field = value); return the changed row and the rows
    ``related`` names, or None if nothing matched.

    ``status_sql`` is the SQL of the new status over the row's old values
    (alias ``e``), with its parameters. ``returning`` names the fields of
    the row to load (None: all). Each ``related`` entry is (alias, model,
    foreign key column of the previous model, fields to load). On databases
    whose UPDATE cannot return joined rows (SQLite), related rows are read
    by a second statement.

    ``durable=False`` lets the commit return before PostgreSQL has flushed
    it to disk (``synchronous_commit`` off for this statement alone), for a
    change whose loss in a crash of the database the caller recovers from:
    it saves the wait for the disk. Later changes still wait for their own
    flush, and the log is written in order, so a durable change made after
    this one keeps this one too. Inside a transaction block the whole block
    decides, and the statement is durable as usual.
    """
    # The thread's connection looked up once: each attribute read through
    # django.db.connection looks it up again (a context-local lookup), a
    # dozen times per call on the hot path.
    db = connections[DEFAULT_DB_ALIAS]
    plan = _update_plan(
        model,
        tuple(fields),
        tuple(where),
        len(status_in),
        status_sql[0],
        None if returning is None else tuple(returning),
        tuple((alias, m, fk, None if names is None else tuple(names)) for alias, m, fk, names in related),
        db.vendor,
    )
    params: list[Any] = [*status_sql[1]]
    params += [prep(value, db) for prep, value in zip(plan.set_preps, fields.values(), strict=True)]
    params += [plan.pk_prep(pk, db), *status_in]
    params += [prep(value, db) for prep, value in zip(plan.where_preps, where.values(), strict=True)]
    sql = plan.sql
    if not durable and db.vendor == "postgresql" and not db.in_atomic_block:
        # One round trip: a query of several statements runs as one implicit
        # transaction, to which SET LOCAL applies.
        sql = _NOT_FLUSHED + sql
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    objects, offset = [], 0
    for part in plan.returned:
        objects.append(part.build(row[offset : offset + len(part.attnames)], db))
        offset += len(part.attnames)
    previous = objects[0]
    for related_model, fk_column, names in plan.fetch_related:
        fk_attname = next(f.attname for f in previous._meta.concrete_fields if f.column == fk_column)
        rows = related_model._default_manager.filter(pk=getattr(previous, fk_attname))
        previous = (rows.only(*names) if names else rows).get()
        objects.append(previous)
    return tuple(objects)


def update_many(
    model: type[models.Model],
    rows: Sequence[tuple[Any, dict[str, Any]]],
    *,
    status_in: Sequence[str],
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
    shared = shared or {}
    sets += [f"{q(meta.get_field(name).column)} = %s" for name in shared]
    params += [meta.get_field(name).get_db_prep_save(value, connection) for name, value in shared.items()]
    sql = (
        f"WITH v ({', '.join(value_columns)}) AS (VALUES {values_sql}) "
        f"UPDATE {table} SET {', '.join(sets)} FROM v "
        f"WHERE {table}.{q(meta.pk.column)} = v.v_pk "
        f"AND {table}.{q('status')} IN ({', '.join(['%s'] * len(status_in))}) "
        f"RETURNING {table}.{q(meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *status_in])
        changed = cursor.fetchall()
    return {str(meta.pk.to_python(pk)) for (pk,) in changed}
