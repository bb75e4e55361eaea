"""The archive's questions in SQL: a validated filter set → rows, streamed in a stable
order; and the instances registered at a moment.

The filter semantics come from ``Filters.to_sql()``; this module only adds the source,
the order and the limit, so that `query` and `export` give the API's answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    cast,
    column,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.sql.elements import ColumnClause
from sqlalchemy.sql.selectable import CompoundSelect
from sqlalchemy.sql.util import ClauseAdapter

from archiver.errors import UsageError
from archiver.filters import Filters
from archiver.guards import printable
from archiver.read import OrderBy
from archiver.records import NAMES, OperationRecord
from archiver.store.archive import Archive
from archiver.store.models import IncompleteOperation, Namespace, Operation, Service, UTCDateTime
from archiver.store.write import source_ids
from archiver.timeutil import iso, now

STREAM_BATCH = 2000
#: What ``target_names`` takes of a row: its source and its targets.
TARGET_KEYS = (Operation.source_id, Operation.namespace_id, Operation.service_id)


@dataclass(frozen=True)
class Selection:
    """What a query or export reads: ListOperations' filters, plus the archive's own
    choices of source, order and limit."""

    filters: Filters = field(default_factory=Filters)
    source: str | None = None
    order_by: OrderBy = "update_date"
    ascending: bool = False
    limit: int | None = None
    include_incomplete: bool = False  # listed operations GetOperation never found
    since: datetime | None = None  # --since/--until: UPDATE_DATE BETWEEN, ANDed (F8)
    until: datetime | None = None

    def bounds(self) -> list[Any]:
        """--since and --until as conditions on the operation's UpdateDate (inclusive,
        as BETWEEN is, M4); an incomplete operation has none, so it never matches."""
        out = []
        if self.since is not None:
            out.append(Operation.update_date >= self.since)
        if self.until is not None:
            out.append(Operation.update_date <= self.until)
        return out

    def sort_keys(self) -> list[Any]:
        """The sort keys; ties are broken by (source_id, id), so the same archive always
        prints the same rows in the same order."""
        if self.order_by == "id":
            return [Operation.id, Operation.source_id]
        return [getattr(Operation, self.order_by), Operation.source_id, Operation.id]


@dataclass(frozen=True, slots=True)
class ArchivedOperation:
    """An operation as the archive holds it: the API record plus provenance."""

    source: str
    record: OperationRecord  # of an incomplete one, only id and the listed status are known
    first_seen_at: datetime
    last_seen_at: datetime
    incomplete: bool = False
    namespace_name: str | None = None  # of the operation's NAMESPACE target, if known
    service_name: str | None = None  # of its SERVICE target


def target_names(conn: Connection, sources: Iterable[int]) -> Callable[..., tuple[Any, Any]]:
    """(source id, NAMESPACE target, SERVICE target) → the names of the operation's
    namespace and service, None where it has none or no sync has listed its name; an
    operation with a SERVICE target only is named after that service's namespace.

    Every output's names come from here, the catalog of ``sources`` read once into
    memory: for a million rows a lookup costs less than SQLite's two B-tree searches a
    row, and the outputs rendered in SQL append the names at their end (bench/README.md)."""
    ns, srv, ids = Namespace, Service, list(sources)
    spaces: dict[tuple[int, Any], Any] = {(s, i): n for s, i, n in conn.execute(select(
        ns.source_id, ns.id, ns.name).where(ns.source_id.in_(ids)))}  # fmt: skip
    services: dict[tuple[int, Any], Any] = {(s, i): (home, n) for s, i, home, n in
        conn.execute(select(srv.source_id, srv.id, srv.namespace_id, srv.name)
                     .where(srv.source_id.in_(ids)))}  # fmt: skip

    def names(sid: int, namespace: str | None, service: str | None) -> tuple[Any, Any]:
        home, name = services.get((sid, service), (None, None))
        return spaces.get((sid, namespace or home)), name

    return names


def ordered(
    base: Select[Any], selection: Selection, *, source_id: int | None, flag_incomplete: bool = False
) -> Select[Any] | CompoundSelect[Any]:
    """``base`` (over operations) narrowed to a source, filtered, ordered and limited.

    With ``include_incomplete`` the same statement reads a UNION ALL of operations and
    incomplete operations (unknown fields NULL, so any filter on them leaves them out,
    and they sort last): the filters are compiled once and adapted, not rewritten.
    """
    if source_id is not None:
        base = base.where(Operation.source_id == source_id)
    base = base.where(*selection.bounds())
    stmt: Select[Any] | CompoundSelect[Any]
    if selection.include_incomplete:
        keys = [k.asc() if selection.ascending else k.desc() for k in selection.sort_keys()]
        plain = base.where(selection.filters.to_sql(Operation)).order_by(
            *(k.nulls_last() for k in keys)
        )
        both = with_incomplete()
        stmt = ClauseAdapter(both).traverse(plain)
        if flag_incomplete:  # a reader that builds records learns which are partial
            stmt = stmt.add_columns(both.c.incomplete)
    else:
        stmt = merged(base, selection.filters, selection.sort_keys(), ascending=selection.ascending)
    return stmt if selection.limit is None else stmt.limit(selection.limit)


def with_incomplete() -> Any:
    """operations UNION ALL incomplete_operations, shaped as operations (and flagged)."""
    inc = IncompleteOperation.__table__.c
    ops = Operation.__table__.columns
    complete = select(*ops, literal(False).label("incomplete"))
    partial = select(
        *((inc[c.name] if c.name in inc else cast(null(), c.type)).label(c.name) for c in ops),
        literal(True).label("incomplete"),
    )
    return union_all(complete, partial).subquery("operations_and_incomplete")


def merged(
    base: Select[Any], filters: Filters, keys: list[Any], *, ascending: bool = True
) -> Select[Any] | CompoundSelect[Any]:
    """``base`` filtered and ordered by ``keys``: one SELECT, or, for an IN list, a
    UNION ALL of one arm per value (``Filters.to_sql_arms``) merged in that order.

    A compound's ORDER BY can only name its result columns, so the arms carry the keys
    as extra columns ``sort_0…``; a reader that takes rows by position cuts them off.
    """
    arms = [base.where(where) for where in filters.to_sql_arms(Operation)]
    if len(arms) == 1:
        return arms[0].order_by(*(k.asc() if ascending else k.desc() for k in keys))
    hidden = [k.label(f"sort_{i}") for i, k in enumerate(keys)]
    names: list[ColumnClause[Any]] = [column(h.name) for h in hidden]
    return union_all(*(arm.add_columns(*hidden) for arm in arms)).order_by(
        *(n.asc() if ascending else n.desc() for n in names)
    )


def stored_values(archive: Archive) -> dict[str, Sequence[str]]:
    """The TYPE and STATUS values the archive holds (some the model may not list yet)."""
    with archive.reader.connect() as conn:
        types = conn.execute(select(Operation.type).distinct()).scalars().all()
        statuses = conn.execute(select(Operation.status).distinct()).scalars().all()
        listed = conn.execute(select(IncompleteOperation.status).distinct()).scalars().all()
    return {"TYPE": list(types), "STATUS": sorted({*statuses, *listed})}


def count(archive: Archive, selection: Selection) -> int:
    """How many operations the selection holds (at most its limit)."""
    with archive.reader.connect() as conn:
        ids = source_ids(conn, selection.source)
        stmt = (
            select(func.count())
            .select_from(Operation)
            .where(selection.filters.to_sql(Operation), *selection.bounds())
        )
        if selection.source is not None:
            stmt = stmt.where(Operation.source_id.in_(ids))
        if selection.include_incomplete:
            stmt = ClauseAdapter(with_incomplete()).traverse(stmt)
        n = int(conn.execute(stmt).scalar_one())
    return n if selection.limit is None else min(n, selection.limit)


def run(archive: Archive, selection: Selection) -> Iterator[ArchivedOperation]:
    """Stream matching operations; memory stays flat whatever the archive's size."""
    read = batches(archive, selection, lambda _: select(*Operation.__table__.columns), named=True)
    return (to_archived(row, read.sources[row.source_id], read.names(row.source_id,
                        row.namespace_id, row.service_id),
                        incomplete=row._mapping.get("incomplete", False))
            for rows in read.rows for row in rows)  # fmt: skip


def ids(archive: Archive, selection: Selection) -> Iterator[Sequence[str]]:
    """Only the ids of the selected operations, in the query's order (``-o ids``), a
    batch at a time."""
    return batches(archive, selection, lambda _: select(Operation.id), first=True).rows


def batches(archive: Archive, selection: Selection,
            build: Callable[[dict[int, str]], Select[Any]], *, first: bool = False,
            named: bool = False) -> Stream:  # fmt: skip
    """``streamed``, of ``build(sources)`` (a SELECT over operations, to which some
    outputs write the sources' names into every row) filtered, ordered and limited as
    the selection says. With ``include_incomplete`` a row also has the ``incomplete`` flag."""

    def statement(names: dict[int, str]) -> Any:
        sid = chosen_source(selection.source, names)
        return ordered(build(names), selection, source_id=sid, flag_incomplete=True)

    return streamed(archive, selection, statement, first=first, named=named)


class Stream(NamedTuple):
    """A read: the selected sources (id → name), its rows a batch at a time, and (when
    ``named``) its targets' names, read by the same connection before the rows."""

    sources: dict[int, str]
    rows: Iterator[Sequence[Any]]
    names: Callable[..., tuple[Any, Any]]


def streamed(archive: Archive, selection: Selection,
             statement: Callable[[dict[int, str]], Any], *, first: bool = False,
             named: bool = False) -> Stream:  # fmt: skip
    """The rows of ``statement(sources)`` a batch at a time, from a reader connection the
    stream owns (on PostgreSQL a server-side cursor). The source is checked here, and
    the names read, before the first row is asked for, so that an unknown ``--source``
    fails before any output starts (a JSON ``[`` or a CSV header). ``first``: the first
    column alone, no Row each (ids)."""
    conn = archive.reader.connect()
    try:
        sources = source_ids(conn, selection.source)
        stmt = statement(sources)
        names = target_names(conn, sources) if named else lambda *_: (None, None)  # rows' snapshot
    except BaseException:
        conn.close()
        raise

    def rows() -> Iterator[Sequence[Any]]:
        with conn:
            result = conn.execution_options(yield_per=STREAM_BATCH).execute(stmt)
            yield from (result.scalars() if first else result).partitions()

    return Stream(sources, rows(), names)


def chosen_source(source: str | None, names: dict[int, str]) -> int | None:
    """The source id ``--source`` narrows the read to (``streamed`` checked the name),
    or None for every source."""
    return next(iter(names)) if source is not None else None


def to_archived(op: Any, source: str, names: tuple[Any, Any] = (None, None), *,
                incomplete: bool = False) -> ArchivedOperation:  # fmt: skip
    values = op._mapping
    return ArchivedOperation(
        source=source,
        record=OperationRecord(**{name: values[name] for name in NAMES}),
        first_seen_at=values["first_seen_at"],
        last_seen_at=values["last_seen_at"],
        incomplete=incomplete,
        namespace_name=names[0],
        service_name=names[1],
    )


# --- who was registered when: the instance_states view (its migration, b7e3a9d1c254,
# states the rule once; docs/design.md, "Instances") ------------------------------------

#: The view, as the queries here see it (not part of the models: migrations own it).
STATES = Table(
    "instance_states", MetaData(),
    Column("source", String), Column("source_id", Integer), Column("service_id", String),
    Column("service_name", String), Column("namespace_name", String),
    Column("instance_id", String), Column("registered", Integer),
    Column("valid_from", UTCDateTime()), Column("valid_until", UTCDateTime()),
    Column("type", String), Column("previous_type", String), Column("operation_id", String),
)  # fmt: skip


@dataclass(frozen=True)
class Instances:
    rows: list[dict[str, Any]]
    at: datetime | None  # None: a history
    coverage_start: datetime | None  # the archive's first operation of these services
    #: instances whose first archived change, after ``at``, is a deregistration: they
    #: were registered before the archive knew them, and may have been at ``at``
    uncertain: list[str]


def resolve(conn: Connection, kind: str, given: str, source_id: int | None) -> list[str]:
    """The ids ``--service`` / ``--namespace`` name: an id the archive knows, else the
    ids of the catalog entries of that name (exit 2 for none, or for several)."""
    model = Service if kind == "service" else Namespace
    column = Operation.service_id if kind == "service" else Operation.namespace_id
    mine = [model.source_id == source_id] if source_id is not None else []
    if conn.execute(select(model.id).where(model.id == given, *mine).limit(1)).first() or (
        conn.execute(select(column).where(column == given).limit(1)).first()
    ):
        return [given]
    found = conn.execute(select(model.id, model.source_id).where(model.name == given, *mine))
    if not (ids := sorted({r.id for r in found})):
        raise UsageError(f"--{kind} {printable(given)!r}: no {kind} of that id or name")
    if len(ids) > 1:
        raise UsageError(f"--{kind} {printable(given)!r} names {len(ids)} {kind}s: "
                         f"{', '.join(ids)}; give one id")  # fmt: skip
    return ids


def instances(archive: Archive, *, service: str | None = None, namespace: str | None = None,
              at: datetime | None = None, history: bool = False,
              source: str | None = None) -> Instances:  # fmt: skip
    """The instances registered at ``at`` (default: now; or, with ``history``, every
    change in order) of the services ``service`` and ``namespace`` name."""
    with archive.reader.connect() as conn:
        names = source_ids(conn, source)  # an unknown --source is exit 2
        sid = chosen_source(source, names)
        services = resolve(conn, "service", service, sid) if service is not None else None
        if namespace is not None:  # its services (of those --service names, when both are)
            spaces = resolve(conn, "namespace", namespace, sid)
            theirs = conn.execute(select(Service.id).where(Service.namespace_id.in_(spaces)))
            mine = [s for s in theirs.scalars() if services is None or s in services]
            if services and not mine:  # a question with no answer: most likely a slip
                raise UsageError(f"--service {printable(str(service))!r} is not in --namespace "
                                 f"{printable(namespace)!r} per the archive's catalog")  # fmt: skip
            services = mine

        def narrowed(table: Any) -> list[Any]:  # the answer and its coverage alike
            out = [table.source_id == sid] if sid is not None else []
            return out + ([table.service_id.in_(services)] if services is not None else [])

        where = narrowed(STATES.c)
        first = select(func.min(Operation.update_date)).where(*narrowed(Operation))
        coverage = conn.execute(first).scalar()
        order = (STATES.c.source, STATES.c.service_id, STATES.c.instance_id)
        if history:  # two changes of an instance at one instant: in the rule's order
            o, c = Operation, STATES.c
            ties = select(STATES).join(o, (o.source_id == c.source_id) & (o.id == c.operation_id))
            stmt = ties.where(*where).order_by(c.valid_from, *order, o.create_date, o.id)
            return Instances(
                [_row(r, history=True) for r in conn.execute(stmt)], None, coverage, []
            )
        at = at or now()
        rows = conn.execute(select(STATES).where(*where, registered_at(at)).order_by(*order)).all()
        unsure = select(STATES.c.instance_id).where(
            *where, STATES.c.previous_type.is_(None), STATES.c.registered == 0,
            STATES.c.valid_from > at)  # fmt: skip
        return Instances([_row(r) for r in rows], at, coverage,
                         sorted(set(conn.execute(unsure).scalars())))  # fmt: skip


def registered_at(at: Any) -> Any:
    """The ``instance_states`` rows of an instance registered at ``at`` (an instant, or
    a bound parameter): for ``instances`` and for the web view's canned query."""
    c = STATES.c
    return (c.registered == literal_column("1")) & (c.valid_from <= at) & or_(
        c.valid_until.is_(None), c.valid_until > at)  # fmt: skip


def _row(r: Any, *, history: bool = False) -> dict[str, Any]:
    row = {"Source": r.source, "ServiceId": r.service_id, "ServiceName": r.service_name or "",
           "NamespaceName": r.namespace_name or "", "InstanceId": r.instance_id}  # fmt: skip
    if history:
        return {**row, "UpdateDate": iso(r.valid_from), "Type": r.type,
                "OperationId": r.operation_id}  # fmt: skip
    return {**row, "RegisteredAt": iso(r.valid_from), "OperationId": r.operation_id}
