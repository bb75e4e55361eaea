"""What `archiver status` reports: per source, freshness, last runs, and totals."""

from collections.abc import Sequence
from datetime import datetime, timedelta
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from archiver import guards
from archiver.errors import UsageError
from archiver.store import write as store
from archiver.store.archive import Archive
from archiver.store.models import CALL_COLUMNS, Operation, Source, SyncRun, SyncState
from archiver.timeutil import iso, parse_iso, parse_span, span_text
from archiver.timeutil import now as utc_now


def summarize(archive: Archive, *, source: str | None = None, last_runs: int = 3) -> dict[str, Any]:
    """A JSON-ready summary; ``sources`` is empty on a new archive."""
    with archive.reader.connect() as conn:
        q = select(Source).order_by(Source.name)
        if source is not None:
            store.source_ids(conn, source)  # an unknown --source is bad input, not "empty"
            q = q.where(Source.name == source)
        sources = conn.execute(q).all()
        out: list[dict[str, Any]] = []
        for src in sources:
            state = conn.execute(select(SyncState).where(SyncState.source_id == src.id)).first()
            runs = store.latest_runs(conn, src.id, last_runs)
            by_status, by_type = (dict(conn.execute(
                select(column, func.count()).where(Operation.source_id == src.id)
                .group_by(column).order_by(column)).all())
                for column in (Operation.status, Operation.type))  # fmt: skip
            holder = _live_holder(state.lock_holder if state else None)
            out.append(
                {
                    "source": src.name,
                    "region": src.region,
                    "endpoint_url": src.endpoint_url,
                    "update_date_unit": src.update_date_unit,
                    "watermark": _iso(state.watermark if state else None),
                    "last_success": _iso(store.last_success(conn, src.id)),
                    "lock_holder": holder,
                    "retired": store.retired(runs[0] if runs else None),  # sources retire
                    "operations": sum(by_status.values()),
                    **store.incomplete_counts(conn, src.id),
                    "by_status": by_status,
                    "by_type": by_type,
                    "last_runs": [_run(r, holder_alive=holder is not None) for r in runs],
                }
            )
    return {"sources": out}


def _live_holder(holder: str | None) -> str | None:
    """The recorded holder, unless it is a process of this host that no longer exists.

    The lock itself dies with its holder; only this record can outlive a SIGKILL.
    """
    if not holder:
        return None
    import socket

    host, _, pid = holder.rpartition(":")
    gone = host == socket.gethostname() and pid.isdigit() and not guards.pid_alive(int(pid))
    return None if gone else holder


def _iso(value: Any) -> str | None:
    return iso(value) if value is not None else None


def _run(r: Any, *, holder_alive: bool) -> dict[str, Any]:
    # A run still "running" whose holder is gone was killed (SIGKILL, OOM, reboot): it is
    # abandoned, and the next sync of the source records it so.
    abandoned = r.outcome == "running" and not holder_alive
    counts = ("list_calls", "get_calls", *_COUNTS)
    return {"id": r.id, "started_at": _iso(r.started_at), "finished_at": _iso(r.finished_at),
            "outcome": "abandoned" if abandoned else r.outcome,
            **{c: getattr(r, c) for c in counts}, "error": r.error}  # fmt: skip


def to_text(summary: dict[str, Any]) -> str:
    if not summary["sources"]:
        return "archive is empty: no source has been synced yet (run `archiver sync`)"
    lines: list[str] = []
    for s in summary["sources"]:
        unit = s["update_date_unit"] or "not checked yet"
        retired = "  retired: not synced any more" if s["retired"] else ""
        lines.append(f"source {s['source']}  (region {s['region'] or '-'}, UPDATE_DATE unit "
                     f"{unit}){retired}")  # fmt: skip
        lines.append(f"  watermark   {s['watermark'] or 'none (never completed a window)'}")
        if s["lock_holder"]:
            lines.append(f"  running     {s['lock_holder']}")
        lines.append(f"  operations  {s['operations']}")
        if s["incomplete"] or s["gone"]:
            lines.append(
                f"  incomplete  {s['incomplete']} listed but not yet found by GetOperation"
                + (f"; {s['gone']} given up on as gone (sync --retry-gone)" if s["gone"] else "")
            )
        if s["unsettled"]:
            lines.append(f"  unsettled   {s['unsettled']} fetched behind their listed Status; "
                         "asked again every run")  # fmt: skip
        for name in ("by_status", "by_type"):
            if counts := ", ".join(f"{k} {v}" for k, v in s[name].items()):
                lines.append(f"  {name[3:]:<11} {counts}")
        for r in s["last_runs"]:
            counts = (f"listed {r['listed']}, new {r['inserted']}, changed {r['updated']}, "
                      + "".join(f"{k} {r[k]}, " for k in ("late", "older") if r[k])  # when any
                      + f"calls: get {r['get_calls']}, list {r['list_calls']}")  # fmt: skip
            lines.append(f"  run {r['id']:<7} {r['started_at']}  {r['outcome']:<11} {counts}")
            if r["error"]:
                lines.append(f"              error: {r['error']}")
    return "\n".join(map(guards.printable, lines))  # server text never moves a cursor


def check_freshness(summary: dict[str, Any], *, max_age: timedelta, now: datetime | None = None,
                    expected: Sequence[str] = ()) -> list[str]:  # fmt: skip
    """One line per source that is stale (no successful sync within ``max_age``) or
    failing (its latest finished run failed, was interrupted or abandoned): what cron
    mails, and what an alert fires on. An archive with no source at all is stale too,
    and so is each ``expected`` (a config's) source it lacks: one whose every sync
    fails before it starts (a profile that is gone) leaves no run to be stale by.
    """
    now = now or utc_now()
    held = {s["source"] for s in summary["sources"]}
    problems = [f"stale: source {n}: configured, never synced" for n in expected if n not in held]
    if not held and not problems:
        return ["stale: the archive has no source; no sync has run"]
    for s in summary["sources"]:
        if s["retired"]:  # `sources retire`: watched no more
            continue
        latest = next((r for r in s["last_runs"] if r["outcome"] != "running"), None)  # finished
        if latest and latest["outcome"] in ("failed", "interrupted", "abandoned"):
            why = f": {latest['error']}" if latest.get("error") else ""
            problems.append(f"failing: source {s['source']}: its latest run "
                            f"({latest['started_at']}) {latest['outcome']}{why}")  # fmt: skip
        ok, mark = s["last_success"], s["watermark"]
        if ok is None:
            problems.append(f"stale: source {s['source']}: no successful sync yet")
        elif now - parse_iso(ok) > max_age:
            problems.append(f"stale: source {s['source']}: last successful sync {ok}, "
                            f"older than {span_text(max_age)}")  # fmt: skip
        elif mark is None or parse_iso(ok) - parse_iso(mark) > max_age:  # read nothing new
            problems.append(f"stale: source {s['source']}: its last successful sync ({ok}) "
                            f"left its watermark at {mark or 'none'}, more than "
                            f"{span_text(max_age)} behind (an --until?)")  # fmt: skip
    return [guards.printable(p) for p in problems]  # one line each, whatever a server said


def fail_rates(archive: Archive, *, window: timedelta, source: str | None = None,
               now: datetime | None = None) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per source: its operations last updated within ``window`` by Status, and the
    share that failed (None when there are none)."""
    since = (now or utc_now()) - window
    stmt = (
        select(Operation.source_id, Operation.status, func.count())
        .where(Operation.update_date >= since)
        .group_by(Operation.source_id, Operation.status)
    )
    out: dict[str, dict[str, Any]] = {}
    with archive.reader.connect() as conn:
        names = store.source_ids(conn, source)
        for name in names.values():
            out[name] = {"operations": 0, "by_status": {}, "failed_ratio": None}
        for sid, status, n in conn.execute(stmt.where(Operation.source_id.in_(names))):
            figures = out[names[sid]]
            figures["by_status"][status] = int(n)
            figures["operations"] += int(n)
    for figures in out.values():
        if figures["operations"]:
            figures["failed_ratio"] = figures["by_status"].get("FAIL", 0) / figures["operations"]
    return out


def check_failures(rates: dict[str, dict[str, Any]], *, max_rate: float, window: timedelta,
                   min_operations: int) -> list[str]:  # fmt: skip
    """One line per source whose operations of the window fail at more than ``max_rate``
    (a source with fewer than ``min_operations`` in the window says nothing)."""
    lines = []
    for name, f in rates.items():
        if f["operations"] >= min_operations and f["failed_ratio"] > max_rate:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(f["by_status"].items()))
            lines.append(f"failing operations: source {name}: {f['failed_ratio']:.0%} of "
                         f"{f['operations']} operations updated in the last {span_text(window)} "
                         f"failed ({counts})")  # fmt: skip
    return [guards.printable(line) for line in lines]


#: sync_runs columns exported as counters of the source's latest run.
_COUNTS = ("listed", "inserted", "updated", "unchanged", "vanished", "late", "older")
#: The gauges by source: name (after ``archiver_``), help, and their other labels.
_GAUGES = (
    ("sync_last_success_timestamp_seconds", "Unix time of the end of the source's last "
     "successful sync."),
    ("sync_last_run_timestamp_seconds", "Unix time of the end (or the start, if unfinished) "
     "of the source's last run."),
    ("sync_last_run_outcome", "1 for the outcome of the source's last run.", "outcome"),
    ("sync_last_run_duration_seconds", "Duration of the source's last run."),
    ("sync_watermark_timestamp_seconds", "Unix time up to which the archive holds the source "
     "completely."),
    ("sync_api_calls", "Number of requests the source's last run sent, by API operation "
     "(retries included).", "operation"),
    ("sync_last_run_retries", "Number of calls botocore retried in the last run."),
    ("operations_incomplete", "Number of the source's listed operations GetOperation has not "
     "found yet (retried every run)."),
    ("operations_gone", "Number of the source's listed operations given up on as gone after "
     "the retry period (kept, incomplete)."),
    ("operations_unsettled", "Number of the source's operations GetOperation answered behind "
     "their listed Status (asked again every run)."),
    ("operations_failed_ratio", "Share of the source's operations updated within the window "
     "that failed (0 when none was).", "window"),
)  # fmt: skip


def metrics_target(path: Path, archive: Archive) -> guards.Target:
    """Where ``--metrics-file`` writes, refused before the sync's first call: a path the
    write guard refuses, or no Prometheus client to write it with (the metrics extra)."""
    if find_spec("prometheus_client") is None:
        raise UsageError("--metrics-file needs the Prometheus client: pip install "
                         "'cloudmap-archiver[metrics]'")  # fmt: skip
    return guards.target(path, flag="--metrics-file", protected=archive.files,
                         owner_of=archive.sqlite_path)  # fmt: skip


def write_metrics(target: guards.Target, archive: Archive, *, retries: dict[str, int]) -> None:
    """Write the metrics of every source of the archive (its latest run, last success,
    watermark): a file shared by runs of several sources keeps each one's series.
    ``retries``: of the sources run now (the archive does not keep them)."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()

    def gauge(name: str, doc: str, *labels: str) -> Any:
        return Gauge(f"archiver_{name}", doc, ["source", *labels], registry=registry)

    g = {name: gauge(name, doc, *labels) for name, doc, *labels in _GAUGES}
    said = {c: SyncRun.__table__.c[c].doc or f"{c} operations" for c in _COUNTS}  # the models'
    counts = {c: gauge(f"sync_last_run_{c}", f"Number of {d[0].lower()}{d[1:]} in the source's "
                       "last run.") for c, d in said.items()}  # fmt: skip
    rates = {span: fail_rates(archive, window=parse_span(span)) for span in ("1h", "24h")}
    size = Gauge("archiver_archive_size_bytes", "Size of the archive in bytes (SQLite: its "
                 "file, -wal and -shm; PostgreSQL: its database).", registry=registry)  # fmt: skip
    size.set(archive.size_bytes())
    with archive.reader.connect() as conn:
        for sid, name in store.source_ids(conn, None).items():
            r = next(iter(store.latest_runs(conn, sid)), None)
            if store.retired(r):  # `sources retire`: no series
                continue
            for span, by_source in rates.items():  # none updated (or a source new since): 0
                ratio = by_source.get(name, {}).get("failed_ratio")
                g["operations_failed_ratio"].labels(name, span).set(ratio or 0)
            for kind, n in store.incomplete_counts(conn, sid).items():
                g[f"operations_{kind}"].labels(name).set(n)
            for gauge_name, at in (("sync_last_success", store.last_success(conn, sid)),
                                   ("sync_watermark", store.watermark(conn, sid))):  # fmt: skip
                if at is not None:
                    g[f"{gauge_name}_timestamp_seconds"].labels(name).set(at.timestamp())
            if name in retries:
                g["sync_last_run_retries"].labels(name).set(retries[name])
            if r is None:
                continue
            ended = r.finished_at or r.started_at
            g["sync_last_run_timestamp_seconds"].labels(name).set(ended.timestamp())
            g["sync_last_run_outcome"].labels(name, r.outcome).set(1)
            took = (ended - r.started_at).total_seconds()
            g["sync_last_run_duration_seconds"].labels(name).set(took)
            for column, metric in counts.items():
                metric.labels(name).set(getattr(r, column) or 0)
            for call, column in CALL_COLUMNS.items():
                g["sync_api_calls"].labels(name, call).set(getattr(r, column) or 0)
    guards.write_file(target, generate_latest(registry))  # atomic: node_exporter never reads half
