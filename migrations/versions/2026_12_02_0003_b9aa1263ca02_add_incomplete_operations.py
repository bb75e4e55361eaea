"""Add incomplete_operations: listed operations that GetOperation could not find.

Revision ID: b9aa1263ca02
Revises: 8c2f1d3a9b10
Create Date: 2026-12-02 00:03:12

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from archiver.store.models import UTCDateTime

# revision identifiers, used by Alembic.
revision: str = "b9aa1263ca02"
down_revision: str | Sequence[str] | None = "8c2f1d3a9b10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "incomplete_operations",
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("gone_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_incomplete_operations__source_id__sources"),
        ),
        sa.PrimaryKeyConstraint("source_id", "id", name=op.f("pk_incomplete_operations")),
    )


def downgrade() -> None:
    """Downgrade schema (the incomplete operations are lost)."""
    op.drop_table("incomplete_operations")
