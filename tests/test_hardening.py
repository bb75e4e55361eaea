"""Inputs that once destroyed data, hung, or slipped through: each now gets a clear
one-line error and its documented exit code, and leaves the archive as it was."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from archiver.store.models import Operation, Source, SyncRun
from tests.conftest import PG_URL, invoke, requires_sqlite
from tests.helpers import fill, op, read_rows


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_error_line(result, code: int) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "unexpected" not in result.stderr
    return result.stderr


@pytest.fixture
def filled(archive: str) -> str:
    fill(archive, [op(i, minutes=i) for i in range(20)])
    return archive


# --- export --out never destroys what it names ---------------------------------------------


@requires_sqlite
@pytest.mark.parametrize("name", ["archive.db", "ABSOLUTE", "archive.db-wal", "archive.db-shm",
                                  "archive.db-journal"])  # fmt: skip
def test_export_refuses_the_archive_and_its_own_files(runner, filled, name) -> None:
    archive = Path(filled)
    before = _digest(archive)
    out = str(archive) if name == "ABSOLUTE" else str(archive.parent / name)
    existed = Path(out).exists()
    result = invoke(runner, "--db", filled, "export", "--out", out)
    assert "archive" in _one_error_line(result, 2)
    assert _digest(archive) == before
    assert Path(out).exists() == existed


@requires_sqlite
def test_export_refuses_a_symlink_to_the_archive_and_one_to_nothing(runner, filled, tmp_path):
    before = _digest(Path(filled))
    (tmp_path / "link.csv").symlink_to(filled)
    _one_error_line(
        invoke(runner, "--db", filled, "export", "--out", str(tmp_path / "link.csv")), 2
    )
    (tmp_path / "dangling.csv").symlink_to(tmp_path / "nowhere")
    result = invoke(runner, "--db", filled, "export", "--out", str(tmp_path / "dangling.csv"))
    assert "symlink to nothing" in _one_error_line(result, 2)
    assert _digest(Path(filled)) == before
    assert not (tmp_path / "nowhere").exists()


def test_export_refuses_devices_fifos_and_directories(runner, filled, tmp_path) -> None:
    outs = tmp_path / "outs"
    outs.mkdir()
    fifo = outs / "pipe"
    os.mkfifo(fifo)
    for out in ("/dev/null", str(fifo), str(outs)):
        _one_error_line(invoke(runner, "--db", filled, "export", "--out", out), 2)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)  # still the device, not a file
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert list(outs.iterdir()) == [fifo]  # nothing written


def test_a_file_name_with_no_room_for_its_temporary_name_is_refused_first(
    runner, filled, tmp_path
) -> None:
    """A CSV whose manifest's temporary name was too long was written, then the export
    failed with "unexpected OSError" and left it without a manifest; a name over the
    file system's 255 bytes was "unexpected" too."""
    outs = tmp_path / "outs"
    outs.mkdir()
    # 255 bytes less a temporary name's ".", ".partial-" and a pid of up to 7 digits: 238
    # for any file written; the manifest's name is the CSV's and ".manifest.json" (14)
    for name, refused in (("x" * 221 + ".csv", "manifest"), ("y" * 300 + ".csv", "--out:")):
        result = invoke(runner, "--db", filled, "export", "--out", str(outs / name))
        assert refused in _one_error_line(result, 2)
    too_long = str(outs / ("y" * 300 + ".html"))
    _one_error_line(invoke(runner, "--db", filled, "report", "--out", too_long), 2)
    assert list(outs.iterdir()) == []  # nothing written
    done = invoke(runner, "--db", filled, "export", "--out", str(outs / ("z" * 220 + ".csv")))
    assert done.exit_code == 0, done.output  # 224 bytes, and 238 for the manifest: both fit


def test_export_keeps_the_mode_follows_a_symlink_and_gzips_any_case(runner, filled, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("old")
    secret.chmod(0o600)
    assert invoke(runner, "--db", filled, "export", "--out", str(secret)).exit_code == 0
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    link = tmp_path / "latest.csv"
    link.symlink_to(secret)
    assert invoke(runner, "--db", filled, "export", "--out", str(link)).exit_code == 0
    assert link.is_symlink() and secret.read_text().startswith("source,id")
    upper = tmp_path / "X.CSV.GZ"
    assert invoke(runner, "--db", filled, "export", "--out", str(upper)).exit_code == 0
    assert gzip.decompress(upper.read_bytes()).startswith(b"source,id")


def test_export_removes_what_a_killed_export_left_for_the_same_path(runner, filled, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    stale = tmp_path / f".out.csv.partial-{dead.pid}"
    stale.write_bytes(b"x" * 1000)
    assert (
        invoke(runner, "--db", filled, "export", "--out", str(tmp_path / "out.csv")).exit_code == 0
    )
    assert not stale.exists()


def test_export_leaves_the_file_of_an_export_still_at_work_on_the_same_path(
    runner, filled, tmp_path
):
    """Two exports to one path at once (a cron job that overran): only a dead process's
    temporary file is removed, or the other export's rename would find nothing."""
    busy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".out.csv.partial-{busy.pid}"
        live.write_bytes(b"x" * 1000)
        done = invoke(runner, "--db", filled, "export", "--out", str(tmp_path / "out.csv"))
        assert done.exit_code == 0 and live.read_bytes() == b"x" * 1000
    finally:
        busy.kill()
        busy.wait()


# --- inputs that reached the user as "unexpected …" ----------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("query", "--max-items", "9223372036854775808"),
        ("query", "--order-by", "bogus"),
        ("sync", "--region", "us-east-1", "--since", "99999999d", "--dry-run"),
        ("sync", "--region", "us-east-1", "--lookback", "100000000w", "--dry-run"),
        ("sync", "--region", "bad region!", "--endpoint-url", "http://127.0.0.1:9"),
        ("sync", "--region", "us-east-1", "--window", "1ms", "--dry-run"),
        ("sync", "--region", "us-east-1", "--since", "1d", "--window", "1s", "--dry-run"),
        ("sync", "--region", "us-east-1", "--since", "2999-01-01T00:00:00Z", "--dry-run"),
        ("sync", "--region", "us-east-1", "--since", "2d", "--until", "3d", "--dry-run"),
        ("sync", "--region", "us-east-1", "--workers", "1" + "0" * 400, "--dry-run"),
        ("sync", "--region", "us-east-1", "--endpoint-url", "notaurl", "--dry-run"),
        ("sync", "--region", "us-east-1", "--endpoint-url", "ftp://127.0.0.1:9"),
        # `--source "$NAME"` with NAME unset synced as default@REGION; an empty endpoint
        # was AWS itself
        ("sync", "--region", "us-east-1", "--source", "", "--dry-run"),
        ("sync", "--region", "us-east-1", "--endpoint-url", "", "--dry-run"),
        ("emulator", "serve", "--seed", "1000000000000"),
        ("emulator", "serve", "--port", "0", "--account", "abc"),  # served as the caller's
    ],
    ids=lambda a: " ".join(a[:4]),
)
def test_bad_options_are_one_line_and_exit_2(runner, filled, args) -> None:
    result = invoke(runner, "--db", filled, *args)
    _one_error_line(result, 2)
    assert result.stdout == ""


def test_the_emulators_account_is_twelve_ascii_digits(runner) -> None:
    """The account is the caller's, and the ARNs' and owners' in every answer. The host
    cannot be listened on: a check that let one through ends in that error, not a server."""
    for bad in ("12345", "1111222233334", "11112222333x", "\u0661" * 12):  # ١: a digit
        result = invoke(runner, "emulator", "serve", "--host", "256.0.0.1", "--account", bad)
        assert "is not an AWS account id (12 digits)" in _one_error_line(result, 2), bad
    fine = invoke(runner, "emulator", "serve", "--host", "256.0.0.1", "--account", "1" * 12)
    assert "cannot listen on 256.0.0.1:8765" in _one_error_line(fine, 2)


def test_a_too_long_window_plan_says_how_to_cut_a_backfill(runner, filled) -> None:
    args = ("sync", "--region", "us-east-1", "--since", "1d", "--window", "1s", "--dry-run")
    assert "--since/--until" in invoke(runner, "--db", filled, *args).stderr


def test_an_unknown_database_scheme_and_a_non_sqlite_file(runner, tmp_path) -> None:
    _one_error_line(invoke(runner, "--db", "foo://bar", "status"), 2)
    # postgres://, as many hosting services hand out a database's URL: SQLAlchemy takes
    # postgresql:// only, and the line said so in its words without the form it takes
    heroku = _one_error_line(invoke(runner, "--db", "postgres://u:S3cret@h/d", "status"), 2)
    assert "S3cret" not in heroku and "postgresql+psycopg://" in heroku
    # a port that is not a number was "unexpected ValueError", exit 1
    bad_port = _one_error_line(invoke(runner, "--db", "postgresql://u:S3cret@h:x/d", "status"), 2)
    assert "S3cret" not in bad_port and "not a database URL" in bad_port
    # SQLite's URL parsed before the check: the same, "unexpected ValueError"
    assert "not a database URL" in _one_error_line(invoke(runner, "--db", "sqlite://h:x/a.db",
                                                          "status"), 2)  # fmt: skip
    # a database in memory vanishes with the command: `db upgrade` said it was done
    for memory in ("sqlite://", "sqlite:///:memory:"):
        said = _one_error_line(invoke(runner, "--db", memory, "db", "upgrade"), 2)
        assert "in memory" in said
    # an empty --db (or ARCHIVER_DB) was "  is a directory", the working directory
    assert "empty" in _one_error_line(invoke(runner, "--db", "", "status"), 2)
    # a driver that is not installed: the hint names the distribution and the URL form
    # its postgres extra serves (psycopg2 is never installed here: the extra is psycopg 3)
    hint = _one_error_line(invoke(runner, "--db", "postgresql+psycopg2://u@h/d", "status"), 2)
    assert "'cloudmap-archiver[postgres]'" in hint and "postgresql+psycopg://" in hint
    text = tmp_path / "notes.db"
    text.write_text("hello, not a database\n" * 100)
    before = _digest(text)
    assert "not a SQLite database" in _one_error_line(
        invoke(runner, "--db", str(text), "db", "current"), 2
    )
    assert _digest(text) == before


@requires_sqlite
def test_a_truncated_archive_is_reported_damaged_and_left_alone(runner, filled, tmp_path):
    cut = tmp_path / "cut.db"
    data = Path(filled).read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    before = _digest(cut)
    for args in (("status",), ("db", "current"), ("query", "-o", "count")):
        assert "damaged" in _one_error_line(invoke(runner, "--db", str(cut), *args), 2)
    assert _digest(cut) == before


@requires_sqlite
def test_an_archive_corrupted_mid_file_is_reported_damaged(runner, tmp_path) -> None:
    """Its header reads well, so the archive opens; a query then meets a damaged page:
    "unexpected DatabaseError … malformed", exit 1. Damaged is exit 2, as a cut file is."""
    from tests.helpers import fill, op

    damaged = tmp_path / "mid.db"
    assert invoke(runner, "--db", str(damaged), "db", "upgrade").exit_code == 0
    fill(str(damaged), [op(i, minutes=i) for i in range(3000)])
    data = bytearray(damaged.read_bytes())
    page = 4096
    for start in range(len(data) // 2, len(data) - page, page * 3):  # every third page
        data[start : start + page] = b"\xa5" * page
    damaged.write_bytes(bytes(data))
    result = invoke(runner, "--db", str(damaged), "query", "-o", "json")
    assert "damaged" in _one_error_line(result, 2)


def test_a_broken_aws_config_is_bad_input(runner, archive, tmp_path, monkeypatch) -> None:
    config = tmp_path / "config"
    config.write_text("[profile x\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    result = invoke(runner, "--db", archive, "sync", "--profile", "x")
    assert "AWS config" in _one_error_line(result, 2)


def test_credentials_a_profile_cannot_produce_are_bad_input(runner, tmp_path,
                                                            monkeypatch) -> None:  # fmt: skip
    """A credential_process that fails, or a source_profile that is gone, was exit 1 as
    "CredentialRetrievalError: …", as if the service had failed; like credentials that
    are missing, they are bad input, and the message names the profile."""
    fails = f'"{sys.executable}" -c "import sys; sys.exit(\'token expired\')"'
    config = tmp_path / "config"
    config.write_text(f"[profile p]\nregion = eu-west-1\ncredential_process = {fails}\n"
                      "[profile r]\nregion = eu-west-1\nsource_profile = gone\n"
                      "role_arn = arn:aws:iam::123456789012:role/x\n")  # fmt: skip
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for profile, says in (("p", "token expired"), ("r", 'source_profile "gone"')):
        result = invoke(runner, "--db", str(tmp_path / "a.db"), "sync", "--profile", profile)
        assert f"profile {profile!r}: " in (line := _one_error_line(result, 2)) and says in line


@pytest.mark.parametrize("target", ["/dev/zero", "FIFO", "BIG"])
def test_filters_files_are_small_regular_files(runner, filled, tmp_path, target) -> None:
    path = {"/dev/zero": Path("/dev/zero"), "FIFO": tmp_path / "f", "BIG": tmp_path / "big.json"}
    if target == "FIFO":
        os.mkfifo(path[target])  # no writer: reading it would block for ever
    if target == "BIG":
        path[target].write_text(" " * (2 << 20))
    result = invoke(runner, "--db", filled, "query", "--filters", f"file://{path[target]}")
    _one_error_line(result, 2)


def test_json_output_of_an_unknown_source_prints_nothing(runner, filled) -> None:
    result = invoke(runner, "--db", filled, "query", "-o", "json", "--source", "nope")
    _one_error_line(result, 2)
    assert result.stdout == ""


def test_count_honours_max_items(runner, filled) -> None:
    result = invoke(runner, "--db", filled, "query", "-o", "count", "--max-items", "3")
    assert result.stdout == "3\n"


def test_status_of_an_unknown_source_is_bad_input(runner, filled) -> None:
    assert "no source named" in _one_error_line(
        invoke(runner, "--db", filled, "status", "--source", "typo"), 2
    )


def test_between_with_reversed_bounds_warns_that_nothing_can_match(runner, filled) -> None:
    f = "Name=UPDATE_DATE,Condition=BETWEEN,Values=2026-03-02T00:00:00Z,2026-03-01T00:00:00Z"
    result = invoke(runner, "--db", filled, "query", "--filters", f, "-o", "count")
    assert result.exit_code == 0
    assert result.stdout == "0\n"
    assert result.stderr.count("\n") == 1 and "nothing can match" in result.stderr


# --- usage errors and the JSON log format --------------------------------------------------


def test_usage_errors_are_one_line_or_one_json_object(runner, filled) -> None:
    text = invoke(runner, "--db", filled, "query", "--order-by", "bogus")
    assert "--order-by" in _one_error_line(text, 2)
    result = invoke(runner, "--log-format", "json", "--db", filled, "query", "--order-by", "x")
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert json.loads(line)["level"] == "error"
    assert {"time", "level", "message"} <= set(json.loads(line))  # a log shipper's fields
    unknown = invoke(runner, "--log-format=json", "--bogus")
    assert unknown.exit_code == 2 and json.loads(unknown.stderr)["level"] == "error"


def test_verbose_json_errors_carry_the_traceback_inside_the_object(runner, filled) -> None:
    args = ("-v", "--log-format", "json", "--db", filled, "status", "--source", "typo")
    result = invoke(runner, *args)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    entry = json.loads(line)
    assert "no source named" in entry["message"]
    assert "Traceback" in entry["traceback"]


# --- secrets ---------------------------------------------------------------------------------


def test_an_endpoint_password_never_leaves_the_process(runner, archive) -> None:
    url = "http://user:PASSWORD@127.0.0.1:9"  # nothing listens: the run fails
    args = ("--db", archive, "sync", "--region", "us-east-1", "--endpoint-url", url,
            "--source", "s", "--max-attempts", "1")  # fmt: skip
    result = invoke(runner, *args)
    assert result.exit_code == 1
    assert "PASSWORD" not in result.output and "user:***@" in result.stderr
    status = invoke(runner, "--db", archive, "status", "--json").stdout
    assert "PASSWORD" not in status and "user:***@127.0.0.1" in status
    stored = read_rows(archive, select(Source.endpoint_url, SyncRun.error).join(SyncRun))
    assert stored and all("PASSWORD" not in str(row) for row in stored)
    verbose = invoke(runner, "-v", *args)
    assert "PASSWORD" not in verbose.output


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://user:PASSWORD@127.0.0.1:1/archive",
    "postgresql+psycopg://user:PASS/WORD@127.0.0.1:1/archive",
    "postgresql+psycopg://user@127.0.0.1:1/archive?password=PASSWORD",
    "postgresql+psycopg://user@127.0.0.1:1/archive?sslmode=disable&password=PASSWORD",
])  # fmt: skip
@pytest.mark.parametrize("command", [["status"], ["status", "--check"], ["query"], ["export"],
                                     ["db", "current"], ["sources", "list"]])  # fmt: skip
def test_a_database_password_is_masked(runner, url, command) -> None:
    for extra in ([], ["-v"], ["--log-format", "json"]):
        result = invoke(runner, "--db", url, *extra, *command)
        assert result.exit_code in (1, 2)
        assert "PASS" not in result.output and "***" in result.stderr


@pytest.mark.skipif(not PG_URL, reason="needs a PostgreSQL server (ARCHIVER_TEST_DB_URL)")
def test_a_reachable_databases_password_is_masked_everywhere(runner, db, tmp_path) -> None:
    """With the server answering, the archive's name reaches `db current`, `status`, the
    logs and the HTML report's header: none of them shows the query's password."""
    from archiver.emulator import Emulator

    url = db + ("&" if "?" in db else "?") + "password=PASSWORD"
    with Emulator(seed_operations=20, seed=4) as emu:
        synced = invoke(runner, "--db", url, "-v", "sync", "--endpoint-url", emu.url,
                        "--region", "us-east-1")  # fmt: skip
    assert synced.exit_code == 0, synced.output
    report = tmp_path / "r.html"
    for command in (
        ["db", "current"],
        ["status"],
        ["status", "--json"],
        ["-v", "--log-format", "json", "status"],
        ["report", "--out", str(report)],
    ):
        result = invoke(runner, "--db", url, *command)
        assert result.exit_code == 0, (command, result.output)
        assert "PASSWORD" not in result.output, command
    assert "PASSWORD" not in synced.output and "PASSWORD" not in report.read_text()


# --- sources --------------------------------------------------------------------------------


def test_sources_remove_deletes_one_source_and_everything_it_holds(runner, archive) -> None:
    fill(archive, [op(i) for i in range(5)], source="typo@eu-west-9")
    fill(archive, [op(i) for i in range(3)], source="keep@eu-west-1")
    listed = json.loads(invoke(runner, "--db", archive, "sources", "list", "--json").stdout)
    assert {s["name"]: s["operations"] for s in listed} == {"keep@eu-west-1": 3,
                                                           "typo@eu-west-9": 5}  # fmt: skip
    refused = invoke(runner, "--db", archive, "sources", "remove", "typo@eu-west-9")
    assert "--yes" in _one_error_line(refused, 2)  # stdin is not a terminal
    assert read_rows(archive, select(func.count()).select_from(Operation))[0][0] == 8
    done = invoke(runner, "--db", archive, "sources", "remove", "typo@eu-west-9", "--yes")
    assert done.exit_code == 0, done.output
    assert done.stderr == "removed source 'typo@eu-west-9': 5 operations, 5 events, 0 runs\n"
    assert read_rows(archive, select(Source.name)) == [("keep@eu-west-1",)]
    assert read_rows(archive, select(func.count()).select_from(Operation))[0][0] == 3
    _one_error_line(invoke(runner, "--db", archive, "sources", "remove", "nope", "--yes"), 2)


@pytest.mark.slow  # a subprocess, its stdin a terminal
def test_on_a_terminal_sources_remove_asks_and_only_yes_deletes(archive) -> None:
    """Asked on a terminal, any answer but yes changes nothing (exit 2); yes deletes."""
    import pty

    fill(archive, [op(i) for i in range(5)], source="typo@eu-west-9")

    def answered(reply: bytes) -> subprocess.CompletedProcess[str]:
        main, terminal = pty.openpty()
        try:
            os.write(main, reply)  # waits in the terminal until the prompt reads it
            return subprocess.run([sys.executable, "-m", "archiver", "--db", archive, "sources",
                                   "remove", "typo@eu-west-9"], stdin=terminal, text=True,
                                  capture_output=True, timeout=60)  # fmt: skip
        finally:
            os.close(main)
            os.close(terminal)

    declined = answered(b"n\n")
    assert "Remove source 'typo@eu-west-9'? It holds 5 operations" in declined.stdout
    assert (declined.returncode, declined.stderr) == (2, "error: nothing changed\n")
    assert read_rows(archive, select(Source.name)) == [("typo@eu-west-9",)]
    accepted = answered(b"y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert read_rows(archive, select(Source.name)) == []


# --- demo -----------------------------------------------------------------------------------


def test_demo_refuses_an_archive_with_other_sources_and_ignores_archiver_db(
    runner, filled, tmp_path, monkeypatch
) -> None:
    before = read_rows(filled, select(func.count()).select_from(Operation))
    result = invoke(runner, "--db", filled, "demo", "--operations", "10")
    assert "other sources" in _one_error_line(result, 2)
    assert read_rows(filled, select(func.count()).select_from(Operation)) == before
    assert read_rows(filled, select(Source.name)) == [("test@us-east-1",)]
    monkeypatch.setenv("ARCHIVER_DB", filled)
    monkeypatch.chdir(tmp_path)
    assert invoke(runner, "demo", "--operations", "10").exit_code == 0
    assert (tmp_path / "demo.db").exists()
    assert read_rows(filled, select(Source.name)) == [("test@us-east-1",)]


def test_demo_makes_its_archive_where_db_names_a_new_one(runner, db) -> None:
    """A new SQLite file, or an empty PostgreSQL database: the demo makes the archive
    there as the sync does. Into an empty PostgreSQL database it said "run db upgrade"."""
    result = invoke(runner, "--db", db, "demo", "--operations", "10")
    assert result.exit_code == 0, result.output
    assert read_rows(db, select(Source.name)) == [("demo@emulator",)]


@requires_sqlite
def test_sources_remove_says_what_it_deletes_before_asking_and_leaves_no_lock_file(
    runner, archive
) -> None:
    from archiver.emulator import Emulator
    from tests.helpers import cli_sync

    with Emulator(seed_operations=25, seed=44) as emu:
        assert cli_sync(runner, archive, emu.url, "--source", "typo@eu-west-9").exit_code == 0
    locks = lambda: list(Path(archive).parent.glob(f"{Path(archive).name}.*.lock"))  # noqa: E731
    assert len(locks()) == 1  # the sync's
    declined = invoke(runner, "--db", archive, "sources", "remove", "typo@eu-west-9")
    assert "It holds 25 operations, 25 status events and 1 runs" in declined.stderr
    assert declined.exit_code == 2 and len(locks()) == 1  # nothing changed
    done = invoke(runner, "--db", archive, "sources", "remove", "typo@eu-west-9", "--yes")
    assert done.exit_code == 0, done.output
    assert locks() == []


@pytest.mark.slow  # over HTTP
def test_server_text_longer_than_any_old_column_is_kept(runner, db) -> None:
    """U9: on PostgreSQL a Type over 32 characters or a name over 1,024 failed every
    run; the service's text is unbounded now, on both engines, and kept exactly."""
    from dataclasses import replace

    from sqlalchemy import select

    from archiver.emulator import Emulator
    from archiver.store.models import Service
    from tests.helpers import assert_archive_equals, cli_sync, read_rows

    with Emulator(seed_operations=50, days=5, seed=97) as emu:
        account = emu.account
        first = account.all()[0]
        account.put(replace(first, type="REGISTER_INSTANCE_" + "X" * 40, status="S" * 20,
                            instance_id="i-" + "9" * 100))  # fmt: skip
        long_name = "svc-" + "n" * 1500
        account.services[0] = replace(account.services[0], name=long_name, type="T" * 40)
        result = cli_sync(runner, db, emu.url, "--source", "acct")
        assert result.exit_code == 0 and result.stderr == "", result.output
        assert_archive_equals(db, account)
    names = {r.id: (r.name, r.type) for r in read_rows(db, select(Service.id, Service.name,
                                                                 Service.type))}  # fmt: skip
    assert names[account.services[0].id] == (long_name, "T" * 40)


@requires_sqlite
@pytest.mark.slow  # over HTTP
def test_a_batch_that_rolls_back_leaves_the_runs_counts_as_they_were(runner, archive) -> None:
    """U9: the counts of a batch whose transaction failed stayed in sync_runs. Here the
    archive itself refuses one operation (a trigger), so the batch holding it rolls
    back: the run fails, and its recorded counts are those of what was stored. The
    driver's words are told, without SQLAlchemy's "(sqlite3.IntegrityError)" around
    them (a full disk read "OperationalError: (sqlite3.OperationalError) database or
    disk is full")."""
    import sqlite3

    from archiver.emulator import Emulator
    from tests.helpers import cli_sync

    with Emulator(seed_operations=1500, days=5, seed=98) as emu:
        doomed = emu.account.all()[-1].id  # listed on the last page: earlier batches commit
        with sqlite3.connect(archive) as conn:
            conn.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON operations WHEN NEW.id = "
                         f"'{doomed}' BEGIN SELECT RAISE(ABORT, 'refused'); END")  # fmt: skip
        result = cli_sync(runner, archive, emu.url, "--source", "acct")
    refused = "the archive's database: IntegrityError: refused"  # the database's, not the API's
    assert (result.exit_code, result.stderr) == (1, f"error: {refused}\n")
    (run,) = read_rows(archive, select(SyncRun.outcome, SyncRun.inserted, SyncRun.listed,
                                       SyncRun.error))  # fmt: skip
    stored = read_rows(archive, select(func.count()).select_from(Operation))[0][0]
    assert run.outcome == "failed" and 0 < stored < 1500 and run.error == refused
    assert (run.inserted, run.listed) == (stored, stored)


# --- the process's own streams --------------------------------------------------------------


@pytest.mark.slow  # processes and a server
@pytest.mark.engine_free  # the process's streams; the archive is a file here
def test_a_closed_stdout_or_stderr_is_like_dev_null(tmp_path) -> None:
    """`2>&-` in a crontab: the sync still runs and its exit code tells; a command whose
    stdout is closed prints to nowhere. Python leaves None for a closed stream, and each
    failed with "unexpected AttributeError" (the sync before any call)."""
    from archiver.emulator import Emulator

    db = str(tmp_path / "a.db")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}

    def closed(fd: int, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "archiver", "--db", db, *args], env=env,
                              capture_output=True, preexec_fn=lambda: os.close(fd),
                              timeout=120)  # fmt: skip

    with Emulator(seed_operations=40, seed=8) as emu:
        synced = closed(2, "sync", "--endpoint-url", emu.url, "--region", "us-east-1", "-v")
    assert synced.returncode == 0
    assert read_rows(db, select(func.count()).select_from(Operation)) == [(40,)]
    queried = closed(1, "query", "-o", "count")
    assert (queried.returncode, queried.stderr) == (0, b"")
    assert closed(2, "--db", str(tmp_path / "none.db"), "status").returncode == 2  # still told


@pytest.mark.slow  # processes
def test_a_full_disk_is_told_in_the_systems_words_exit_1(archive) -> None:
    """`archiver query -o json > out.json` on a full disk said "unexpected OSError", as
    if the tool had a bug; /dev/full answers every write with ENOSPC, as that disk does."""
    fill(archive, [op(i) for i in range(3)])
    for args in (("query", "-o", "json"), ("export",), ("status", "--json")):
        with open("/dev/full", "w") as full:
            done = subprocess.run([sys.executable, "-m", "archiver", "--db", archive, *args],
                                  stdout=full, stderr=subprocess.PIPE, timeout=60)  # fmt: skip
        assert done.returncode == 1 and done.stderr.decode() == (
            "error: [Errno 28] No space left on device (run with -v for details)\n"
        )


@pytest.mark.slow  # a process
def test_a_fleet_whose_json_reader_leaves_still_tells_its_failure(tmp_path) -> None:
    """`sync --all --json | head -1` (or a log shipper that dies): the first source's
    line broke the pipe, and the fleet ended with exit 0 though a later source failed,
    without that source's error line and without writing its metrics file."""
    from archiver.emulator import Emulator

    db, prom = tmp_path / "a.db", tmp_path / "archiver.prom"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    with Emulator(seed_operations=40, seed=8) as emu:
        config = tmp_path / "fleet.toml"
        config.write_text(f'[defaults]\nregion = "us-east-1"\nendpoint_url = "{emu.url}"\n'
                          '[[source]]\nname = "a"\n[[source]]\nname = "b"\n[[source]]\n'
                          'name = "broken"\nendpoint_url = "http://127.0.0.1:9"\n'
                          "max_attempts = 1\n")  # fmt: skip
        proc = subprocess.Popen([sys.executable, "-m", "archiver", "--config", str(config),
                                 "--db", str(db), "sync", "--all", "--parallel", "1", "--json",
                                 "--metrics-file", str(prom)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        assert json.loads(proc.stdout.readline())["source"] == "a"
        proc.stdout.close()  # the reader leaves
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 1, err
    assert err.startswith("error: source broken: ") and err.count("\n") == 1, err
    assert 'archiver_sync_last_run_outcome{outcome="failed",source="broken"} 1.0' in (
        prom.read_text()
    )


@pytest.mark.slow  # a process
@pytest.mark.parametrize("command", [["query", "-o", "csv"], ["query", "-o", "json"], ["export"]])
def test_a_reader_that_leaves_early_is_no_error(archive, command) -> None:
    """`archiver query -o csv | head -1` under `set -o pipefail`: the reader has all it
    wanted, so the command exits 0 and says nothing, though its stdout broke."""
    fill(archive, [op(n, error_message="x" * 100) for n in range(3000)])  # past a pipe's 64 KiB
    proc = subprocess.Popen([sys.executable, "-m", "archiver", "--db", archive, *command],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()
    proc.stdout.close()  # the reader leaves
    assert (proc.wait(timeout=60), proc.stderr.read()) == (0, b"")


@pytest.mark.slow  # a process
def test_csv_and_json_on_stdout_are_utf_8_whatever_the_locale(archive) -> None:
    """A locale that is not UTF-8 (here ISO-8859-1) made `query -o csv` "unexpected
    UnicodeEncodeError" at the first character it lacks, after printing part of the
    file, and wrote the rest in Latin-1: CSV and JSON are UTF-8 (RFC 4180's charset as
    the README states it, RFC 8259)."""
    fill(archive, [op(1, status="FAIL", error_message="Ünïcödé: 服务不可用")])
    env = {**os.environ, "PYTHONIOENCODING": "latin-1"}
    for output in ("csv", "json"):
        done = subprocess.run([sys.executable, "-m", "archiver", "--db", archive, "query", "-o",
                               output], env=env, capture_output=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "Ünïcödé: 服务不可用" in done.stdout.decode("utf-8")


@pytest.mark.slow  # two connections that time out
@pytest.mark.engine_free  # a socket that plays a server that never answers
@pytest.mark.skipif(not PG_URL, reason="needs a PostgreSQL server (ARCHIVER_TEST_DB_URL)")
def test_a_database_server_gone_mid_statement_is_noticed_in_a_minute(archive) -> None:
    """A server gone in a partition or a failover answers nothing, not even a reset: the
    sync waited on its socket as long as the system's keepalive says, two hours and 11
    minutes on Linux. Its connections now probe after 30 s idle, every 10 s, 3 times;
    a URL's own value wins. Read from the sockets, where the kernel applies them."""
    import socket

    from archiver.store.archive import Archive

    def probing(url: str) -> tuple[int, ...]:
        with Archive(url) as handle, handle.writer.connect() as conn:
            raw = conn.connection.dbapi_connection
            sock = socket.socket(fileno=raw.fileno())  # type: ignore[union-attr]
            try:
                return (
                    sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                    *(
                        sock.getsockopt(socket.IPPROTO_TCP, option)
                        for option in (
                            socket.TCP_KEEPIDLE,
                            socket.TCP_KEEPINTVL,
                            socket.TCP_KEEPCNT,
                            socket.TCP_USER_TIMEOUT,
                        )
                    ),
                )
            finally:
                sock.detach()  # the connection's own descriptor stays open

    assert probing(archive) == (1, 30, 10, 3, 60_000)
    assert probing(archive + ("&" if "?" in archive else "?") + "keepalives_idle=5") == (
        1,
        5,
        10,
        3,
        60_000,
    )


@pytest.mark.slow  # a sync partitioned from its database, then run again
@pytest.mark.skipif(not PG_URL, reason="needs a PostgreSQL server (ARCHIVER_TEST_DB_URL)")
def test_a_partition_mid_run_fails_the_run_in_seconds_and_the_next_run_completes(archive) -> None:
    """A partition that begins between two statements: the next one's packets are never
    acknowledged, and keepalives do not probe a connection with data in flight, so the
    sync waited on TCP's retransmissions, about 15 minutes on Linux. A connection now
    gives up once what it sent has gone unacknowledged for 60 s (2 s here, the URL's own
    value; the shipped value is read back in the test above); the run fails (exit 1)
    and the next one completes. Real packets, dropped by the kernel (iptables): every
    packet the sync's process sends to the server, matched by its group id.

    After the first wait (6 s here) the run tries two new connections, connect_timeout
    (2 s here, libpq's least) each: for the batch it was storing and to record its
    failure. The lock's session is then closed, not sent an unlock that would wait 6 s
    again (16-17 s in all before, 11 s after; with the shipped values, 60 s a wait and
    30 s a connection: 180 s before, 120 s after).

    The kernel ends a connection at the retransmission after tcp_user_timeout, not at
    it: on a loaded machine (CI's two passes on two cores) the backoff stretched the
    one wait to 13 s, and a bound on the whole run failed with the fix in place. So the
    wait is timed apart: it ends when the run first tries a new connection (its SYN,
    counted by a rule of its own). From there the run ends in 4.4 s, its two connects,
    loaded or not; an unlock sent into the partition made it 10.4 s (a second wait)."""
    import shutil
    import time

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from archiver.emulator import Emulator
    from tests.conftest import prerequisite_missing

    if os.geteuid() != 0 or not shutil.which("iptables"):
        prerequisite_missing("iptables", "root and iptables, to drop a process's packets")
    server = make_url(archive)
    url = archive + ("&" if "?" in archive else "?") + "tcp_user_timeout=6000&connect_timeout=2"
    gid = 40000 + os.getpid() % 20000  # the sync's alone: its packets are the ones dropped
    rule = ["OUTPUT", "-p", "tcp", "-d", server.host or "127.0.0.1", "--dport",
            str(server.port or 5432), "-m", "owner", "--gid-owner", str(gid), "-j", "DROP"]  # fmt: skip
    syn = [*rule[:3], "--syn", *rule[3:]]  # the same packets' SYNs alone
    watcher = create_engine(archive, isolation_level="AUTOCOMMIT")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    cut = False
    try:
        with Emulator(seed_operations=300, latency_ms=50, seed=31) as emu:
            sync = [sys.executable, "-m", "archiver", "--db", url, "sync", "--region",
                    "us-east-1", "--endpoint-url", emu.url, "--source", "p"]  # fmt: skip
            run = subprocess.Popen(sync, env=env, stderr=subprocess.PIPE, text=True, group=gid)
            deadline = time.monotonic() + 60
            while emu.counters.get_calls < 30 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert run.poll() is None
            cut = True
            subprocess.run(["iptables", "-I", *rule], check=True)
            subprocess.run(["iptables", "-I", *syn], check=True)  # first: it counts the SYNs
            started = time.monotonic()
            reconnected = None
            while run.poll() is None and time.monotonic() - started < 300:
                if reconnected is None and _syns(gid):
                    reconnected = time.monotonic()  # the first wait is over
                time.sleep(0.05)
            ended = time.monotonic()
            err = run.stderr.read() if run.stderr else ""
            assert run.returncode == 1, err
            assert reconnected is not None, err
            assert reconnected - started < 30  # one wait of 6-13 s, not TCP's 15 minutes
            assert ended - reconnected < 7.5, ended - reconnected  # two connects (4.4 s), no wait
            assert err.endswith(
                "error: the archive's database: ConnectionTimeout: connection timeout expired\n"
            ), err
            for dropping in (syn, rule):
                subprocess.run(["iptables", "-D", *dropping], check=True)
            cut = False
            with watcher.connect() as conn:  # the server's side of the old sessions, as its
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = current_database() AND pid <> "
                                  "pg_backend_pid()"))  # fmt: skip  # keepalive would, later
            again = subprocess.run(sync, env=env, capture_output=True, text=True, timeout=120)
            assert again.returncode == 0, again.stderr
            with watcher.connect() as conn:
                stored = conn.execute(select(func.count()).select_from(Operation)).scalar_one()
            assert stored == len(emu.account) == 300
    finally:
        if cut:
            for dropping in (syn, rule):
                subprocess.run(["iptables", "-D", *dropping], check=False)
        watcher.dispose()


def _syns(gid: int) -> int:
    """The SYNs the partition test's rule has dropped: the sync's new connections."""
    rules = subprocess.run(["iptables", "-L", "OUTPUT", "-v", "-x", "-n"], check=True,
                           capture_output=True, text=True).stdout.splitlines()  # fmt: skip
    return sum(int(r.split()[0]) for r in rules if "flags:0x17/0x02" in r
               and f"owner GID match {gid}" in r)  # fmt: skip


def test_a_database_server_that_never_answers_is_an_error_not_a_hang(runner, monkeypatch):
    """libpq waits for ever on a server that accepts a connection and never answers (a
    frozen server, a stuck balancer): each night's cron job hung, and the next piled
    up beside it. A connection now gives up (30 s), unless the URL sets its own."""
    import socket
    import threading

    from archiver.store import db

    server = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does), says nothing
    url = f"postgresql+psycopg://u@127.0.0.1:{server.getsockname()[1]}/x"

    def status(query: str) -> list[object]:
        done: list[object] = []
        thread = threading.Thread(target=lambda: done.append(
            invoke(runner, "--db", url + query, "status")), daemon=True)  # fmt: skip
        thread.start()
        thread.join(20)
        return done

    try:
        for default, query in ((1, ""), (600, "?connect_timeout=1")):  # the URL's own wins
            monkeypatch.setitem(db.PG_WAITS, "connect_timeout", default)
            done = status(query)
            assert done, "status hung on a server that never answers"
            assert "timeout expired" in _one_error_line(done[0], 1)
    finally:
        server.close()  # a connection still waiting is refused


@pytest.mark.slow  # a sync in a subprocess, over HTTP
def test_a_sync_under_a_low_open_files_limit_raises_it_and_completes(archive) -> None:
    """Each GetOperation in flight holds a socket. Under a soft limit of 20 open files
    (systemd's default of 1,024 is as tight for a fleet at --parallel 30) the sync
    failed with "Could not connect to the endpoint URL": botocore's words for EMFILE."""
    import resource

    from archiver.emulator import Emulator

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with Emulator(seed_operations=3000, seed=41) as emu:
        done = subprocess.run([sys.executable, "-m", "archiver", "--db", archive, "sync",
                               "--endpoint-url", emu.url, "--region", "us-east-1", "--json"],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "AWS_ACCESS_KEY_ID": "k",
                                   "AWS_SECRET_ACCESS_KEY": "s"},
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                                    (20, hard)))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["inserted"] == 3000


@pytest.mark.slow  # syncs in subprocesses
def test_a_call_that_cannot_connect_says_the_systems_reason(archive, tmp_path) -> None:
    """botocore says "Could not connect to the endpoint URL" for a refused connection,
    a name that does not resolve and a process out of open files alike; the reason
    under it is what sends its reader to the right place."""
    import resource
    import socket

    from archiver.emulator import Emulator

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
           "AWS_MAX_ATTEMPTS": "1"}  # fmt: skip

    def sync(url: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "archiver", "--db", archive, "sync",
                               "--endpoint-url", url, "--region", "us-east-1", "--source",
                               url], capture_output=True, text=True, timeout=120, env=env,
                              **kw)  # fmt: skip

    refused = sync(closed)
    assert refused.returncode == 1 and refused.stderr.endswith(" (Connection refused)\n")
    with Emulator(seed_operations=3000, seed=42) as emu:  # the hard limit too: no way up
        starved = sync(emu.url, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                                      (20, 20)))  # fmt: skip
    assert starved.returncode == 1 and starved.stderr.endswith(" (Too many open files)\n")
