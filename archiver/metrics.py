"""`sync --metrics-file`: a Prometheus textfile-collector file, written after every run.

Why a file: node_exporter's textfile collector is how cron jobs report to Prometheus,
and an alert on ``archiver_sync_last_success_timestamp_seconds`` notices a nightly job
that silently stopped. The file is written by the official client's
``write_to_textfile`` (atomic: a temporary file renamed into place), after every run,
success or failure, from what the archive recorded, so a failed run is described as
well as a good one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archiver.errors import UsageError

if TYPE_CHECKING:  # the sync checks the path before SQLAlchemy loads (``head_start``)
    from archiver.archive import Archive

#: sync_runs columns exported as counters of the source's latest run.
_COUNTS = ("listed", "inserted", "updated", "unchanged", "list_calls", "get_calls", "vanished")


def check_path(path: Path) -> None:
    """Refuse a metrics file that could not be written, before any run (exit 2)."""
    if not os.access(path.parent or ".", os.W_OK):
        raise UsageError(f"--metrics-file {path}: its directory is not writable")


def write(path: str, archive: Archive, sources: list[str], *, retries: dict[str, int]) -> None:
    """Write the metrics of ``sources`` (their latest run, last success, watermark)."""
    from archiver import store

    try:
        from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
    except ModuleNotFoundError:
        raise UsageError(
            "--metrics-file needs the Prometheus client: pip install 'cloudmap-archiver[metrics]'"
        ) from None
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, *labels: str) -> Any:
        return Gauge(f"archiver_sync_{name}", doc, ["source", *labels], registry=registry)

    success = gauge("last_success_timestamp_seconds", "End of the last successful sync.")
    last = gauge("last_run_timestamp_seconds", "End (or start, if unfinished) of the last run.")
    outcome = gauge("last_run_outcome", "1 for the last run's outcome.", "outcome")
    duration = gauge("last_run_duration_seconds", "How long the last run took.")
    watermark = gauge("watermark_timestamp_seconds", "The archive is complete up to here.")
    counts = {c: gauge(f"last_run_{c}", f"The last run's {c.replace('_', ' ')}.") for c in _COUNTS}
    retried = gauge("last_run_retries", "Calls botocore retried in the last run.")
    with archive.reader.connect() as conn:
        for name in sources:
            sid = store.find_source(conn, name)
            if sid is None:
                continue  # the run failed before the source existed
            r = store.latest_run(conn, sid)
            ok = store.last_success(conn, sid)
            mark = store.watermark(conn, sid)
            if ok is not None:
                success.labels(name).set(ok.timestamp())
            if mark is not None:
                watermark.labels(name).set(mark.timestamp())
            if r is None:
                continue
            ended = r.finished_at or r.started_at
            last.labels(name).set(ended.timestamp())
            outcome.labels(name, r.outcome).set(1)
            duration.labels(name).set((ended - r.started_at).total_seconds())
            for column, metric in counts.items():
                metric.labels(name).set(getattr(r, column) or 0)
            if name in retries:
                retried.labels(name).set(retries[name])
    write_to_textfile(path, registry)
