"""Create the archive: sources, operations, operation_events, sync_runs, sync_state.

Revision ID: 8c2f1d3a9b10
Revises:
Create Date: 2026-11-27 09:30:50

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from archiver.store.models import UTCDateTime

# revision identifiers, used by Alembic.
revision: str = "8c2f1d3a9b10"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=True),
        sa.Column("endpoint_url", sa.String(length=1024), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sources")),
        sa.UniqueConstraint("name", name=op.f("uq_sources__name")),
    )
    op.create_table(
        "operations",
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("create_date", UTCDateTime(), nullable=False),
        sa.Column("update_date", UTCDateTime(), nullable=False),
        sa.Column("namespace_id", sa.String(length=64), nullable=True),
        sa.Column("service_id", sa.String(length=64), nullable=True),
        sa.Column("instance_id", sa.String(length=64), nullable=True),
        sa.Column("owner_account", sa.String(length=12), nullable=True),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.id"], name=op.f("fk_operations__source_id__sources")
        ),
        sa.PrimaryKeyConstraint("source_id", "id", name=op.f("pk_operations")),
    )
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_operations__namespace_id_update_date"),
            ["namespace_id", "update_date"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_operations__service_id_update_date"),
            ["service_id", "update_date"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_operations__status_update_date"), ["status", "update_date"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_operations__type_update_date"), ["type", "update_date"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_operations__update_date"), ["update_date"], unique=False
        )

    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=True),
        sa.Column("until", UTCDateTime(), nullable=True),
        sa.Column("windows", sa.Integer(), nullable=False),
        sa.Column("list_calls", sa.Integer(), nullable=False),
        sa.Column("get_calls", sa.Integer(), nullable=False),
        sa.Column("listed", sa.Integer(), nullable=False),
        sa.Column("inserted", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("vanished", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.id"], name=op.f("fk_sync_runs__source_id__sources")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
    )
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sync_runs__source_id"), ["source_id"], unique=False)

    op.create_table(
        "sync_state",
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("watermark", UTCDateTime(), nullable=True),
        sa.Column("lock_holder", sa.String(length=255), nullable=True),
        sa.Column("lock_since", UTCDateTime(), nullable=True),
        sa.Column("resume_start", UTCDateTime(), nullable=True),
        sa.Column("resume_end", UTCDateTime(), nullable=True),
        sa.Column("resume_token", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.id"], name=op.f("fk_sync_state__source_id__sources")
        ),
        sa.PrimaryKeyConstraint("source_id", name=op.f("pk_sync_state")),
    )
    op.create_table(
        "operation_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("operation_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("update_date", UTCDateTime(), nullable=False),
        sa.Column("observed_at", UTCDateTime(), nullable=False),
        sa.Column("sync_run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id", "operation_id"],
            ["operations.source_id", "operations.id"],
            name=op.f("fk_operation_events__source_id_operation_id__operations"),
        ),
        sa.ForeignKeyConstraint(
            ["sync_run_id"],
            ["sync_runs.id"],
            name=op.f("fk_operation_events__sync_run_id__sync_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operation_events")),
        sa.UniqueConstraint(
            "source_id",
            "operation_id",
            "status",
            "update_date",
            name=op.f("uq_operation_events__source_id_operation_id_status_update_date"),
        ),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("operation_events")
    op.drop_table("sync_state")
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_runs__source_id"))

    op.drop_table("sync_runs")
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operations__update_date"))
        batch_op.drop_index(batch_op.f("ix_operations__type_update_date"))
        batch_op.drop_index(batch_op.f("ix_operations__status_update_date"))
        batch_op.drop_index(batch_op.f("ix_operations__service_id_update_date"))
        batch_op.drop_index(batch_op.f("ix_operations__namespace_id_update_date"))

    op.drop_table("operations")
    op.drop_table("sources")
