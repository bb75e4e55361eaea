"""Crash safety, interruption, resumption and the per-source lock."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import botocore.session
import pytest
from sqlalchemy import func, select

from archiver.emulator import Emulator
from archiver.errors import Interrupted, LockHeld, WorkFailed
from archiver.store.archive import Archive
from archiver.store.models import Operation, OperationEvent, Source, SyncRun, SyncState
from archiver.sync.options import ClientSettings
from archiver.sync.run import SyncOptions
from archiver.timeutil import utc_ms
from tests.conftest import PG_URL, invoke, requires_sqlite
from tests.helpers import archived, assert_archive_equals, cli_sync, read_rows, run_library_sync

pytestmark = pytest.mark.slow  # over HTTP or in subprocesses (docs/design.md, "Tests")


def start_sync(db: str, url: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "archiver",
            "--db",
            db,
            "sync",
            "--endpoint-url",
            url,
            "--region",
            "us-east-1",
            "--source",
            "acct",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def check_watermark_not_ahead(db: str, emu: Emulator) -> None:
    """Everything the service updated up to the watermark is stored as the service has it."""
    rows = read_rows(db, select(SyncState.watermark))
    if not rows or rows[0].watermark is None:
        return
    mark = rows[0].watermark
    stored = archived(db)
    behind = [o for o in emu.account.all() if o.update_date <= mark and stored.get(o.id) != o]
    assert not behind, f"{len(behind)} operations at or before the watermark are missing"


def test_sigkill_at_random_moments_never_loses_or_duplicates(archive) -> None:
    rng = random.Random(20261127)
    with Emulator(seed_operations=3000, days=60, seed=12, latency_ms=8) as emu:
        # Each run is held at a random list page until it is surely under way; the kill
        # then lands at a random moment of what follows, which takes at least ten more
        # pages of 40 ms, so it always lands mid-run, whatever the machine's speed.
        emu.set_faults("ListOperations", latency_ms=40)
        for trial in range(7):
            gate = emu.hold("ListOperations", after=rng.randint(1, 20))
            proc = start_sync(archive, emu.url, *(["--full"] if trial % 3 == 2 else []))
            assert gate.reached.wait(60), proc.communicate()
            gate.release()
            time.sleep(rng.uniform(0, 0.25))
            proc.kill()
            proc.wait()
            assert proc.returncode == -signal.SIGKILL, (trial, proc.stderr.read())
            check_watermark_not_ahead(archive, emu)
        emu.gates.clear()
        emu.set_faults("ListOperations", latency_ms=0)
        final = start_sync(archive, emu.url)
        _, err = final.communicate(timeout=120)
        assert final.returncode == 0, err
        assert_archive_equals(archive, emu.account)
        ops = read_rows(archive, select(func.count()).select_from(Operation))[0][0]
        assert ops == 3000
        events = read_rows(
            archive,
            select(OperationEvent.operation_id, OperationEvent.status, OperationEvent.update_date),
        )
        assert len(events) == len(set(events)) == 3000


def test_two_syncs_of_one_source_one_exits_3(runner, archive) -> None:
    with Emulator(seed_operations=1000, seed=5) as emu:
        gate = emu.hold("ListOperations", after=2)  # the first run holds the lock, mid-run
        first = start_sync(archive, emu.url)
        assert gate.reached.wait(60), first.communicate()
        status = json.loads(invoke(runner, "--db", archive, "status", "--json").stdout)
        assert status["sources"][0]["lock_holder"].endswith(f":{first.pid}")
        result = cli_sync(runner, archive, emu.url, "--source", "acct")
        assert result.exit_code == 3
        assert result.stderr == (
            "error: another sync of source 'acct' is running; try again when it ends\n"
        )
        assert first.poll() is None  # the overlap really happened
        gate.release()
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
        assert_archive_equals(archive, emu.account)
        # another source of the same archive is not held up by that lock
        assert cli_sync(runner, archive, emu.url, "--source", "other").exit_code == 0


@pytest.mark.skipif(not PG_URL, reason="a PostgreSQL server's session lock (ARCHIVER_TEST_DB_URL)")
@pytest.mark.parametrize("ended", ["the lock's session", "every session"])
def test_a_lock_session_the_server_ends_mid_run_does_not_fail_the_run(archive, ended) -> None:
    """A server restart during a sync ends the session that holds the source's advisory
    lock. The run's own connections reconnect (pre-ping) and it completes, but releasing
    the lock on the dead session made it exit 1 "AdminShutdown", a night's work stored.
    When the run's own connections die too (a restart ends them all), it still says so:
    only a run that failed closes the lock's session without trying to unlock."""
    from sqlalchemy import create_engine, text

    with Emulator(seed_operations=500, seed=15) as emu:
        # held at the pass's first page, after the unit check's call: the run's work in the
        # database (its names) is done, and none is under way. Held at the second page, it
        # raced the first page's reads, and a session ended mid-statement fails the run.
        gate = emu.hold("ListOperations", after=1)
        proc = start_sync(archive, emu.url)
        assert gate.reached.wait(60), proc.communicate()
        admin = create_engine(archive, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:  # the server ends the lock's session, as a restart does
            # only this test's database: the other workers' syncs hold advisory locks too
            here = "(SELECT oid FROM pg_database WHERE datname = current_database())"
            which = (f"SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                     f"database = {here}" if ended == "the lock's session" else
                     "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                     "AND pid <> pg_backend_pid()")  # fmt: skip
            pids = conn.execute(text(which)).scalars().all()
            for pid in pids:
                conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        admin.dispose()
        gate.release()
        _, err = proc.communicate(timeout=120)
    lock_only = ended == "the lock's session"
    assert len(pids) == 1 if lock_only else len(pids) >= 2, pids  # the run's own ones too
    assert proc.returncode == 0, err
    assert "the run went on without it" in err and err.count("\n") == 1
    assert_archive_equals(archive, emu.account)


@pytest.mark.skipif(not PG_URL, reason="a PostgreSQL server's connections (ARCHIVER_TEST_DB_URL)")
def test_a_sync_into_postgresql_holds_two_connections(archive) -> None:
    """A fleet's sources each hold their connections for the whole run, and a server's
    max_connections is often 100: at three apiece, a fleet of 8 sources into a server
    of 20 connections lost 3 of them to "too many clients already". A source holds two:
    the session of its lock, and one pool for its reads and writes."""
    from sqlalchemy import create_engine, text

    with Emulator(seed_operations=500, seed=16) as emu:
        gate = emu.hold("ListOperations", after=3)  # the run has read and written by now
        proc = start_sync(archive, emu.url)
        assert gate.reached.wait(60), proc.communicate()
        admin = create_engine(archive, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            held = conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                     "current_database() AND pid <> pg_backend_pid()")).scalar()  # fmt: skip
        admin.dispose()
        gate.release()
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert held == 2


def test_sigterm_rolls_back_and_records_interrupted(archive) -> None:
    with Emulator(seed_operations=2000, seed=6) as emu:
        gate = emu.hold("ListOperations", after=5)  # the run waits for page 6
        proc = start_sync(archive, emu.url)
        assert gate.reached.wait(60), proc.communicate()
        proc.send_signal(signal.SIGTERM)
        gate.release()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143  # 128 + SIGTERM
        assert err.strip().splitlines()[-1].startswith("error: stopped by signal SIGTERM")
        run = read_rows(archive, select(SyncRun.outcome, SyncRun.error))[-1]
        assert run.outcome == "interrupted"
        check_watermark_not_ahead(archive, emu)
        again = start_sync(archive, emu.url)
        assert again.wait(timeout=120) == 0
        assert_archive_equals(archive, emu.account)


@requires_sqlite
def test_sigterm_stops_a_sync_waiting_for_another_writers_lock(archive) -> None:
    """SQLite's busy wait is deaf to signals. A sync waiting for another writer's lock
    (a fleet's other source, a second cron job, an operator's shell) took SIGTERM only
    once the lock came free, up to ten minutes later: systemd kills it long before."""
    import sqlite3

    with Emulator(seed_operations=1000, seed=8) as emu:
        gate = emu.hold("ListOperations", after=2)
        proc = start_sync(archive, emu.url)
        assert gate.reached.wait(60), proc.communicate()
        holder = sqlite3.connect(archive, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another writer's lock, held for as long as it likes
        gate.release()
        time.sleep(1)  # the run goes on to its next write, and waits
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=10)
        finally:
            proc.kill()
            holder.execute("ROLLBACK")
            holder.close()
        assert proc.returncode == 143, err
        assert err.strip().splitlines()[-1].startswith("error: stopped by signal SIGTERM")
        again = start_sync(archive, emu.url)
        _, err = again.communicate(timeout=120)
        assert again.returncode == 0, err
        assert_archive_equals(archive, emu.account)


def test_an_interrupted_fixed_backfill_resumes_at_its_saved_token(archive) -> None:
    with Emulator(seed_operations=3000, days=30, seed=7) as emu:
        now = emu.account.clock.now()
        opts = SyncOptions(source="acct", since=now - timedelta(days=40), until=now)
        cs = ClientSettings(region="us-east-1", endpoint_url=emu.url)
        stored = []

        def stop_after_2000(stats):  # called once a page is stored
            if stats.listed >= 2000:
                stored.append(stats.listed)
                raise Interrupted("test stop")

        with pytest.raises(Interrupted):
            run_library_sync(archive, opts, cs, on_page=stop_after_2000)
        # pages are stored a batch at a time: what progress reported stored is stored
        assert len(archived(archive)) == stored[0] < 3000
        emu.counters.reset()
        summary = run_library_sync(archive, opts, cs)
        # only the pages after the stored ones (of 100 each), and the unit check's one
        rest = (3000 - stored[0]) // 100
        assert emu.counters.list_pages == rest + summary.stats.unit_check_calls == rest + 1
        assert summary.stats.inserted == 3000 - stored[0]
        assert_archive_equals(archive, emu.account)


def test_a_pass_that_fails_keeps_the_pages_it_fetched(archive) -> None:
    """Fetched pages wait to be stored a batch at a time; when GetOperation starts to
    fail for good mid-pass, the pages whose calls all answered are stored before the
    error is reported, with the token after them, and the next run resumes there."""
    with Emulator(seed_operations=1000, days=10, seed=8) as emu:
        now = emu.account.clock.now()
        # four calls in flight, in order: when call 451 is held, pages 1-4 have answered
        opts = SyncOptions(source="acct", since=now - timedelta(days=20), until=now,
                           workers=4, adaptive=False)  # fmt: skip
        cs = ClientSettings(region="us-east-1", endpoint_url=emu.url, max_attempts=1)
        gate = emu.hold("GetOperation", after=450)  # page 5's calls are under way
        failing = threading.Thread(target=lambda: (gate.reached.wait(60),
                                                   emu.set_faults("GetOperation", error_rate=1.0),
                                                   gate.release()))  # fmt: skip
        failing.start()
        with pytest.raises(WorkFailed):
            run_library_sync(archive, opts, cs)
        failing.join()
        stored = len(archived(archive))
        assert stored == 400  # the four whole pages fetched, none of the fifth
        assert read_rows(archive, select(SyncRun.outcome))[-1].outcome == "failed"
        check_watermark_not_ahead(archive, emu)
        emu.set_faults("GetOperation", error_rate=0.0)
        emu.counters.reset()
        summary = run_library_sync(archive, opts, cs)
        assert summary.stats.inserted == 1000 - stored  # resumed after the stored pages
        assert emu.counters.list_pages == (1000 - stored) // 100 + 1  # and the unit check
        assert_archive_equals(archive, emu.account)


def test_a_listing_that_fails_keeps_the_operations_already_fetched(archive) -> None:
    """ListOperations fails for good while five listed pages' GetOperation calls have
    all answered: those 500 operations are stored (none fetched again by the next
    run), the watermark does not move, and the next run completes the archive."""
    with Emulator(seed_operations=1000, days=10, seed=9) as emu:
        now = emu.account.clock.now()
        opts = SyncOptions(source="acct", since=now - timedelta(days=20), until=now)
        cs = ClientSettings(region="us-east-1", endpoint_url=emu.url, max_attempts=1)
        gate = emu.hold("ListOperations", after=1 + 5)  # the unit check, then five pages
        # The pages are kept whose answers the run has, not those the server has sent:
        # under load a client thread took its last answer after the listing failed.
        session = botocore.session.get_session()
        taken: list[int] = []
        session.register("after-call.servicediscovery.GetOperation", lambda **_: taken.append(1))

        def fail_the_sixth_page() -> None:
            gate.reached.wait(60)
            deadline = time.monotonic() + 60
            while len(taken) < 500 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)  # from botocore's answer to the run's: a return, no call
            emu.set_faults("ListOperations", error_rate=1.0)
            gate.release()

        failing = threading.Thread(target=fail_the_sixth_page)
        failing.start()
        with pytest.raises(WorkFailed):
            run_library_sync(archive, opts, cs, session=session)
        failing.join()
        assert len(archived(archive)) == 500
        check_watermark_not_ahead(archive, emu)
        emu.set_faults("ListOperations", error_rate=0.0)
        emu.counters.reset()
        run_library_sync(archive, opts, cs)
        assert emu.counters.get_calls == 500  # what was kept is not fetched again
        assert_archive_equals(archive, emu.account)


def test_a_refused_token_starts_the_pass_over(archive) -> None:
    now = utc_ms(datetime.now(UTC)) - timedelta(minutes=1)
    # three batches' worth (sync.COMMIT_ROWS): the stop after the first one stored comes
    # mid-pass however fast the pages are fetched
    with Emulator(seed_operations=3000, days=10, seed=7, start=now) as emu:
        opts = SyncOptions(source="acct", since=now - timedelta(days=20), until=now)
        cs = ClientSettings(region="us-east-1", endpoint_url=emu.url)

        def stop(stats):
            if stats.listed >= 300:
                raise Interrupted("test stop")

        with pytest.raises(Interrupted):
            run_library_sync(archive, opts, cs, on_page=stop)
        # An error other than InvalidInput on the resumed page is no refusal of the
        # token: the run fails on it, without a second pass, and keeps the token.
        emu.counters.reset()
        gate = emu.hold("ListOperations", after=1)  # the unit check, then the resumed page
        denying = threading.Thread(target=lambda: (gate.reached.wait(60),
                                                   emu.set_faults("ListOperations", denied=True),
                                                   gate.release()))  # fmt: skip
        denying.start()
        with pytest.raises(WorkFailed, match="ListOperations failed: AccessDeniedException"):
            run_library_sync(archive, opts, cs)
        denying.join()
        assert emu.counters.calls["ListOperations"] == 2
        emu.set_faults("ListOperations", denied=False)
        del emu.gates["ListOperations"]
        # the service restarts with another token secret: the tokens it gave are refused
        emu.service._secret = os.urandom(16)
        emu.counters.reset()
        summary = run_library_sync(archive, opts, cs)
        assert summary.outcome == "succeeded"
        assert emu.counters.rejected["ListOperations"] == 1  # the old token: InvalidInput
        # then one full pass, besides the unit check's one
        assert emu.counters.list_pages == 30 + summary.stats.unit_check_calls == 31
        assert_archive_equals(archive, emu.account)


def test_lock_error_is_lockheld_in_the_library(archive) -> None:
    with Archive(archive) as handle:
        with handle.lock("x"), pytest.raises(LockHeld), handle.lock("x"):
            pass
        with handle.lock("x"):  # released on exit
            pass


@requires_sqlite
def test_an_archive_named_through_a_symlink_shares_its_lock(archive, tmp_path) -> None:
    """Two cron lines, one naming the archive through a symlink, took two locks (each
    beside the name it was given) and synced one source side by side. SQLite keeps
    its -wal and -shm beside the real file; the lock lives there too."""
    linked = tmp_path / "elsewhere" / "archive.db"
    linked.parent.mkdir()
    linked.symlink_to(archive)
    with Archive(archive) as handle, Archive(str(linked)) as other, handle.lock("x"):  # noqa: SIM117
        with pytest.raises(LockHeld), other.lock("x"):  # the second lock, not the first, fails
            pass
    assert list(linked.parent.iterdir()) == [linked]  # no lock file beside the link


def test_a_killed_run_is_shown_abandoned_and_closed_by_the_next(runner, archive) -> None:
    with Emulator(seed_operations=1000, seed=5) as emu:
        gate = emu.hold("ListOperations", after=2)  # the run holds the lock, mid-run
        proc = start_sync(archive, emu.url)
        assert gate.reached.wait(60), proc.communicate()
        # the run records its lock's holder before its first call
        status = json.loads(invoke(runner, "--db", archive, "status", "--json").stdout)
        assert status["sources"][0]["lock_holder"].endswith(f":{proc.pid}")
        assert status["sources"][0]["last_runs"][0]["outcome"] == "running"
        proc.kill()
        proc.wait()
        status = json.loads(invoke(runner, "--db", archive, "status", "--json").stdout)
        assert status["sources"][0]["lock_holder"] is None
        assert status["sources"][0]["last_runs"][0]["outcome"] == "abandoned"
        # the next sync of the source records it as such, for good
        gate.release()
        emu.gates.clear()
        assert cli_sync(runner, archive, emu.url, "--source", "acct").exit_code == 0
        outcomes = [r.outcome for r in read_rows(archive, select(SyncRun.outcome))]
        assert outcomes == ["abandoned", "succeeded"]


def _signal_a_worker_thread(pid: int, sig: int) -> None:
    """Send ``sig`` to one of ``pid``'s threads other than its main one (tgkill): the
    kernel hands a process's signal to any of its threads, and a main thread waiting
    without a timeout never saw one handed to another."""
    import ctypes
    import platform

    number = {"x86_64": 234, "aarch64": 131}[platform.machine()]  # SYS_tgkill
    others = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
    assert others, "the process has no other thread"
    assert ctypes.CDLL(None, use_errno=True).syscall(number, pid, others[-1], sig) == 0


def test_sigterm_to_a_worker_thread_stops_a_single_sync(archive) -> None:
    with Emulator(seed_operations=2000, seed=16) as emu:
        gate = emu.hold("ListOperations", after=5)
        proc = start_sync(archive, emu.url)
        assert gate.reached.wait(60), proc.communicate()
        sent = time.monotonic()
        _signal_a_worker_thread(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        gate.release()
    assert time.monotonic() - sent < 10
    assert proc.returncode == 143, err
    assert read_rows(archive, select(SyncRun.outcome))[-1].outcome == "interrupted"


def test_sigterm_to_a_worker_thread_stops_a_fleet_and_reports_each_source(archive, tmp_path):
    config = tmp_path / "fleet.toml"
    with Emulator(seed_operations=2000, seed=17) as emu:
        config.write_text("[defaults]\nregion = 'us-east-1'\n"
                          f"endpoint_url = '{emu.url}'\n"
                          + "".join(f"[[source]]\nname = 's{i}'\n" for i in range(4)))  # fmt: skip
        gate = emu.hold("ListOperations", after=8)  # three sources mid-run, one queued
        metrics = tmp_path / "archiver.prom"
        proc = subprocess.Popen(
            [sys.executable, "-m", "archiver", "--db", archive, "--config", str(config), "sync",
             "--all", "--parallel", "3", "--json", "--metrics-file", str(metrics)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
        )  # fmt: skip
        assert gate.reached.wait(60), proc.communicate()
        sent = time.monotonic()
        _signal_a_worker_thread(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        gate.release()
    assert time.monotonic() - sent < 10
    assert proc.returncode == 143, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["source"] for r in lines) == ["s0", "s1", "s2", "s3"]  # every source said
    assert {r["outcome"] for r in lines} == {"interrupted"}
    assert metrics.exists()  # written after the stop, as after any run
    started = {r.name for r in read_rows(archive, select(SyncRun.id, Source.name).join(Source))}
    assert len(started) == 3  # the queued source was never started
