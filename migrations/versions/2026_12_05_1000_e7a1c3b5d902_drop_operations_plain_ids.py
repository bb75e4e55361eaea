"""Drop operations.plain_ids: CSV and JSON quote every id as needed.

Revision ID: e7a1c3b5d902
Revises: c41e7b9a2f60
Create Date: 2026-12-05 10:00:00

The column existed only to spare a million-row export the test of each id (revisions
9d4b6e2f8a13 and c41e7b9a2f60): a schema column for a speed no user felt, which every
writer had to keep right. The outputs now quote every id as needed, as they always did
for a row that was not plain. The downgrade adds the column back and marks every row
with the rule those revisions used, so that their code reads it as it wrote it.
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "e7a1c3b5d902"
down_revision: str | Sequence[str] | None = "c41e7b9a2f60"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# records._NOT_PLAIN and records.ID_FIELDS as of c41e7b9a2f60 (a migration must not
# change with later code)
_NOT_PLAIN = re.compile(r'[",\\\x00-\x1f]')
_IDS = ("id", "namespace_id", "service_id", "instance_id", "owner_account")


def upgrade() -> None:
    """Upgrade: drop the column (in place on SQLite, as 9d4b6e2f8a13 added it: a batch
    would copy the table, which the views of 3d5e8a41c7f6 refer to)."""
    op.drop_column("operations", "plain_ids")


def downgrade() -> None:
    """Downgrade: the column again, every row marked as c41e7b9a2f60's code would."""
    op.add_column("operations", sa.Column("plain_ids", sa.Boolean(), nullable=True))
    conn = op.get_bind()
    ops = sa.table("operations", sa.column("source_id"), *(sa.column(c) for c in _IDS[1:]),
                   sa.column("id"), sa.column("plain_ids", sa.Boolean()))  # fmt: skip
    conn.execute(sa.update(ops).values(plain_ids=True))
    rows = conn.execute(
        sa.select(ops.c.source_id, *(ops.c[c] for c in _IDS)).execution_options(
            stream_results=True, max_row_buffer=10_000
        )
    )  # streamed: PostgreSQL's cursor would otherwise hold every row at once
    not_plain = [
        {"s": r.source_id, "i": r.id}
        for r in rows
        if any((v := r._mapping[c]) and _NOT_PLAIN.search(v) for c in _IDS)
    ]
    if not_plain:
        conn.execute(
            sa.update(ops)
            .where(ops.c.source_id == sa.bindparam("s"), ops.c.id == sa.bindparam("i"))
            .values(plain_ids=False),
            not_plain,
        )
