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


@pytest.mark.parametrize("script", ["sync.py", "query.py", "export.py", "ingest.py", "report.py"])
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
    run = {"seconds": 17.4, "peak_rss_mb": 91.0, "list_pages": 50, "get_calls": 5000}
    data = {
        "machine": {"cpus": 2, "python": "3.11.7", "sqlite": "3.40.1", "platform": "Linux"},
        "sync": {
            "operations": 5000,
            "latency_ms": 20,
            "naive_baseline": {**run, "seconds": 132.5},
            "initial_sync": run,
            "speedup": 7.61,
            "initial_sync_workers_16": {**run, "seconds": 12.1},
            "speedup_workers_16": 10.95,
            "changed_plus_new": 50,
            "incremental_sync": {**run, "seconds": 2.7, "list_pages": 51, "get_calls": 50},
            "incremental_share_of_initial": 0.155,
            "incremental_list_floor_seconds": 1.02,
            "incremental_list_floor_share_of_initial": 0.059,
            "targets_met": {
                "initial_8x": False,
                "incremental_gets_exact": True,
                "incremental_5_percent": False,
            },
        },
    }
    table = _run_all().table(data, "")
    rows = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| ")}
    initial = rows["| sync initial, 5000 ops @ 20 ms, median of 3"]
    assert "17.4 s" in initial and "naive 132.5 s" in initial and "7.61×" in initial
    assert initial.endswith("| False |")
    assert rows["| (the same, `--workers 16`)"].endswith("10.95× | ≥ 8× | True |")
    incremental = rows["| sync incremental (1% changed)"]
    assert "50 gets for 50 changes" in incremental and "15.5%" in incremental
    assert incremental.endswith("| True, False |")
    assert "5.9%" in rows["| (P2 floor: 51 pages × 20 ms)"]
    assert "Machine: 2 CPUs" in table
    assert "query" not in table and "export" not in table  # nothing shown that was not run
