"""Archives shared between Unix users: a reader without write permission leaves
nothing behind that would stop the owner's next sync, and a read-only place is
reported as what it is.

Real users, not mocks: root (which CI is) creates two system users, and each step
runs in a forked child that drops to one of them. The parent runs every step once
first, as root on a scratch archive, so that the child needs no file the other user
could not read (modules, botocore's models).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import botocore.session
import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.emulator import Emulator
from archiver.store.archive import Archive
from archiver.sync.client import make_client
from archiver.sync.options import ClientSettings
from archiver.sync.run import Syncer, SyncOptions
from tests.conftest import on_postgres, prerequisite_missing

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(on_postgres(), reason="about SQLite files; the SQLite pass runs it"),
]
# Unique to the run, so that two runs on one machine never share (or delete) a user.
OWNER, READER = f"arch-owner-{os.getpid()}", f"arch-reader-{os.getpid()}"


@pytest.fixture(scope="module")
def users() -> Iterator[dict[str, pwd.struct_passwd]]:
    """Two system users, made for this run and removed after it. Only where
    ARCHIVER_REQUIRE names root (as CI does): a developer's machine gets no users."""
    required = {w.strip() for w in os.environ.get("ARCHIVER_REQUIRE", "").split(",")}
    if "root" not in required or os.geteuid() != 0 or not shutil.which("useradd"):
        prerequisite_missing(
            "root",
            "root and useradd, to make two Unix users for the run "
            "(made, and removed after, only where asked)",
        )
    made = []
    try:
        for name in (OWNER, READER):
            subprocess.run(["useradd", "--system", "--no-create-home", name], check=True)
            made.append(name)
        yield {name: pwd.getpwnam(name) for name in made}
    finally:
        for name in made:
            subprocess.run(["userdel", name], check=False)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory both users may write (pytest's own tmp dirs are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="archiver-shared-", dir="/tmp"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


#: A step's limit: every one takes seconds. A child forked while another thread of the
#: parent held a lock inherits it held: CI once saw a child wait for ever on OpenSSL's,
#: making the client's SSL context before any archive was opened.
STEP_SECONDS = 120


def as_user(user: pwd.struct_passwd, step: Callable[[], int], *, wait: bool = True) -> int:
    """Run ``step`` in a child process as ``user``; its return value is the exit code
    (``wait=False``: the child's pid, at once). A child still running after
    STEP_SECONDS is ended (SIGALRM) and the step forked once more, saying so."""
    for attempt in (1, 2):
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 99
            try:
                if wait:
                    signal.alarm(STEP_SECONDS)  # its default action ends the child
                os.setgroups([])
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)
                code = step()
            finally:
                os._exit(code)
        if not wait:
            return pid
        _, status = os.waitpid(pid, 0)
        if attempt == 2 or not os.WIFSIGNALED(status) or os.WTERMSIG(status) != signal.SIGALRM:
            break
        print(f"a step as {user.pw_name} hung for {STEP_SECONDS} s; forked again", file=sys.stderr)
    return os.waitstatus_to_exitcode(status)


def _cli(*args: str, output: Path | None = None) -> Callable[[], int]:
    def step() -> int:
        result = CliRunner().invoke(app, list(args))
        print(result.output)  # shown by pytest when the test fails
        if output is not None:
            output.write_text(result.output)
        return result.exit_code

    return step


def _sync(db: str, url: str, session: object) -> Callable[[], int]:
    def step() -> int:
        settings = ClientSettings(region="us-east-1", endpoint_url=url)
        client = make_client(settings, botocore_session=session)
        with Archive.open(db, create_missing=True) as archive:
            opts = SyncOptions(source="acct", region="us-east-1", endpoint_url=url)  # as built
            summary = Syncer(archive, client, opts).run()
        return 0 if summary.outcome == "succeeded" else 1

    return step


def _count(db: str) -> int:
    with Archive.open(db) as archive, archive.reader.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM operations").scalar_one())


def test_a_reader_without_write_permission_never_stops_the_owners_sync(users, shared) -> None:
    owner, reader = users[OWNER], users[READER]
    db = str(shared / "archive.db")
    session = botocore.session.get_session()
    with Emulator(seed_operations=500, seed=21) as emu:
        warm = str(shared / "warm.db")
        assert _sync(warm, emu.url, session)() == 0  # as root: loads all a sync needs
        assert _cli("--db", warm, "query", "-o", "count")() == 0
        assert as_user(owner, _sync(db, emu.url, session)) == 0
        os.chmod(db, 0o644)  # the owner's archive: others may read it, not write it
        for side in ("-wal", "-shm"):
            assert not Path(db + side).exists()  # the owner's sync closed cleanly
        assert as_user(reader, _cli("--db", db, "query", "-o", "count")) == 0
        assert as_user(reader, _cli("--db", db, "export", "--raw")) == 0
        left = [p.name for p in shared.iterdir() if p.stat().st_uid == reader.pw_uid]
        assert left == []  # no -wal or -shm of the reader's own
        emu.account.add_operations(50)
        assert as_user(owner, _sync(db, emu.url, session)) == 0
    assert _count(db) == 550


def test_a_read_only_directory_is_reported_as_such_and_still_readable(users, shared) -> None:
    owner = users[OWNER]
    place = shared / "ro"
    place.mkdir()
    db = str(place / "archive.db")
    with Emulator(seed_operations=100, seed=22) as emu:
        assert _cli("--db", str(shared / "warm.db"), "demo", "--operations", "5")() == 0
        assert as_user(owner, lambda: 0) == 0
        session = botocore.session.get_session()
        assert _sync(db, emu.url, session)() == 0  # as root
        os.chown(place, owner.pw_uid, owner.pw_gid)
        os.chown(db, owner.pw_uid, owner.pw_gid)
        place.chmod(0o555)  # nobody may add -wal/-shm or a journal beside the archive
        sync = ("--db", db, "sync", "--region", "us-east-1", "--endpoint-url", emu.url,
                "--source", "acct")  # fmt: skip
        assert _cli(*sync)() == 0  # as root first (root may write anywhere), for the imports
        before = Path(db).read_bytes()
        assert as_user(owner, _cli(*sync)) == 2
        assert as_user(owner, _cli("--db", db, "query", "-o", "count")) == 0
        assert Path(db).read_bytes() == before


def test_a_shm_left_by_another_user_is_named_not_misreported(users, shared) -> None:
    owner, reader = users[OWNER], users[READER]
    db = str(shared / "archive.db")
    with Emulator(seed_operations=50, seed=23) as emu:
        session = botocore.session.get_session()
        assert _sync(str(shared / "warm.db"), emu.url, session)() == 0
        sync = ("--db", db, "sync", "--region", "us-east-1", "--endpoint-url", emu.url,
                "--source", "acct")  # fmt: skip
        assert as_user(owner, _sync(db, emu.url, session)) == 0
        assert _cli("--db", str(shared / "warm.db"), *sync[2:])() == 0  # imports, as root
        shm = Path(db + "-shm")  # what an older reader left behind: not the owner's to write
        shm.write_bytes(b"")
        os.chown(shm, reader.pw_uid, reader.pw_gid)
        shm.chmod(0o644)
        before = Path(db).read_bytes()
        said = shared / "said.txt"
        said.touch()
        said.chmod(0o666)
        assert as_user(owner, _cli(*sync, output=said)) == 2
        assert said.read_text() == (
            f"error: cannot write {shm}, which another user left; remove it when no "
            "reader is using the archive\n"
        )
        assert Path(db).read_bytes() == before


def test_the_web_view_of_a_reader_without_write_permission_leaves_nothing(users, shared) -> None:
    """Datasette opens a mutable file mode=ro, which in WAL mode made the reader's own
    -wal and -shm beside the archive, and the owner's next sync refused them (exit 2);
    where nothing could be made, every page was a 500. It opens immutable, as query does,
    and once a sync has written the file it refuses every page (503) until a restart.
    The file itself is never a download: a sync may be writing it."""
    import asyncio
    import json

    from archiver.read import web

    owner, reader = users[OWNER], users[READER]
    db = shared / "archive.db"
    session = botocore.session.get_session()
    with Emulator(seed_operations=40, seed=24) as emu:
        warm = shared / "warm" / "archive.db"  # as root, first: the imports
        warm.parent.mkdir()
        assert _sync(str(warm), emu.url, session)() == 0
        assert as_user(owner, _sync(str(db), emu.url, session)) == 0
        db.chmod(0o644)

        synced, browsed = os.pipe(), os.pipe()

        def browse(path: Path, *, then: Callable[[], None] = lambda: None) -> Callable[[], int]:
            def step() -> int:
                ds = web.app(path)
                rows = "/archive/operations.json?_shape=array&_size=max"
                page = asyncio.run(ds.client.get(rows))
                if page.status_code != 200 or len(json.loads(page.text)) != 40:
                    return 1
                if asyncio.run(ds.client.get("/archive.db")).status_code != 403:
                    return 3  # served immutable, the file itself would be a download
                then()  # the owner's sync writes the file meanwhile
                page = asyncio.run(ds.client.get(rows))
                return 0 if page.status_code == 503 and "restart it" in page.text else 2

            return step

        def after_the_sync() -> None:
            os.write(browsed[1], b"1")
            os.read(synced[0], 1)

        assert browse(warm)() == 2  # as root, first: the imports; writable, so never refused
        pid = as_user(reader, browse(db, then=after_the_sync), wait=False)
        os.close(browsed[1])  # a child that fails first reads as b"", not a hang
        assert os.read(browsed[0], 1) == b"1", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        assert [p.name for p in shared.iterdir() if p.stat().st_uid == reader.pw_uid] == []
        emu.account.add_operations(5)
        assert as_user(owner, _sync(str(db), emu.url, session)) == 0
        os.write(synced[1], b"1")
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0  # a 503, not mixed rows
    assert _count(str(db)) == 45


def test_a_sync_run_as_root_leaves_its_lock_to_the_archives_owner(users, shared) -> None:
    """An admin trying a new source with `sudo archiver sync` left a lock file of
    root's, and the owner's cron line for that source failed every night after
    ("cannot be written: Permission denied", exit 2). SQLite gives its -wal and -shm
    to the file's owner when root makes them; the lock goes the same way."""
    owner = users[OWNER]
    db = str(shared / "archive.db")
    with Emulator(seed_operations=30, seed=25) as emu:
        sync = ("--db", db, "sync", "--region", "us-east-1", "--endpoint-url", emu.url)
        assert _cli(*sync[:1], str(shared / "warm.db"), *sync[2:], "--source", "a")() == 0
        assert as_user(owner, _cli(*sync, "--source", "a")) == 0  # the owner's archive
        assert _cli(*sync, "--source", "new")() == 0  # as root
        assert as_user(owner, _cli(*sync, "--source", "new")) == 0
    assert {p.stat().st_uid for p in shared.iterdir() if p.name.startswith("archive.db")} == {
        owner.pw_uid
    }


def test_a_read_without_locks_that_a_sync_overlaps_fails_rather_than_mixing(users, shared) -> None:
    """A reader who may not write the archive reads it immutable, without SQLite's
    locks; a sync that wrote the file during the read could leave the answer mixing
    two states (or looking damaged) with exit 0. The command says so, exit 1."""
    owner, reader = users[OWNER], users[READER]
    db = str(shared / "archive.db")
    session = botocore.session.get_session()
    with Emulator(seed_operations=500, seed=26) as emu:
        warm = str(shared / "warm.db")
        assert _sync(warm, emu.url, session)() == 0  # as root, first: the imports
        assert _cli("--db", warm, "query", "-o", "json")() == 0
        assert as_user(owner, _sync(db, emu.url, session)) == 0
        os.chmod(db, 0o644)
        out, err = os.pipe(), os.pipe()

        def read() -> int:  # the real streams: a pipe that fills and holds the command
            os.dup2(out[1], 1)
            os.dup2(err[1], 2)
            sys.stdout, sys.stderr = open(1, "w"), open(2, "w")  # noqa: SIM115
            try:
                app(["--db", db, "query", "-o", "json"])
            except SystemExit as exc:
                return int(exc.code or 0)
            return 0

        pid = as_user(reader, read, wait=False)
        os.close(out[1])
        os.close(err[1])
        with open(out[0], "rb") as answer, open(err[0], "rb") as said:
            assert answer.read(1) == b"["  # reading, and held by the pipe we do not drain
            emu.account.add_operations(50)
            assert as_user(owner, _sync(db, emu.url, session)) == 0  # writes the file
            answer.read()
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 1
            assert said.read().decode() == (
                f"error: {db} was written while this command read it without locks (you "
                "may not write it), so the answer may mix old and new rows: run it again\n"
            )
        counted = shared / "count.txt"
        counted.touch()
        counted.chmod(0o666)
        assert as_user(reader, _cli("--db", db, "query", "-o", "count", output=counted)) == 0
        assert counted.read_text().strip() == "550"


def test_a_metrics_file_root_writes_is_left_to_the_owners_cron(users, shared) -> None:
    """`sudo archiver sync --metrics-file …`, once, left a file of root's that the
    owner's cron may not replace: every later night failed before its first call
    ("exists and is not writable", exit 2). A file root replaces keeps its owner, and
    one root makes first goes to the archive's owner, as the lock does."""
    owner = users[OWNER]
    db = str(shared / "archive.db")
    kept, made = shared / "kept.prom", shared / "made.prom"
    with Emulator(seed_operations=30, seed=27) as emu:
        sync = ("--db", db, "sync", "--region", "us-east-1", "--endpoint-url", emu.url,
                "--source", "a", "--metrics-file")  # fmt: skip
        assert _cli(*sync[:1], str(shared / "warm.db"), *sync[2:], str(shared / "w.prom"))() == 0
        assert as_user(owner, _cli(*sync, str(kept))) == 0  # the owner's cron
        for prom in (kept, made):
            assert _cli(*sync, str(prom))() == 0  # root, trying it by hand
            assert as_user(owner, _cli(*sync, str(prom))) == 0
            assert (prom.stat().st_uid, prom.stat().st_gid) == (owner.pw_uid, owner.pw_gid)
