"""The archive's writes: sources, operations and their events, runs, the watermark.

Every function takes an open connection inside the caller's transaction: the sync
decides what one transaction holds (one page, docs/design.md, step 4), this module
only says how each write is made. Upserts use the dialect's own ON CONFLICT, so a
repeated page is harmless.
"""

import functools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, delete, func, select, update

from archiver.errors import UsageError
from archiver.guards import mask_url
from archiver.records import FIELDS, Listed, OperationRecord
from archiver.store.archive import Archive
from archiver.store.db import insert, insert_for
from archiver.store.models import (
    Base,
    IncompleteOperation,
    Namespace,
    Operation,
    OperationEvent,
    Service,
    Source,
    SyncRun,
    SyncState,
)
from archiver.timeutil import now

_IN_CHUNK = 500  # stays far below SQLite's bound-parameter limit


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    """``ids`` in slices small enough for one ``IN (…)`` of bound parameters."""
    for i in range(0, len(ids), _IN_CHUNK):
        yield ids[i : i + _IN_CHUNK]


def _by_chunk(conn: Connection, ids: Sequence[str], statement: Any) -> None:
    """``statement(chunk)`` executed for each slice of ``ids``."""
    for chunk in _chunks(ids):
        conn.execute(statement(chunk))


def ensure_source(
    conn: Connection, name: str, *, region: str | None = None, endpoint_url: str | None = None
) -> int:
    """The source's id, creating it (and its sync_state row) on first use."""
    new = insert(conn, Source).values(name=name, region=region, created_at=now(),
                                      endpoint_url=mask_url(endpoint_url) or None)  # fmt: skip
    conn.execute(new.on_conflict_do_nothing(index_elements=["name"]))
    source_id = conn.execute(select(Source.id).where(Source.name == name)).scalar_one()
    state = insert(conn, SyncState).values(source_id=source_id)
    conn.execute(state.on_conflict_do_nothing(index_elements=["source_id"]))
    return int(source_id)


def read_from(conn: Connection, source_id: int, region: str | None, endpoint_url: str | None,
              *, full: bool, write: bool = True) -> None:  # fmt: skip
    """A source is one region read from one endpoint: its watermark says nothing of
    another, whose history it would skip. Another region is refused; another endpoint
    (the emulator, then AWS) only for a ``full`` run or one with no watermark yet, which
    reads all the new one holds; the source is read from it from then on (``write``),
    from no watermark, so that a run that fails on the way leaves the next one to read
    everything."""
    name, held, was = conn.execute(select(Source.name, Source.region, Source.endpoint_url)
                                   .where(Source.id == source_id)).one()  # fmt: skip
    if region and held and region != held:
        raise UsageError(f"source {name!r} holds the operations of {held}, not {region}: give "
                         f"{region}'s another name (--source, or name in a config)")  # fmt: skip
    now_ = mask_url(endpoint_url) or None
    moved = (was or "").rstrip("/") != (now_ or "").rstrip("/")  # http://h/ is http://h
    if moved and not full and watermark(conn, source_id) is not None:
        raise UsageError(f"source {name!r} was read from {was or 'the AWS endpoint'}, not "
                         f"{now_ or 'the AWS endpoint'}; its watermark would skip this one's "
                         "history: name this one another source, or, if both serve the same "
                         "account and region, run once with --full (in a config, "
                         "full = true)")  # fmt: skip
    if moved and write:  # the other service's watermark and NextToken say nothing here
        save_resume(conn, source_id, None, None)
        conn.execute(_state(source_id).values(watermark=None))
        conn.execute(update(Source).where(Source.id == source_id).values(endpoint_url=now_))


def find_source(conn: Connection, name: str) -> int | None:
    return conn.execute(select(Source.id).where(Source.name == name)).scalar_one_or_none()


def archived_statuses(conn: Connection, source_id: int, ids: Sequence[str]) -> dict[str, str]:
    """Archived status of each listed id: one query per page decides what to fetch."""
    mine = select(Operation.id, Operation.status).where(Operation.source_id == source_id)
    return {
        i: s for chunk in _chunks(ids) for i, s in conn.execute(mine.where(Operation.id.in_(chunk)))
    }


#: O5: what a re-archived operation may change (the record says which fields do).
#: first_seen_at never changes; last_seen_at is set explicitly because ON CONFLICT DO
#: UPDATE skips ``onupdate``.
_UPDATABLE = (*(f.name for f in FIELDS if f.changes), "last_seen_at")


@functools.cache
def _upsert_operation(dialect: str) -> Any:
    """Built once per dialect, not again for every page of 100 rows."""
    stmt = insert_for(dialect, Operation.__table__)
    return stmt.on_conflict_do_update(
        index_elements=["source_id", "id"],
        set_={name: stmt.excluded[name] for name in _UPDATABLE},
    )


@functools.cache
def _insert_event(dialect: str) -> Any:
    return insert_for(dialect, OperationEvent.__table__).on_conflict_do_nothing(
        index_elements=["source_id", "operation_id", "status", "update_date"]
    )


def upsert_operations(conn: Connection, source_id: int, records: Iterable[OperationRecord],
                      *, seen_at: datetime, run_id: int | None,
                      events: bool = True) -> int:  # fmt: skip
    """Insert or update operations and append one event per newly observed status
    (``events``: False for a Status that was listed, not observed with its date)."""
    rows = [{"source_id": source_id, **rec.values(), "first_seen_at": seen_at,
             "last_seen_at": seen_at} for rec in records]  # fmt: skip
    if not rows:
        return 0
    conn.execute(_upsert_operation(conn.dialect.name), rows)
    if events:
        conn.execute(_insert_event(conn.dialect.name), [
            {"source_id": source_id, "operation_id": r["id"], "status": r["status"],
             "update_date": r["update_date"], "observed_at": seen_at, "sync_run_id": run_id}
            for r in rows])  # fmt: skip
    # An operation found at last is complete: it leaves incomplete_operations in the
    # same transaction, so it is never in both, nor in neither.
    i = IncompleteOperation
    _by_chunk(conn, [r["id"] for r in rows],
              lambda chunk: delete(i).where(i.source_id == source_id, i.id.in_(chunk)))  # fmt: skip
    return len(rows)


def keep_incomplete(
    conn: Connection, source_id: int, listed: Sequence[tuple[str, str]], *, seen_at: datetime
) -> None:
    """Listed operations GetOperation could not find: keep their Id and listed Status."""
    if not listed:
        return
    stmt = insert(conn, IncompleteOperation.__table__)
    again = {"status": stmt.excluded.status, "last_seen_at": stmt.excluded.last_seen_at,
             "attempts": IncompleteOperation.attempts + 1}  # fmt: skip
    rows = [{"source_id": source_id, "id": op_id, "status": status, "first_seen_at": seen_at,
             "last_seen_at": seen_at, "attempts": 1} for op_id, status in listed]  # fmt: skip
    conn.execute(stmt.on_conflict_do_update(index_elements=["source_id", "id"], set_=again), rows)


def incomplete_to_retry(
    conn: Connection, source_id: int, *, gone: bool = False
) -> list[tuple[str, str, datetime]]:
    """(id, listed status, first seen) of the source's incomplete operations not gone
    (``gone``: those given up on too)."""
    stmt = (
        select(IncompleteOperation.id, IncompleteOperation.status,
               IncompleteOperation.first_seen_at)
        .where(IncompleteOperation.source_id == source_id)
        .order_by(IncompleteOperation.first_seen_at, IncompleteOperation.id)
    )  # fmt: skip
    rows = conn.execute(stmt if gone else stmt.where(IncompleteOperation.gone_at.is_(None))).all()
    return [(r.id, r.status, r.first_seen_at) for r in rows]


def retried_incomplete(
    conn: Connection, source_id: int, ids: Sequence[str], *, gone: Sequence[str], at: datetime
) -> None:
    """One more unanswered try for ``ids``; ``gone`` ones are given up on as of ``at``."""
    i = IncompleteOperation
    mine = update(i).where(i.source_id == source_id)
    _by_chunk(conn, ids, lambda chunk: mine.where(i.id.in_(chunk)).values(attempts=i.attempts + 1))
    _by_chunk(conn, gone, lambda chunk: mine.where(i.id.in_(chunk)).values(gone_at=at))


def operation_count(conn: Connection, source_id: int) -> int:
    """How many operations the source holds."""
    stmt = select(func.count()).select_from(Operation).where(Operation.source_id == source_id)
    return int(conn.execute(stmt).scalar_one())


def incomplete_counts(conn: Connection, source_id: int) -> dict[str, int]:
    """The source's incomplete operations: ``incomplete`` (never found, still retried),
    ``gone`` (given up on) and ``unsettled`` (found behind their listed Status: stored,
    and retried)."""
    i = IncompleteOperation
    found = select(Operation.id).where(Operation.source_id == source_id, Operation.id == i.id)
    kind = case((i.gone_at.is_not(None), "gone"), (found.exists(), "unsettled"), else_="incomplete")
    rows = conn.execute(select(kind, func.count()).where(i.source_id == source_id).group_by(kind))
    return {"incomplete": 0, "gone": 0, "unsettled": 0, **{k: int(n) for k, n in rows}}


def service_links(conn: Connection, source_id: int) -> dict[str, str | None]:
    """Each service of the source the catalog holds, with its namespace when known."""
    stmt = select(Service.id, Service.namespace_id).where(Service.source_id == source_id)
    return {r.id: r.namespace_id for r in conn.execute(stmt)}


def known_owners(conn: Connection, source_id: int) -> set[str]:
    """The accounts that owned a namespace the source has listed (ever)."""
    stmt = select(Namespace.resource_owner).where(
        Namespace.source_id == source_id, Namespace.resource_owner.is_not(None)
    )
    return {str(owner) for owner in conn.execute(stmt.distinct()).scalars()}


def touch_seen(conn: Connection, source_id: int, ids: Sequence[str], seen_at: datetime) -> None:
    """Listed and unchanged: only ``last_seen_at`` moves."""
    mine = update(Operation).where(Operation.source_id == source_id)
    _by_chunk(
        conn, ids, lambda chunk: mine.where(Operation.id.in_(chunk)).values(last_seen_at=seen_at)
    )


def last_success(conn: Connection, source_id: int) -> datetime | None:
    """When the source's latest successful sync finished (None: never)."""
    mine = (SyncRun.source_id == source_id) & (SyncRun.outcome == "succeeded")
    return conn.execute(select(func.max(SyncRun.finished_at)).where(mine)).scalar_one()


def latest_runs(conn: Connection, source_id: int, n: int = 1) -> list[Any]:
    """The source's ``n`` latest sync_runs rows, the latest first."""
    return list(conn.execute(select(SyncRun).where(SyncRun.source_id == source_id)
                             .order_by(SyncRun.id.desc()).limit(n)).all())  # fmt: skip


def update_date_unit(conn: Connection, source_id: int) -> str | None:
    stmt = select(Source.update_date_unit).where(Source.id == source_id)
    return conn.execute(stmt).scalar_one_or_none()


def set_update_date_unit(conn: Connection, source_id: int, unit: str) -> None:
    conn.execute(update(Source).where(Source.id == source_id).values(update_date_unit=unit))


def watermark(conn: Connection, source_id: int) -> datetime | None:
    stmt = select(SyncState.watermark).where(SyncState.source_id == source_id)
    return conn.execute(stmt).scalar_one_or_none()


def advance_watermark(conn: Connection, source_id: int, window: tuple[datetime, datetime]) -> None:
    """Move the watermark to the end of a window stored whole: forward only (a late
    window cannot undo progress), and only from a window that begins at or before it.
    A window that begins after the watermark (``--full --since 2d`` over an archive
    complete to 40 days ago) leaves a gap no run has read, so it moves nothing, and a
    plain sync still reads the gap."""
    start, end = window
    mark = SyncState.watermark
    moves = mark.is_(None) | ((mark < end) & (mark >= start))  # forward, from within
    conn.execute(_state(source_id).where(moves).values(watermark=end))


def save_resume(conn: Connection, source_id: int, window: tuple[datetime, datetime] | None,
                token: str | None) -> None:  # fmt: skip
    """Where the pass stands: the window and the NextToken after the last stored page."""
    start, end = window if window and token else (None, None)
    conn.execute(_state(source_id).values(resume_start=start, resume_end=end,
                                          resume_token=token if start else None))  # fmt: skip


def resume_point(conn: Connection, source_id: int) -> tuple[datetime, datetime, str] | None:
    state = select(SyncState.resume_start, SyncState.resume_end, SyncState.resume_token)
    row = conn.execute(state.where(SyncState.source_id == source_id)).first()
    if row is None or row.resume_token is None:
        return None
    return row.resume_start, row.resume_end, row.resume_token


def set_lock_holder(conn: Connection, source_id: int, holder: str | None) -> None:
    conn.execute(_state(source_id).values(lock_holder=holder, lock_since=now() if holder else None))


def _state(source_id: int) -> Any:
    """An UPDATE of the source's sync_state row: its watermark, resume point and holder."""
    return update(SyncState).where(SyncState.source_id == source_id)


def start_run(
    conn: Connection, source_id: int, *, since: datetime | None, until: datetime | None
) -> int:
    """A new run, ``running``, its counts at their column defaults (0)."""
    new = insert(conn, SyncRun).values(source_id=source_id, started_at=now(), outcome="running",
                                       since=since, until=until)  # fmt: skip
    return int(conn.execute(new.returning(SyncRun.id)).scalar_one())


def read_since(conn: Connection, source_id: int) -> datetime | None:
    """Where the source's earliest successful run began to read: what lies before it was
    never read, so an operation found there is news, not one listed late."""
    ok = (SyncRun.source_id == source_id) & (SyncRun.outcome == "succeeded")
    return conn.scalar(select(func.min(SyncRun.since)).where(ok))


def close_abandoned_runs(conn: Connection, source_id: int) -> int:
    """Runs of the source left ``running`` by a killed process: the caller holds the
    source's lock, so none of them is alive. They are recorded ``abandoned``."""
    running = update(SyncRun).where(SyncRun.source_id == source_id, SyncRun.outcome == "running")
    return int(conn.execute(running.values(outcome="abandoned", finished_at=now())).rowcount or 0)


def record_run(conn: Connection, run_id: int, **values: Any) -> None:
    """Counts and, at the end, outcome, finished_at and error of a run."""
    conn.execute(update(SyncRun).where(SyncRun.id == run_id).values(**values))


CATALOG_TABLES: dict[str, Any] = {"namespaces": Namespace, "services": Service}
_REFRESHED = ("name", "type", "arn", "resource_owner", "create_date", "last_seen_at", "gone_at",
              "description", "extra")  # fmt: skip


def record_catalog(conn: Connection, source_id: int, kind: str, listed: Sequence[Listed], *,
                   seen_at: datetime, complete: bool) -> None:  # fmt: skip
    """Store one listing of ``kind`` ("namespaces" or "services") as seen at ``seen_at``.

    ``complete``: every page was read, so what it does not show is gone; a listing cut
    short by an error marks nothing gone.
    """
    model = CATALOG_TABLES[kind]
    drop = () if model is Service else ("namespace_id",)  # only a service has a namespace
    rows = [{"source_id": source_id, **{k: v for k, v in asdict(item).items() if k not in drop},
             "first_seen_at": seen_at, "last_seen_at": seen_at, "gone_at": None}
            for item in listed]  # fmt: skip
    if rows:
        stmt = insert(conn, model.__table__)
        refreshed = {name: stmt.excluded[name] for name in _REFRESHED}
        if model is Service:  # a listing not by namespace does not unlearn the link
            refreshed["namespace_id"] = func.coalesce(stmt.excluded.namespace_id,
                                                      Service.namespace_id)  # fmt: skip
        upsert = stmt.on_conflict_do_update(index_elements=["source_id", "id"], set_=refreshed)
        conn.execute(upsert, rows)
    if complete:
        unseen = (model.source_id == source_id, model.last_seen_at < seen_at,
                  model.gone_at.is_(None))  # fmt: skip
        conn.execute(update(model).where(*unseen).values(gone_at=seen_at))


def source_ids(conn: Connection, source: str | None) -> dict[int, str]:
    """The sources to read, id → name; an unknown ``--source`` is bad input."""
    rows = conn.execute(select(Source.id, Source.name)).all()
    names = {row.id: row.name for row in rows}
    if source is None:
        return names
    if not (chosen := {i: n for i, n in names.items() if n == source}):
        known = ", ".join(sorted(names.values())) or "none yet"
        raise UsageError(f"no source named {source!r} in the archive (sources: {known})")
    return chosen


#: Every table that holds a source's rows, in the order they are deleted.
_SOURCE_TABLES = [Base.metadata.tables[t] for t in (
    "operation_events", "operations", "incomplete_operations", "namespaces", "services",
    "sync_state", "sync_runs", "sources")]  # fmt: skip


def source_holdings(archive: Archive, name: str) -> dict[str, int]:
    """What removing the source ``name`` would delete, by table; an unknown name is bad
    input."""
    with archive.reader.connect() as conn:
        (source_id,) = source_ids(conn, name)
        tables = [t for t in _SOURCE_TABLES if t.name in ("operations", "operation_events",
                                                           "sync_runs")]  # fmt: skip
        return {t.name: int(conn.execute(select(func.count()).select_from(t)
                                         .where(t.c.source_id == source_id)).scalar_one())
                for t in tables}  # fmt: skip


def retire_source(archive: Archive, name: str) -> bool:
    """Record that ``name`` is synced no more, keeping all it holds: a run ``retired``,
    which its next sync's run (should it come back) follows; False if it was already.
    Under the source's lock, so never beside a running sync; an unknown name is bad input."""
    with archive.reader.connect() as conn:
        (source_id,) = source_ids(conn, name)  # before the lock: no lock file for a typo
    with archive.lock(name), archive.writer.begin() as conn:
        if retired(next(iter(latest_runs(conn, source_id)), None)):
            return False
        record_run(conn, start_run(conn, source_id, since=None, until=None), outcome="retired",
                   finished_at=now())  # fmt: skip
    return True


def record_refused(location: str, name: str, error: str) -> None:
    """A known source's run that failed before its first call (an expired SSO session),
    recorded: ``status --check`` and the metrics tell it tonight, not a day later. None
    for a new archive or source, beside a run at work, or on an error of its own."""
    with suppress(Exception), Archive.open(location) as archive:  # the first error is told
        with archive.reader.connect() as conn:
            if (source_id := find_source(conn, name)) is None:
                return
        with archive.lock(name), archive.writer.begin() as conn:
            record_run(conn, start_run(conn, source_id, since=None, until=None),
                       outcome="failed", finished_at=now(), error=error)  # fmt: skip


def retired(latest_run: Any) -> bool:
    """Whether a source whose latest run is ``latest_run`` is retired: watched no more."""
    return latest_run is not None and latest_run.outcome == "retired"


def drop_source(archive: Archive, name: str) -> dict[str, int]:
    """Delete the source ``name`` and all it holds, and its lock file; an unknown name
    is bad input."""
    with archive.reader.connect() as conn:
        (source_id,) = source_ids(conn, name)
    removed = {}
    with archive.lock(name, last=True), archive.writer.begin() as conn:
        for t in _SOURCE_TABLES:  # children first: events name runs, every table the source
            key = t.c.id if t.name == "sources" else t.c.source_id
            removed[t.name] = int(conn.execute(delete(t).where(key == source_id)).rowcount or 0)
    return removed
