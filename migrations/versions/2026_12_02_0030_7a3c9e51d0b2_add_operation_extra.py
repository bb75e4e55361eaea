"""Add operations.extra: what the known columns do not hold of a received Operation.

Revision ID: 7a3c9e51d0b2
Revises: 4e1f0c7d2a55
Create Date: 2026-12-02 00:30:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "7a3c9e51d0b2"
down_revision: str | Sequence[str] | None = "4e1f0c7d2a55"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("extra", sa.Text(), nullable=True))


def downgrade() -> None:
    """Downgrade schema (the extra fields are lost)."""
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.drop_column("extra")
