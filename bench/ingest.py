"""Ingest benchmark: storing fetched operations through store.py vs raw sqlite3 inserts.

Inputs: 1,000,000 synthetic operations as the sync holds them after GetOperation
(OperationRecord, datetimes), written in transactions of 100 — one ListOperations
page, as the sync commits. Baseline, same run, same transaction size: the sqlite3
module's executemany of the same rows, pre-rendered as the archive's text, into the
same migrated schema (same indexes); once for operations alone and once together
with their events, as store.py writes both. Target (issue 7): store.py reaches
≥ 50% of the raw throughput.

    python bench/ingest.py [--quick]
"""

from __future__ import annotations

import gc
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import save, size_from_args, synthetic_rows

PAGE = 100


def main() -> None:
    n, quick = size_from_args(__doc__, 100_000, 1_000_000)

    from archiver import db as archive_db
    from archiver import store
    from archiver.records import OperationRecord
    from archiver.timeutil import parse_iso

    rows = synthetic_rows(n)
    records = [
        OperationRecord(id=r[1], type=r[2], status=r[3], error_code=r[4], error_message=r[5],
                        create_date=parse_iso(r[6]), update_date=parse_iso(r[7]),
                        namespace_id=r[8], service_id=r[9], instance_id=r[10], owner_account=r[11])
        for r in rows
    ]  # fmt: skip
    seen = parse_iso(rows[0][12])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        # archiver: store.upsert_operations, one transaction per page
        ours = str(Path(tmp) / "ours.db")
        archive_db.upgrade(ours)
        engine = archive_db.open_archive(ours, write=True)
        with engine.begin() as conn:
            sid = store.ensure_source(conn, "bench")
        gc.collect()
        t = time.perf_counter()
        for i in range(0, n, PAGE):
            with engine.begin() as conn:
                store.upsert_operations(conn, sid, records[i : i + PAGE], seen_at=seen, run_id=None)
        results["archiver_store"] = time.perf_counter() - t
        engine.dispose()

        for label, with_events in (("raw_operations", False), ("raw_operations_and_events", True)):
            path = Path(tmp) / f"{label}.db"
            archive_db.upgrade(str(path))
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "INSERT INTO sources (id, name, created_at) VALUES (1, 'bench', '2026-01-01T00:00:00.000Z')"
            )
            gc.collect()
            t = time.perf_counter()
            for i in range(0, n, PAGE):
                page = rows[i : i + PAGE]
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT INTO operations VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", page
                )
                if with_events:
                    conn.executemany(
                        "INSERT INTO operation_events (source_id, operation_id, status, update_date, "
                        "observed_at, sync_run_id) VALUES (1, ?, ?, ?, ?, NULL)",
                        [(r[1], r[3], r[7], r[12]) for r in page],
                    )
                conn.execute("COMMIT")
            results[label] = time.perf_counter() - t
            conn.close()
    rate = {k: round(n / v) for k, v in results.items()}
    summary = {
        "operations": n,
        "transaction_rows": PAGE,
        "seconds": {k: round(v, 2) for k, v in results.items()},
        "rows_per_second": rate,
        "share_of_raw_same_work": round(
            rate["archiver_store"] / rate["raw_operations_and_events"], 3
        ),
        "share_of_raw_operations_only": round(rate["archiver_store"] / rate["raw_operations"], 3),
    }
    summary["targets_met"] = summary["share_of_raw_same_work"] >= 0.5
    print(summary)
    save("ingest" + ("_quick" if quick else ""), summary)


if __name__ == "__main__":
    main()
