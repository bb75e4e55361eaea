"""Sync benchmark: `archiver sync` against a naive sequential client, same emulator.

Inputs: the emulator with 20 ms latency per call (a realistic in-region round trip)
holding 5,000 operations over 90 days (25 of them still pending). Measured in the
same run, each as its own process: the initial `archiver sync` (default options),
and a naive baseline written here — boto3's paginator over ListOperations, one
GetOperation per operation, sequentially, inserting rows one at a time with a
commit each. Both archives must hold the same content. Then 1% of the operations
change (25 new, 25 pending ones finish) and an incremental `archiver sync` runs,
five times, each on a copy of the archive as the initial sync left it.
Reported: wall time, peak RSS, ListOperations pages and GetOperation calls. Each
initial sync runs three times, each into a new archive, and the median is reported
(the baseline, at over two minutes, runs once); the same is done with
``--workers 8``, the fixed number of calls in flight before the sync adapted it.
Also reported: the floor P2 puts under any incremental sync, its ListOperations
pages times the latency, since pages follow each other by NextToken and every pass
pages through all operations, and the incremental sync's time above that floor
(start-up, the unit check, the names' listings, exit); and, measured in the same
run for reference (five runs, each after an incremental one), a bare boto3 client
that lists the same pass and nothing else (import, client, the pages), which is what
any client pays above the floor. Both are medians.
Then a sync that finds nothing new runs seven times, each on a copy of an archive an
incremental sync brought up to date, interleaved with the bare client (medians).
Targets (issues 7, 17 and 28):
initial ≥ 10× faster than the baseline with default options; incremental makes
exactly changed + new GetOperation calls and takes ≤ the floor + 0.6 s; with nothing
new, no GetOperation call and ≤ the bare client + 0.6 s.

    python bench/sync.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import archiver_cmd, result_name, run_measured, save

LATENCY_MS = 20
INCREMENTAL_RUNS = 5  # the incremental sync and the bare client: medians of as many runs
NO_CHANGE_RUNS = 7  # the same for a sync that finds nothing new (#28's guard rail)
NAIVE_TABLE = """CREATE TABLE ops (id TEXT PRIMARY KEY, type TEXT, status TEXT, error_code TEXT,
 error_message TEXT, create_date TEXT, update_date TEXT, namespace_id TEXT, service_id TEXT,
 instance_id TEXT, owner_account TEXT)"""


def naive(url: str, path: str) -> None:
    """The baseline: what a first script against the API would do."""
    import boto3

    from archiver.records import OperationRecord
    from archiver.timeutil import iso

    client = boto3.client("servicediscovery", endpoint_url=url, region_name="us-east-1")
    conn = sqlite3.connect(path)
    conn.execute(NAIVE_TABLE)
    for page in client.get_paginator("list_operations").paginate():
        for summary in page["Operations"]:
            op = OperationRecord.from_api(
                client.get_operation(OperationId=summary["Id"])["Operation"]
            )
            conn.execute("INSERT OR REPLACE INTO ops VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                         (op.id, op.type, op.status, op.error_code, op.error_message,
                          iso(op.create_date), iso(op.update_date), op.namespace_id,
                          op.service_id, op.instance_id, op.owner_account))  # fmt: skip
            conn.commit()
    conn.close()


def bare_listing(url: str) -> None:
    """The reference for the incremental sync: a process that only lists one pass over
    the last day, as the sync's window does (P2: every page, whatever the window)."""
    import time

    import boto3

    client = boto3.client("servicediscovery", endpoint_url=url, region_name="us-east-1")
    end = int(time.time() * 1000)
    window = {"Name": "UPDATE_DATE", "Condition": "BETWEEN",
              "Values": [str(end - 86_400_000), str(end)]}  # fmt: skip
    for _ in client.get_paginator("list_operations").paginate(Filters=[window], MaxResults=100):
        pass


def same_content(archive: str, naive_db: str) -> bool:
    a = sqlite3.connect(archive)
    b = sqlite3.connect(naive_db)
    cols = ("id, type, status, error_code, error_message, create_date, update_date, "
            "namespace_id, service_id, instance_id, owner_account")  # fmt: skip
    left = set(a.execute(f"SELECT {cols} FROM operations"))
    right = set(b.execute(f"SELECT {cols} FROM ops"))
    return left == right


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="1,000 operations")
    ap.add_argument("--naive", nargs=2, metavar=("URL", "DB"), help=argparse.SUPPRESS)
    ap.add_argument("--bare", metavar="URL", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.naive:
        naive(*args.naive)
        return
    if args.bare:
        bare_listing(args.bare)
        return
    n = 1000 if args.quick else 5000

    from archiver.emulator import Emulator

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    with Emulator(seed_operations=n - 25, days=90, seed=2026, latency_ms=LATENCY_MS) as emu, \
            tempfile.TemporaryDirectory() as tmp:  # fmt: skip
        emu.account.add_operations(25, pending_share=1.0)
        archive, naive_db = f"{tmp}/archive.db", f"{tmp}/naive.db"

        def sync(path: str, *extra: str) -> dict[str, Any]:
            emu.counters.reset()
            cmd = archiver_cmd("--db", path, "sync", "--endpoint-url", emu.url,
                               "--region", "us-east-1", *extra)  # fmt: skip
            measured = run_measured(cmd)
            measured.update(list_pages=emu.counters.list_pages, get_calls=emu.counters.get_calls)
            return measured

        def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
            middle = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
            return {**middle, "runs_seconds": [r["seconds"] for r in runs]}

        emu.counters.reset()
        base = run_measured([sys.executable, __file__, "--naive", emu.url, naive_db])
        base.update(list_pages=emu.counters.list_pages, get_calls=emu.counters.get_calls)

        initial = median_of([sync(archive if k == 0 else f"{tmp}/again-{k}.db") for k in range(3)])
        content = same_content(archive, naive_db)
        eight = median_of([sync(f"{tmp}/eight-{k}.db", "--workers", "8") for k in range(3)])

        changed = len(emu.account.finish_pending(25)) + len(
            emu.account.add_operations(25, pending_share=0)
        )

        def interleaved(source: str, name: str, runs: int) -> tuple[list[Any], list[Any]]:
            """``runs`` syncs, each on a copy of ``source``, each followed by the bare
            client's listing, so that both medians see the same machine."""
            syncs, bares = [], []
            for k in range(runs):
                again = f"{tmp}/{name}-{k}.db"
                src, dst = sqlite3.connect(source), sqlite3.connect(again)
                src.backup(dst)  # the WAL's content too, whatever it holds
                src.close()
                dst.close()
                syncs.append(sync(again))
                emu.counters.reset()
                bare_run = run_measured([sys.executable, __file__, "--bare", emu.url])
                bares.append({**bare_run, "list_pages": emu.counters.list_pages})
            return syncs, bares

        incrementals, bares = interleaved(archive, "incremental", INCREMENTAL_RUNS)
        incremental, bare = median_of(incrementals), median_of(bares)
        # the guard rail of #28: a night with nothing new, on copies of an archive the
        # incremental sync brought up to date
        quiet, quiet_bares = interleaved(f"{tmp}/incremental-0.db", "no-change", NO_CHANGE_RUNS)
        no_change, no_change_bare = median_of(quiet), median_of(quiet_bares)

    speedup = base["seconds"] / initial["seconds"]
    share = incremental["seconds"] / initial["seconds"]
    floor = incremental["list_pages"] * LATENCY_MS / 1000
    result = {
        "operations": n,
        "latency_ms": LATENCY_MS,
        "naive_baseline": base,
        "initial_sync": initial,
        "same_content": content,
        "speedup": round(speedup, 2),
        "initial_sync_workers_8": eight,
        "speedup_workers_8": round(base["seconds"] / eight["seconds"], 2),
        "changed_plus_new": changed,
        "incremental_sync": incremental,
        "incremental_share_of_initial": round(share, 3),
        "incremental_list_floor_seconds": round(floor, 3),
        "incremental_list_floor_share_of_initial": round(floor / initial["seconds"], 3),
        "incremental_above_floor_seconds": round(incremental["seconds"] - floor, 3),
        "bare_listing": bare,
        "incremental_above_bare_seconds": round(incremental["seconds"] - bare["seconds"], 3),
        "no_change_sync": no_change,
        "no_change_bare_listing": no_change_bare,
        "no_change_above_bare_seconds": round(no_change["seconds"] - no_change_bare["seconds"], 3),
        "targets_met": {
            "initial_10x": speedup >= 10 and content,
            "incremental_gets_exact": all(r["get_calls"] == changed for r in incrementals),
            "incremental_floor_plus_0_6_s": incremental["seconds"] - floor <= 0.6,
            "no_change_gets_none": all(r["get_calls"] == 0 for r in quiet),
            "no_change_bare_plus_0_6_s": no_change["seconds"] - no_change_bare["seconds"] <= 0.6,
        },
    }
    print(result)
    save(result_name("sync", args.quick), result)


if __name__ == "__main__":
    main()
