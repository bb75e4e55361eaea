"""Count every API call of a run, keep what the catalog listings give, name every
operation's namespace.

- sync_runs gains namespace_calls and service_calls beside list_calls and get_calls,
  so that a run's four API operations are all counted where it is recorded.
- namespaces and services gain description and extra (every other member of the
  summary, as JSON, as operations keep theirs): nothing a listing gives is dropped.
- services gain namespace_id (ListServices by NAMESPACE_ID gives the link), and
  operations_named names the namespace of an operation that targets only a service.

Revision ID: a4d2f6c8e013
Revises: e7a1c3b5d902
Create Date: 2026-12-05 12:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a4d2f6c8e013"
down_revision: str | Sequence[str] | None = "e7a1c3b5d902"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CALLS = ("namespace_calls", "service_calls")
UNFINISHED = "('SUBMITTED', 'PENDING')"


def _seconds(start: str, end: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"CAST(EXTRACT(EPOCH FROM ({end}) - ({start})) AS double precision)"
    return f"ROUND((julianday({end}) - julianday({start})) * 86400.0, 3)"


def operations_named(dialect: str, *, through_service: bool) -> str:
    """The view of 3d5e8a41c7f6; ``through_service``: an operation without a namespace
    target is named after its service's namespace."""
    namespace = "COALESCE(o.namespace_id, v.namespace_id)" if through_service else "o.namespace_id"
    day = ("to_char(timezone('UTC', o.update_date), 'YYYY-MM-DD')" if dialect == "postgresql"
           else "substr(o.update_date, 1, 10)")  # fmt: skip
    return f"""
CREATE VIEW operations_named AS
SELECT s.name AS source, o.source_id, o.id, o.type, o.status,
       o.error_code, o.error_message, o.create_date, o.update_date,
       o.namespace_id, n.name AS namespace_name,
       o.service_id, v.name AS service_name,
       o.instance_id, o.owner_account, o.first_seen_at, o.last_seen_at,
       CASE WHEN o.status IN {UNFINISHED} THEN 0 ELSE 1 END AS final,
       CASE WHEN o.status NOT IN {UNFINISHED}
            THEN {_seconds("o.create_date", "o.update_date", dialect)} END AS duration_s,
       CASE WHEN o.status IN {UNFINISHED}
            THEN {_seconds("o.create_date", "o.last_seen_at", dialect)} END AS pending_s,
       {day} AS update_day
FROM operations o
JOIN sources s ON s.id = o.source_id
LEFT JOIN services v ON v.source_id = o.source_id AND v.id = o.service_id
LEFT JOIN namespaces n ON n.source_id = o.source_id AND n.id = {namespace}
"""


_CATALOG = ("namespaces", "services")


def upgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch_op:
        for name in _CALLS:
            batch_op.add_column(
                sa.Column(name, sa.Integer(), nullable=False, server_default=sa.text("0"))
            )
    for table in _CATALOG:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("description", sa.Text(), nullable=True))
            batch_op.add_column(sa.Column("extra", sa.Text(), nullable=True))
    with op.batch_alter_table("services") as batch_op:
        batch_op.add_column(sa.Column("namespace_id", sa.String(length=64), nullable=True))
    op.execute("DROP VIEW operations_named")
    op.execute(operations_named(op.get_bind().dialect.name, through_service=True))


def downgrade() -> None:
    # SQLite drops a column by rebuilding the table, which its views must not name
    op.execute("DROP VIEW operations_named")
    with op.batch_alter_table("services") as batch_op:
        batch_op.drop_column("namespace_id")
    for table in _CATALOG:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("extra")
            batch_op.drop_column("description")
    with op.batch_alter_table("sync_runs") as batch_op:
        for name in _CALLS:
            batch_op.drop_column(name)
    op.execute(operations_named(op.get_bind().dialect.name, through_service=False))
