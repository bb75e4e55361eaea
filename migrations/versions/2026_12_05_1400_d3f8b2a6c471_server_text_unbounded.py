"""Server text unbounded: a Type, Status or name longer than its column is kept.

PostgreSQL enforces VARCHAR(n): a Type over 32 characters or a namespace name over
1,024 failed the whole run every night. The service's free-form values become TEXT
(the ids keep the bounds AWS documents). Views name these columns, and PostgreSQL
does not change the type of a column a view uses, so the three views are dropped
first and made again, from the migrations that defined them, after.

SQLite enforces no length: its VARCHAR(n) and TEXT are one type (TEXT affinity), so
nothing changes there (``store.db.same_type``), and an archive of a million
operations is not copied table by table to say so.

Revision ID: d3f8b2a6c471
Revises: b7e3a9d1c254
Create Date: 2026-12-05 14:00:00

"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision: str = "d3f8b2a6c471"
down_revision: str | Sequence[str] | None = "b7e3a9d1c254"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: table → the columns made TEXT, with their bound before.
WIDENED = {
    "operations": {"type": 32, "status": 16, "instance_id": 64, "owner_account": 12},
    "operation_events": {"status": 16},
    "incomplete_operations": {"status": 16},
    "namespaces": {"name": 1024, "type": 32, "arn": 2048, "resource_owner": 12},
    "services": {"name": 1024, "type": 32, "arn": 2048, "resource_owner": 12},
}


def _migration(revision_id: str) -> ModuleType:
    (path,) = Path(__file__).parent.glob(f"*_{revision_id}_*.py")
    spec = importlib.util.spec_from_file_location(f"_rev_{revision_id}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _views(make: bool) -> None:
    if not make:
        for view in ("instance_states", "status_changes", "operations_named"):
            op.execute(f"DROP VIEW {view}")
        return
    dialect = op.get_bind().dialect.name
    op.execute(_migration("a4d2f6c8e013").operations_named(dialect, through_service=True))
    op.execute(_migration("3d5e8a41c7f6").status_changes(dialect))
    op.execute(_migration("b7e3a9d1c254").INSTANCE_STATES)


def _alter(widen: bool) -> None:
    _views(make=False)
    for table, columns in WIDENED.items():
        with op.batch_alter_table(table) as batch_op:
            for name, bound in columns.items():
                new, old = (sa.Text(), sa.String(bound)) if widen else (sa.String(bound), sa.Text())
                batch_op.alter_column(name, type_=new, existing_type=old)
    _views(make=True)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _alter(widen=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _alter(widen=False)
