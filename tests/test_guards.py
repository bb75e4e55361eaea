"""The guards every surface passes through: files written, user files read, secrets,
server text (archiver/guards.py). Each case is an input that once destroyed data,
hung a command or leaked a secret."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archiver import guards
from archiver.emulator import Emulator
from archiver.errors import UsageError
from tests.conftest import invoke, requires_sqlite
from tests.helpers import cli_sync, fill, op, small_files

pytestmark = requires_sqlite  # about files beside a SQLite archive


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["absolute", "relative", "wal", "fifo", "directory", "dot"])
def test_metrics_file_never_replaces_the_archive_or_a_special_file(
    runner, tmp_path, monkeypatch, how
) -> None:
    monkeypatch.chdir(tmp_path)
    archive = tmp_path / "a.db"
    with Emulator(seed_operations=30, seed=5) as emu:
        assert cli_sync(runner, str(archive), emu.url, "--source", "s").exit_code == 0
        before = _digest(archive)
        fifo = tmp_path / "metrics.fifo"
        os.mkfifo(fifo)
        (tmp_path / "d").mkdir()
        path = {"absolute": str(archive), "relative": "a.db", "wal": "a.db-wal",
                "fifo": str(fifo), "directory": "d", "dot": "."}[how]  # fmt: skip
        calls = sum(emu.counters.calls.values())
        result = cli_sync(runner, str(archive), emu.url, "--source", "s", "--metrics-file", path)
        assert sum(emu.counters.calls.values()) == calls  # refused before any call
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: --metrics-file ") and result.stderr.count("\n") == 1
    assert _digest(archive) == before
    assert fifo.is_fifo() and (tmp_path / "d").is_dir()


def test_an_export_never_replaces_an_archive_named_as_its_manifest(runner, tmp_path) -> None:
    archive = tmp_path / "q4.csv.manifest.json"
    assert invoke(runner, "--db", str(archive), "db", "upgrade").exit_code == 0
    before = _digest(archive)
    result = invoke(runner, "--db", str(archive), "export", "--out", str(tmp_path / "q4.csv"))
    assert result.exit_code == 2, result.output
    assert "manifest" in result.stderr and result.stderr.count("\n") == 1
    assert _digest(archive) == before and not (tmp_path / "q4.csv").exists()


@pytest.mark.slow
def test_a_symlink_planted_where_the_tool_writes_in_place_is_never_followed(
    runner, tmp_path
) -> None:
    """The lock beside the archive and an export's temporary file have names anyone
    with the folder can guess: a symlink planted at either had the tool truncate its
    target (another user's file, or the archive itself) and write into it."""
    archive = tmp_path / "a.db"
    victim = tmp_path / "victim.db"
    with Emulator(seed_operations=30, seed=5) as emu:
        assert cli_sync(runner, str(archive), emu.url, "--source", "s").exit_code == 0
        (lock,) = tmp_path.glob("a.db.s.*.lock")
        victim.write_bytes(archive.read_bytes())
        lock.unlink()
        lock.symlink_to(victim)
        planted = cli_sync(runner, str(archive), emu.url, "--source", "s")
    assert planted.exit_code == 2 and "is a symlink" in planted.stderr, planted.output
    assert _digest(victim) == _digest(archive)
    partial = tmp_path / f".out.csv.partial-{os.getpid()}"  # the exporting process's pid
    partial.symlink_to(victim)
    exported = invoke(runner, "--db", str(archive), "export", "--out", str(tmp_path / "out.csv"))
    assert exported.exit_code == 0, exported.output  # an earlier process's leftover: removed
    assert _digest(victim) == _digest(archive) and (tmp_path / "out.csv").stat().st_size > 0
    assert not partial.is_symlink() and victim.exists()


@pytest.mark.parametrize("name", ["/dev/stdout", "/dev/stderr", "/dev/fd/1", "/proc/self/fd/1"])
def test_a_processs_file_descriptor_is_never_written(name) -> None:
    """Whatever fd 1 is (pytest sends it to a regular file): `export --out /dev/stdout`
    with stdout sent to a file wrote there, and made its manifest in /dev as root. A
    regular file on /dev/shm (a RAM disk) is a file like any other."""
    with pytest.raises(UsageError, match="names a process's file"):
        guards.target(Path(name), flag="--out")
    with pytest.raises(UsageError, match="needs a file name, not '-'"):  # made a file named -
        guards.target(Path("-"), flag="--out")
    assert guards.target(Path("/dev/shm/archiver-export.csv"), flag="--out").mode is None


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fifo", "zero", "directory"])
def test_a_config_that_is_no_regular_file_is_refused_at_once(tmp_path, kind) -> None:
    path = {"fifo": tmp_path / "c.toml", "zero": Path("/dev/zero"), "directory": tmp_path}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    for env_or_flag in ("flag", "env"):
        args = ["--config", str(path)] if env_or_flag == "flag" else []
        env = {**os.environ, "ARCHIVER_CONFIG": str(path)} if env_or_flag == "env" else None
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "archiver", *args, "--db",
                               str(tmp_path / "a.db"), "status"], capture_output=True,
                              text=True, timeout=5, env=env)  # fmt: skip
        assert time.monotonic() - started < 5
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: config ") and done.stderr.count("\n") == 1


def test_a_filters_file_that_is_a_directory_is_bad_input(runner, archive, tmp_path) -> None:
    result = invoke(runner, "--db", archive, "query", "--filters", f"file://{tmp_path}")
    assert result.exit_code == 2 and "is a directory" in result.stderr


def test_a_users_file_of_1_mb_is_read_and_a_byte_more_is_refused(runner, archive, tmp_path):
    """The README's bound, to the byte: a filters file of 1,000,000 bytes (JSON padded
    with spaces) is read; one more byte is refused before the archive is read (exit 2)."""
    fill(archive, [op(1, status="FAIL"), op(2)])
    filters = tmp_path / "f.json"
    text = '[{"Name": "STATUS", "Values": ["FAIL"]}]'
    filters.write_text(text.ljust(1_000_000))
    found = invoke(runner, "--db", archive, "query", "--filters", f"file://{filters}", "-o", "ids")
    assert (found.exit_code, found.stdout) == (0, f"{op(1).id}\n"), found.output
    filters.write_text(text.ljust(1_000_001))
    refused = invoke(runner, "--db", archive, "query", "--filters", f"file://{filters}")
    assert refused.exit_code == 2 and refused.stdout == "", refused.output
    assert refused.stderr.endswith("is larger than 1,000,000 bytes\n"), refused.stderr


def test_a_users_file_saved_with_a_byte_order_mark_is_read(runner, archive, tmp_path) -> None:
    """Windows editors save UTF-8 with a BOM: a config was "not TOML (at line 1, column
    1)", and a filters file an unreadable shorthand."""
    from archiver.sync import fleet

    config = tmp_path / "c.toml"
    config.write_bytes(b'\xef\xbb\xbf[[source]]\nname = "a"\nregion = "us-east-1"\n')
    assert [s["source"] for s in fleet.load(config).sources] == ["a"]
    fill(archive, [op(1, status="FAIL"), op(2)])
    filters = tmp_path / "f.json"
    filters.write_bytes(b'\xef\xbb\xbf[{"Name": "STATUS", "Values": ["FAIL"]}]')
    found = invoke(runner, "--db", archive, "query", "--filters", f"file://{filters}", "-o", "ids")
    assert (found.exit_code, found.stdout) == (0, f"{op(1).id}\n"), found.output


def test_the_write_guard_keeps_a_files_mode_and_leaves_nothing_on_failure(tmp_path) -> None:
    path = tmp_path / "out.csv"
    path.write_text("old")
    path.chmod(0o600)
    target = guards.target(path, flag="--out")
    with pytest.raises(RuntimeError), guards.replacing(target) as fh:
        fh.write(b"half")
        raise RuntimeError("killed")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    guards.write_file(target, b"new")
    assert path.read_text() == "new" and (path.stat().st_mode & 0o777) == 0o600
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(Exception, match="symlink to nothing"):
        guards.target(link, flag="--out")
    fresh = tmp_path / "fresh.csv"  # a new file takes the umask, as open() gives it
    old_mask = os.umask(0o002)
    try:
        guards.write_file(guards.target(fresh, flag="--out"), b"x")
    finally:
        os.umask(old_mask)
    assert fresh.stat().st_mode & 0o777 == 0o664


@pytest.mark.slow
def test_a_write_the_disk_refuses_names_the_file_and_leaves_nothing(archive, tmp_path) -> None:
    """A full disk said "[Errno 28] No space left on device", naming no file; an export
    and the archive may be on different disks."""
    fill(archive, [op(i) for i in range(1000)])  # about 300 kB of CSV
    out = tmp_path / "out" / "ops.csv"
    out.parent.mkdir()
    done = subprocess.run([sys.executable, "-m", "archiver", "--db", archive, "export", "--out",
                           str(out)], capture_output=True, text=True, timeout=30,
                          preexec_fn=small_files(100_000))  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"error: --out {out} was not written: File too large\n"
    assert list(out.parent.iterdir()) == []  # neither the file, nor a partial one


def test_a_report_named_gz_is_gzipped(tmp_path) -> None:
    target = guards.target(tmp_path / "r.html.gz", flag="--out")
    guards.write_file(target, b"<html></html>")
    assert gzip.decompress((tmp_path / "r.html.gz").read_bytes()) == b"<html></html>"


@pytest.mark.parametrize(
    "text",
    [
        "postgresql+psycopg://u:S3cret@host:1/db",
        "postgresql+psycopg://u:S3cret/x:y@host:1/db",  # SQLAlchemy reads up to the '@'
        "postgresql+psycopg://u@host:1/db?password=S3cret",
        "postgresql+psycopg://u@host:1/db?sslmode=require&password=S3cret&x=1",
        "host=db user=u password=S3cret dbname=a",
        "host=db user=u password='S3 cret' dbname=a",
        "https://proxy/?X-Amz-Security-Token=S3cret&a=b",
    ],
)
def test_every_secret_form_is_masked(text) -> None:
    shown = guards.redact(f"error: cannot connect to {text}")
    assert "S3cret" not in shown and "S3 cret" not in shown and "***" in shown


def test_a_masked_secret_leaves_the_message_around_it_whole() -> None:
    shown = guards.redact("cannot open pg://u@h/db?password=S3:cret: connection refused")
    assert shown == "cannot open pg://u@h/db?password=***: connection refused"


def test_server_text_reaches_a_terminal_escaped() -> None:
    shown = guards.printable("svc\x1b[31m\nstale: source x\r")
    assert "\x1b" not in shown and "\n" not in shown and "\r" not in shown
    assert shown == "svc\\x1b[31m\\nstale: source x\\r"


def test_server_text_in_the_query_table_and_status_never_reaches_a_terminal_raw(
    runner, archive
) -> None:
    from archiver.records import Listed
    from archiver.store import write as store
    from archiver.store.archive import Archive
    from tests.helpers import T0, fill, op

    hostile = "svc\x1b[2J\nstale: source forged"
    fill(archive, [op(1, type="NEW\x1b[31m\n", status="SUCCESS")], source="s")
    with Archive(archive) as handle, handle.writer.begin() as conn:
        sid = store.ensure_source(conn, "s", region="us-east-1")
        store.record_catalog(conn, sid, "services", [Listed("srv-1", hostile, None, None, None,
                             None)], seen_at=T0, complete=False)  # fmt: skip
    table = invoke(runner, "--db", archive, "query")
    status = invoke(runner, "--db", archive, "status")
    for shown in (table.stdout, status.stdout):
        assert "\x1b" not in shown and "stale: source forged" not in shown.splitlines()
    assert len(table.stdout.splitlines()) == 3  # header, one operation, the count


def _on_a_terminal(*args: str) -> bytes:
    """What `archiver ARGS` writes on stdout when stdout is a terminal."""
    import pty

    leader, follower = pty.openpty()
    done = subprocess.Popen([sys.executable, "-m", "archiver", *args], stdout=follower,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    os.close(follower)
    seen = b""
    try:
        while chunk := os.read(leader, 65536):  # until the process and its terminal end
            seen += chunk
    except OSError:  # EIO: nothing holds the terminal any more
        pass
    finally:
        os.close(leader)
    assert done.wait(timeout=60) == 0, seen
    return seen


@requires_sqlite
@pytest.mark.slow  # processes on a pseudo-terminal
@pytest.mark.parametrize("args", [["query", "-o", "csv"], ["query", "-o", "json"], ["export"],
                                  ["instances", "--service", "srv-1", "--at", "2030-01-01",
                                   "-o", "csv"], ["sources", "list", "--json"],
                                  ["status", "--json"]])  # fmt: skip
def test_csv_and_json_on_a_terminal_are_escaped_and_exact_in_a_pipe(archive, args) -> None:
    """CSV and JSON are data for a file or a pipe, and passed an ESC (JSON a C1 CSI)
    from the server straight to a terminal they were shown on. A source named by an
    older archiver may hold one too."""
    fill(archive, [op(1, status="FAIL", error_message="no\x1b[2J\x9b31m\rforged"),
                   op(2, instance="i-1\x1b]0;title\x07")], source="s\x9b1\x1b")  # fmt: skip
    shown = _on_a_terminal("--db", archive, *args)
    assert not set(shown.decode()) & {"\x1b", "\x9b", "\x07"}, shown
    assert b"\\u001b" in shown and shown.count(b"\r\n") > 1  # escaped, and still lines
    piped = subprocess.run([sys.executable, "-m", "archiver", "--db", archive, *args],
                           capture_output=True, timeout=60, check=True).stdout  # fmt: skip
    assert set(piped.decode()) & {"\x1b", "\x9b"}  # a file or a pipe gets the data as it is


@requires_sqlite
@pytest.mark.slow  # processes on a pseudo-terminal
def test_every_form_of_the_instances_answer_prints_on_a_terminal(archive) -> None:
    """The terminal's escaping stream must be a whole text stream: `instances -o ids`
    called its ``writelines``, which it lacked, and ended in an AttributeError (exit 1)."""
    fill(archive, [op(2, instance="i-1\x1b]0;title\x07")])
    for output in ("table", "json", "csv", "ids", "count"):
        shown = _on_a_terminal("--db", archive, "instances", "--service", "srv-1", "--at",
                               "2030-01-01", "-o", output).decode()  # fmt: skip
        assert "\x1b" not in shown and ("i-1" in shown or shown == "1\r\n"), (output, shown)


def test_ids_the_server_sent_with_a_line_break_stay_one_line_each(runner, archive) -> None:
    """`-o ids` is read by people and by xargs: an id holding a line break printed two
    lines, the second an id no operation has."""
    from tests.helpers import fill, op

    fill(
        archive,
        [op("op-1\nop-forged", instance="i-1\x1b[2J\ni-forged"), op(2, minutes=1, instance="i-2")],
    )
    queried = invoke(runner, "--db", archive, "query", "-o", "ids", "--ascending")
    assert queried.stdout.splitlines() == ["op-1\\nop-forged", "op-000002"]
    registered = invoke(runner, "--db", archive, "instances", "--service", "srv-1", "-o", "ids")
    assert sorted(registered.stdout.splitlines()) == ["i-1\\x1b[2J\\ni-forged", "i-2"]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_server_text_in_a_warning_is_one_line_and_escaped(capsys, log_format) -> None:
    """A listing's failure is a warning carrying the server's error text: a line break
    or an escape sequence in it forged a second line or moved the cursor."""
    import logging

    from archiver import logs

    logs.configure(verbose=False, quiet=False, log_format=log_format)
    logging.getLogger("archiver.sync").warning(
        "cannot list the namespaces (%s)", "denied\x1b[2J\nERROR: forged user:pw@h://x:S3cret@h"
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "S3cret" not in err
    message = json.loads(err)["message"] if log_format == "json" else err
    assert "denied" in message and "forged" in message


@pytest.mark.parametrize("verbose", [False, True])
def test_a_librarys_error_is_a_json_line_its_traceback_only_with_v(capsys, verbose) -> None:
    """SQLAlchemy's pool logs a connection it could not close with its traceback. Python's
    last-resort handler printed that as plain text, lines a log shipper reading JSON
    cannot parse, and without -v."""
    import logging

    from archiver import logs

    logs.configure(verbose=verbose, quiet=False, log_format="json")
    try:
        raise OSError("disk I/O error")
    except OSError:
        logging.getLogger("sqlalchemy.pool.impl.QueuePool").error("Exception closing connection",
                                                                  exc_info=True)  # fmt: skip
    entry = json.loads(capsys.readouterr().err)
    assert (entry["logger"], entry["message"]) == ("sqlalchemy.pool.impl.QueuePool",
                                                   "Exception closing connection")  # fmt: skip
    assert ("disk I/O error" in entry.get("traceback", "")) is verbose


@pytest.mark.slow  # over HTTP
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_server_text_in_an_error_line_is_one_line_and_escaped(runner, archive, monkeypatch,
                                                              log_format) -> None:  # fmt: skip
    """The error that ends a run quotes the service: on a terminal its escape sequence
    is shown escaped; a JSON line carries the text itself, JSON-escaped."""
    from tests.misbehaving import Misbehaving

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    said = {"__type": "AccessDeniedException", "message": "denied\x1b[2J\nERROR: forged"}
    with Misbehaving(lambda _op, _req: json.dumps(said).encode(), status=400) as hostile:
        result = cli_sync(runner, archive, hostile.url, "--source", "acct",
                          "--log-format", log_format)  # fmt: skip
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "\x1b" not in result.stderr
    if log_format == "json":
        assert "denied\x1b[2J ERROR: forged" in json.loads(result.stderr)["message"]
    else:
        assert result.stderr == ("error: ListOperations failed: AccessDeniedException: "
                                 "denied\\x1b[2J ERROR: forged\n")  # fmt: skip
