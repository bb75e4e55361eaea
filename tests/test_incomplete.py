"""A listed operation that GetOperation cannot find is kept, never dropped: stored
incomplete, retried on every run whatever its window, completed when found."""

from __future__ import annotations

import json
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
        emu.counters.reset()
        third = cli_sync(runner, archive, emu.url, *retry_none)
        assert emu.counters.get_calls == 0  # gone: no longer retried
        assert third.stderr == ""
        row = read_rows(archive, select(IncompleteOperation))[0]
        assert (row.id, row.gone_at is not None) == (lost.id, True)
        status = json.loads(invoke(runner, "--db", archive, "status", "--json").stdout)
        assert (status["sources"][0]["incomplete"], status["sources"][0]["gone"]) == (0, 1)
