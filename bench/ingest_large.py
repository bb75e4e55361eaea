"""Ingest into a large archive: 10,000 new operations stored into the 1M archive.

Inputs: a copy of the query benchmark's 1,000,000-operation archive for each side,
and 10,000 new operations of the last day (OperationRecord, datetimes), stored by
store.py with their events, in pages of 100. Measured: the writer as archiver
configures it, with the pages stored as the sync stores them, a batch of
``sync.COMMIT_ROWS`` operations per transaction. Baseline, same run: the writer as
it ran before, one transaction per page, and the WAL checkpoint interval (1,000
pages) and page cache (2 MB) at SQLite's defaults; the statements store.py now builds once per dialect cannot
be undone from here, so their gain shows against the earlier absolute figure
(bench/README.md). Each side runs in its own process on its own copy of the
archive, three times each, alternating, and its best run is kept; only the
transactions are timed. Target (issue 17): ≥ 2× the rows/s of
before, peak RSS < 200 MB.

    python bench/ingest_large.py [--quick]
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    SPAN_MS,
    T0_MS,
    build_archive,
    child_args,
    result_name,
    run_child,
    save,
    size_from_args,
    synthetic_rows,
)

NEW = 10_000
PAGE = 100
SIDES = ("archiver_writer", "before")


def store_new(path: str, defaults: bool) -> float:
    from archiver.records import OperationRecord
    from archiver.store import write as store
    from archiver.store.archive import Archive
    from archiver.sync.run import COMMIT_ROWS
    from archiver.timeutil import parse_iso

    archive = Archive.open(path)
    engine = archive.writer
    if defaults:  # every connection the writer opens: SQLite's own checkpoint and cache
        from sqlalchemy import event

        @event.listens_for(engine, "connect")
        def _defaults(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.execute("PRAGMA wal_autocheckpoint = 1000")
            dbapi_conn.execute("PRAGMA cache_size = -2000")

        engine.dispose()
    rows = synthetic_rows(NEW, seed=99)
    gc.collect()
    spent = 0.0
    n = 0
    per_transaction = PAGE if defaults else COMMIT_ROWS  # before: a page per transaction
    while batch := list(itertools.islice(rows, per_transaction)):
        pages = [[_record(r, OperationRecord, parse_iso) for r in batch[i : i + PAGE]]
                 for i in range(0, len(batch), PAGE)]  # fmt: skip
        t = time.perf_counter()
        with engine.begin() as conn:
            for records in pages:  # as the sync stores a batch: page by page, one transaction
                store.upsert_operations(conn, 1, records, seen_at=records[0].update_date,
                                        run_id=None)  # fmt: skip
        spent += time.perf_counter() - t
        n += len(batch)
    archive.close()
    assert n == NEW
    return spent


def _record(r, OperationRecord, parse_iso):  # type: ignore[no-untyped-def]
    """A synthetic row as a new operation of the archive's last day."""
    created = _recent(parse_iso(r[6]))
    return OperationRecord(id="new-" + r[1], type=r[2], status=r[3], error_code=r[4],
                           error_message=r[5], create_date=created,
                           update_date=created + (parse_iso(r[7]) - parse_iso(r[6])),
                           namespace_id=r[8], service_id=r[9], instance_id=r[10],
                           owner_account=r[11])  # fmt: skip


def _recent(when):  # type: ignore[no-untyped-def]
    """A synthetic time moved into the archive's last day."""
    from datetime import UTC, datetime, timedelta

    start = datetime.fromtimestamp((T0_MS + SPAN_MS) / 1000, UTC) - timedelta(days=1)
    offset = (when - datetime.fromtimestamp(T0_MS / 1000, UTC)) % timedelta(days=1)
    return start + offset


def main() -> None:
    side = child_args()
    if side:
        kind, src, out = side
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "archive.db")
            shutil.copyfile(src, path)
            os.sync()  # the copy's 500 MB of writeback is not the ingest's to pay for
            spent = store_new(path, defaults=kind == "before")
        Path(out).write_text(json.dumps({"seconds": spent}))
        return
    n, quick = size_from_args(__doc__, 100_000, 1_000_000)
    src = build_archive(n)
    seconds: dict[str, float] = {}
    rss: dict[str, float] = {}
    for _ in range(3):  # the sides alternate, so both meet the same noise; best of 3 each
        for kind in SIDES:
            measured, answer = run_child(__file__, kind, str(src))
            if answer["seconds"] < seconds.get(kind, float("inf")):
                seconds[kind], rss[kind] = answer["seconds"], measured["peak_rss_mb"]
    rate = {k: round(NEW / v) for k, v in seconds.items()}
    summary = {
        "archive_operations": n,
        "new_operations": NEW,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "rows_per_second": rate,
        "peak_rss_mb": rss,
        "speedup": round(rate["archiver_writer"] / rate["before"], 2),
    }
    summary["targets_met"] = summary["speedup"] >= 2 and rss["archiver_writer"] < 200
    print(summary)
    save(result_name("ingest_large", quick), summary)


if __name__ == "__main__":
    main()
