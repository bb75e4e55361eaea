"""A listed operation that GetOperation cannot find is kept, never dropped: stored
incomplete, retried on every run whatever its window, completed when found."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from archiver.emulator import Emulator
from archiver.store.models import IncompleteOperation, OperationEvent, SyncState
from tests.conftest import invoke
from tests.helpers import archived, assert_archive_equals, cli_sync, read_rows

pytestmark = pytest.mark.slow  # over HTTP or in subprocesses (docs/design.md, "Tests")


def test_unfindable_operations_are_kept_then_completed_by_a_later_run(runner, archive) -> None:
    with Emulator(seed_operations=600, days=10, seed=31) as emu:
        hidden = sorted(emu.account.all(), key=lambda o: o.update_date)[:5]  # the oldest
        for o in hidden:
            emu.service.hide_briefly(o.id, times=10**6)
        first = cli_sync(runner, archive, emu.url, "--source", "acct", "--json")
        assert first.exit_code == 0, first.output  # the archive holds them, marked
        summary = json.loads(first.stdout)
        assert (summary["vanished"], summary["incomplete"]) == (5, 5)
        (warning,) = first.stderr.splitlines()  # one line, for cron to mail
        assert "5 listed operation(s)" in warning
        kept = read_rows(archive, select(IncompleteOperation.id, IncompleteOperation.status))
        assert sorted(kept) == sorted((o.id, o.status) for o in hidden)
        assert len(archived(archive)) == 595

        count = ("--db", archive, "query", "-o", "count")
        assert invoke(runner, *count).stdout == "595\n"
        assert invoke(runner, *count, "--include-incomplete").stdout == "600\n"
        rows = json.loads(invoke(runner, "--db", archive, "query", "-o", "json",
                                 "--include-incomplete").stdout)  # fmt: skip
        marked = {r["Id"]: r for r in rows if r.get("Incomplete")}
        assert set(marked) == {o.id for o in hidden}
        assert all(set(r) == {"Id", "Status", "Source", "Incomplete"} for r in marked.values())
        csv = invoke(runner, "--db", archive, "export", "--include-incomplete").stdout
        assert sum(1 for o in hidden if f"acct,{o.id},,{o.status}," in csv) == 5
        status = json.loads(invoke(runner, "--db", archive, "status", "--json").stdout)
        assert status["sources"][0]["incomplete"] == 5

        emu.service.reveal()
        mark = read_rows(archive, select(SyncState.watermark))[0].watermark
        lookback = timedelta(minutes=15)
        assert all(o.update_date < mark - lookback for o in hidden)  # outside the next window
        second = cli_sync(runner, archive, emu.url, "--source", "acct", "--json")
        assert second.exit_code == 0 and second.stderr == ""
        summary = json.loads(second.stdout)
        assert (summary["completed"], summary["incomplete"]) == (5, 0)
        assert_archive_equals(archive, emu.account)  # every field exact
        events = {r.operation_id for r in read_rows(archive, select(OperationEvent.operation_id))}
        assert {o.id for o in hidden} <= events
        assert read_rows(archive, select(IncompleteOperation.id)) == []


def test_an_operation_never_found_is_given_up_on_but_stays_stored(runner, archive) -> None:
    with Emulator(seed_operations=50, days=5, seed=32) as emu:
        (lost,) = sorted(emu.account.all(), key=lambda o: o.update_date)[:1]
        emu.service.hide_briefly(lost.id, times=10**6)
        assert cli_sync(runner, archive, emu.url, "--source", "acct").exit_code == 0
        retry_none = ("--source", "acct", "--incomplete-retry-days", "0", "--json")
        second = cli_sync(runner, archive, emu.url, *retry_none)
        assert json.loads(second.stdout)["gone"] == 1
        attempts = select(IncompleteOperation.attempts)
        assert read_rows(archive, attempts) == [(2,)]  # listed in vain, then retried in vain
        emu.counters.reset()
        third = cli_sync(runner, archive, emu.url, *retry_none)
        assert emu.counters.get_calls == 0  # gone: no longer retried
        assert third.stderr == ""
        row = read_rows(archive, select(IncompleteOperation))[0]
        assert (row.id, row.gone_at is not None, row.attempts) == (lost.id, True, 2)
        status = json.loads(invoke(runner, "--db", archive, "status", "--json").stdout)
        assert (status["sources"][0]["incomplete"], status["sources"][0]["gone"]) == (0, 1)


def test_attempts_count_the_runs_that_asked_in_vain_once_each(runner, archive) -> None:
    """`incomplete_operations.attempts` (a column for SQL and the web view) counts the
    runs whose GetOperation found nothing: one each, though a run that lists the
    operation again (here every run, with a lookback over all of it) also retries it."""
    with Emulator(seed_operations=50, days=5, seed=33) as emu:
        lost = sorted(emu.account.all(), key=lambda o: o.update_date)[-1]
        emu.service.hide_briefly(lost.id, times=10**6)
        for run in (1, 2, 3):
            done = cli_sync(runner, archive, emu.url, "--source", "acct", "--lookback", "10d")
            assert done.exit_code == 0, done.output
            kept = read_rows(archive, select(IncompleteOperation.id, IncompleteOperation.attempts))
            assert kept == [(lost.id, run)]


def test_gone_operations_are_found_by_retry_gone(runner, archive) -> None:
    with Emulator(seed_operations=50, days=5, seed=33) as emu:
        (lost,) = sorted(emu.account.all(), key=lambda o: o.update_date)[:1]
        emu.service.hide_briefly(lost.id, times=10**6)
        retry_none = ("--source", "acct", "--incomplete-retry-days", "0", "--json")
        assert cli_sync(runner, archive, emu.url, *retry_none).exit_code == 0
        assert json.loads(cli_sync(runner, archive, emu.url, *retry_none).stdout)["gone"] == 1
        emu.service.reveal()
        assert cli_sync(runner, archive, emu.url, *retry_none).exit_code == 0
        assert lost.id not in archived(archive)  # a plain run lets gone be
        found = cli_sync(runner, archive, emu.url, *retry_none, "--retry-gone")
        assert found.exit_code == 0 and found.stderr == "", found.output
        assert json.loads(found.stdout)["completed"] == 1
        assert_archive_equals(archive, emu.account)
        assert read_rows(archive, select(IncompleteOperation.id)) == []


def test_gone_operations_come_back_when_a_run_learns_their_owner(runner, archive) -> None:
    """ListNamespaces denied: the shared namespaces' operations cannot be found and are
    given up on; once it is allowed again, one plain sync learns the owners and finds
    every one of them."""
    with Emulator(seed_operations=300, days=10, seed=34, shared=0.2) as emu:
        shared = {o.id for o in emu.account.all() if o.owner_account}
        assert 30 < len(shared) < 100
        emu.set_faults("ListNamespaces", denied=True)
        retry_none = ("--source", "acct", "--incomplete-retry-days", "0", "--json")
        for _ in range(2):
            run = cli_sync(runner, archive, emu.url, *retry_none)
            assert run.exit_code in (0, 1) and "WARNING" in run.stderr, run.output
            assert shared.isdisjoint(archived(archive))
        assert json.loads(run.stdout)["gone"] == len(shared)
        emu.set_faults("ListNamespaces", denied=False)
        back = cli_sync(runner, archive, emu.url, "--source", "acct", "--json")
        assert back.exit_code == 0 and back.stderr == "", back.output
        assert json.loads(back.stdout)["completed"] == len(shared)
        assert_archive_equals(archive, emu.account)


def test_access_denied_without_owner_account_is_a_reason_to_try_the_owners(runner, archive) -> None:
    with Emulator(seed_operations=300, days=10, seed=35, shared=0.2) as emu:
        emu.service.deny_without_owner = True
        result = cli_sync(runner, archive, emu.url, "--source", "acct", "--json")
        assert result.exit_code == 0 and result.stderr == "", result.output
        assert emu.counters.rejected["GetOperation"] > 0  # the service did refuse them
        assert_archive_equals(archive, emu.account)


def test_an_operation_no_owner_can_read_is_kept_incomplete_not_a_failed_run(
    runner, archive
) -> None:
    with Emulator(seed_operations=300, days=10, seed=36, shared=0.2) as emu:
        emu.service.deny_without_owner = True
        emu.set_faults("ListNamespaces", denied=True)  # no owner to try
        shared = {o.id for o in emu.account.all() if o.owner_account}
        result = cli_sync(runner, archive, emu.url, "--source", "acct", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["incomplete"] == len(shared) > 0
        assert f"{len(shared)} listed operation(s) could not be fetched" in result.stderr


def test_an_operation_throttled_on_every_attempt_fails_the_run_not_kept_incomplete(
    runner, archive
) -> None:
    """Throttling says nothing of whether the operation can be read: after the last
    attempt the run fails (exit 1) and moves no watermark, rather than keep as
    unreadable what the next, calmer night fetches whole."""
    with Emulator(seed_operations=5, days=2, seed=38) as emu:
        emu.set_faults("GetOperation", throttle_rate=1.0)
        failed = cli_sync(runner, archive, emu.url, "--source", "acct", "--max-attempts", "2")
        assert failed.exit_code == 1, failed.output
        assert "GetOperation failed: ThrottlingException" in failed.stderr
        assert read_rows(archive, select(IncompleteOperation.id)) == []
        assert read_rows(archive, select(SyncState.watermark)) == [(None,)]
        emu.set_faults("GetOperation", throttle_rate=0.0)
        assert cli_sync(runner, archive, emu.url, "--source", "acct").exit_code == 0
        assert_archive_equals(archive, emu.account)


def _stale(op, status: str = "PENDING"):  # type: ignore[no-untyped-def]
    """The operation as a lagging replica still has it: earlier, not yet final."""
    return replace(op, status=status, update_date=op.create_date, error_code=None,
                   error_message=None)  # fmt: skip


@pytest.mark.parametrize("lags", [1, 4])
def test_a_lagging_get_operation_is_settled(runner, archive, lags: int) -> None:
    """GetOperation answers 10 final operations as older PENDING snapshots, ``lags``
    times each: once is settled in the same run (asked again after a short wait); four
    times outlasts the run's brief retries, so the listed Status is stored, the
    operations are counted unsettled, and the next run settles them."""
    with Emulator(seed_operations=200, days=5, seed=37) as emu:
        final = [o for o in emu.account.all() if o.status in ("SUCCESS", "FAIL")][:10]
        for o in final:
            emu.service.lag(_stale(o), times=lags)
        first = cli_sync(runner, archive, emu.url, "--source", "acct", "--json")
        assert first.exit_code == 0, first.output
        if lags > 1:
            assert json.loads(first.stdout)["unsettled"] == 10
            assert "behind their listed Status" in first.stderr
            held = archived(archive)
            assert all(held[o.id].status == o.status for o in final)  # the listed truth
            status = json.loads(invoke(runner, "--db", archive, "status", "--json").stdout)
            assert status["sources"][0]["unsettled"] == 10
            second = cli_sync(runner, archive, emu.url, "--source", "acct", "--json")
            assert second.exit_code == 0 and second.stderr == "", second.output
            assert json.loads(second.stdout)["unsettled"] == 0
        else:
            assert first.stderr == ""
        assert_archive_equals(archive, emu.account)  # every field, the truth
        events = read_rows(archive, select(OperationEvent.operation_id, OperationEvent.status,
                                           OperationEvent.update_date))  # fmt: skip
        mine = sorted(e for e in events if e.operation_id in {o.id for o in final})
        assert mine == sorted((o.id, o.status, o.update_date) for o in final)  # no stale event


def test_a_listing_behind_the_archive_never_takes_it_back(runner, archive) -> None:
    """A service failed over to a replica that has not seen five operations finish lists
    them PENDING again, within the lookback: the run fetched them and stored the older
    state over the newer one, with an event of it. The archive keeps what it saw last,
    and says so; once the service has caught up, a run is silent again."""
    with Emulator(seed_operations=200, days=1, seed=41) as emu:
        assert cli_sync(runner, archive, emu.url).exit_code == 0
        recent = emu.account.clock.now() - timedelta(hours=1)  # within the 2h lookback
        done = [o for o in emu.account.all() if o.status == "SUCCESS" and o.create_date > recent]
        assert len(done) >= 5
        for o in done[:5]:
            emu.account.put(_stale(o))
        emu.counters.reset()
        behind = cli_sync(runner, archive, emu.url, "--json")
        assert behind.exit_code == 0, behind.output
        assert json.loads(behind.stdout)["older"] == 5
        shown = invoke(runner, "--db", archive, "status", "--json")  # kept with the run
        assert json.loads(shown.stdout)["sources"][0]["last_runs"][0]["older"] == 5
        text = invoke(runner, "--db", archive, "status").stdout  # the latest run first
        assert "changed 0, older 5, calls: get 0" in text.split("  run ")[1], text
        assert emu.counters.get_calls == 0  # nothing to fetch: what is listed is older
        assert ("5 operation(s) were listed with a Status older than the archive holds"
                in behind.stderr), behind.stderr  # fmt: skip
        held = archived(archive)
        assert [held[o.id] for o in done[:5]] == done[:5]
        events = read_rows(archive, select(OperationEvent.operation_id, OperationEvent.status))
        ids = {o.id for o in done[:5]}  # one event each, as first seen: no older state
        assert sorted(e for e in events if e.operation_id in ids) == sorted(
            (i, "SUCCESS") for i in ids
        )
        for o in done[:5]:
            emu.account.put(o)  # caught up
        again = cli_sync(runner, archive, emu.url, "--json")
        assert again.exit_code == 0 and again.stderr == "", again.output
        assert json.loads(again.stdout)["older"] == 0
        assert_archive_equals(archive, emu.account)


def test_an_operation_found_at_last_is_not_one_listed_late(runner, archive) -> None:
    """An operation listed but not found, then found when a later run's window lists it
    again, was listed on time: its UpdateDate, 40 to 55 minutes before the watermark, is
    past half the lookback, and a warning of a late listing would be false."""
    with Emulator(seed_operations=400, days=1, seed=43) as emu:
        now = emu.account.clock.now()
        aged = [o for o in emu.account.all()
                if timedelta(minutes=40) < now - o.update_date < timedelta(minutes=55)]  # fmt: skip
        assert aged
        emu.service.hide_briefly(aged[0].id, times=10**6)
        first = cli_sync(runner, archive, emu.url, "--lookback", "1h")
        assert first.exit_code == 0 and "could not be fetched" in first.stderr, first.output
        emu.service.reveal()
        second = cli_sync(runner, archive, emu.url, "--lookback", "1h")
        assert second.exit_code == 0 and second.stderr == "", second.output
        assert_archive_equals(archive, emu.account)
