"""The run's first pages, listed while the archive opens (``archiver.head_start``).

What users rely on: the run is no different for it. The guess is the plan the run
makes; a wrong or stale guess is dropped, never stored; and a CLI run really takes
the pages listed ahead (else the head start is dead weight).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from archiver import head_start
from archiver.archive import Archive
from archiver.cloudmap import ClientSettings, make_client
from archiver.emulator import Emulator
from archiver.planning import SyncOptions
from archiver.sync import read_plan, run_sync
from archiver.timeutil import EPOCH, now
from tests.conftest import requires_sqlite
from tests.helpers import assert_archive_equals, run_library_sync

pytestmark = [pytest.mark.slow, requires_sqlite]  # SQLite files: the head start reads only them


def _settings(emu: Emulator) -> ClientSettings:
    return ClientSettings(region="us-east-1", endpoint_url=emu.url, pool_size=34)


def _unit(path: str, source: str) -> str | None:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT update_date_unit FROM sources WHERE name = ?", (source,))
        return row.fetchone()[0]  # type: ignore[no-any-return]


def test_the_guess_is_the_plan_the_run_makes(tmp_path: Path) -> None:
    path = str(tmp_path / "a.db")
    with Emulator(seed_operations=300, days=30, seed=61) as emu:
        run_library_sync(path, SyncOptions(source="acct"), _settings(emu))
    started = now() + timedelta(minutes=5)
    cases = [
        SyncOptions(source="acct"),
        SyncOptions(source="acct", lookback=timedelta(hours=2)),
        SyncOptions(source="acct", since=started - timedelta(days=10)),
        SyncOptions(source="acct", full=True, window=timedelta(days=7)),
        SyncOptions(source="acct", until=started - timedelta(minutes=1)),
        SyncOptions(source="another"),  # new to this archive: from the epoch
    ]
    with Archive.open(path) as archive:
        for opts in cases:
            opts = replace(opts, started=started)
            guessed = head_start.guess(path, opts)
            assert guessed is not None, opts
            assert guessed.window == read_plan(archive, opts).windows[0], opts
            assert guessed.unit == (_unit(path, "acct") if opts.source == "acct" else "ms")
    assert head_start.guess(path, replace(cases[-1], started=started)).window[0] == EPOCH


def test_no_guess_where_it_could_be_wrong(tmp_path: Path) -> None:
    started = now()
    opts = SyncOptions(source="acct", started=started)
    # a new archive: the run will create it, from the epoch; the guess leaves no file
    missing = tmp_path / "new.db"
    assert head_start.guess(str(missing), opts).window == (EPOCH, started)
    assert not missing.exists()
    # a URL, a run whose start is not fixed, a file that is not an archive
    assert head_start.guess(f"sqlite:///{missing}", opts) is None
    assert head_start.guess(str(missing), replace(opts, started=None)) is None
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    assert head_start.guess(str(junk), opts) is None
    assert junk.read_bytes() == b"not a database at all" * 100
    # a pass to resume from its token, a source whose lock is held
    path = str(tmp_path / "a.db")
    with Emulator(seed_operations=50, seed=62) as emu:
        run_library_sync(path, SyncOptions(source="acct"), _settings(emu))
    assert head_start.guess(path, opts) is not None
    # what no run wrote: a watermark that is not a date (the run will say so)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE sync_state SET watermark = 42")
    assert head_start.guess(path, opts) is None
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE sync_state SET watermark = '2026-01-01T00:00:00.000Z'")
    assert head_start.guess(path, opts) is not None
    for column, value in (("resume_token", "token-1"), ("lock_holder", "host:1")):
        with sqlite3.connect(path) as conn:
            conn.execute(f"UPDATE sync_state SET {column} = ?", (value,))
        assert head_start.guess(path, opts) is None, column
        with sqlite3.connect(path) as conn:
            conn.execute(f"UPDATE sync_state SET {column} = NULL")


def test_a_guess_in_the_wrong_unit_is_dropped_unstored(tmp_path: Path) -> None:
    """A new archive of a service that reads UPDATE_DATE in seconds: the head start
    lists in milliseconds, windows that match nothing there. Taken, they would store
    nothing and move the watermark past every operation."""
    path = str(tmp_path / "a.db")
    with Emulator(seed_operations=400, days=20, seed=63, update_date_unit="s") as emu:
        opts = SyncOptions(source="acct", started=now())
        client = make_client(_settings(emu))
        switch_interval = sys.getswitchinterval()
        head = head_start.begin(path, client, opts)
        assert head is not None and head.guess.unit == "ms"
        with Archive.open(path, create_missing=True) as archive:
            summary = run_sync(archive, client, opts, head_start=head)
        # the interpreter is left as it was found: a library user's process goes on
        assert sys.getswitchinterval() == switch_interval
        assert summary.update_date_unit == "s"
        assert summary.stats.listed_ahead == 0
        assert_archive_equals(path, emu.account)
        # every call the run made is counted, those of the dropped guess included
        assert summary.stats.list_calls + summary.stats.unit_check_calls == (
            emu.counters.list_pages
        )


def test_a_guess_made_stale_by_another_run_is_dropped(tmp_path: Path) -> None:
    path = str(tmp_path / "a.db")
    with Emulator(seed_operations=300, days=10, seed=64) as emu:
        run_library_sync(path, SyncOptions(source="acct"), _settings(emu))
        client = make_client(_settings(emu))
        opts = SyncOptions(source="acct", started=now())
        switch_interval = sys.getswitchinterval()
        head = head_start.begin(path, client, opts)
        assert head is not None
        emu.account.add_operations(20, pending_share=0)
        # another run moves the watermark between the guess and the lock
        later = replace(opts, started=opts.started + timedelta(seconds=1))
        run_library_sync(path, later, _settings(emu))
        with Archive.open(path) as archive:
            summary = run_sync(archive, client, opts, head_start=head)
        assert sys.getswitchinterval() == switch_interval
        assert summary.stats.listed_ahead == 0
        assert summary.outcome == "succeeded"
        # head starts the run never sees (the archive would not open) are dropped; two
        # that overlap leave the interpreter as it was found once both are
        head = head_start.begin(path, client, opts)
        other = head_start.begin(path, client, opts)
        assert head is not None and other is not None
        assert sys.getswitchinterval() != switch_interval
        head.drop()
        assert sys.getswitchinterval() != switch_interval  # the other still lists
        head.drop()  # a second drop changes nothing
        assert sys.getswitchinterval() != switch_interval
        other.drop()
        assert sys.getswitchinterval() == switch_interval
        assert_archive_equals(path, emu.account)


def test_a_cli_run_takes_the_pages_listed_while_the_archive_opened(tmp_path: Path) -> None:
    """In a new process, as cron runs it: the pass is listed once, and its first pages
    before the archive was open."""
    path = str(tmp_path / "a.db")
    with Emulator(seed_operations=2000, days=30, seed=65, latency_ms=5) as emu:
        run_library_sync(path, SyncOptions(source="acct"), _settings(emu))
        emu.account.add_operations(10, pending_share=0)
        emu.counters.reset()
        out = subprocess.run(
            [sys.executable, "-m", "archiver", "--db", path, "sync", "--endpoint-url", emu.url,
             "--region", "us-east-1", "--source", "acct", "--json"],
            capture_output=True, text=True, env=dict(os.environ), timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        run = json.loads(out.stdout)
        assert run["listed_ahead"] >= 1
        assert run["inserted"] == 10
        # one pass (pages of 100) and the unit check's two: nothing listed twice
        one_pass = -(-len(emu.account.all()) // 100)
        assert emu.counters.list_pages == run["list_calls"] + run["unit_check_calls"]
        assert run["list_calls"] == one_pass and run["unit_check_calls"] == 2
        assert_archive_equals(path, emu.account)


def test_the_head_start_begins_before_sqlalchemy_loads(tmp_path: Path) -> None:
    """What it is for: the network is busy while the archive's libraries load."""
    path = str(tmp_path / "a.db")
    with Emulator(seed_operations=100, seed=66) as emu:
        code = (
            "import sys\n"
            "from archiver import head_start\n"
            "begin = head_start.begin\n"
            "def spy(*a, **k):\n"
            "    print('sqlalchemy loaded:', 'sqlalchemy' in sys.modules, flush=True)\n"
            "    return begin(*a, **k)\n"
            "head_start.begin = spy\n"
            f"sys.argv = ['archiver', '--db', {path!r}, 'sync', '--endpoint-url', {emu.url!r},"
            " '--region', 'us-east-1', '--metrics-file', sys.argv[1]]\n"
            "from archiver.cli import main\n"
            "main()\n"
        )
        metrics = str(tmp_path / "archiver.prom")
        out = subprocess.run([sys.executable, "-c", code, metrics], capture_output=True,
                             text=True, env=dict(os.environ), timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "sqlalchemy loaded: False"
    assert Path(metrics).exists()
