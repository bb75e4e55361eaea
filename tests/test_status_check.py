"""`status --check`: what cron runs to learn that archiving silently stopped."""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import update

from archiver.store import write as store
from archiver.store.archive import Archive
from archiver.store.models import SyncRun
from archiver.timeutil import EPOCH, now
from tests.conftest import invoke
from tests.helpers import fill, op


def _run(archive: str, source: str, outcome: str, *, ago: timedelta, error: str | None = None,
         took: timedelta = timedelta(0)):  # fmt: skip
    with Archive(archive) as handle, handle.writer.begin() as conn:
        sid = store.ensure_source(conn, source)
        run_id = store.start_run(conn, sid, since=None, until=None)
        store.record_run(conn, run_id, outcome=outcome, error=error, finished_at=now() - ago)
        started = now() - ago - took
        conn.execute(update(SyncRun).where(SyncRun.id == run_id).values(started_at=started))
        if outcome == "succeeded":  # as a real run does: the archive holds up to its start
            store.advance_watermark(conn, sid, (EPOCH, started))


def test_fresh_sources_pass_silently(runner, archive) -> None:
    _run(archive, "prod@eu-west-1", "succeeded", ago=timedelta(hours=3))
    # a long run reads up to its start: 25 h after it ended its watermark is 28 h old,
    # and the archive holds all that run could read
    _run(archive, "big@eu-west-1", "succeeded", ago=timedelta(hours=25), took=timedelta(hours=3))
    result = invoke(runner, "--db", archive, "status", "--check")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")


def test_a_stale_and_a_failing_source_each_get_one_line_and_exit_1(runner, archive) -> None:
    _run(archive, "fresh@eu-west-1", "succeeded", ago=timedelta(hours=1))
    _run(archive, "old@us-east-1", "succeeded", ago=timedelta(days=3))
    _run(archive, "broken@eu-west-2", "succeeded", ago=timedelta(hours=2))
    _run(
        archive, "broken@eu-west-2", "failed", ago=timedelta(hours=1), error="ListOperations failed"
    )
    result = invoke(runner, "--db", archive, "status", "--check")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("failing: source broken@eu-west-2: its latest run")
    assert "ListOperations failed" in lines[0]
    assert lines[1].startswith("stale: source old@us-east-1: last successful sync")
    assert "older than 26h" in lines[1]
    wide = invoke(runner, "--db", archive, "status", "--check", "--max-age", "4d")
    assert wide.exit_code == 1 and len(wide.stdout.splitlines()) == 1  # broken still fails
    verdict = json.loads(invoke(runner, "--db", archive, "status", "--check", "--json").stdout)
    assert verdict["check"]["ok"] is False and len(verdict["check"]["problems"]) == 2


def test_a_window_without_failures_has_a_rate_of_0_and_passes_a_limit_of_0(runner, archive) -> None:
    """Only FAIL counts as failed: a window of successes and unfinished operations
    passes even --max-fail-rate 0, which any one failure fails."""
    recent = now() - timedelta(minutes=10)
    calm = [replace(op(i, status="PENDING" if i < 2 else "SUCCESS"), create_date=recent,
                    update_date=recent) for i in range(12)]  # fmt: skip
    fill(archive, calm, source="calm@eu-west-1")
    _run(archive, "calm@eu-west-1", "succeeded", ago=timedelta(minutes=5))
    check = ("--db", archive, "status", "--check", "--max-fail-rate", "0", "--fail-window", "1h")
    result = invoke(runner, *check)
    assert (result.exit_code, result.stdout) == (0, ""), result.output
    rates = json.loads(invoke(runner, *check, "--json").stdout)["check"]["fail_rates"]
    assert rates["calm@eu-west-1"] == {"operations": 12, "failed_ratio": 0.0,
                                       "by_status": {"PENDING": 2, "SUCCESS": 10}}  # fmt: skip


def test_a_run_held_on_another_host_is_running_and_one_whose_process_died_is_abandoned(
    runner, archive
) -> None:
    """A shared PostgreSQL archive is synced from several hosts: a run whose holder is
    another host's process is at work, whatever this host's pids; one held by a
    process of this host that is gone was killed, and says so."""
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid names no process now
    for source, holder in (("far@eu-west-1", "db-host-2:4242"),
                           ("near@eu-west-1", f"{socket.gethostname()}:{dead.pid}")):  # fmt: skip
        with Archive(archive) as handle, handle.writer.begin() as conn:
            sid = store.ensure_source(conn, source)
            store.start_run(conn, sid, since=None, until=None)
            store.set_lock_holder(conn, sid, holder)
    shown = {s["source"]: s for s in json.loads(invoke(runner, "--db", archive, "status",
                                                        "--json").stdout)["sources"]}  # fmt: skip
    far, near = shown["far@eu-west-1"], shown["near@eu-west-1"]
    assert (far["lock_holder"], far["last_runs"][0]["outcome"]) == ("db-host-2:4242", "running")
    assert (near["lock_holder"], near["last_runs"][0]["outcome"]) == (None, "abandoned")


def test_status_tells_operations_still_incomplete_when_none_is_gone(runner, archive) -> None:
    _run(archive, "p@eu-west-1", "succeeded", ago=timedelta(hours=1))
    with Archive(archive) as handle, handle.writer.begin() as conn:
        sid = store.ensure_source(conn, "p@eu-west-1")
        store.keep_incomplete(conn, sid, [("op-listed-only", "PENDING")], seen_at=now())
    text = invoke(runner, "--db", archive, "status").stdout
    assert "\n  incomplete  1 listed but not yet found by GetOperation\n" in text, text


@pytest.mark.slow  # a process
def test_a_failed_check_whose_reader_left_still_exits_1(archive) -> None:
    """`status --check | …` under pipefail, its reader gone (a monitoring wrapper that
    died): the broken pipe turned the verdict into exit 0, "all well"."""
    import os
    import subprocess
    import sys

    _run(archive, "old@us-east-1", "succeeded", ago=timedelta(days=3))
    read, write = os.pipe()
    os.close(read)  # the reader left before the first line
    try:
        done = subprocess.run([sys.executable, "-m", "archiver", "--db", archive, "status",
                               "--check"], stdout=write, stderr=subprocess.PIPE, timeout=60)  # fmt: skip
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (1, b"")


@pytest.mark.slow  # syncs from an emulator
def test_runs_that_succeed_but_read_nothing_new_are_stale(runner, archive) -> None:
    """A backfill's `--until 30d` left in the cron line (or `until` in a config): each
    night's run read nothing, said so in a warning, and succeeded, so the check stayed
    green while the archive stopped a month ago and the service forgot what followed."""
    from archiver.emulator import Emulator
    from tests.helpers import cli_sync

    with Emulator(seed_operations=50, days=60, seed=3) as emu:
        for _ in range(2):
            assert cli_sync(runner, archive, emu.url, "--until", "30d").exit_code == 0
        result = invoke(runner, "--db", archive, "status", "--check")
        assert result.exit_code == 1 and result.stdout.startswith(
            "stale: source default@us-east-1: its last successful sync ("
        ), result.output
        assert "more than 26h behind (an --until?)\n" in result.stdout
        assert cli_sync(runner, archive, emu.url).exit_code == 0  # the cron line mended
    assert invoke(runner, "--db", archive, "status", "--check").exit_code == 0


def test_a_source_that_never_succeeded_and_an_empty_archive_are_stale(runner, archive) -> None:
    empty = invoke(runner, "--db", archive, "status", "--check")
    assert empty.exit_code == 1 and empty.stdout.startswith("stale: the archive has no source")
    fill(archive, [op(1)], source="new@eu-west-1")  # operations, but never a successful run
    result = invoke(runner, "--db", archive, "status", "--check")
    assert result.exit_code == 1
    assert result.stdout == "stale: source new@eu-west-1: no successful sync yet\n"
    bad = invoke(runner, "--db", archive, "status", "--check", "--max-age", "soon")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: ")


def test_max_age_is_checked_and_named_and_goes_with_check(runner, archive) -> None:
    junk = invoke(runner, "--db", archive, "status", "--check", "--max-age", "junk")
    assert junk.exit_code == 2 and junk.stderr.startswith("error: --max-age: ")
    alone = invoke(runner, "--db", archive, "status", "--max-age", "1h")
    assert alone.exit_code == 2 and "--check" in alone.stderr and alone.stderr.count("\n") == 1


def test_ages_are_said_in_the_units_people_write(runner, archive) -> None:
    """`--max-age 1s` said "older than 0.000277778h"."""
    _run(archive, "old@us-east-1", "succeeded", ago=timedelta(hours=3))
    for given in ("1s", "90m", "2h", "1500ms"):
        result = invoke(runner, "--db", archive, "status", "--check", "--max-age", given)
        said = "1.5s" if given == "1500ms" else given
        assert result.stdout.rstrip().endswith(f"older than {said}"), result.stdout


@pytest.mark.slow  # over HTTP: the emulator's operations, synced as cron would
def test_a_jump_in_failures_fails_the_check_with_one_line(runner, archive) -> None:
    from archiver.emulator import Emulator
    from archiver.records import OperationRecord
    from tests.helpers import cli_sync

    rate = ("--db", archive, "status", "--check", "--max-fail-rate")
    with Emulator(seed_operations=300, days=30, seed=81) as emu:
        assert cli_sync(runner, archive, emu.url, "--source", "acct").exit_code == 0
        ordinary = invoke(runner, *rate, "0.5", "--fail-window", "1h")
        assert (ordinary.exit_code, ordinary.stdout) == (0, ""), ordinary.output
        t = emu.account.clock.now()
        for i in range(50):
            status = "FAIL" if i < 40 else "SUCCESS"
            emu.account.put(OperationRecord(
                id=f"jump-{i:02d}", type="REGISTER_INSTANCE", status=status,
                create_date=t - timedelta(minutes=5, seconds=i),
                update_date=t - timedelta(minutes=4, seconds=i),
                error_code="INTERNAL_FAILURE" if status == "FAIL" else None,
                service_id="srv-x", instance_id="i-1"))  # fmt: skip
        assert cli_sync(runner, archive, emu.url, "--source", "acct").exit_code == 0
    failing = invoke(runner, *rate, "0.5", "--fail-window", "1h")
    assert failing.exit_code == 1, failing.output
    (line,) = failing.stdout.splitlines()
    assert line.startswith("failing operations: source acct: ")
    assert "of 50 operations updated in the last 1h failed (FAIL 40, SUCCESS 10)" in line
    as_json = json.loads(invoke(runner, *rate, "0.5", "--fail-window", "1h", "--json").stdout)
    figures = as_json["check"]["fail_rates"]["acct"]
    assert (figures["operations"], figures["by_status"]["FAIL"]) == (50, 40)
    assert invoke(runner, *rate, "0.95", "--fail-window", "1h").exit_code == 0
    few = invoke(runner, *rate, "0.5", "--fail-window", "1h", "--min-operations", "51")
    assert few.exit_code == 0  # too few operations in the window to say
    enough = invoke(runner, *rate, "0.5", "--fail-window", "1h", "--min-operations", "50")
    assert enough.exit_code == 1, enough.output  # "fewer than" N says nothing: N is enough
    # a rate of 0 is a limit too: any failure in the window fails the check
    strict = invoke(runner, *rate, "0", "--fail-window", "1h")
    assert strict.exit_code == 1 and strict.stdout.startswith("failing operations:"), strict.output
