"""Add operations.plain_ids: whether a row's ids may be written into CSV and JSON as they are.

Revision ID: 9d4b6e2f8a13
Revises: 5b7f2c9d1e44
Create Date: 2026-12-02 14:30:00

CSV and JSON wrote the ids the service assigns (operation, namespace and service ids,
the owner's account id) unescaped, which kept a million-row export fast but broke the
line of an archive holding an id with a comma, quote or line break (the archive keeps
what the service sent). Testing every id of every row in SQL cost the export 40%; the
store now tests each record once (``records.plain_ids``) and the outputs escape only
the rows that are not plain. Existing rows are tested here with the same rule, in
Python, so that both engines agree with the store to the character.
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "9d4b6e2f8a13"
down_revision: str | Sequence[str] | None = "5b7f2c9d1e44"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# records._NOT_PLAIN as of this revision (a migration must not change with later code)
_NOT_PLAIN = re.compile(r'[",\\\x00-\x1f]')


def upgrade() -> None:
    """Upgrade schema: add the column, then mark every existing row."""
    # Not in a batch: SQLite adds (and drops) a column in place, where a batch would
    # copy the table, which the views of 3d5e8a41c7f6 refer to.
    op.add_column("operations", sa.Column("plain_ids", sa.Boolean(), nullable=True))
    conn = op.get_bind()
    ops = sa.table("operations", sa.column("source_id"), sa.column("id"),
                   sa.column("namespace_id"), sa.column("service_id"),
                   sa.column("owner_account"), sa.column("plain_ids", sa.Boolean()))  # fmt: skip
    conn.execute(sa.update(ops).values(plain_ids=True))
    # streamed (on its own statement: set on the connection it would also apply to
    # the UPDATE below): PostgreSQL's cursor would otherwise hold every row at once
    rows = conn.execute(
        sa.select(ops.c.source_id, ops.c.id, ops.c.namespace_id, ops.c.service_id,
                  ops.c.owner_account)
        .execution_options(stream_results=True, max_row_buffer=10_000)
    )  # fmt: skip
    not_plain = [
        {"s": r[0], "i": r[1]} for r in rows if any(v and _NOT_PLAIN.search(v) for v in r[1:])
    ]
    if not_plain:
        conn.execute(
            sa.update(ops)
            .where(ops.c.source_id == sa.bindparam("s"), ops.c.id == sa.bindparam("i"))
            .values(plain_ids=False),
            not_plain,
        )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_column("operations", "plain_ids")
