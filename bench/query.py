"""Query benchmark: 20 filter sets over a 1,000,000-operation archive.

Inputs: a synthetic archive (50 namespaces, 2,000 services, 93% SUCCESS, 300 days),
built once under bench/data and ANALYZEd. Measured: each filter set through
``archiver.query.run`` (every matching row streamed), median and p95 of repeated
runs, and SQLite's EXPLAIN QUERY PLAN. Baseline: load every row and keep those
``Filters.matches`` accepts, in Python — the load is timed once and added to each
set's filtering time. Targets (issue 7): every selective set (≤ 1,000 rows) has a
median ≤ 50 ms, is ≥ 100× faster than the baseline, and its plan has no table scan.

    python bench/query.py [--quick]
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DATA, T0_MS, build_archive, median, percentile, save, size_from_args

DAY = 86_400_000


def filter_sets() -> dict[str, list[str]]:
    d = T0_MS + 150 * DAY
    between = lambda a, b: f"Name=UPDATE_DATE,Condition=BETWEEN,Values={a},{b}"  # noqa: E731
    return {
        "NAMESPACE_ID": ["Name=NAMESPACE_ID,Values=ns-0000000000000007"],
        "SERVICE_ID": ["Name=SERVICE_ID,Values=srv-0000000000000042"],
        "STATUS=FAIL": ["Name=STATUS,Values=FAIL"],
        "STATUS=SUBMITTED": ["Name=STATUS,Values=SUBMITTED"],
        "STATUS IN PENDING,SUBMITTED": ["Name=STATUS,Condition=IN,Values=PENDING,SUBMITTED"],
        "TYPE=DELETE_NAMESPACE": ["Name=TYPE,Values=DELETE_NAMESPACE"],
        "TYPE IN 2 namespace types": [
            "Name=TYPE,Condition=IN,Values=CREATE_NAMESPACE,DELETE_NAMESPACE"
        ],
        "UPDATE_DATE 1 h": [between(d, d + 3_600_000)],
        "UPDATE_DATE 6 h": [between(d, d + 6 * 3_600_000)],
        "UPDATE_DATE 1 d": [between(d, d + DAY)],
        "UPDATE_DATE 30 d": [between(d, d + 30 * DAY)],
        "STATUS=FAIL + 6 h": ["Name=STATUS,Values=FAIL", between(d, d + 6 * 3_600_000)],
        "STATUS=FAIL + 7 d": ["Name=STATUS,Values=FAIL", between(d, d + 7 * DAY)],
        "STATUS IN FAIL,PENDING + 1 d": [
            "Name=STATUS,Condition=IN,Values=FAIL,PENDING",
            between(d, d + DAY),
        ],
        "SERVICE_ID + 30 d": [
            "Name=SERVICE_ID,Values=srv-0000000000000042",
            between(d, d + 30 * DAY),
        ],
        "NAMESPACE_ID + 7 d": [
            "Name=NAMESPACE_ID,Values=ns-0000000000000007",
            between(d, d + 7 * DAY),
        ],
        "TYPE=UPDATE_SERVICE + 1 d": ["Name=TYPE,Values=UPDATE_SERVICE", between(d, d + DAY)],
        "SERVICE_ID + STATUS=FAIL": [
            "Name=SERVICE_ID,Values=srv-0000000000000042",
            "Name=STATUS,Values=FAIL",
        ],
        "NAMESPACE_ID + TYPE=DELETE_NAMESPACE": [
            "Name=NAMESPACE_ID,Values=ns-0000000000000007",
            "Name=TYPE,Values=DELETE_NAMESPACE",
        ],
        "everything (no filter)": [],
    }


def plan_of(path: Path, stmt) -> list[str]:  # type: ignore[no-untyped-def]
    from sqlalchemy.dialects import sqlite

    sql = str(stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    conn = sqlite3.connect(path)
    try:
        return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
    finally:
        conn.close()


def main() -> None:
    n, quick = size_from_args(__doc__, 100_000, 1_000_000)
    reps = 5 if quick else 9

    from archiver import db as archive_db
    from archiver import query
    from archiver.filters import Filters, parse
    from archiver.records import OperationRecord
    from archiver.timeutil import parse_iso

    path = build_archive(DATA / f"query-{n}.db", n)
    engine = archive_db.open_archive(str(path))

    t = time.perf_counter()
    conn = sqlite3.connect(path)
    everything = [
        OperationRecord(id=r[0], type=r[1], status=r[2], create_date=parse_iso(r[3]),
                        update_date=parse_iso(r[4]), namespace_id=r[5], service_id=r[6])
        for r in conn.execute("SELECT id, type, status, create_date, update_date, namespace_id, "
                              "service_id FROM operations")
    ]  # fmt: skip
    conn.close()
    load_seconds = time.perf_counter() - t

    results = []
    for name, args_ in filter_sets().items():
        fs = parse(args_) if args_ else Filters()
        times = []
        rows = 0
        for _ in range(reps):
            t = time.perf_counter()
            rows = sum(1 for _ in query.run(engine, fs))
            times.append(time.perf_counter() - t)
            if len(times) >= 3 and sum(times) > 5:  # large results: three runs are enough
                break
        t = time.perf_counter()
        expected = sum(1 for op in everything if fs.matches(op))
        baseline = load_seconds + (time.perf_counter() - t)
        assert expected == rows, (name, expected, rows)
        plan = plan_of(path, query.select_operations(fs))
        scan = any(p.startswith("SCAN operations") for p in plan)
        med = median(times)
        results.append({
            "filter_set": name, "rows": rows, "median_ms": round(med * 1000, 2),
            "p95_ms": round(percentile(times, 95) * 1000, 2),
            "baseline_ms": round(baseline * 1000, 1), "speedup": round(baseline / med, 1),
            "selective": rows <= 1000, "table_scan": scan, "plan": plan,
        })  # fmt: skip
        print(f"{name:38} {rows:>8} rows  median {med * 1000:9.2f} ms  p95 "
              f"{percentile(times, 95) * 1000:9.2f} ms  {baseline / med:8.1f}x  "
              f"{'SCAN' if scan else 'index'}  {' | '.join(plan)}")  # fmt: skip
    engine.dispose()
    selective = [r for r in results if r["selective"]]
    summary = {
        "operations": n,
        "baseline_load_seconds": round(load_seconds, 2),
        "selective_sets": len(selective),
        "worst_selective_median_ms": max(r["median_ms"] for r in selective),
        "min_selective_speedup": min(r["speedup"] for r in selective),
        "selective_table_scans": sum(r["table_scan"] for r in selective),
        "targets_met": all(
            r["median_ms"] <= 50 and r["speedup"] >= 100 and not r["table_scan"] for r in selective
        ),
        "sets": results,
    }
    print({k: v for k, v in summary.items() if k != "sets"})
    save("query" + ("_quick" if quick else ""), summary)


if __name__ == "__main__":
    main()
