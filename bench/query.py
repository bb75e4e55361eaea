"""Query benchmark: 20 filter sets over a 1,000,000-operation archive.

Inputs: a synthetic archive (50 namespaces, 2,000 services, 93% SUCCESS, 300 days),
built once under bench/data and ANALYZEd. Measured: each filter set through
``archiver.query.run`` (every matching row streamed), median and p95 of repeated
runs, and SQLite's EXPLAIN QUERY PLAN. Baseline: load every row and keep those
``Filters.matches`` accepts, in Python — the load is timed once and added to each
set's filtering time. Each side runs in its own process, whose peak RSS is reported. Targets (issue 7): every selective set (≤ 1,000 rows) has a
median ≤ 50 ms, is ≥ 100× faster than the baseline, and its plan has no table scan.

    python bench/query.py [--quick]
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    T0_MS,
    build_archive,
    child_args,
    median,
    percentile,
    result_name,
    run_child,
    save,
    size_from_args,
)

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


def plan_of(path: Path, sql: str, params: object) -> list[str]:
    """SQLite's plan of a statement as it was sent, with its own parameters."""
    conn = sqlite3.connect(path)
    try:
        return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
    finally:
        conn.close()


def ours(path: str, reps: int) -> dict[str, dict]:
    """archiver's side, in its own process: every set through ``query.run``, timed."""
    from sqlalchemy import event

    from archiver.filters import Filters, parse
    from archiver.read import query
    from archiver.store.archive import Archive

    archive = Archive.open(path)
    sent: list[tuple[str, object]] = []  # the statements query.run sends, as sent
    event.listen(archive.reader, "before_cursor_execute",
                 lambda *a: sent.append(a[2:4]) if "FROM operations" in a[2] else None)  # fmt: skip
    answer = {}
    for name, args_ in filter_sets().items():
        fs = parse(args_) if args_ else Filters()
        times: list[float] = []
        rows = 0
        for _ in range(reps):
            t = time.perf_counter()
            rows = sum(1 for _ in query.run(archive, query.Selection(fs)))
            times.append(time.perf_counter() - t)
            if len(times) >= 3 and sum(times) > 5:  # large results: three runs are enough
                break
        answer[name] = {"rows": rows, "times": times, "plan": plan_of(Path(path), *sent[-1])}
    archive.close()
    return answer


def baseline(path: str) -> dict[str, dict]:
    """The baseline, in its own process: load every row once, filter with ``matches``."""
    from archiver.filters import Filters, parse
    from archiver.records import OperationRecord
    from archiver.timeutil import parse_iso

    t = time.perf_counter()
    conn = sqlite3.connect(path)
    everything = [
        OperationRecord(id=r[0], type=r[1], status=r[2], create_date=parse_iso(r[3]),
                        update_date=parse_iso(r[4]), namespace_id=r[5], service_id=r[6])
        for r in conn.execute("SELECT id, type, status, create_date, update_date, namespace_id, "
                              "service_id FROM operations")
    ]  # fmt: skip
    conn.close()
    load = time.perf_counter() - t
    answer = {"load_seconds": load, "sets": {}}
    for name, args_ in filter_sets().items():
        fs = parse(args_) if args_ else Filters()
        t = time.perf_counter()
        rows = sum(1 for op in everything if fs.matches(op))
        answer["sets"][name] = {"rows": rows, "seconds": load + time.perf_counter() - t}
    return answer


def main() -> None:
    side = child_args()
    if side:
        kind, path, *rest = side
        answer = ours(path, int(rest[0])) if kind == "ours" else baseline(path)
        Path(rest[-1]).write_text(json.dumps(answer))
        return
    n, quick = size_from_args(__doc__, 100_000, 1_000_000)
    path = str(build_archive(n))
    our_run, mine = run_child(__file__, "ours", path, str(5 if quick else 9))
    base_run, theirs = run_child(__file__, "baseline", path)

    results = []
    for name, got in mine.items():
        times, plan = got["times"], got["plan"]
        expected = theirs["sets"][name]
        assert expected["rows"] == got["rows"], (name, expected["rows"], got["rows"])
        scan = any(p.startswith("SCAN operations") for p in plan)
        med = median(times)
        results.append({
            "filter_set": name, "rows": got["rows"], "median_ms": round(med * 1000, 2),
            "p95_ms": round(percentile(times, 95) * 1000, 2),
            "baseline_ms": round(expected["seconds"] * 1000, 1),
            "speedup": round(expected["seconds"] / med, 1),
            "selective": got["rows"] <= 1000, "table_scan": scan, "plan": plan,
        })  # fmt: skip
        print(f"{name:38} {got['rows']:>8} rows  median {med * 1000:9.2f} ms  p95 "
              f"{percentile(times, 95) * 1000:9.2f} ms  {expected['seconds'] / med:8.1f}x  "
              f"{'SCAN' if scan else 'index'}  {' | '.join(plan)}")  # fmt: skip
    selective = [r for r in results if r["selective"]]
    summary = {
        "operations": n,
        "baseline_load_seconds": round(theirs["load_seconds"], 2),
        "peak_rss_mb": {"archiver": our_run["peak_rss_mb"], "baseline": base_run["peak_rss_mb"]},
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
    save(result_name("query", quick), summary)


if __name__ == "__main__":
    main()
