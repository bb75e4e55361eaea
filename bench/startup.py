"""Start-up benchmark: how long `archiver --help` takes, against the interpreter alone.

Inputs: none. Measured: `archiver --help` (the console script: Python, typer, the
command tree; no database layer, no boto3), 15 runs. Baseline, same run: `python -c
pass`, 15 runs. Reported: the medians and the difference. Target (issue 17): the
median `archiver --help` ≤ 0.3 s. (The incremental sync's start-up is measured by
bench/sync.py, as its time above the P2 floor.)

Reference, same run: what typer alone costs a run that parses its options (``--help``
parses none). A generated typer app with as many options as `archiver sync` and the
global options, of the same types, parses one `sync` command line and does nothing
else, 15 runs: the share of the incremental sync's start-up that is typer's. (typer
0.29 builds a pydantic TypeAdapter for each option as it parses: 0.14 s above
`python -c pass` against 0.28's 0.04–0.06 s, two runs each on one machine;
pyproject.toml holds typer below it.)

    python bench/startup.py [--quick]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median, result_name, run_measured, save, size_from_args

#: A typer app shaped like archiver's own `sync`: a callback with the global options
#: and one command with sync's 19, of the types they have (str, int, float, bool, Path).
TYPER_APP = """
from pathlib import Path
import typer
app = typer.Typer()
@app.callback()
def main(db: str = "archive.db", verbose: bool = False, quiet: bool = False,
         log_format: str = "text", config: Path | None = None) -> None: ...
@app.command()
def sync(region: str | None = None, profile: str | None = None,
         endpoint_url: str | None = None, source: list[str] | None = None, all: bool = False,
         parallel: int = 1, since: str | None = None, until: str | None = None,
         window: str = "1d", lookback: str = "1h", workers: int = 32,
         max_rps: float | None = None, max_attempts: int = 12, call_timeout: float = 60.0,
         incomplete_retry_days: int = 7, full: bool = False, dry_run: bool = False,
         json: bool = False, metrics_file: Path | None = None) -> None: ...
app()
"""


def main() -> None:
    runs, quick = size_from_args(__doc__, 5, 15)
    script = shutil.which("archiver") or str(Path(sys.executable).parent / "archiver")
    import subprocess

    devnull = subprocess.DEVNULL
    ours = [run_measured([script, "--help"], stdout=devnull)["seconds"] for _ in range(runs)]
    bare = [run_measured([sys.executable, "-c", "pass"])["seconds"] for _ in range(runs)]
    parse = [sys.executable, "-c", TYPER_APP, "--db", "a.db", "sync", "--region", "us-east-1"]
    typer_only = [run_measured(parse)["seconds"] for _ in range(runs)]
    result = {
        "runs": runs,
        "archiver_help_median_s": round(median(ours), 3),
        "python_bare_median_s": round(median(bare), 3),
        "difference_s": round(median(ours) - median(bare), 3),
        "typer_parse_median_s": round(median(typer_only), 3),
    }
    result["targets_met"] = result["archiver_help_median_s"] <= 0.3
    print(result)
    save(result_name("startup", quick), result)


if __name__ == "__main__":
    main()
