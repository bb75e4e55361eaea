"""Throttled sync benchmark: the default (adaptive) run against fixed --workers values,
against an emulator that throttles with a token bucket.

Inputs: the emulator with 20 ms latency per call, 3,000 operations, and each API
throttled by a token bucket (``--rate-limit 100 --burst 100``: the algorithm AWS
documents for Cloud Map's DiscoverInstances), a fresh emulator for each run. Measured:
an initial sync with default options, which finds its concurrency (start 8, AIMD,
cap 32). Baseline, same run: the same sync with exactly N GetOperation calls in
flight, for N in 2, 4, 8, 16, 32 (``SyncOptions(adaptive=False)``). Reported: wall
time and the share of calls the emulator throttled. Targets (issue 17): the default
run has ≤ 5% of its calls throttled and is within 10% of the best fixed N. Also
measured, as the issue asks: botocore's own "adaptive" retry mode (a client-side
rate limiter that starts after the first throttled call), at the cap of 32 and at
the old fixed 8, with the sync's AIMD off.

    python bench/throttled.py [--quick]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import result_name, save, size_from_args

LATENCY_MS = 20
RATE, BURST = 100, 100
FIXED = (2, 4, 8, 16, 32)


def one_run(n: int, *, workers: int, adaptive: bool, mode: str = "standard") -> dict[str, Any]:
    from archiver.emulator import Emulator
    from archiver.sync.options import ClientSettings
    from archiver.sync.run import SyncOptions, sync_source

    with Emulator(seed_operations=n, days=30, seed=17, latency_ms=LATENCY_MS, rate_limit=RATE,
                  burst=BURST) as emu, tempfile.TemporaryDirectory() as tmp:  # fmt: skip
        opts = SyncOptions(source="bench", workers=workers, adaptive=adaptive)
        settings = ClientSettings(region="us-east-1", endpoint_url=emu.url, access_key="bench",
                                  secret_key="bench", retry_mode=mode)  # fmt: skip
        start = time.perf_counter()
        summary = sync_source(f"{tmp}/a.db", opts, settings)
        seconds = time.perf_counter() - start
        calls = sum(emu.counters.calls.values())
        throttled = sum(emu.counters.throttled.values())
    return {
        "seconds": round(seconds, 2),
        "calls": calls,
        "throttled": throttled,
        "throttled_share": round(throttled / calls, 4),
        "concurrency_peak": summary.stats.concurrency_peak,
        "concurrency_final": summary.stats.concurrency_final,
    }


def main() -> None:
    n, quick = size_from_args(__doc__, 1000, 3000)
    default = one_run(n, workers=32, adaptive=True)
    fixed = {str(w): one_run(n, workers=w, adaptive=False) for w in FIXED}
    botocore_adaptive = {str(w): one_run(n, workers=w, adaptive=False, mode="adaptive")
                         for w in (8, 32)}  # fmt: skip
    best = min(fixed.items(), key=lambda kv: kv[1]["seconds"])
    result = {
        "operations": n,
        "latency_ms": LATENCY_MS,
        "rate_limit": RATE,
        "burst": BURST,
        "default_adaptive": default,
        "fixed_workers": fixed,
        "botocore_adaptive_mode_fixed_workers": botocore_adaptive,
        "best_fixed": {"workers": int(best[0]), **best[1]},
        "ratio_to_best_fixed": round(default["seconds"] / best[1]["seconds"], 3),
    }
    result["targets_met"] = (
        default["throttled_share"] <= 0.05 and result["ratio_to_best_fixed"] <= 1.10
    )
    print(result)
    save(result_name("throttled", quick), result)


if __name__ == "__main__":
    main()
