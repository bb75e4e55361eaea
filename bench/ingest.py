"""Ingest benchmark: storing fetched operations through store.py vs raw sqlite3 inserts.

Inputs: 1,000,000 synthetic operations as the sync holds them after GetOperation
(OperationRecord, datetimes), written in transactions of 100 — one ListOperations
page, as the sync committed before it stored pages in batches (ingest_large.py measures
the batches); both sides use the same size, so the ratio is store.py's own. Baseline, same run, same transaction size: the sqlite3
module's executemany of the same rows, pre-rendered as the archive's text, into the
same migrated schema (same indexes); once for operations alone and once together
with their events, as store.py writes both. Each side runs in its own process and
reads the rows from a generator, page by page; only the transactions are timed, and
the peak RSS reported is the process's. Target (issue 7): store.py reaches ≥ 50% of
the raw throughput.

    python bench/ingest.py [--quick]
"""

from __future__ import annotations

import gc
import itertools
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ROW_COLUMNS,
    ROW_PLACEHOLDERS,
    child_args,
    result_name,
    run_child,
    save,
    size_from_args,
    synthetic_rows,
)

PAGE = 100
SIDES = ("archiver_store", "raw_operations", "raw_operations_and_events")


def pages(n: int) -> Iterator[list[tuple[Any, ...]]]:
    rows = synthetic_rows(n)
    while page := list(itertools.islice(rows, PAGE)):
        yield page


def archiver_store(path: str, n: int) -> float:
    """store.upsert_operations, one transaction per page, as the sync commits."""
    from archiver.records import OperationRecord
    from archiver.store import write as store
    from archiver.store.archive import Archive
    from archiver.timeutil import parse_iso

    Archive(path).upgrade()
    archive = Archive.open(path)
    engine = archive.writer
    with engine.begin() as conn:
        sid = store.ensure_source(conn, "bench")
    gc.collect()
    spent = 0.0
    for page in pages(n):
        records = [
            OperationRecord(id=r[1], type=r[2], status=r[3], error_code=r[4], error_message=r[5],
                            create_date=parse_iso(r[6]), update_date=parse_iso(r[7]),
                            namespace_id=r[8], service_id=r[9], instance_id=r[10],
                            owner_account=r[11])
            for r in page
        ]  # fmt: skip
        seen = parse_iso(page[0][12])
        t = time.perf_counter()
        with engine.begin() as conn:
            store.upsert_operations(conn, sid, records, seen_at=seen, run_id=None)
        spent += time.perf_counter() - t
    archive.close()
    return spent


def raw(path: str, n: int, with_events: bool) -> float:
    """The sqlite3 module's executemany of the same rows, already rendered as text."""
    from archiver.store.archive import Archive

    Archive(path).upgrade()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "INSERT INTO sources (id, name, created_at) VALUES (1, 'bench', '2026-01-01T00:00:00.000Z')"
    )
    gc.collect()
    spent = 0.0
    for page in pages(n):
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(f"INSERT INTO operations ({ROW_COLUMNS}) VALUES "
                         f"({ROW_PLACEHOLDERS})", page)  # fmt: skip
        if with_events:
            conn.executemany(
                "INSERT INTO operation_events (source_id, operation_id, status, update_date, "
                "observed_at, sync_run_id) VALUES (1, ?, ?, ?, ?, NULL)",
                [(r[1], r[3], r[7], r[12]) for r in page],
            )
        conn.execute("COMMIT")
        spent += time.perf_counter() - t
    conn.close()
    return spent


def main() -> None:
    side = child_args()
    if side:
        kind, n, out = side[0], int(side[1]), side[2]
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / f"{kind}.db")
            if kind == "archiver_store":
                spent = archiver_store(path, n)
            else:
                spent = raw(path, n, with_events=kind == "raw_operations_and_events")
        Path(out).write_text(json.dumps({"seconds": spent}))
        return
    n, quick = size_from_args(__doc__, 100_000, 1_000_000)
    seconds, rss = {}, {}
    for kind in SIDES:
        measured, answer = run_child(__file__, kind, str(n))
        seconds[kind], rss[kind] = answer["seconds"], measured["peak_rss_mb"]
    rate = {k: round(n / v) for k, v in seconds.items()}
    summary = {
        "operations": n,
        "transaction_rows": PAGE,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "rows_per_second": rate,
        "peak_rss_mb": rss,
        "share_of_raw_same_work": round(
            rate["archiver_store"] / rate["raw_operations_and_events"], 3
        ),
        "share_of_raw_operations_only": round(rate["archiver_store"] / rate["raw_operations"], 3),
    }
    summary["targets_met"] = summary["share_of_raw_same_work"] >= 0.5
    print(summary)
    save(result_name("ingest", quick), summary)


if __name__ == "__main__":
    main()
