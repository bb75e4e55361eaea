"""Add the order's tie-breaker (source_id, id) to the operations indexes.

Revision ID: 5b7f2c9d1e44
Revises: 3d5e8a41c7f6
Create Date: 2026-12-02 02:30:00

Queries order by (update_date, source_id, id). With (column, update_date) indexes the
engine read the rows in update_date order and then sorted each run of equal dates
(SQLite: "USE TEMP B-TREE FOR RIGHT PART OF ORDER BY"); with the tie-breaker in the
index the rows come out in the final order and a LIMIT stops the read early.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "5b7f2c9d1e44"
down_revision: str | Sequence[str] | None = "3d5e8a41c7f6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEADING = (None, "status", "type", "namespace_id", "service_id")


def _name(lead: str | None, tail: tuple[str, ...]) -> str:
    return "ix_operations__" + "_".join(c for c in (lead, "update_date", *tail) if c)


def upgrade() -> None:
    """Upgrade schema."""
    for lead in LEADING:
        op.drop_index(_name(lead, ()), table_name="operations")
        columns = [c for c in (lead, "update_date", "source_id", "id") if c]
        op.create_index(_name(lead, ("source_id", "id")), "operations", columns)


def downgrade() -> None:
    """Downgrade schema (indexes only: no data is lost)."""
    for lead in LEADING:
        op.drop_index(_name(lead, ("source_id", "id")), table_name="operations")
        op.create_index(_name(lead, ()), "operations", [c for c in (lead, "update_date") if c])
