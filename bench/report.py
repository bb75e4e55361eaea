"""Report benchmark: `archiver report` on the 1,000,000-operation archive.

Inputs: the query benchmark's synthetic archive (with its namespaces, services and
300 sync runs). Measured: the `archiver report --out` command, end to end (its
aggregates, the charts, the file). Baseline, in the same run: the sqlite3 shell
reading every operation once (`SELECT type, status, count(*) … GROUP BY`), the least
any report of the whole archive must do. Best of three runs each, with each
process's peak RSS. Targets (issue 15): ≤ 10 s and peak RSS < 300 MB.

    python bench/report.py [--quick]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    archiver_cmd,
    build_archive,
    fastest,
    result_name,
    run_measured,
    save,
    size_from_args,
    sqlite3_shell,
)


def main() -> None:
    n, quick = size_from_args(__doc__, 100_000, 1_000_000)
    sqlite3_cli = sqlite3_shell()
    path = build_archive(n)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.html"
        ours, base = [], []
        for _ in range(3):
            ours.append(run_measured(archiver_cmd("--db", str(path), "report", "--out", str(out))))
            with open(Path(tmp) / "base.txt", "wb") as fh:
                base.append(run_measured(
                    [sqlite3_cli, str(path),
                     "SELECT type, status, count(*) FROM operations GROUP BY 1, 2"],
                    stdout=fh))  # fmt: skip
        size_mb = round(out.stat().st_size / 1e6, 2)
    mine, theirs = fastest(ours), fastest(base)
    result = {
        "operations": n,
        "archiver_report": {**mine, "file_mb": size_mb},
        "sqlite3_one_scan": theirs,
        "ratio": round(mine["seconds"] / theirs["seconds"], 2),
        "targets_met": mine["seconds"] <= 10 and mine["peak_rss_mb"] < 300,
        "note": "best of 3 runs each",
    }
    print(result)
    save(result_name("report", quick), result)


if __name__ == "__main__":
    main()
