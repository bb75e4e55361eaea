"""The archive's writes, on their own: what the sync relies on from each of them."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from archiver.read.query import Selection, run
from archiver.store import write as store
from archiver.store.archive import Archive
from archiver.store.models import Operation, OperationEvent
from tests.conftest import requires_sqlite
from tests.helpers import T0, op


def _write(archive: str, fn, *args, **kw):  # type: ignore[no-untyped-def]
    with Archive(archive) as handle, handle.writer.begin() as conn:
        sid = store.ensure_source(conn, "s@r")
        return fn(conn, sid, *args, **kw)


def _rows(archive: str, stmt):  # type: ignore[no-untyped-def]
    with Archive(archive) as handle, handle.reader.connect() as conn:
        return conn.execute(stmt).all()


def test_a_repeated_page_is_harmless(archive) -> None:
    page = [op(1), op(2, status="PENDING")]
    for _ in range(2):
        _write(archive, store.upsert_operations, page, seen_at=T0, run_id=None)
    assert len(_rows(archive, select(Operation.id))) == 2
    assert len(_rows(archive, select(OperationEvent.id))) == 2


def test_a_status_change_updates_the_row_keeps_its_origin_and_adds_an_event(archive) -> None:
    first = op(1, status="PENDING")
    _write(archive, store.upsert_operations, [first], seen_at=T0, run_id=None)
    later = T0 + timedelta(hours=1)
    done = replace(
        first,
        status="FAIL",
        update_date=later,
        error_code="X",
        error_message="y",
        create_date=T0 + timedelta(days=9),
    )  # a changed CreateDate is ignored
    _write(archive, store.upsert_operations, [done], seen_at=later, run_id=None)
    with Archive(archive) as handle:
        (got,) = list(run(handle, Selection()))
    assert got.record == replace(done, create_date=first.create_date)  # O5
    assert (got.first_seen_at, got.last_seen_at) == (T0, later)
    events = _rows(archive, select(OperationEvent.status).order_by(OperationEvent.update_date))
    assert [e.status for e in events] == ["PENDING", "FAIL"]


def test_the_watermark_only_moves_forward_and_never_over_a_gap(archive) -> None:
    day = timedelta(days=1)
    _write(archive, store.advance_watermark, (T0 - 9 * day, T0))  # the first pass
    _write(archive, store.advance_watermark, (T0 - 2 * day, T0 - day))
    assert _write(archive, store.watermark) == T0
    _write(archive, store.advance_watermark, (T0 - day, T0 + timedelta(seconds=1)))
    assert _write(archive, store.watermark) == T0 + timedelta(seconds=1)
    # a pass that begins after the watermark leaves a gap unread: nothing moves
    _write(archive, store.advance_watermark, (T0 + 2 * day, T0 + 3 * day))
    assert _write(archive, store.watermark) == T0 + timedelta(seconds=1)


def test_a_saved_pass_resumes_where_it_stood_and_clears(archive) -> None:
    window = (T0, T0 + timedelta(days=1))
    _write(archive, store.save_resume, window, "token-1")
    assert _write(archive, store.resume_point) == (*window, "token-1")
    _write(archive, store.save_resume, None, None)
    assert _write(archive, store.resume_point) is None


def test_archived_statuses_answers_for_more_ids_than_one_statement_binds(archive) -> None:
    records = [op(i, status="PENDING" if i % 2 else "SUCCESS") for i in range(1200)]
    _write(archive, store.upsert_operations, records, seen_at=T0, run_id=None)
    ids = [r.id for r in records] + ["op-missing"]
    got = _write(archive, store.archived_statuses, ids)
    assert got == {r.id: r.status for r in records}


@requires_sqlite
def test_the_writer_holds_a_batch_in_its_page_cache_and_readers_keep_the_default(
    archive,
) -> None:
    """A batch of 1,000 operations must not spill its dirty pages into the WAL before
    its commit (db.WRITER_CACHE_KIB); readers, which may be many, stay small."""
    from archiver.store.db import WRITER_CACHE_KIB

    with Archive(archive) as handle:
        with handle.writer.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -WRITER_CACHE_KIB
        with handle.reader.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -2000


@requires_sqlite
def test_a_writer_waits_minutes_for_the_lock_not_seconds(archive, monkeypatch) -> None:
    """A fleet syncs its sources at once into one archive, and SQLite's busy handler
    polls, which is not fair: a writer of 16 sources waited up to 44 s for one batch,
    and at a 10 s busy timeout 12 of the 16 failed with "database is locked" on their
    first night. A writer waits ten minutes (in slices, to look for a stop request
    between them), then gives up."""
    import sqlite3
    import threading
    import time

    from sqlalchemy.exc import OperationalError

    from archiver.store import db

    assert db.BUSY_TIMEOUT_S >= 600
    holder = sqlite3.connect(archive, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(1.0, holder.execute, ["ROLLBACK"]).start()  # five slices later
    with Archive(archive) as handle:
        began = time.monotonic()
        with handle.writer.begin() as conn:
            conn.exec_driver_sql("SELECT 1")
        assert time.monotonic() - began >= 0.9
        monkeypatch.setattr(db, "BUSY_TIMEOUT_S", 0.5)
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(OperationalError, match="database is locked"):
            handle.writer.connect().begin()
        assert time.monotonic() - began >= 1.4
    holder.close()


@pytest.mark.engine_free  # SQLite file names
@pytest.mark.parametrize("name", ["a?b.db", "a%20b.db", "a#b.db"])
def test_a_path_is_the_files_name_never_a_url(runner, tmp_path, monkeypatch, name) -> None:
    """`--db 'a?b.db'` made the archive `a` (the rest was read as a URL's query), and
    `--db 'a%20b.db'` made `a b.db`; the reader that may not write opens the file by a
    URI, where the same characters must be escaped."""
    from sqlalchemy import create_engine, text

    from archiver.store import db
    from tests.conftest import invoke
    from tests.helpers import fill

    monkeypatch.chdir(tmp_path)
    assert invoke(runner, "--db", name, "db", "upgrade").exit_code == 0
    fill(name, [op(1), op(2)])
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith("lock")) == [name]
    assert invoke(runner, "--db", name, "query", "-o", "count").stdout == "2\n"
    with create_engine(db._read_only_url(tmp_path / name)).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM operations")).scalar() == 2
