"""Many sources in one archive: concurrent syncs, no cross-talk."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import select

from archiver.emulator import Emulator
from archiver.store import db as archive_db
from archiver.store.models import Source, SyncState
from tests.conftest import invoke
from tests.helpers import cli_sync

pytestmark = pytest.mark.slow  # over HTTP or in subprocesses (docs/design.md, "Tests")


def test_four_sources_sync_at_once_and_keep_apart(runner, archive, tmp_path) -> None:
    emus = [
        Emulator(seed_operations=400 + 100 * i, seed=100 + i, latency_ms=2).start()
        for i in range(4)
    ]
    try:
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "archiver",
                    "--db",
                    archive,
                    "sync",
                    "--endpoint-url",
                    emu.url,
                    "--region",
                    f"eu-west-{i + 1}",
                    "--source",
                    f"acct{i}@eu-west-{i + 1}",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=dict(os.environ),
            )
            for i, emu in enumerate(emus)
        ]
        for p in procs:
            _, err = p.communicate(timeout=180)
            assert p.returncode == 0, err
        engine = archive_db.create(archive, write=False)
        with engine.connect() as conn:
            marks = dict(
                conn.execute(
                    select(Source.name, SyncState.watermark).join(
                        SyncState, SyncState.source_id == Source.id
                    )
                ).all()
            )
        engine.dispose()
        assert sorted(marks) == [f"acct{i}@eu-west-{i + 1}" for i in range(4)]
        assert all(m is not None for m in marks.values())

        for i, emu in enumerate(emus):
            name = f"acct{i}@eu-west-{i + 1}"
            result = invoke(runner, "--db", archive, "query", "--source", name, "-o", "ids")
            assert sorted(result.stdout.split()) == sorted(o.id for o in emu.account.all())
        status = json.loads(invoke(runner, "--db", archive, "status", "--json").stdout)
        assert [(s["source"], s["operations"]) for s in status["sources"]] == [
            (f"acct{i}@eu-west-{i + 1}", 400 + 100 * i) for i in range(4)
        ]
        one = json.loads(
            invoke(
                runner, "--db", archive, "status", "--json", "--source", "acct2@eu-west-3"
            ).stdout
        )
        assert [s["source"] for s in one["sources"]] == ["acct2@eu-west-3"]

        out = invoke(runner, "--db", archive, "export")
        rows = list(csv.DictReader(io.StringIO(out.stdout)))
        by_source: dict[str, set[str]] = {}
        for r in rows:
            by_source.setdefault(r["source"], set()).add(r["id"])
        assert by_source == {
            f"acct{i}@eu-west-{i + 1}": {o.id for o in emu.account.all()}
            for i, emu in enumerate(emus)
        }
    finally:
        for emu in emus:
            emu.close()


def test_same_operation_id_in_two_sources_is_two_rows(runner, archive) -> None:
    """The archive is keyed by (source, id): the same ids in two accounts never collide."""
    with Emulator(seed_operations=50, seed=1) as a, Emulator(seed_operations=50, seed=1) as b:
        b.account.update(b.account.all()[0].id, status="FAIL", error_message="only in b")
        for name, emu in (("a", a), ("b", b)):
            assert cli_sync(runner, archive, emu.url, "--source", name).exit_code == 0
    assert invoke(runner, "--db", archive, "query", "-o", "count").stdout.strip() == "100"
    for name in ("a", "b"):
        result = invoke(runner, "--db", archive, "query", "--source", name, "-o", "count")
        assert result.stdout.strip() == "50"
    only_b = invoke(
        runner, "--db", archive, "query", "-o", "json", "--filters", "Name=STATUS,Values=FAIL"
    )
    sources = {
        o["Source"] for o in json.loads(only_b.stdout) if o.get("ErrorMessage") == "only in b"
    }
    assert sources == {"b"}


@pytest.mark.slow  # over HTTP
def test_removing_a_source_while_its_first_sync_runs_waits_its_turn(runner, db) -> None:
    """U7: `sources remove` between a new source's making and its sync's lock gave
    "unexpected IntegrityError". The source is made under the lock now: a remove (or a
    retire) that lands while the first sync runs is refused as "running" (exit 3), and
    the sync completes its archive."""
    import threading
    from datetime import timedelta

    from archiver.sync.options import ClientSettings, SyncOptions
    from tests.helpers import assert_archive_equals, run_library_sync

    with Emulator(seed_operations=200, days=5, seed=99) as emu:
        gate = emu.hold("ListOperations", after=0)  # the source exists, its lock is held
        now = emu.account.clock.now()
        opts = SyncOptions(source="acct", since=now - timedelta(days=10), until=now)
        cs = ClientSettings(region="us-east-1", endpoint_url=emu.url)
        done: list[object] = []
        syncing = threading.Thread(target=lambda: done.append(run_library_sync(db, opts, cs)))
        syncing.start()
        assert gate.reached.wait(60)
        removed = invoke(runner, "--db", db, "sources", "remove", "acct", "--yes")
        retired = invoke(runner, "--db", db, "sources", "retire", "acct")  # the same lock
        gate.release()
        syncing.join(60)
        for refused in (removed, retired):
            assert refused.exit_code == 3 and "Traceback" not in refused.output, refused.output
            assert refused.stderr.count("\n") == 1
        assert done and done[0].outcome == "succeeded"  # type: ignore[attr-defined]
        assert_archive_equals(db, emu.account)


def test_a_name_already_in_the_archive_is_printed_escaped(runner, archive) -> None:
    """An archive may hold a name with a control character that an older archiver took,
    or an account id a server sent: every text line escapes it, as server text is."""
    from archiver.store import write as store
    from archiver.store.archive import Archive

    with Archive(archive) as handle, handle.writer.begin() as conn:
        store.ensure_source(conn, "prod\n\x1b[2Jfake", region="us-east-1")
    for command in (["sources", "list"], ["status"]):
        result = invoke(runner, "--db", archive, *command)
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.stdout and "prod\\n\\x1b[2Jfake" in result.stdout, command
