"""A validated filter set → SQL over the archive → rows, streamed in a stable order.

The filter semantics come from ``Filters.to_sql()``; this module only adds the source,
the order and the limit, so that `query` and `export` give the API's answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, Select, column, func, select, union_all
from sqlalchemy.sql.selectable import CompoundSelect

from archiver.errors import UsageError
from archiver.filters import Filters
from archiver.models import Operation, Source
from archiver.records import OperationRecord

STREAM_BATCH = 2000


class OrderBy(StrEnum):
    update_date = "update_date"
    create_date = "create_date"
    id = "id"


@dataclass(frozen=True, slots=True)
class ArchivedOperation:
    """An operation as the archive holds it: the API record plus provenance."""

    source: str
    record: OperationRecord
    first_seen_at: datetime
    last_seen_at: datetime


def source_ids(conn: Connection, source: str | None) -> dict[int, str]:
    """The sources to read, id → name; an unknown ``--source`` is bad input."""
    rows = conn.execute(select(Source.id, Source.name)).all()
    names = {row.id: row.name for row in rows}
    if source is None:
        return names
    chosen = {i: n for i, n in names.items() if n == source}
    if not chosen:
        known = ", ".join(sorted(names.values())) or "none yet"
        raise UsageError(f"no source named {source!r} in the archive (sources: {known})")
    return chosen


def select_operations(
    filters: Filters,
    *,
    source_id: int | None = None,
    order_by: OrderBy = OrderBy.update_date,
    ascending: bool = False,
    limit: int | None = None,
) -> Select[Any] | CompoundSelect:
    """``SELECT … FROM operations WHERE <filters>`` ordered newest first by default.

    Ties are broken by (source_id, id) so that the same archive always prints the same
    rows in the same order. An IN list becomes a UNION ALL of one SELECT per value
    (``Filters.to_sql_arms``), which both engines merge in order from their indexes.
    """
    keys = [getattr(Operation, order_by.value), Operation.source_id, Operation.id]
    if order_by is OrderBy.id:
        keys = [Operation.id, Operation.source_id]
    base = select(*Operation.__table__.columns)
    if source_id is not None:
        base = base.where(Operation.source_id == source_id)
    stmt = merged(base, filters, keys, ascending=ascending)
    if limit is not None:
        stmt = stmt.limit(limit)
    return stmt


def merged(
    base: Select[Any], filters: Filters, keys: list[Any], *, ascending: bool = True
) -> Select[Any] | CompoundSelect:
    """``base`` filtered and ordered by ``keys``: one SELECT, or, for an IN list, a
    UNION ALL of one arm per value (``Filters.to_sql_arms``) merged in that order.

    A compound's ORDER BY can only name its result columns, so the arms carry the keys
    as extra columns ``sort_0…``; a reader that takes rows by position cuts them off.
    """
    arms = [base.where(where) for where in filters.to_sql_arms()]
    if len(arms) == 1:
        return arms[0].order_by(*(k.asc() if ascending else k.desc() for k in keys))
    hidden = [k.label(f"sort_{i}") for i, k in enumerate(keys)]
    names = [column(h.name) for h in hidden]
    return union_all(*(arm.add_columns(*hidden) for arm in arms)).order_by(
        *(n.asc() if ascending else n.desc() for n in names)
    )


def count(engine: Engine, filters: Filters, *, source: str | None = None) -> int:
    with engine.connect() as conn:
        ids = source_ids(conn, source)
        stmt = select(func.count()).select_from(Operation).where(filters.to_sql())
        if source is not None:
            stmt = stmt.where(Operation.source_id.in_(ids))
        return int(conn.execute(stmt).scalar_one())


def run(
    engine: Engine,
    filters: Filters,
    *,
    source: str | None = None,
    order_by: OrderBy = OrderBy.update_date,
    ascending: bool = False,
    limit: int | None = None,
) -> Iterator[ArchivedOperation]:
    """Stream matching operations; memory stays flat whatever the archive's size."""
    with engine.connect() as conn:
        names = source_ids(conn, source)
        stmt = select_operations(
            filters,
            source_id=next(iter(names)) if source is not None else None,
            order_by=order_by,
            ascending=ascending,
            limit=limit,
        )
        result = conn.execution_options(yield_per=STREAM_BATCH).execute(stmt)
        for row in result:
            yield to_archived(row, names[row.source_id])


def to_archived(op: Any, source: str) -> ArchivedOperation:
    return ArchivedOperation(
        source=source,
        record=OperationRecord(
            id=op.id,
            type=op.type,
            status=op.status,
            create_date=op.create_date,
            update_date=op.update_date,
            error_code=op.error_code,
            error_message=op.error_message,
            namespace_id=op.namespace_id,
            service_id=op.service_id,
            instance_id=op.instance_id,
            owner_account=op.owner_account,
        ),
        first_seen_at=op.first_seen_at,
        last_seen_at=op.last_seen_at,
    )
