"""The figures behind `archiver report`, aggregated in SQL.

Every figure is a GROUP BY over the selected operations (the same filters,
``--since``/``--until`` and ``--source`` as ``query``), so a report of a million
operations moves a few thousand numbers into Python, never the rows. The sync runs
are read per source (the filters are about operations, not runs). Drawing is
``report_html``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, func, select

from archiver.archive import Archive
from archiver.models import Operation, Service, Source, SyncRun, seconds_between, utc_day
from archiver.query import Selection, source_ids

UNFINISHED = ("SUBMITTED", "PENDING")
#: Duration buckets: (upper bound in seconds, label); the last has no bound.
BUCKETS: tuple[tuple[float | None, str], ...] = (
    (1, "< 1 s"),
    (10, "1–10 s"),
    (60, "10–60 s"),
    (300, "1–5 min"),
    (1800, "5–30 min"),
    (7200, "30 min–2 h"),
    (None, "≥ 2 h"),
)
TOP_SERVICES = 10


@dataclass(frozen=True)
class Run:
    """One sync run as the report draws it."""

    source: str
    started_at: datetime
    outcome: str
    duration_s: float | None  # None while running, or for a killed run
    lag_s: float | None  # how far the watermark stood behind the run's end


@dataclass
class Figures:
    sources: list[str]
    total: int = 0
    per_day: list[tuple[str, str, int]] = field(default_factory=list)  # day, status, n
    by_type: list[tuple[str, int, int]] = field(default_factory=list)  # type, n, failed
    top_failing: list[tuple[str, str, int]] = field(default_factory=list)  # name, id, n
    durations: list[tuple[str, str, int]] = field(default_factory=list)  # type, bucket, n
    runs: list[Run] = field(default_factory=list)


def gather(archive: Archive, selection: Selection) -> Figures:
    """Every figure of the report for ``selection``; an unknown source is exit 2."""
    with archive.reader.connect() as conn:
        names = source_ids(conn, selection.source)
        figures = Figures(sources=sorted(names.values()))
        where = [selection.filters.to_sql(), *selection.bounds()]
        if selection.source is not None:
            where.append(Operation.source_id.in_(names))

        def rows(*columns: Any, group: list[Any], extra: Any = ()) -> list[Any]:
            stmt = select(*columns).select_from(Operation).where(*where, *extra)
            return list(conn.execute(stmt.group_by(*group).order_by(*group)).all())

        day = utc_day(Operation.update_date)
        figures.per_day = [
            (d, s, n)
            for d, s, n in rows(day, Operation.status, func.count(), group=[day, Operation.status])
        ]
        failed = func.sum(case((Operation.status == "FAIL", 1), else_=0))
        figures.by_type = [
            (t, n, int(f or 0))
            for t, n, f in rows(Operation.type, func.count(), failed, group=[Operation.type])
        ]
        figures.total = sum(n for _, n, _ in figures.by_type)
        figures.top_failing = _top_failing(conn, where, len(names) > 1, names)
        bucket = _bucket(seconds_between(Operation.create_date, Operation.update_date))
        labels = [label for _, label in BUCKETS]
        figures.durations = [
            (t, labels[b], n)
            for t, b, n in rows(
                Operation.type,
                bucket,
                func.count(),
                group=[Operation.type, bucket],
                extra=[Operation.status.not_in(UNFINISHED)],
            )
        ]
        figures.runs = _runs(conn, names)
    return figures


def _bucket(seconds: Any) -> Any:
    """The index of the BUCKETS entry that ``seconds`` falls in, as SQL."""
    whens = [(seconds < bound, i) for i, (bound, _) in enumerate(BUCKETS) if bound is not None]
    return case(*whens, else_=len(BUCKETS) - 1)


def _top_failing(
    conn: Connection, where: list[Any], several: bool, names: dict[int, str]
) -> list[tuple[str, str, int]]:
    """The services with the most FAIL operations, by name (the id when no sync listed
    it), with the source's name when the report covers several sources."""
    n = func.count().label("n")
    stmt = (
        select(Operation.source_id, Operation.service_id, Service.name, n)
        .select_from(Operation)
        .outerjoin(
            Service,
            (Service.source_id == Operation.source_id) & (Service.id == Operation.service_id),
        )
        .where(*where, Operation.status == "FAIL", Operation.service_id.is_not(None))
        .group_by(Operation.source_id, Operation.service_id, Service.name)
        .order_by(n.desc(), Operation.service_id)
        .limit(TOP_SERVICES)
    )
    out: list[tuple[str, str, int]] = []
    for sid, service_id, name, count in conn.execute(stmt):
        label = str(name or service_id)
        out.append((f"{label} ({names[sid]})" if several else label, str(service_id), int(count)))
    return out


def _runs(conn: Connection, names: dict[int, str]) -> list[Run]:
    """Each run of the selected sources, oldest first, with the watermark's lag: how
    far behind the run's end the archive was complete (the run's ``until`` when it
    succeeded, else the last good run's)."""
    stmt = (
        select(
            SyncRun.source_id,
            SyncRun.started_at,
            SyncRun.finished_at,
            SyncRun.outcome,
            SyncRun.until,
        )
        .join(Source, Source.id == SyncRun.source_id)
        .where(SyncRun.source_id.in_(names))
        .order_by(SyncRun.started_at, SyncRun.id)
    )
    complete_to: dict[int, datetime] = {}
    out = []
    for sid, started, finished, outcome, until in conn.execute(stmt):
        if outcome == "succeeded" and until is not None:
            complete_to[sid] = until
        mark = complete_to.get(sid)
        out.append(
            Run(
                source=names[sid],
                started_at=started,
                outcome=outcome,
                duration_s=(finished - started).total_seconds() if finished else None,
                lag_s=(finished - mark).total_seconds() if finished and mark else None,
            )
        )
    return out
