"""Count a run's late and older listings where the run is recorded.

sync_runs gains ``late`` (new operations stamped within what earlier runs read whole:
the service listed them late) and ``older`` (operations listed with a Status behind
the archive's: a replica that lags). A run reported both only in its ``--json`` line,
so the metrics, which are read from sync_runs, could not show a listing's lag
creeping towards the lookback before operations are missed. Runs recorded before
this revision count 0 of each: they did not keep the figures.

Revision ID: f2c6a8e4b013
Revises: d3f8b2a6c471
Create Date: 2026-12-07 09:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f2c6a8e4b013"
down_revision: str | Sequence[str] | None = "d3f8b2a6c471"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTS = ("late", "older")


def upgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch_op:
        for name in _COUNTS:
            batch_op.add_column(
                sa.Column(name, sa.Integer(), nullable=False, server_default=sa.text("0"))
            )


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch_op:
        for name in _COUNTS:
            batch_op.drop_column(name)
