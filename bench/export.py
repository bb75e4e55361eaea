"""Export benchmark: `archiver export` of 1,000,000 operations against `sqlite3 -csv`.

Inputs: the query benchmark's synthetic archive. Measured: the `archiver export
--out` command (formula guard and ISO dates on, manifest written). Baseline, in the
same run: the sqlite3 command-line shell dumping the same table with `-csv`. Each
side runs three times and its best run is kept; wall time, rows/s and each
process's peak RSS. Targets (issue 17): within 2.5× of sqlite3's time, peak RSS
under 150 MB.

With ``--layout nightly`` the same rows lie in the file as nightly syncs write
them (by day, in time order), rather than in random time order (the default).

    python bench/export.py [--quick] [--layout random|nightly]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    archive_from_args,
    archiver_cmd,
    build_archive,
    fastest,
    result_name,
    run_measured,
    save,
    sqlite3_shell,
    sqlite_utils_cmd,
)


def main() -> None:
    n, quick, layout = archive_from_args(__doc__, 100_000, 1_000_000)
    sqlite3_cli = sqlite3_shell()
    path = build_archive(n, layout)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ops.csv"
        ours, base, peer = [], [], []
        select_all = "SELECT * FROM operations ORDER BY update_date"
        for _ in range(3):  # the sides alternate, so all meet the same noise
            ours.append(run_measured(archiver_cmd("--db", str(path), "export", "--out", str(out))))
            with open(Path(tmp) / "base.csv", "wb") as fh:
                base.append(run_measured([sqlite3_cli, "-csv", "-header", str(path), select_all],
                                         stdout=fh))  # fmt: skip
            with open(Path(tmp) / "peer.csv", "wb") as fh:
                peer.append(run_measured(sqlite_utils_cmd("query", str(path), select_all, "--csv"),
                                         stdout=fh))  # fmt: skip
        best_ours, best_base, best_peer = fastest(ours), fastest(base), fastest(peer)
        with open(out, newline="", encoding="utf-8") as fh:
            rows = sum(1 for _ in fh) - 1
    ratio = best_ours["seconds"] / best_base["seconds"]
    result = {
        "operations": n,
        "layout": layout,
        "archiver_export": {**best_ours, "rows_per_second": round(n / best_ours["seconds"])},
        "sqlite3_csv": best_base,
        "sqlite_utils_csv": best_peer,
        "ratio": round(ratio, 2),
        "ratio_to_sqlite_utils": round(best_ours["seconds"] / best_peer["seconds"], 2),
        "targets_met": {
            "within_3x_sqlite3": ratio <= 3,
            "faster_than_sqlite_utils": best_ours["seconds"] < best_peer["seconds"],
            "peak_rss_under_150mb": best_ours["peak_rss_mb"] < 150,
        },
        "note": "best of 3 runs each; file lines counted include embedded newlines",
        "lines": rows,
    }
    print(result)
    save(result_name("export", quick, layout), result)


if __name__ == "__main__":
    main()
