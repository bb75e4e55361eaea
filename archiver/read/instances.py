"""Who was registered, and when: the instances of a service at a moment, rebuilt from
the archived (de)registrations through the ``instance_states`` view (its migration,
b7e3a9d1c254, states the rule once; docs/design.md, "Instances").
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, func, or_, select

from archiver.errors import UsageError
from archiver.guards import printable
from archiver.read.outputs import guard
from archiver.store.archive import Archive
from archiver.store.models import Namespace, Operation, Service, UTCDateTime
from archiver.store.write import source_ids
from archiver.timeutil import iso

#: The view, as the queries here see it (not part of the models: migrations own it).
STATES = Table(
    "instance_states", MetaData(),
    Column("source", String), Column("source_id", Integer), Column("service_id", String),
    Column("service_name", String), Column("namespace_name", String),
    Column("instance_id", String), Column("registered", Integer),
    Column("valid_from", UTCDateTime()), Column("valid_until", UTCDateTime()),
    Column("type", String), Column("previous_type", String), Column("operation_id", String),
)  # fmt: skip
COLUMNS = ("Source", "ServiceId", "ServiceName", "NamespaceName", "InstanceId", "RegisteredAt",
           "OperationId")  # fmt: skip
HISTORY_COLUMNS = (*COLUMNS[:5], "UpdateDate", "Type", "OperationId")
#: Guarded against spreadsheet formulas in CSV, as export guards its source and names;
#: ids and dates must match the service's to the character, and are never altered.
_FREE_TEXT = frozenset({"Source", "ServiceName", "NamespaceName"})


@dataclass(frozen=True)
class Answer:
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
    ids = sorted({r.id for r in found})
    if not ids:
        raise UsageError(f"--{kind} {printable(given)!r}: no {kind} of that id or name")
    if len(ids) > 1:
        raise UsageError(f"--{kind} {printable(given)!r} names {len(ids)} {kind}s: "
                         f"{', '.join(ids)}; give one id")  # fmt: skip
    return ids


def answer(archive: Archive, *, service: str | None = None, namespace: str | None = None,
           at: datetime | None = None, history: bool = False,
           source: str | None = None) -> Answer:  # fmt: skip
    """The instances registered at ``at`` (or, with ``history``, every change in
    order) of the services ``service`` and ``namespace`` name."""
    with archive.reader.connect() as conn:
        names = source_ids(conn, source)  # an unknown --source is exit 2
        sid = next(iter(names)) if source else None
        services = resolve(conn, "service", service, sid) if service else None
        if namespace:  # its services (of those --service names, when both are given)
            spaces = resolve(conn, "namespace", namespace, sid)
            theirs = conn.execute(select(Service.id).where(Service.namespace_id.in_(spaces)))
            services = [s for s in theirs.scalars() if services is None or s in services]

        def narrowed(table: Any) -> list[Any]:  # the answer and its coverage alike
            out = [table.source_id == sid] if sid is not None else []
            return out + ([table.service_id.in_(services)] if services is not None else [])

        where = narrowed(STATES.c)
        first = select(func.min(Operation.update_date)).where(*narrowed(Operation))
        coverage = conn.execute(first).scalar()
        order = (STATES.c.source, STATES.c.service_id, STATES.c.instance_id)
        if history:
            stmt = select(STATES).where(*where).order_by(STATES.c.valid_from, *order)
            return Answer([_row(r, history=True) for r in conn.execute(stmt)], None, coverage, [])
        if at is None:
            raise UsageError("instances: give --at, or --history")
        live = (STATES.c.valid_from <= at) & or_(STATES.c.valid_until.is_(None),
                                                  STATES.c.valid_until > at)  # fmt: skip
        rows = conn.execute(select(STATES).where(*where, live, STATES.c.registered == 1)
                            .order_by(*order)).all()  # fmt: skip
        unsure = select(STATES.c.instance_id).where(
            *where, STATES.c.previous_type.is_(None), STATES.c.registered == 0,
            STATES.c.valid_from > at)  # fmt: skip
        return Answer([_row(r) for r in rows], at, coverage,
                      sorted(set(conn.execute(unsure).scalars())))  # fmt: skip


def _row(r: Any, *, history: bool = False) -> dict[str, Any]:
    row = {"Source": r.source, "ServiceId": r.service_id, "ServiceName": r.service_name or "",
           "NamespaceName": r.namespace_name or "", "InstanceId": r.instance_id}  # fmt: skip
    if history:
        return {**row, "UpdateDate": iso(r.valid_from), "Type": r.type,
                "OperationId": r.operation_id}  # fmt: skip
    return {**row, "RegisteredAt": iso(r.valid_from), "OperationId": r.operation_id}


def note(result: Answer) -> str | None:
    """What the answer cannot know, in one line, or None."""
    if not result.uncertain:
        return None
    since = iso(result.coverage_start) if result.coverage_start else "its first operation"
    return (f"{len(result.uncertain)} instance(s) were registered before the archive began "
            f"({since}): their first archived change is a later deregistration, so they "
            "may have been registered then too")  # fmt: skip


def write(result: Answer, output: str, out: TextIO) -> None:
    """table, json (an envelope with the coverage), csv (formula-guarded) or ids."""
    columns: Sequence[str] = HISTORY_COLUMNS if result.at is None else COLUMNS
    if output == "json":
        envelope = {"at": iso(result.at) if result.at else None,
                    "coverage_start": iso(result.coverage_start) if result.coverage_start
                    else None, "uncertain": result.uncertain, "instances": result.rows}  # fmt: skip
        out.write(json.dumps(envelope, ensure_ascii=False, indent=1) + "\n")
    elif output == "csv":
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(columns)
        writer.writerows([guard(str(r[c])) if c in _FREE_TEXT else r[c] for c in columns]
                         for r in result.rows)  # fmt: skip
    elif output == "ids":
        out.writelines(f"{r['InstanceId']}\n" for r in result.rows)
    else:
        widths = {c: max([len(c), *(len(str(r[c])) for r in result.rows)]) for c in columns}
        for cells in [dict(zip(columns, columns, strict=True)), *result.rows]:
            out.write(printable(" ".join(str(cells[c]).ljust(widths[c]) for c in columns)).rstrip()
                      + "\n")  # fmt: skip
        out.write(f"({len(result.rows)} {'change' if result.at is None else 'instance'}"
                  f"{'' if len(result.rows) == 1 else 's'})\n")  # fmt: skip
