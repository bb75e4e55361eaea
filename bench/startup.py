"""Start-up benchmark: how long `archiver --help` takes, against the interpreter alone.

Inputs: none. Measured: `archiver --help` (the console script: Python, typer, the
command tree; no database layer, no boto3), 15 runs. Baseline, same run: `python -c
pass`, 15 runs. Reported: the medians and the difference. Target (issue 17): the
median `archiver --help` ≤ 0.3 s. (The incremental sync's start-up is measured by
bench/sync.py, as its time above the P2 floor.)

    python bench/startup.py [--quick]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median, result_name, run_measured, save, size_from_args


def main() -> None:
    runs, quick = size_from_args(__doc__, 5, 15)
    script = shutil.which("archiver") or str(Path(sys.executable).parent / "archiver")
    import subprocess

    devnull = subprocess.DEVNULL
    ours = [run_measured([script, "--help"], stdout=devnull)["seconds"] for _ in range(runs)]
    bare = [run_measured([sys.executable, "-c", "pass"])["seconds"] for _ in range(runs)]
    result = {
        "runs": runs,
        "archiver_help_median_s": round(median(ours), 3),
        "python_bare_median_s": round(median(bare), 3),
        "difference_s": round(median(ours) - median(bare), 3),
    }
    result["targets_met"] = result["archiver_help_median_s"] <= 0.3
    print(result)
    save(result_name("startup", quick), result)


if __name__ == "__main__":
    main()
