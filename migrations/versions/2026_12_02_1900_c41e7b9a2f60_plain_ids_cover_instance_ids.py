"""operations.plain_ids covers the instance id too.

Revision ID: c41e7b9a2f60
Revises: 9d4b6e2f8a13
Create Date: 2026-12-02 19:00:00

CSV and JSON tested every row's instance id for a quote, comma, backslash or line break
in SQL, because users choose instance ids: after the NULL test, the largest share of
an export's statement (0.25 s of about 2 s for a million rows, most of which are
instance operations in a real account). The store now tests the instance id once, with
the other ids (``records.plain_ids``), and the outputs write it unchecked where the
row is plain. Rows flagged plain before this revision were tested without it, so those
whose instance id is not plain are marked here, with the same rule, in Python, as
9d4b6e2f8a13 did.

No schema change. The downgrade leaves the flags: a row marked not plain only has its
ids quoted as needed, which is right for the code of 9d4b6e2f8a13 too.
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "c41e7b9a2f60"
down_revision: str | Sequence[str] | None = "9d4b6e2f8a13"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# records._NOT_PLAIN as of this revision (a migration must not change with later code)
_NOT_PLAIN = re.compile(r'[",\\\x00-\x1f]')


def upgrade() -> None:
    """Upgrade: mark the plain rows whose instance id is not plain."""
    conn = op.get_bind()
    ops = sa.table("operations", sa.column("source_id"), sa.column("id"),
                   sa.column("instance_id"), sa.column("plain_ids", sa.Boolean()))  # fmt: skip
    # streamed: PostgreSQL's cursor would otherwise hold every row at once
    rows = conn.execute(
        sa.select(ops.c.source_id, ops.c.id, ops.c.instance_id)
        .where(ops.c.plain_ids.is_(True), ops.c.instance_id.is_not(None))
        .execution_options(stream_results=True, max_row_buffer=10_000)
    )
    not_plain = [{"s": r[0], "i": r[1]} for r in rows if _NOT_PLAIN.search(r[2])]
    if not_plain:
        conn.execute(
            sa.update(ops)
            .where(ops.c.source_id == sa.bindparam("s"), ops.c.id == sa.bindparam("i"))
            .values(plain_ids=False),
            not_plain,
        )


def downgrade() -> None:
    """Downgrade: nothing to undo (see above)."""
