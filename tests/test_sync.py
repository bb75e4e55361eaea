"""`archiver sync` against the emulator over HTTP with real boto3."""

from __future__ import annotations

import csv
import io
import json
import logging
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from archiver.emulator import Emulator
from archiver.store import db as archive_db
from archiver.store.models import OperationEvent, SyncRun, SyncState
from archiver.sync.options import ClientSettings
from archiver.sync.run import PIPELINE, SyncOptions
from archiver.timeutil import parse_when
from tests.conftest import invoke, requires_sqlite
from tests.helpers import archived, assert_archive_equals, cli_sync, read_rows, run_library_sync

pytestmark = pytest.mark.slow  # over HTTP or in subprocesses (docs/design.md, "Tests")


def settings(emu: Emulator, **kw) -> ClientSettings:
    return ClientSettings(region="us-east-1", endpoint_url=emu.url, **kw)


def sync_once(db: str, emu: Emulator, **kw):
    return run_library_sync(db, SyncOptions(source="acct@us-east-1", **kw), settings(emu))


def scalar(db: str, stmt):
    return read_rows(db, stmt)[0][0]


def test_initial_repeat_and_incremental_sync(db) -> None:
    with Emulator(seed_operations=2880, days=90, seed=11) as emu:
        emu.account.add_operations(120, pending_share=1.0)  # unfinished work to finish later
        # 1. initial sync: the archive equals the service, every field, to the ms
        first = sync_once(db, emu)
        assert first.outcome == "succeeded"
        assert first.stats.inserted == 3000 == emu.counters.get_calls
        assert_archive_equals(db, emu.account)

        # 2. immediately again: nothing to fetch, one list pass
        emu.counters.reset()
        again = sync_once(db, emu)
        assert emu.counters.get_calls == 0 == again.stats.api_calls["GetOperation"]
        assert emu.counters.list_pages <= 30 + again.stats.unit_check_calls
        assert again.stats.unit_check_calls == 1  # the unit check: a window in ms

        # 3. a live account moves on: 200 new, 100 pending ones finish
        pending = {
            o.id: o.status for o in emu.account.all() if o.status in ("SUBMITTED", "PENDING")
        }
        emu.account.add_operations(200, pending_share=0.0)
        finished = emu.account.finish_pending(100)
        emu.counters.reset()
        third = sync_once(db, emu)
        assert emu.counters.get_calls <= 300
        assert (third.stats.inserted, third.stats.updated) == (200, 100)
        assert_archive_equals(db, emu.account)
        engine = archive_db.create(db, write=False)
        with engine.connect() as conn:
            history = {}
            for op_id, status in conn.execute(
                select(OperationEvent.operation_id, OperationEvent.status)
            ):
                history.setdefault(op_id, set()).add(status)
        engine.dispose()
        for op in finished:
            assert history[op.id] == {pending[op.id], op.status}


def test_watermark_and_runs_are_recorded(db) -> None:
    with Emulator(seed_operations=300, seed=2) as emu:
        before = emu.account.clock.now()
        summary = sync_once(db, emu)
        mark = scalar(db, select(SyncState.watermark))
        assert mark >= before
        run = archive_db.create(db, write=False)
        with run.connect() as conn:
            row = conn.execute(select(SyncRun)).one()
        run.dispose()
        assert (row.outcome, row.listed, row.inserted) == ("succeeded", 300, 300)
        sent = emu.counters.calls  # every call counted, the unit check's and names' too
        assert (row.get_calls, row.list_calls) == (300, sent["ListOperations"]) == (300, 3 + 1)
        assert (row.namespace_calls, row.service_calls) == (
            sent["ListNamespaces"],
            sent["ListServices"],
        )
        assert summary.watermark is not None


def test_the_client_keeps_a_connection_for_every_call_in_flight(db, caplog) -> None:
    """A library caller's run keeps a connection per call in flight, whatever its
    workers: a pool smaller than them makes urllib3 drop a connection after most calls
    and open a new one for the next (a TLS handshake each, against AWS)."""
    emu = Emulator(seed_operations=800, seed=12, latency_ms=20)
    with emu, caplog.at_level(logging.WARNING, logger="urllib3"):
        summary = run_library_sync(db, SyncOptions(source="acct", workers=24),
                                   settings(emu))  # fmt: skip
    assert summary.outcome == "succeeded" and summary.stats.concurrency_peak > 4
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


def test_windows_cut_a_backfill_and_advance_the_watermark(db) -> None:
    with Emulator(seed_operations=500, days=20, seed=4) as emu:
        summary = sync_once(db, emu, since=parse_when("25d"), window=timedelta(days=10))
        assert summary.stats.windows == 3
        assert_archive_equals(db, emu.account)


def test_default_faults_still_converge(db) -> None:
    """30% throttling plus 5% HTTP 500 on every call: exit 0 and a correct archive."""
    with Emulator(seed_operations=200, seed=8, throttle_rate=0.30, error_rate=0.05) as emu:
        summary = sync_once(db, emu)
        assert summary.outcome == "succeeded"
        assert summary.stats.retries > 0
        assert (
            emu.counters.throttled["GetOperation"] > 0 and emu.counters.errors["GetOperation"] > 0
        )
        assert_archive_equals(db, emu.account)


def test_total_failure_exits_1_changes_nothing_and_the_next_run_converges(runner, db) -> None:
    with Emulator(seed_operations=300, seed=9) as emu:
        args = [
            "--db",
            db,
            "sync",
            "--endpoint-url",
            emu.url,
            "--region",
            "us-east-1",
            "--source",
            "s",
        ]
        assert invoke(runner, *args, "--until", "1h").exit_code == 0  # a partial archive first
        before = archived(db)
        mark = scalar(db, select(SyncState.watermark))
        emu.set_faults(error_rate=1.0)
        result = invoke(runner, *args, "--max-attempts", "2")
        assert result.exit_code == 1
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
        assert "InternalFailure" in result.stderr
        assert archived(db) == before
        assert scalar(db, select(SyncState.watermark)) == mark
        engine = archive_db.create(db, write=False)
        with engine.connect() as conn:
            last = conn.execute(select(SyncRun).order_by(SyncRun.id.desc())).first()
        engine.dispose()
        assert last.outcome == "failed" and "InternalFailure" in last.error
        emu.set_faults(error_rate=0.0)
        assert invoke(runner, *args).exit_code == 0
        assert_archive_equals(db, emu.account)


def test_operation_not_found_at_first_is_retried(db) -> None:
    """G3: a new operation may briefly be not found."""
    with Emulator(seed_operations=20, seed=1) as emu:
        shy = emu.account.all()[5].id
        emu.service.hide_briefly(shy, times=2)
        summary = sync_once(db, emu)
        assert summary.stats.vanished == 0
        assert shy in archived(db)


def test_cli_is_silent_on_success_and_json_on_request(runner, db) -> None:
    with Emulator(seed_operations=50, seed=1) as emu:
        args = ["--db", db, "sync", "--endpoint-url", emu.url, "--region", "us-east-1"]
        quiet = invoke(runner, *args)
        assert quiet.exit_code == 0
        assert quiet.output == ""
        result = invoke(runner, *args, "--json")
        data = json.loads(result.stdout)
        assert data["source"] == "default@us-east-1"
        assert data["outcome"] == "succeeded" and data["get_calls"] == 0
        assert {"list_calls", "get_calls", "retries", "listed", "inserted", "updated"} <= set(data)
        status = json.loads(invoke(runner, "--db", db, "status", "--json").stdout)
        assert status["sources"][0]["operations"] == 50
        assert [r["outcome"] for r in status["sources"][0]["last_runs"]] == ["succeeded"] * 2


@requires_sqlite
def test_dry_run_makes_no_call_and_no_write(runner, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "Sh0uldNeverShow")
    path = tmp_path / "a.db"
    with Emulator(seed_operations=50, seed=1) as emu:
        result = invoke(
            runner,
            "--db",
            str(path),
            "sync",
            "--endpoint-url",
            emu.url,
            "--region",
            "us-east-1",
            "--dry-run",
            "--since",
            "30d",
            "--window",
            "10d",
        )
        assert result.exit_code == 0, result.output
        plan = json.loads(result.stdout)
        assert len(plan["windows"]) == 3, plan
        # where it would go, as whom: never a secret
        assert (plan["region"], plan["endpoint"]) == ("us-east-1", emu.url)
        assert plan["credentials"] == "env" and "Sh0uldNeverShow" not in result.stdout
        assert sum(emu.counters.calls.values()) == 0
    assert not path.exists()


def test_aws_region_env_is_honoured(runner, archive, monkeypatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    with Emulator(seed_operations=5, seed=1) as emu:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SERVICEDISCOVERY", emu.url)
        result = invoke(runner, "--db", archive, "sync", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["source"] == "default@eu-west-3"
        assert emu.counters.get_calls == 5


def test_readers_run_while_a_sync_writes(runner, db) -> None:
    """Queries and exports during a sync see a consistent archive, and really overlap it:
    the emulator holds the sync's 13th list page until the reads are done."""
    with Emulator(seed_operations=1500, seed=3) as emu:
        sync_once(db, emu, until=parse_when("45d"))  # something to read from the start
        before = int(invoke(runner, "--db", db, "query", "-o", "count").stdout)
        gate = emu.hold("ListOperations", after=1 + 12)  # the unit check, then 12 pages
        stored = threading.Semaphore(0)
        errors: list[BaseException] = []

        def background():
            try:
                opts = SyncOptions(source="acct@us-east-1")
                run_library_sync(db, opts, settings(emu), on_page=lambda _: stored.release())
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=background)
        thread.start()
        assert gate.reached.wait(60), "the sync never reached its 13th page"
        # 12 pages listed; all but the pipeline's last ones are stored, then it waits
        for _ in range(12 - (PIPELINE - 1)):
            assert stored.acquire(timeout=60)
        counts = []
        for _ in range(3):  # the sync is mid-run and still, so every read sees one state
            result = invoke(runner, "--db", db, "query", "-o", "count")
            assert result.exit_code == 0, result.output
            counts.append(int(result.stdout))
            out = invoke(runner, "--db", db, "export", "--raw")
            assert out.exit_code == 0
            rows = list(csv.reader(io.StringIO(out.stdout, newline="")))
            assert len(rows) == counts[-1] + 1  # a consistent snapshot, with its header
        assert thread.is_alive()
        gate.release()
        thread.join(60)
        assert not errors
        after = int(invoke(runner, "--db", db, "query", "-o", "count").stdout)
        assert before < counts[0] == counts[-1] < after == 1500


def test_demo_runs_offline(runner, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    result = invoke(runner, "demo", "--operations", "300")
    assert result.exit_code == 0, result.output
    # two passes: the second stores what finished in between, a status history
    assert "pass 1: stored 315 new or changed operations of 315 listed" in result.stdout
    assert "pass 2: stored 15 new or changed operations" in result.stdout
    assert "source demo@emulator" in result.stdout and "Next, try:" in result.stdout
    assert (tmp_path / "demo.db").exists()
    # a second demo starts its source afresh (this emulator is new, with the same ids):
    # the same story, with no warning of states older than the first demo's
    again = invoke(runner, "demo", "--operations", "300")
    assert again.exit_code == 0 and again.stderr == "", again.output

    def passes(out: str) -> list[str]:
        return [line for line in out.splitlines() if line.startswith(("pass ", "("))]

    assert passes(again.stdout) == passes(result.stdout)


def test_a_service_reading_seconds_is_found_out_and_synced_exactly(runner, db) -> None:
    with Emulator(seed_operations=800, days=20, seed=41, update_date_unit="s") as emu:
        first = cli_sync(runner, db, emu.url, "--source", "acct", "--json")
        assert first.exit_code == 0, first.output
        summary = json.loads(first.stdout)
        assert summary["update_date_unit"] == "s"
        assert summary["unit_check_calls"] == 2  # ms (nothing), s
        assert "seconds" in first.stderr and first.stderr.count("\n") == 1  # said once
        assert_archive_equals(db, emu.account)
        emu.account.add_operations(60, pending_share=0.0)
        emu.account.finish_pending(20)
        emu.counters.reset()
        again = cli_sync(runner, db, emu.url, "--source", "acct", "--json")
        assert again.exit_code == 0 and again.stderr == ""  # the warning is not repeated
        assert json.loads(again.stdout)["unit_check_calls"] == 2
        assert emu.counters.get_calls <= 80
        assert_archive_equals(db, emu.account)  # the incremental window, in seconds
        status = json.loads(invoke(runner, "--db", db, "status", "--json").stdout)
        assert status["sources"][0]["update_date_unit"] == "s"


def test_a_new_account_that_holds_nothing_yet_syncs_and_its_unit_is_found_later(runner, db) -> None:
    """An empty service tells no unit: the first night succeeds with nothing stored
    (three calls: both windows, then an unfiltered page); once operations exist, the
    next night finds the unit the service really reads."""
    with Emulator(seed_operations=0, update_date_unit="s") as emu:
        first = cli_sync(runner, db, emu.url, "--source", "acct", "--json")
        assert first.exit_code == 0, first.output
        summary = json.loads(first.stdout)
        assert (summary["unit_check_calls"], summary["listed"]) == (3, 0)
        emu.account.add_operations(40, pending_share=0.0)
        again = cli_sync(runner, db, emu.url, "--source", "acct", "--json")
        assert again.exit_code == 0, again.output
        summary = json.loads(again.stdout)
        assert (summary["update_date_unit"], summary["unit_check_calls"]) == ("s", 2)
        assert "seconds" in again.stderr
        assert_archive_equals(db, emu.account)


def test_a_service_that_forgot_every_operation_keeps_the_unit_found_before(runner, db) -> None:
    """Cloud Map forgets operations after a while, so a quiet account's service may hold
    none. That night tells no unit: the run keeps the one found before (seconds) and
    says nothing, and the night operations come back reads them in it, warning no more."""
    with Emulator(seed_operations=50, days=5, seed=44, update_date_unit="s") as emu:
        assert cli_sync(runner, db, emu.url, "--source", "acct").exit_code == 0
        forgotten = {o.id for o in emu.account.all()}
        emu.account.forget(before=emu.account.clock.now() + timedelta(seconds=1))  # every one
        assert len(forgotten) == 50 and not emu.account.all()
        empty = cli_sync(runner, db, emu.url, "--source", "acct", "--json")
        assert empty.exit_code == 0 and empty.stderr == "", empty.output
        summary = json.loads(empty.stdout)
        assert (summary["update_date_unit"], summary["unit_check_calls"]) == ("s", 3)
        new = emu.account.add_operations(30, pending_share=0.0)
        back = cli_sync(runner, db, emu.url, "--source", "acct", "--json")
        assert back.exit_code == 0 and back.stderr == "", back.output
        assert json.loads(back.stdout)["inserted"] == len(new)
        assert {o.id for o in new} | forgotten == set(archived(db))  # the forgotten kept


def test_operations_of_shared_namespaces_are_found_with_their_owner(runner, db) -> None:
    with Emulator(seed_operations=1500, days=20, seed=43, shared=0.2) as emu:
        owners = {o.owner_account for o in emu.account.all()} - {None}
        shared = [o for o in emu.account.all() if o.owner_account]
        assert owners == {"123456789012", "210987654321"}  # two other accounts
        assert 0.1 < len(shared) / 1500 < 0.3  # about a fifth of the operations
        result = cli_sync(runner, db, emu.url, "--source", "acct", "--json")
        assert result.exit_code == 0 and result.stderr == "", result.output
        summary = json.loads(result.stdout)
        assert summary["incomplete"] == 0
        # every call counted where it leaves: the service's own counts, per API operation
        assert summary["api_calls"] == dict(emu.counters.calls)
        assert summary["api_calls"]["ListNamespaces"] == 1  # shared ones included
        # the names in one listing; on a first run each namespace's too, for the links
        assert summary["api_calls"]["ListServices"] == 1 + len(emu.account.namespaces)
        assert_archive_equals(db, emu.account)  # OwnerAccount included
        assert emu.counters.get_calls <= 1500 * (1 + len(owners))
        assert emu.counters.get_calls < 1500 + 2 * len(shared)  # the last owner asked first


def test_sync_takes_the_global_options_after_it(runner, archive) -> None:
    """`archiver sync --db X --log-format json`: the form of the README's cron line."""
    with Emulator(seed_operations=120, seed=17) as emu:
        result = invoke(runner, "sync", "--db", archive, "--log-format", "json",
                        "--endpoint-url", emu.url, "--region", "us-east-1")  # fmt: skip
        assert result.exit_code == 0, result.output
        assert (result.stdout, result.stderr) == ("", "")
        assert_archive_equals(archive, emu.account)


def test_a_future_until_is_refused_and_the_next_plain_sync_finds_everything(runner, archive):
    """A watermark at a future --until made every later sync list nothing, exit 0."""
    with Emulator(seed_operations=200, days=60, seed=29) as emu:
        ahead = cli_sync(runner, archive, emu.url, "--until", "2099-01-01T00:00:00Z")
        assert ahead.exit_code == 2 and "--until is in the future" in ahead.stderr
        assert cli_sync(runner, archive, emu.url).exit_code == 0
        emu.account.add_operations(40)
        assert cli_sync(runner, archive, emu.url).exit_code == 0
        assert_archive_equals(archive, emu.account)


def test_a_full_pass_over_a_late_slice_never_moves_the_watermark_over_a_gap(runner, archive):
    """--full --since 2d over an archive complete to 40 days ago moved the watermark
    over five weeks never read: the next plain sync found 340 of 1,000."""
    with Emulator(seed_operations=1000, days=90, seed=30) as emu:
        assert cli_sync(runner, archive, emu.url, "--until", "40d").exit_code == 0
        mark = read_rows(archive, select(SyncState.watermark))[0].watermark
        assert cli_sync(runner, archive, emu.url, "--full", "--since", "2d").exit_code == 0
        assert read_rows(archive, select(SyncState.watermark))[0].watermark == mark
        assert cli_sync(runner, archive, emu.url).exit_code == 0
        assert_archive_equals(archive, emu.account)


def test_an_until_before_the_watermark_says_it_reads_nothing(runner, archive) -> None:
    """`--until 40d` over a synced archive read nothing and said nothing, exit 0: a user
    who meant to re-read that range believed it was."""
    with Emulator(seed_operations=100, days=60, seed=33) as emu:
        assert cli_sync(runner, archive, emu.url).exit_code == 0
        alone = cli_sync(runner, archive, emu.url, "--until", "40d", "--json")
        assert alone.exit_code == 0 and "nothing to read: --until is before" in alone.stderr
        assert json.loads(alone.stdout)["windows"] == 0
        ranged = cli_sync(runner, archive, emu.url, "--since", "50d", "--until", "40d", "--json")
        assert ranged.exit_code == 0 and ranged.stderr == ""
        assert json.loads(ranged.stdout)["listed"] > 0


def test_a_clock_set_back_past_the_lookback_is_named_not_an_until(archive, caplog) -> None:
    """A host restored from a snapshot runs with its clock hours behind until NTP mends
    it: the run read nothing, and its warning blamed an --until no one had given."""
    from archiver.sync import options
    from archiver.timeutil import now

    with Emulator(seed_operations=50, seed=34) as emu:
        values = {"region": "us-east-1", "endpoint_url": emu.url, "source": "s"}
        run_library_sync(archive, *options.build(values, credentials=("k", "s")))
        behind = now() - timedelta(hours=3)  # the default --lookback is 2h
        with caplog.at_level(logging.WARNING, logger="archiver"):
            summary = run_library_sync(archive, *options.build(values, started=behind,
                                                               credentials=("k", "s")))  # fmt: skip
    assert (summary.outcome, summary.stats.windows) == ("succeeded", 0)
    said = [r.getMessage() for r in caplog.records if "nothing to read" in r.getMessage()]
    assert len(said) == 1 and "nothing to read: now (" in said[0] and "clock" in said[0], said


@pytest.mark.parametrize(("lookback", "told"), [("2h", False), ("1h", True)])
def test_operations_listed_late_are_archived_and_a_lag_near_the_lookback_is_told(
    runner, archive, lookback, told, tmp_path
) -> None:
    """An operation that becomes visible stamped 40 minutes before the previous run
    ended was never archived with a 15-minute lookback. A listing that lags by half the
    lookback or more is told: the margin left before such operations are missed, which
    no run could see. The warning compared with the window's start, which nothing the
    filter lets through is before: it never spoke."""
    prom = tmp_path / "archiver.prom"
    with Emulator(seed_operations=100, days=10, seed=31) as emu:
        assert cli_sync(runner, archive, emu.url, "--lookback", lookback).exit_code == 0
        emu.account.clock.advance(-timedelta(minutes=40))  # made now, stamped 40 min ago
        late = emu.account.add_operations(30, pending_share=0)
        emu.account.clock.advance(timedelta(minutes=40))
        assert len(late) == 30
        result = cli_sync(runner, archive, emu.url, "--lookback", lookback, "--json",
                          "--metrics-file", str(prom))  # fmt: skip
        assert result.exit_code == 0, result.output
        assert_archive_equals(archive, emu.account)
        metric = 'archiver_sync_last_run_late{source="default@us-east-1"} 30.0'
        assert metric in prom.read_text().splitlines()
        again = cli_sync(runner, archive, emu.url, "--lookback", lookback, "--json")  # no new
    said = [line for line in result.stderr.splitlines() if "listed late" in line]
    assert len(said) == told, result.stderr
    # counted, told or not: a monitor sees the margin shrink before the warning, in the
    # run's --json line, in its sync_runs row and in the metrics (above)
    assert [json.loads(r.stdout)["late"] for r in (result, again)] == [30, 0]
    runs = read_rows(archive, select(SyncRun.late).order_by(SyncRun.id))
    assert [r.late for r in runs] == [0, 30, 0]
    if told:
        assert "30 new operation(s)" in said[0] and "40m before" in said[0], said
    assert again.exit_code == 0 and "listed late" not in again.stderr


def test_operations_listed_later_than_the_lookback_are_missed_then_told_by_a_full_run(
    runner, archive
) -> None:
    """What a lookback cannot see is lost to the incremental runs; `sync --full` reads
    it, and says by how far the runs before it were behind."""
    with Emulator(seed_operations=100, days=10, seed=32) as emu:
        assert cli_sync(runner, archive, emu.url, "--lookback", "30m").exit_code == 0
        emu.account.clock.advance(-timedelta(minutes=90))
        late = {op.id for op in emu.account.add_operations(20, pending_share=0)}
        emu.account.clock.advance(timedelta(minutes=90))
        assert cli_sync(runner, archive, emu.url, "--lookback", "30m").exit_code == 0
        assert not late & set(archived(archive))  # the filter hid them: no run can tell
        full = cli_sync(runner, archive, emu.url, "--lookback", "30m", "--full")
        assert full.exit_code == 0, full.output
        assert_archive_equals(archive, emu.account)
    said = [line for line in full.stderr.splitlines() if "listed late" in line]
    assert len(said) == 1 and "20 new operation(s)" in said[0] and "90m before" in said[0], said


def test_what_a_first_run_did_not_read_is_not_late_when_a_later_run_reads_it(
    runner, archive
) -> None:
    """A first run `--since 1h`, then a night reading back the 2h lookback: what it finds
    before that hour was never read, not listed late."""
    with Emulator(seed_operations=600, days=1, seed=33) as emu:
        assert cli_sync(runner, archive, emu.url, "--since", "1h").exit_code == 0
        before = len(archived(archive))
        result = cli_sync(runner, archive, emu.url)
        assert result.exit_code == 0, result.output
        assert len(archived(archive)) > before  # it did find older ones
        assert "listed late" not in result.stderr
        full = cli_sync(runner, archive, emu.url, "--full")  # and a backfill of the rest
        assert full.exit_code == 0 and "listed late" not in full.stderr, full.stderr
        assert_archive_equals(archive, emu.account)


def test_a_source_name_reused_for_another_region_is_refused(runner, archive) -> None:
    """`--source prod` copied into a second cron line for another region read that
    region from the first one's watermark: its 80 older operations were never listed,
    exit 0. A source is one region's operations."""
    with Emulator(seed_operations=60, seed=32) as one, Emulator(seed_operations=80, seed=33) as two:
        assert cli_sync(runner, archive, one.url, "--source", "prod").exit_code == 0
        before = archived(archive)
        other = invoke(runner, "--db", archive, "sync", "--endpoint-url", two.url,
                       "--region", "eu-west-1", "--source", "prod")  # fmt: skip
        assert other.exit_code == 2, other.output
        assert other.stderr.count("\n") == 1
        assert (
            "prod" in other.stderr and "us-east-1" in other.stderr and "eu-west-1" in other.stderr
        )
        assert sum(two.counters.calls.values()) == 0 and archived(archive) == before
        assert (
            cli_sync(runner, archive, one.url, "--source", "prod").exit_code == 0
        )  # still its own
        named = invoke(runner, "--db", archive, "sync", "--endpoint-url", two.url,
                       "--region", "eu-west-1", "--source", "prod@eu-west-1")  # fmt: skip
        assert named.exit_code == 0, named.output
        assert len(archived(archive)) == 140


def test_a_source_read_from_another_endpoint_needs_a_full_pass(runner, archive) -> None:
    """The README's emulator line, then a sync of the real service into the same
    archive.db: both are default@us-east-1, and the second read only the last two hours
    from the emulator's watermark. Its 90 older operations were never listed, exit 0."""
    with Emulator(seed_operations=50, seed=34) as one, Emulator(seed_operations=90, seed=35) as two:
        assert cli_sync(runner, archive, one.url).exit_code == 0
        assert cli_sync(runner, archive, one.url + "/").exit_code == 0  # the same endpoint
        before = archived(archive)
        planned = cli_sync(runner, archive, two.url, "--dry-run")  # as the run will say
        assert planned.exit_code == 2 and planned.stdout == "", planned.output
        moved = cli_sync(runner, archive, two.url)
        assert moved.exit_code == 2, moved.output
        assert moved.stderr == planned.stderr
        assert (
            moved.stderr.count("\n") == 1 and one.url in moved.stderr and "--full" in moved.stderr
        )
        assert sum(two.counters.calls.values()) == 0 and archived(archive) == before
        assert cli_sync(runner, archive, two.url, "--full").exit_code == 0  # the way on
        assert {i for i in archived(archive)} == {
            o.id for o in one.account.all() + two.account.all()
        }
        two.account.add_operations(10)
        assert cli_sync(runner, archive, two.url).exit_code == 0  # read from two from now on
        assert len(archived(archive)) == 150


def test_a_source_that_now_reaches_another_account_is_warned_of(runner, archive) -> None:
    """`--profile prod` re-pointed at another account (same region, same endpoint) read
    it from the first account's watermark: its older operations were never listed, exit
    0, nothing said. The namespaces' owners tell: only accounts never listed before."""
    with Emulator(seed_operations=60, seed=36, account_id="111122223333") as one:
        port = int(one.url.rsplit(":", 1)[1])
        assert cli_sync(runner, archive, one.url, "--source", "prod").exit_code == 0
    with Emulator(seed_operations=70, seed=37, account_id="444455556666", port=port) as two:
        two.account.add_operations(5)
        moved = cli_sync(runner, archive, two.url, "--source", "prod")
        assert moved.exit_code == 0, moved.output  # the archive holds what it listed
        assert moved.stderr.count("\n") == 1, moved.stderr
        assert ("WARNING: source prod: its namespaces belong to 444455556666 now, to "
                "111122223333 before: if it now reaches another account, sync that account "
                "as a source of its own") in moved.stderr  # fmt: skip
        again = cli_sync(runner, archive, two.url, "--source", "prod")  # said once
        assert (again.exit_code, again.stderr) == (0, ""), again.output
        assert cli_sync(runner, archive, two.url, "--source", "444455556666").exit_code == 0
        assert {o.id for o in two.account.all()} <= set(archived(archive))


def test_an_endpoint_from_the_environment_is_the_sources_too(runner, archive, monkeypatch):
    """AWS_ENDPOINT_URL_SERVICEDISCOVERY (or a profile's endpoint_url) pointed at one
    service, then at another: both were recorded as AWS's, and the second was read from
    the first one's watermark; its 30 older operations were never listed, exit 0."""
    env = "AWS_ENDPOINT_URL_SERVICEDISCOVERY"
    with Emulator(seed_operations=40, seed=38) as one, Emulator(seed_operations=30, seed=39) as two:
        monkeypatch.setenv(env, one.url)
        sync = ("--db", archive, "sync", "--region", "us-east-1")
        assert invoke(runner, *sync).exit_code == 0
        assert cli_sync(runner, archive, one.url).exit_code == 0  # given or found: the same
        monkeypatch.setenv(env, two.url)
        for extra in ("--dry-run", None):
            moved = invoke(runner, *sync, *filter(None, [extra]))
            assert moved.exit_code == 2 and one.url in moved.stderr, moved.output
        assert sum(two.counters.calls.values()) == 0
        assert invoke(runner, *sync, "--full").exit_code == 0
        assert {o.id for o in two.account.all()} <= set(archived(archive))


def test_a_full_run_onto_another_endpoint_that_fails_leaves_no_watermark_behind(runner, archive):
    """The --full run the refusal asks for failed at its first page; the next plain run
    planned from the old service's watermark, and the new one's history was never read."""
    with Emulator(seed_operations=40, seed=36) as one, Emulator(seed_operations=70, seed=37) as two:
        assert cli_sync(runner, archive, one.url).exit_code == 0
        two.set_faults("GetOperation", error_rate=1.0)
        assert cli_sync(runner, archive, two.url, "--full", "--max-attempts", "1").exit_code == 1
        two.set_faults("GetOperation", error_rate=0.0)
        assert cli_sync(runner, archive, two.url).exit_code == 0
        assert {o.id for o in two.account.all()} <= set(archived(archive))


def test_a_dry_run_of_a_known_source_plans_what_its_next_run_reads(runner, archive) -> None:
    """--dry-run is how a user checks tonight's run before cron makes it: for a source
    the archive holds, the plan starts --lookback before its watermark, where the run
    then starts, with no call and no write."""
    from archiver.timeutil import iso

    with Emulator(seed_operations=50, seed=3) as emu:
        assert cli_sync(runner, archive, emu.url).exit_code == 0
        mark = read_rows(archive, select(SyncState.watermark))[0].watermark
        runs = read_rows(archive, select(SyncRun.id))
        emu.counters.reset()
        planned = cli_sync(runner, archive, emu.url, "--dry-run", "--lookback", "3h")
        assert planned.exit_code == 0, planned.output
        assert sum(emu.counters.calls.values()) == 0
        assert read_rows(archive, select(SyncRun.id)) == runs
        plan = json.loads(planned.stdout)
        assert (plan["watermark"], plan["resumes_interrupted_pass"]) == (iso(mark), False)
        assert plan["windows"][0]["start"] == iso(mark - timedelta(hours=3))
        assert cli_sync(runner, archive, emu.url, "--lookback", "3h").exit_code == 0
    since = read_rows(archive, select(SyncRun.since).order_by(SyncRun.id))[-1].since
    assert iso(since) == plan["windows"][0]["start"]


def test_an_unchanged_operation_listed_again_is_seen_again(runner, archive) -> None:
    """last_seen_at is the last sync that listed the operation, changed or not: the
    cookbook's "still not final a day after" reads it of operations that stay PENDING."""
    from archiver.store.models import Operation

    with Emulator(seed_operations=40, days=0.02, seed=17) as emu:  # all within the lookback
        assert cli_sync(runner, archive, emu.url).exit_code == 0
        first = dict(read_rows(archive, select(Operation.id, Operation.last_seen_at)))
        again = cli_sync(runner, archive, emu.url, "--json")
    assert json.loads(again.stdout)["unchanged"] == 40
    seen = read_rows(archive, select(Operation.id, Operation.first_seen_at,
                                     Operation.last_seen_at))  # fmt: skip
    assert len(seen) == 40 and all(f == first[i] < last for i, f, last in seen)


def test_a_window_that_begins_at_the_watermark_moves_it_on(runner, archive) -> None:
    """--lookback 0s: each run reads from the watermark itself, and leaves it at its end."""
    with Emulator(seed_operations=10, seed=5) as emu:
        marks = [json.loads(cli_sync(runner, archive, emu.url, "--lookback", "0s", "--json")
                            .stdout)["watermark"] for _ in range(2)]  # fmt: skip
    assert marks[0] < marks[1]
