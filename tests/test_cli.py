"""The CLI contract: exit codes, one-line errors, status and db commands."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest

from archiver.store import db as archive_db
from archiver.store.archive import Archive
from tests.conftest import invoke, requires_sqlite


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_status_on_a_new_archive_says_it_is_empty(runner, archive) -> None:
    result = invoke(runner, "--db", archive, "status")
    assert result.exit_code == 0
    assert "archive is empty" in result.output
    result = invoke(runner, "--db", archive, "status", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"sources": []}


@requires_sqlite
def test_status_on_a_missing_directory_exits_2_with_one_line(runner, tmp_path) -> None:
    result = invoke(runner, "--db", str(tmp_path / "nope" / "a.db"), "status")
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: directory ")
    assert not (tmp_path / "nope").exists()


@requires_sqlite
def test_an_archive_path_that_is_no_regular_file_is_exit_2_before_sqlite(runner, tmp_path) -> None:
    """`--db /dev/null` was "migration failed: disk I/O error", exit 1, and SQLite made
    /dev/null-journal; a FIFO the same."""
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    for path, what in ((fifo, "FIFO"), (tmp_path, "a directory")):
        for command in (["db", "upgrade"], ["status"], ["sync", "--region", "us-east-1"]):
            result = invoke(runner, "--db", str(path), *command)
            assert result.exit_code == 2 and what in result.stderr, (command, result.output)
            assert result.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.db"]


@requires_sqlite
def test_an_archive_sqlite_cannot_open_is_one_line_naming_it(runner, archive) -> None:
    """A directory where SQLite keeps the archive's -wal: SQLite's own words, told as
    the archive it could not open, exit 2, for a reader and a writer alike."""
    wal = Path(archive + "-wal")
    wal.unlink(missing_ok=True)
    wal.mkdir()
    for command in (["status"], ["db", "upgrade"]):
        result = invoke(runner, "--db", archive, *command)
        assert (result.exit_code, result.stderr) == (
            2, f"error: cannot open {archive}: unable to open database file\n"), command  # fmt: skip


@requires_sqlite
def test_status_on_a_missing_file_does_not_create_it(runner, tmp_path) -> None:
    path = tmp_path / "a.db"
    result = invoke(runner, "--db", str(path), "status")
    assert result.exit_code == 2
    assert "no archive at" in result.stderr
    assert not path.exists()


@requires_sqlite
def test_status_on_a_file_that_is_not_sqlite_leaves_it_unchanged(runner, tmp_path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 100)
    before = _digest(path)
    result = invoke(runner, "--db", str(path), "status")
    assert result.exit_code == 2
    assert result.stderr == f"error: {path} is not a SQLite database\n"
    assert _digest(path) == before


@requires_sqlite
def test_status_on_another_apps_database_leaves_it_unchanged(runner, tmp_path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (x)")
    before = _digest(path)
    result = invoke(runner, "--db", str(path), "status")
    assert result.exit_code == 2
    assert "not an archiver archive" in result.stderr
    assert _digest(path) == before


@requires_sqlite
def test_status_on_an_archive_at_an_older_revision_asks_for_upgrade(runner, tmp_path) -> None:
    path = tmp_path / "old.db"
    Archive(str(path)).upgrade("c41e7b9a2f60")  # 0.3.0's head
    before = _digest(path)
    result = invoke(runner, "--db", str(path), "status")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "revision c41e7b9a2f60" in result.stderr
    assert "archiver db upgrade" in result.stderr
    assert _digest(path) == before


def test_db_upgrade_current_downgrade(runner, db) -> None:
    if "://" not in db:
        result = invoke(runner, "--db", db, "db", "current")
        assert result.exit_code == 2  # nothing there yet
    upgraded = invoke(runner, "--db", db, "db", "upgrade")
    assert upgraded.exit_code == 0 and upgraded.stdout == ""  # where it stands, on stderr
    assert upgraded.stderr.endswith(f" is at revision {archive_db.head()}\n")
    result = invoke(runner, "--db", db, "db", "current")
    assert result.stdout.strip() == f"{archive_db.head()} (head)"
    refused = invoke(runner, "--db", db, "db", "downgrade", "base")  # stdin: not a terminal
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert invoke(runner, "--db", db, "db", "current").stdout.startswith(archive_db.head())
    # Alembic's relative form, as its users type it: it was "No such option: -1"
    quiet = invoke(runner, "--db", db, "-q", "db", "downgrade", "-1", "--yes")
    assert (quiet.exit_code, quiet.stderr) == (0, "")  # -q: nothing on success
    assert not invoke(runner, "--db", db, "db", "current").stdout.startswith(archive_db.head())
    assert invoke(runner, "--db", db, "db", "downgrade", "base", "--yes").exit_code == 0
    assert invoke(runner, "--db", db, "db", "current").stdout.startswith("base")
    assert invoke(runner, "--db", db, "status").exit_code == 2


@pytest.mark.parametrize(("action", "target"), [("downgrade", "feedfacecafe"),
                                               ("downgrade", ""), ("upgrade", "")])  # fmt: skip
def test_db_downgrade_to_an_unknown_revision_is_bad_input(runner, archive, action, target) -> None:
    """An empty revision (`db upgrade "$REV"` with REV unset) was "unexpected
    AssertionError", exit 1: Alembic asserts on it."""
    yes = ["--yes"] if action == "downgrade" else []
    result = invoke(runner, "--db", archive, "db", action, target, *yes)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and "unexpected" not in result.stderr
    assert result.stderr.count("\n") == 1


def test_db_from_the_environment(runner, archive, monkeypatch) -> None:
    monkeypatch.setenv("ARCHIVER_DB", archive)
    result = invoke(runner, "status", "--json")
    assert result.exit_code == 0, result.output


def test_version_and_help(runner) -> None:
    from archiver import __version__

    line = invoke(runner, "--version").stdout.strip()
    assert line.startswith(f"cloudmap-archiver {__version__} (SQLAlchemy ")
    for part in ("alembic ", "boto3 ", "botocore ", "SQLite "):  # what a bug report needs
        assert part in line
    assert "not installed" not in line
    result = invoke(runner, "--help")
    assert result.exit_code == 0
    assert "Exit codes" in result.stdout
    # plain `archiver` is a user asking what it does: the help, on stderr, and exit 2
    bare = invoke(runner)
    assert (bare.exit_code, bare.stdout) == (2, "")
    assert bare.stderr.startswith("Usage: archiver ") and " sync " in bare.stderr


def test_global_options_are_taken_after_the_subcommand_too(runner, archive) -> None:
    """As the AWS CLI takes its global options anywhere: the README's cron line puts
    --log-format after `sync`."""
    before = invoke(runner, "--db", archive, "status", "--json")
    after = invoke(runner, "status", "--json", "--db", archive, "-q", "--log-format", "json")
    assert (
        (after.exit_code, after.stdout) == (before.exit_code, before.stdout) == (0, before.stdout)
    )
    assert invoke(runner, "db", "current", f"--db={archive}").exit_code == 0
    # some before the subcommand, some after it
    for words in (["--db", archive, "status", "--json", "-q"],
                  ["--log-format=text", "status", "--json", "--db", archive]):  # fmt: skip
        mixed = invoke(runner, *words)
        assert (mixed.exit_code, mixed.stdout) == (0, before.stdout), words
    stacked = invoke(runner, "status", "--json", "--db", archive, "-vq")  # as before it: -vq
    assert (stacked.exit_code, stacked.stdout) == (0, before.stdout)
    # a value of the subcommand's own option is never taken for a global option
    refused = invoke(runner, "status", "--source", "-v", "--db", archive)
    assert refused.exit_code == 2 and "no source named '-v'" in refused.stderr


@pytest.mark.parametrize("words", [["status", "--db"], ["sync", "-v", "--log-format"]])
def test_a_global_option_without_its_value_is_named(runner, words) -> None:
    """`sync --db $DB` with DB unset: the hoisted --db took the command for its value,
    and the error read "Missing command." (or "'sync' is not one of 'text', 'json'")."""
    result = invoke(runner, *words)
    assert (result.exit_code, result.stderr) == (
        2, f"error: Option '{words[-1]}' requires an argument.\n")  # fmt: skip


@pytest.mark.slow  # commands in subprocesses
@pytest.mark.parametrize("unbuffered", ["", "1"])
@pytest.mark.parametrize("command", [["query", "-o", "table"], ["status"]])
def test_output_the_disk_takes_only_part_of_is_one_error_line(archive, tmp_path, command,
                                                               unbuffered) -> None:  # fmt: skip
    """Stdout to a file on a disk that fills up as the output ends. Python flushed the
    last of it at exit, said "Exception ignored in: <stdout>" over three lines and exited
    120; under PYTHONUNBUFFERED=1 (many container images set it) a write the file took
    only part of was cut short silently, exit 0."""
    import subprocess
    import sys

    from tests.helpers import fill, op, small_files

    fill(archive, [op(i, minutes=i) for i in range(300)])
    args = [sys.executable, "-m", "archiver", "--db", archive, *command]
    whole = subprocess.run(args, capture_output=True, check=True).stdout
    limit = 100_000  # above what SQLite's own files need (its -shm is 32 kB)
    out = tmp_path / "out"
    out.write_bytes(b"x" * (limit - len(whole) + 10))  # the output's last 10 bytes do not fit
    with open(out, "ab") as stdout:
        done = subprocess.run(args, stdout=stdout, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": unbuffered},
                              preexec_fn=small_files(limit), timeout=60)  # fmt: skip
    assert (done.returncode, done.stderr) == (1, "error: [Errno 27] File too large (run with -v "
                                              "for details)\n")  # fmt: skip


@pytest.mark.slow  # a command in a subprocess
@requires_sqlite
def test_an_archive_with_no_room_for_its_shm_says_the_disk_may_be_full(archive) -> None:
    """Reading a WAL archive needs its -shm (32 kB) beside it; on a full disk SQLite
    said "disk I/O error", which reads as failing hardware, and it was exit 2, bad input."""
    import subprocess
    import sys

    from tests.helpers import small_files

    done = subprocess.run([sys.executable, "-m", "archiver", "--db", archive, "status",
                           "--check"], capture_output=True, text=True, timeout=60,
                          preexec_fn=small_files(1000))  # fmt: skip
    assert (done.returncode, done.stderr) == (1, f"error: cannot open archive {archive}: no room "
                                              "for its -shm (full disk?)\n")  # fmt: skip
