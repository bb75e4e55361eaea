"""Shared helpers for the benchmarks: timing, child peak RSS, results, synthetic rows.

Every benchmark measures archiver and its baseline in the same run on the same
machine and reports the ratio; absolute times on shared machines are noise.
"""

from __future__ import annotations

import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Every side runs in the environment a user's shell gives: with PYTHONUNBUFFERED=1 (set
#: in some shells and most container images) sqlite-utils writes its CSV a line per
#: system call and took 0.5 s longer on the 1M export, which flattered ours (0.97× then,
#: 1.05× without it, the same day and code).
os.environ.pop("PYTHONUNBUFFERED", None)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
RESULTS = ROOT / "bench" / "results.json"


def _parser(doc: str | None, quick: int, full: int) -> Any:
    import argparse

    ap = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help=f"{quick:,} operations instead of {full:,}"
    )
    return ap


def size_from_args(doc: str | None, quick: int, full: int) -> tuple[int, bool]:
    """Every script's command line: ``--quick`` picks the small size."""
    args = _parser(doc, quick, full).parse_args()
    return (quick if args.quick else full), args.quick


def archive_from_args(doc: str | None, quick: int, full: int) -> tuple[int, bool, str]:
    """The command line of a script that reads the synthetic archive: its size, and
    ``--layout`` (``LAYOUTS``), the order its rows were written in."""
    ap = _parser(doc, quick, full)
    ap.add_argument("--layout", choices=LAYOUTS, default="random",
                    help="random: rows in random time order (the worst case for reading "
                         "in time order); nightly: as nightly syncs write them")  # fmt: skip
    args = ap.parse_args()
    return (quick if args.quick else full), args.quick, args.layout


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
    }


def run_measured(cmd: list[str], **kw: Any) -> dict[str, Any]:
    """Run a command; wall seconds and the child's peak RSS in MB (from wait4)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, **kw)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed with exit {proc.returncode}")
    return {"seconds": round(wall, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def fastest(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The quickest of several measured runs of one command (``run_measured``'s dicts):
    the figure least disturbed by the rest of a shared machine."""
    return min(runs, key=lambda r: r["seconds"])


def run_child(script: str, *args: str) -> tuple[dict[str, Any], Any]:
    """Run one side of a benchmark in its own process, so that its peak RSS is its own.

    The child is ``script --side ... OUT`` and writes its JSON answer to OUT; returns
    the parent's measure of the child (wall seconds, peak RSS) and that answer.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "answer.json"
        measured = run_measured([sys.executable, script, "--side", *args, str(out)])
        return measured, json.loads(out.read_text())


def child_args() -> list[str] | None:
    """The ``--side ...`` arguments when this process is a benchmark's child, else None."""
    return sys.argv[2:] if sys.argv[1:2] == ["--side"] else None


def sqlite3_shell() -> str:
    """The sqlite3 command-line shell, the baseline of several benchmarks."""
    import shutil

    found = shutil.which("sqlite3")
    if not found:
        raise SystemExit("the sqlite3 shell is needed for the baseline (apt-get install sqlite3)")
    return found


def sqlite_utils_cmd(*args: str) -> list[str]:
    """The sqlite-utils command line (the `bench` extra), the peer a user would reach for."""
    import shutil

    found = shutil.which("sqlite-utils")
    if not found:
        raise SystemExit("sqlite-utils is needed: pip install -e '.[bench]'")
    return [found, *args]


def archiver_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "archiver", *args]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values)


def result_name(name: str, quick: bool, layout: str = "random") -> str:
    """The key a script's result is saved under, which run_all's table reads: the
    script's name, ``_<layout>`` for an archive layout other than random, and
    ``_quick`` for the small size."""
    return name + ("" if layout == "random" else f"_{layout}") + ("_quick" if quick else "")


def save(name: str, result: dict[str, Any]) -> None:
    """Merge one benchmark's result into bench/results.json."""
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[name] = result
    data["machine"] = machine()
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")


# --- a realistic 1M-operation archive, written straight into the schema ---------------------

STATUS_WEIGHTS = {"SUCCESS": 0.93, "FAIL": 0.05, "PENDING": 0.01, "SUBMITTED": 0.01}
TYPE_WEIGHTS = {
    "REGISTER_INSTANCE": 0.40, "DEREGISTER_INSTANCE": 0.30, "UPDATE_SERVICE": 0.10,
    "CREATE_NAMESPACE": 0.08, "UPDATE_NAMESPACE": 0.07, "DELETE_NAMESPACE": 0.05,
}  # fmt: skip
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SPAN_MS = 300 * 86_400_000


def iso_ms(ms: int) -> str:
    from datetime import UTC, datetime

    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


#: The columns synthetic_rows fills, in order (operations.extra stays NULL).
ROW_COLUMNS = ("source_id, id, type, status, error_code, error_message, create_date, "
               "update_date, namespace_id, service_id, instance_id, owner_account, "
               "first_seen_at, last_seen_at")  # fmt: skip
ROW_PLACEHOLDERS = ", ".join("?" * (ROW_COLUMNS.count(",") + 1))


def synthetic_rows(n: int, seed: int = 1) -> Iterator[tuple[Any, ...]]:
    """Rows of ``operations`` (source 1): 50 namespaces, 2,000 services, mostly SUCCESS.

    A generator, so that a benchmark's peak RSS is its own work, not the input held."""
    rng = random.Random(seed)
    namespaces = [f"ns-{i:016d}" for i in range(50)]
    services = [f"srv-{i:016d}" for i in range(2000)]
    statuses, sw = list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values())
    types, tw = list(TYPE_WEIGHTS), list(TYPE_WEIGHTS.values())
    seen = iso_ms(T0_MS + SPAN_MS)
    for i in range(n):
        created = T0_MS + rng.randrange(SPAN_MS)
        updated = created + rng.randrange(200, 120_000)
        status = rng.choices(statuses, sw)[0]
        op_type = rng.choices(types, tw)[0]
        ns = svc = inst = None
        if op_type.endswith("NAMESPACE"):
            ns = rng.choice(namespaces)
        else:
            svc = rng.choice(services)
            if op_type != "UPDATE_SERVICE":
                inst = f"i-{i:012d}"
        err_code = err_msg = None
        if status == "FAIL":
            err_code, err_msg = (
                "INTERNAL_FAILURE",
                rng.choice(["Limit exceeded, retry", '=cmd|"x"', "Health check failed:\nrefused"]),
            )
        yield (
            1,
            f"op-{i:010d}-{rng.getrandbits(32):08x}",
            op_type,
            status,
            err_code,
            err_msg,
            iso_ms(created),
            iso_ms(updated),
            ns,
            svc,
            inst,
            "123456789012" if i % 3 == 0 else None,
            seen,
            seen,
        )  # fmt: skip


def add_names_and_runs(conn: sqlite3.Connection) -> None:
    """The names of synthetic_rows' namespaces and services, as a sync lists them (one
    namespace in ten deleted: kept, with gone_at, as an old account has), and 300
    nightly sync runs, a few failed: what the report draws besides operations."""
    seen, gone = iso_ms(T0_MS + SPAN_MS), iso_ms(T0_MS + SPAN_MS - 86_400_000)
    for table, prefix, count in (("namespaces", "ns", 50), ("services", "srv", 2000)):
        conn.executemany(
            f"INSERT INTO {table} (source_id, id, name, type, first_seen_at, last_seen_at, "
            "gone_at) VALUES (1, ?, ?, 'HTTP', '2026-01-01T00:00:00.000Z', ?, ?)",
            [(f"{prefix}-{i:016d}", f"{prefix}{i}.example.internal",
              gone if table == "namespaces" and i % 10 == 0 else seen,
              seen if table == "namespaces" and i % 10 == 0 else None)
             for i in range(count)],
        )  # fmt: skip
    runs = []
    for day in range(300):
        start = T0_MS + day * 86_400_000 + 3 * 3_600_000
        outcome = "failed" if day % 37 == 5 else "succeeded"
        runs.append((iso_ms(start), iso_ms(start + 20_000 + (day * 7919) % 40_000), outcome,
                     iso_ms(start - 60_000)))  # fmt: skip
    conn.executemany(
        "INSERT INTO sync_runs (source_id, started_at, finished_at, outcome, until, windows, "
        "list_calls, get_calls, listed, inserted, updated, unchanged, vanished) "
        "VALUES (1, ?, ?, ?, ?, 1, 0, 0, 0, 0, 0, 0, 0)",
        runs,
    )


#: How a synthetic archive's rows lie in its file. "random": inserted in random time
#: order, so a read in update_date order visits the table's pages at random (the worst
#: case). "nightly": the same rows inserted day by day in time order, in random order
#: within a day, as a sync run every night appends the day's operations.
LAYOUTS = ("random", "nightly")


def build_archive(n: int, layout: str = "random") -> Path:
    """A migrated archive holding ``n`` synthetic operations laid out as ``layout``
    says (``LAYOUTS``), cached under bench/data."""
    from archiver.store import db
    from archiver.store.archive import Archive

    path = DATA / (f"query-{n}.db" if layout == "random" else f"query-{n}-{layout}.db")
    if path.exists():
        with Archive(str(path)) as cached:
            if cached.revision() == db.head():
                return path
        path.unlink()  # built by an older schema: build it again

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".building")
    tmp.unlink(missing_ok=True)
    Archive(str(tmp)).upgrade()
    conn = sqlite3.connect(tmp)
    conn.execute("INSERT INTO sources (id, name, region, created_at) VALUES "
                 "(1, 'bench@us-east-1', 'us-east-1', '2026-01-01T00:00:00.000Z')")  # fmt: skip
    conn.execute("INSERT INTO sync_state (source_id) VALUES (1)")
    rows: Any = synthetic_rows(n)
    if layout == "nightly":  # by update day; within a day, in the generator's random order
        rows = sorted(rows, key=lambda r: r[7][:10])
    conn.executemany(f"INSERT INTO operations ({ROW_COLUMNS}) VALUES ({ROW_PLACEHOLDERS})",
                     rows)  # fmt: skip
    add_names_and_runs(conn)
    conn.commit()
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()
    tmp.rename(path)
    return path
