"""The benchmarks stay runnable and their table reports what was measured.

The figures themselves are measured by ``bench/run_all``, never asserted here: these
machines are shared and noisy (bench/README.md). What a developer relies on is that every
script starts, says what it compares, and that the table shows each figure as saved.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.engine_free]  # over HTTP or in subprocesses; no engine

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize(
    "script",
    [
        "sync.py",
        "throttled.py",
        "startup.py",
        "query.py",
        "large_results.py",
        "export.py",
        "ingest.py",
        "ingest_large.py",
        "report.py",
    ],
)
def test_each_script_states_its_baseline_and_target(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "Baseline" in result.stdout or "baseline" in result.stdout
    assert "Target" in result.stdout
    assert "--quick" in result.stdout


def _run_all():
    loader = SourceFileLoader("bench_run_all", str(BENCH / "run_all"))
    module = module_from_spec(spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def test_the_table_shows_each_saved_figure_and_whether_its_target_was_met() -> None:
    run = {"seconds": 12.4, "peak_rss_mb": 91.0, "list_pages": 50, "get_calls": 5000}
    data = {
        "machine": {"cpus": 2, "python": "3.11.7", "sqlite": "3.40.1", "platform": "Linux"},
        "sync": {
            "operations": 5000,
            "latency_ms": 20,
            "naive_baseline": {**run, "seconds": 132.5},
            "initial_sync": run,
            "speedup": 10.69,
            "initial_sync_workers_8": {**run, "seconds": 19.3},
            "speedup_workers_8": 6.87,
            "changed_plus_new": 50,
            "incremental_sync": {**run, "seconds": 1.9, "list_pages": 51, "get_calls": 50},
            "incremental_share_of_initial": 0.153,
            "incremental_list_floor_seconds": 1.02,
            "incremental_list_floor_share_of_initial": 0.082,
            "incremental_above_floor_seconds": 0.88,
            "bare_listing": {**run, "seconds": 1.3, "list_pages": 51},
            "incremental_above_bare_seconds": 0.6,
            "no_change_sync": {
                **run,
                "seconds": 2.1,
                "list_pages": 51,
                "get_calls": 0,
                "runs_seconds": [2.1] * 7,
            },
            "no_change_bare_listing": {**run, "seconds": 1.5, "list_pages": 50},
            "no_change_above_bare_seconds": 0.6,
            "targets_met": {
                "initial_10x": True,
                "incremental_gets_exact": True,
                "incremental_floor_plus_0_6_s": False,
                "no_change_gets_none": True,
                "no_change_bare_plus_0_6_s": True,
            },
        },
        "startup": {
            "runs": 15,
            "archiver_help_median_s": 0.113,
            "python_bare_median_s": 0.026,
            "difference_s": 0.087,
            "typer_parse_median_s": 0.236,
            "targets_met": True,
        },
    }
    table = _run_all().table(data, "")
    rows = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| ")}
    initial = rows["| sync initial, 5000 ops @ 20 ms, median of 3"]
    assert "12.4 s" in initial and "naive 132.5 s" in initial and "10.69×" in initial
    assert initial.endswith("| ≥ 10× | True |")
    assert "6.87×" in rows["| (the same, `--workers 8`: the old fixed default)"]
    incremental = rows["| sync incremental (1% changed)"]
    assert "50 gets for 50 changes" in incremental and "P2 floor 1.02 s" in incremental
    assert "+0.88 s" in incremental and incremental.endswith("| True, False |")
    bare = rows["| (a bare boto3 client listing the same pass: import, client, 51 pages)"]
    assert "| 1.9 s | 1.3 s | +0.6 s | (reference) |" in bare
    quiet = rows["| sync with nothing new, median of 7"]
    assert "| 2.1 s, 0 gets, 51 pages | bare boto3 client 1.5 s, 50 pages | +0.6 s |" in quiet
    assert quiet.endswith("| no gets, ≤ bare + 0.6 s | True, True |")
    assert rows["| `archiver --help`, median of 15"].endswith("| ≤ 0.3 s | True |")
    typer_row = rows["| (a typer app with `sync`'s options, parsing one command line and nothing "
                     "else, median of 15)"]  # fmt: skip
    assert "| 0.236 s | `python -c pass` 0.026 s | +0.21 s | (reference) |" in typer_row
    assert "Machine: 2 CPUs" in table
    assert "query" not in table and "export" not in table  # nothing shown that was not run
