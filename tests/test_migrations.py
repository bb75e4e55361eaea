"""The schema is built only by migrations, and the migrations equal the models."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from importlib.resources import files

from sqlalchemy import column, inspect, select, table, text

from archiver.store import db as archive_db
from archiver.store.archive import Archive
from archiver.store.models import Base
from tests.helpers import read_rows, revision

TABLES = {"sources", "operations", "operation_events", "sync_runs", "sync_state",
          "incomplete_operations", "namespaces", "services"}  # fmt: skip
VIEWS = {"operations_named", "status_changes", "instance_states"}
FIRST = "8c2f1d3a9b10"
OPERATION_INDEXES = {
    "ix_operations__update_date_source_id_id",
    "ix_operations__status_update_date_source_id_id",
    "ix_operations__type_update_date_source_id_id",
    "ix_operations__namespace_id_update_date_source_id_id",
    "ix_operations__service_id_update_date_source_id_id",
}


def _tables(db: str) -> set[str]:
    engine = archive_db.create(db, write=False)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_head_constant_matches_the_scripts() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(files("archiver.migrations")))
    heads = ScriptDirectory.from_config(cfg).get_heads()
    assert heads == [archive_db.head()]


def test_upgrade_creates_exactly_the_tables_and_their_indexes(db: str) -> None:
    Archive(db).upgrade()
    assert _tables(db) == TABLES
    engine = archive_db.create(db, write=False)
    try:
        assert set(inspect(engine).get_view_names()) == VIEWS
        names = {ix["name"] for ix in inspect(engine).get_indexes("operations")}
        uniques = {u["name"] for u in inspect(engine).get_unique_constraints("operation_events")}
    finally:
        engine.dispose()
    assert names == OPERATION_INDEXES
    assert uniques == {"uq_operation_events__source_id_operation_id_status_update_date"}


def test_downgrade_to_base_and_back_with_rows_present(db: str) -> None:
    Archive(db).upgrade()
    engine = archive_db.create(db, write=True)
    now = "2026-01-02T03:04:05.678Z"
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO sources (name, created_at) VALUES ('a@b', :t)"),
            {
                "t": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
                if engine.dialect.name == "postgresql"
                else now
            },
        )
    engine.dispose()
    Archive(db).downgrade("base")
    assert _tables(db) == set()
    Archive(db).upgrade()
    assert _tables(db) == TABLES
    assert revision(db) == archive_db.head()


def test_models_and_migrations_agree(db: str) -> None:
    """Alembic autogenerate finds no difference between the models and `upgrade head`."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    Archive(db).upgrade()
    engine = archive_db.create(db, write=False)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": archive_db.same_type})
            diff = compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_upgrade_from_the_first_revision_keeps_rows_and_downgrade_goes_back(db: str) -> None:
    from archiver.store import write as store
    from archiver.store.models import Operation
    from tests.helpers import T0, archived, op

    Archive(db).upgrade(FIRST)
    records = [op(i, minutes=i) for i in range(10)]
    records[3] = replace(records[3], id='op-"3",\n')  # kept as sent: not plain
    records[4] = replace(records[4], owner_account="1,2")
    with Archive(db) as handle, handle.writer.begin() as conn:  # rows as that schema held them
        sid = store.ensure_source(conn, "old@us-east-1")
        conn.execute(Operation.__table__.insert(), [
            {"source_id": sid, **{k: v for k, v in r.values().items() if k != "extra"},
             "first_seen_at": T0, "last_seen_at": T0}
            for r in records
        ])  # fmt: skip
    Archive(db).upgrade()
    assert revision(db) == archive_db.head()
    assert "incomplete_operations" in _tables(db)
    assert archived(db) == {r.id: r for r in records}
    assert "plain_ids" not in _columns(db, "operations")
    Archive(db).downgrade(FIRST)
    assert revision(db) == FIRST
    assert "incomplete_operations" not in _tables(db)
    engine = archive_db.create(db, write=False)
    try:  # the old schema's columns, read as its code would
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, status FROM operations ORDER BY id")).all()
    finally:
        engine.dispose()
    assert rows == sorted((r.id, r.status) for r in records)
    engine = archive_db.create(db, write=False)
    try:
        assert "extra" not in {c["name"] for c in inspect(engine).get_columns("operations")}
    finally:
        engine.dispose()


def _columns(db: str, table: str) -> set[str]:
    engine = archive_db.create(db, write=False)
    try:
        return {c["name"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def _flags(db: str) -> dict[str, bool]:
    ops = table("operations", column("id"), column("plain_ids"))
    return dict(read_rows(db, select(ops.c.id, ops.c.plain_ids)))


def test_plain_ids_marked_by_0_3_are_dropped_and_marked_again_on_downgrade(db: str) -> None:
    """0.3.0 flagged each row whose ids CSV and JSON need not escape (9d4b6e2f8a13, with
    the instance id from c41e7b9a2f60); e7a1c3b5d902 drops the flag and keeps every row,
    and its downgrade marks the rows again as 0.3.0's code would."""
    from archiver.store import write as store
    from tests.helpers import T0, archived, op

    Archive(db).upgrade("9d4b6e2f8a13")
    records = [op(1), op(2, instance='i-"2",\n'), op(3, instance=None), op(4, instance="i\\4"),
               replace(op(5), id="op,5")]  # fmt: skip
    rows = table("operations", *(column(c) for c in (
        "source_id", *records[0].values(), "first_seen_at", "last_seen_at", "plain_ids")))  # fmt: skip
    with Archive(db) as handle, handle.writer.begin() as conn:  # flagged as 9d4b6e2f8a13 did
        sid = store.ensure_source(conn, "old@us-east-1")
        conn.execute(rows.insert(), [
            {"source_id": sid, **r.values(), "first_seen_at": T0, "last_seen_at": T0,
             "plain_ids": r.id != "op,5"}
            for r in records
        ])  # fmt: skip
    want = {"op-000001": True, "op-000002": False, "op-000003": True, "op-000004": False,
            "op,5": False}  # fmt: skip
    Archive(db).upgrade("c41e7b9a2f60")  # marks the rows whose instance id alone is not plain
    assert _flags(db) == want
    Archive(db).upgrade()
    assert "plain_ids" not in _columns(db, "operations")
    assert archived(db) == {r.id: r for r in records}
    Archive(db).downgrade("c41e7b9a2f60")
    assert _flags(db) == want
    assert archived(db) == {r.id: r for r in records}


def test_an_archive_a_newer_archiver_wrote_says_so(runner, db: str) -> None:
    """It said "run `archiver db upgrade`", which then failed: "Can't locate revision"."""
    from tests.conftest import invoke

    Archive(db).upgrade()
    engine = archive_db.create(db, write=True)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed1234'"))
    finally:
        engine.dispose()
    for command in (["status"], ["db", "upgrade"], ["query"]):
        result = invoke(runner, "--db", db, *command)
        assert result.exit_code == 2, (command, result.output)
        assert "f00dfeed1234" in result.stderr and "a newer one wrote it" in result.stderr
        assert result.stderr.count("\n") == 1
