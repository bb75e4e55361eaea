"""`instances` benchmark: who was registered at a moment, on a 1,000,000-operation archive.

Inputs: the query benchmark's synthetic archive (bench/data, 2,000 services), brought
to the current schema. Measured: ``archiver.read.query.instances`` for the three
busiest services at three moments each (a third of the span, two thirds, the end),
median of repeated runs, each answer checked against a baseline that loads the
service's (de)registrations and applies the rule in Python. Target (issue 32): every
answer's median ≤ 50 ms, and it reads indexes only (tests/test_instances.py holds
the plan).

    python bench/instances.py [--quick]
"""

from __future__ import annotations

import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import build_archive, median, result_name, save, size_from_args


def baseline(path: str, service: str, at: datetime) -> tuple[set[str], float]:
    """The rule in Python over the service's successful (de)registrations."""
    started = time.perf_counter()
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT instance_id, type, update_date, create_date, id FROM operations "
            "WHERE service_id = ? AND status = 'SUCCESS' AND instance_id IS NOT NULL AND "
            "type IN ('REGISTER_INSTANCE', 'DEREGISTER_INSTANCE')",
            (service,),
        ).fetchall()
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    last: dict[str, str] = {}
    for instance, kind, *_ in sorted((r for r in rows if r[2] <= stamp), key=lambda r: r[2:]):
        last[instance] = kind
    return {i for i, k in last.items() if k == "REGISTER_INSTANCE"}, time.perf_counter() - started


def main() -> None:
    from archiver.read import query
    from archiver.store.archive import Archive

    n, quick = size_from_args(__doc__, 100_000, 1_000_000)
    path = str(build_archive(n))
    with sqlite3.connect(path) as conn:
        busiest = [r[0] for r in conn.execute(
            "SELECT service_id FROM operations WHERE service_id IS NOT NULL GROUP BY 1 "
            "ORDER BY count(*) DESC, 1 LIMIT 3")]  # fmt: skip
        span = "SELECT min(update_date), max(update_date) FROM operations"
        lo, hi = conn.execute(span).fetchone()
    first, last = (datetime.fromisoformat(v.replace("Z", "+00:00")) for v in (lo, hi))
    results = []
    with Archive(path) as archive:
        archive.upgrade()
        for service in busiest:
            for at in (first + (last - first) / 3, first + 2 * (last - first) / 3, last):
                times = []
                for _ in range(5 if quick else 9):
                    started = time.perf_counter()
                    got = query.instances(archive, service=service, at=at.astimezone(UTC))
                    times.append(time.perf_counter() - started)
                want, base = baseline(path, service, at)
                assert {r["InstanceId"] for r in got.rows} == want, (service, at)
                med = median(times)
                results.append({"service": service, "at": at.isoformat(), "rows": len(want),
                                "median_ms": round(med * 1000, 2),
                                "baseline_ms": round(base * 1000, 2)})  # fmt: skip
                print(f"{service} {at:%Y-%m-%d} {len(want):>5} instances  median "
                      f"{med * 1000:7.2f} ms  baseline {base * 1000:7.2f} ms")  # fmt: skip
    worst = max(r["median_ms"] for r in results)
    summary = {"operations": n, "worst_median_ms": worst, "target_ms": 50, "met": worst <= 50}
    print(summary)
    save(result_name("instances", quick), {"summary": summary, "answers": results})


if __name__ == "__main__":
    main()
