"""Add the views operations_named and status_changes, for plain SQL.

Revision ID: 3d5e8a41c7f6
Revises: edd98842dffd
Create Date: 2026-12-02 02:00:00

The views answer in names and seconds, the same columns on both engines, so that the
README's cookbook ("Ask the archive in SQL") runs unchanged on SQLite and PostgreSQL.
Only the date arithmetic differs by dialect, and it is written here, once.

A later migration that rebuilds ``operations``, ``operation_events``, ``sources``,
``namespaces`` or ``services`` with ``batch_alter_table`` on SQLite must drop these
views first and create them again after (SQLite checks views when a table is renamed).
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "3d5e8a41c7f6"
down_revision: str | Sequence[str] | None = "edd98842dffd"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNFINISHED = "('SUBMITTED', 'PENDING')"


def _seconds(start: str, end: str, dialect: str) -> str:
    """Seconds from ``start`` to ``end``, with the milliseconds, as a float."""
    if dialect == "postgresql":
        return f"CAST(EXTRACT(EPOCH FROM ({end}) - ({start})) AS double precision)"
    return f"ROUND((julianday({end}) - julianday({start})) * 86400.0, 3)"


def _day(value: str, dialect: str) -> str:
    """The UTC day of an instant as text, 2026-01-31."""
    if dialect == "postgresql":
        return f"to_char(timezone('UTC', {value}), 'YYYY-MM-DD')"
    return f"substr({value}, 1, 10)"


def operations_named(dialect: str) -> str:
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
       {_day("o.update_date", dialect)} AS update_day
FROM operations o
JOIN sources s ON s.id = o.source_id
LEFT JOIN namespaces n ON n.source_id = o.source_id AND n.id = o.namespace_id
LEFT JOIN services v ON v.source_id = o.source_id AND v.id = o.service_id
"""


def status_changes(dialect: str) -> str:
    since = _seconds("LAG(c.update_date) OVER w", "c.update_date", dialect)
    return f"""
CREATE VIEW status_changes AS
SELECT c.source, c.source_id, c.operation_id, c.type, c.status, c.previous_status,
       c.update_date, c.observed_at, c.sync_run_id,
       {since} AS seconds_since_previous
FROM (
    SELECT s.name AS source, e.id AS event_id, e.source_id, e.operation_id, o.type,
           e.status, LAG(e.status) OVER p AS previous_status,
           e.update_date, e.observed_at, e.sync_run_id
    FROM operation_events e
    JOIN operations o ON o.source_id = e.source_id AND o.id = e.operation_id
    JOIN sources s ON s.id = e.source_id
    WINDOW p AS (PARTITION BY e.source_id, e.operation_id ORDER BY e.update_date, e.id)
) AS c
WHERE c.previous_status IS NULL OR c.previous_status <> c.status
WINDOW w AS (PARTITION BY c.source_id, c.operation_id ORDER BY c.update_date, c.event_id)
"""


def upgrade() -> None:
    """Upgrade schema."""
    dialect = op.get_bind().dialect.name
    op.execute(operations_named(dialect))
    op.execute(status_changes(dialect))


def downgrade() -> None:
    """Downgrade schema (views only: no data is lost)."""
    op.execute("DROP VIEW status_changes")
    op.execute("DROP VIEW operations_named")
