"""Large results benchmark: `archiver query -o json|csv|ids` over big slices of the 1M archive.

Inputs: the query benchmark's synthetic 1,000,000-operation archive. Measured, each
as its own process writing to a file: `query -o json`, `-o csv` and `-o ids` of the
whole archive, and `-o json` of a 30-day UPDATE_DATE slice (about 100,000 rows).
Baseline, same run: the sqlite3 shell's `-json` mode printing the same columns of
the same rows in the same order. Best of two runs each; rows/s and peak RSS. Also
reported, as the ceiling of `-o json`: the very statement `query -o json` runs,
in the sqlite3 shell, so that what the database takes is told apart from what
Python adds; and the same `-o json` selecting nothing, the process's start that the
30-day slice's figure counts, with the slice's rows/s after it.
Targets (issue 17): each output streams ≥ 150,000 rows/s; the whole-archive JSON
takes ≤ 3× the sqlite3 shell's.

With ``--layout nightly`` the same rows lie in the file as nightly syncs write
them (by day, in time order), rather than in random time order (the worst case
for a read in time order, and the default).

    python bench/large_results.py [--quick] [--layout random|nightly]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    SPAN_MS,
    T0_MS,
    archive_from_args,
    archiver_cmd,
    build_archive,
    child_args,
    fastest,
    result_name,
    run_measured,
    save,
    sqlite3_shell,
    sqlite_utils_cmd,
)

COLUMNS = ("id, type, status, error_code, error_message, create_date, update_date, "
           "owner_account, namespace_id, service_id, instance_id")  # fmt: skip


def best_of_two(cmd: list[str], out: Path) -> dict:
    runs = []
    for _ in range(2):
        with open(out, "wb") as fh:
            runs.append(run_measured(cmd, stdout=fh))
    return fastest(runs)


def json_statement() -> str:
    """The SQL `query -o json` runs over the whole archive, as SQLite text (the names
    and Source are appended in Python, as the command does)."""
    from sqlalchemy import select
    from sqlalchemy.dialects import sqlite

    from archiver.read.outputs import json_head
    from archiver.read.query import TARGET_KEYS, Selection, ordered
    from archiver.store.models import Operation

    columns = (json_head().label("json"), Operation.__table__.c.extra, *TARGET_KEYS)
    stmt = ordered(select(*columns), Selection(), source_id=None)
    sql = stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
    return f"{sql};"


def main() -> None:
    if child_args():  # the statement is built in a child: SQLAlchemy imported
        print(json_statement())  # here would count in the children's peak RSS
        return
    n, quick, layout = archive_from_args(__doc__, 100_000, 1_000_000)
    sqlite3_cli = sqlite3_shell()
    path = str(build_archive(n, layout))
    end = T0_MS + SPAN_MS
    start = end - 30 * 86_400_000
    window = f"Name=UPDATE_DATE,Condition=BETWEEN,Values={start},{end}"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        result: dict = {"operations": n, "layout": layout, "outputs": {}}
        cases = {
            "json, whole archive": (["-o", "json"], n),
            "csv, whole archive": (["-o", "csv"], n),
            "ids, whole archive": (["-o", "ids"], n),
            "json, 30-day slice": (["-o", "json", "--filters", window], None),
        }
        for name, (args, rows) in cases.items():
            measured = best_of_two(archiver_cmd("--db", path, "query", *args), out)
            if rows is None:  # one object a line between "[" and "]"; counted, not
                # loaded: this process's size would count in every later child's peak RSS
                with open(out, "rb") as fh:
                    rows = sum(1 for _ in fh) - 2
            measured["rows"] = rows
            measured["rows_per_second"] = round(rows / measured["seconds"])
            result["outputs"][name] = measured
        # Reference: the same command selecting nothing (a day before the first
        # operation), the process's start that the slice's figure counts.
        nothing = f"Name=UPDATE_DATE,Condition=BETWEEN,Values={T0_MS - 86_400_000},{T0_MS - 1}"
        started = best_of_two(archiver_cmd("--db", path, "query", "-o", "json",
                                           "--filters", nothing), out)  # fmt: skip
        assert out.read_text() == "[]\n", "the reference must select nothing"
        whole_sql = (
            f"SELECT {COLUMNS} FROM operations ORDER BY update_date DESC, source_id DESC, id DESC"
        )
        base = best_of_two([sqlite3_cli, "-json", path, whole_sql], out)
        peer = best_of_two(sqlite_utils_cmd("query", path, whole_sql), out)  # JSON by default
        import subprocess

        sql = subprocess.run([sys.executable, __file__, "--side", "statement", path], check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
        ours_in_shell = best_of_two([sqlite3_cli, path, sql], out)
        ours_in_shell["rows_per_second"] = round(n / ours_in_shell["seconds"])
    whole, piece = result["outputs"]["json, whole archive"], result["outputs"]["json, 30-day slice"]
    result["json_nothing_selected"] = started
    result["json_slice_rows_per_second_after_start"] = round(
        piece["rows"] / max(piece["seconds"] - started["seconds"], 0.001)
    )
    result["sqlite3_json_whole_archive"] = base
    result["json_ratio_to_sqlite3"] = round(whole["seconds"] / base["seconds"], 2)
    result["sqlite_utils_json_whole_archive"] = peer
    result["json_ratio_to_sqlite_utils"] = round(whole["seconds"] / peer["seconds"], 2)
    result["json_statement_in_sqlite3"] = ours_in_shell
    result["targets_met"] = {
        "rows_per_second_150k": {
            k: v["rows_per_second"] >= 150_000 for k, v in result["outputs"].items()
        },
        "json_within_3x_sqlite3": result["json_ratio_to_sqlite3"] <= 3,
        "json_faster_than_sqlite_utils": result["json_ratio_to_sqlite_utils"] < 1,
    }
    print(result)
    save(result_name("large_results", quick, layout), result)


if __name__ == "__main__":
    main()
