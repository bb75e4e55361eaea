"""Add namespaces and services: the names behind the ids, kept for ever.

Revision ID: edd98842dffd
Revises: 7a3c9e51d0b2
Create Date: 2026-12-02 01:54:08

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from archiver.store.models import UTCDateTime

# revision identifiers, used by Alembic.
revision: str = "edd98842dffd"
down_revision: str | Sequence[str] | None = "7a3c9e51d0b2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("namespaces", "services")


def upgrade() -> None:
    """Upgrade schema."""
    for table in TABLES:
        op.create_table(
            table,
            sa.Column("source_id", sa.Integer(), nullable=False),
            sa.Column("id", sa.String(length=64), nullable=False),
            sa.Column("name", sa.String(length=1024), nullable=False),
            sa.Column("type", sa.String(length=32), nullable=True),
            sa.Column("arn", sa.String(length=2048), nullable=True),
            sa.Column("resource_owner", sa.String(length=12), nullable=True),
            sa.Column("create_date", UTCDateTime(), nullable=True),
            sa.Column("first_seen_at", UTCDateTime(), nullable=False),
            sa.Column("last_seen_at", UTCDateTime(), nullable=False),
            sa.Column("gone_at", UTCDateTime(), nullable=True),
            sa.ForeignKeyConstraint(
                ["source_id"], ["sources.id"], name=op.f(f"fk_{table}__source_id__sources")
            ),
            sa.PrimaryKeyConstraint("source_id", "id", name=op.f(f"pk_{table}")),
        )


def downgrade() -> None:
    """Downgrade schema (the names are lost; the next sync lists today's again)."""
    for table in reversed(TABLES):
        op.drop_table(table)
