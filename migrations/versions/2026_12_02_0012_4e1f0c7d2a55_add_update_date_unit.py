"""Add sources.update_date_unit: how the service reads UPDATE_DATE, as last checked.

Revision ID: 4e1f0c7d2a55
Revises: b9aa1263ca02
Create Date: 2026-12-02 00:12:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "4e1f0c7d2a55"
down_revision: str | Sequence[str] | None = "b9aa1263ca02"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.add_column(sa.Column("update_date_unit", sa.String(length=2), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("sources", schema=None) as batch_op:
        batch_op.drop_column("update_date_unit")
