"""The names behind the ids: namespaces and services, kept for ever.

Operations name their targets by id only, and an id means nothing to an auditor a year
later, after the namespace was deleted. Each sync lists its source's namespaces and
services (``cloudmap.list_catalog``) and this module keeps them: a row is added or
refreshed when a listing shows it, and never removed. ``gone_at`` is set when a
complete listing first does not show it; ``last_seen_at`` says when one last did.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, update

from archiver.cloudmap import Listed
from archiver.db import insert
from archiver.models import Namespace, Service

CATALOG_TABLES: dict[str, Any] = {"namespaces": Namespace, "services": Service}
_REFRESHED = ("name", "type", "arn", "resource_owner", "create_date", "last_seen_at", "gone_at")


def record_catalog(
    conn: Connection,
    source_id: int,
    kind: str,
    listed: Sequence[Listed],
    *,
    seen_at: datetime,
    complete: bool,
) -> None:
    """Store one listing of ``kind`` ("namespaces" or "services") as seen at ``seen_at``.

    ``complete``: every page was read, so what it does not show is gone; a listing cut
    short by an error marks nothing gone.
    """
    model = CATALOG_TABLES[kind]
    rows = [
        {
            "source_id": source_id,
            "id": item.id,
            "name": item.name,
            "type": item.type,
            "arn": item.arn,
            "resource_owner": item.resource_owner,
            "create_date": item.create_date,
            "first_seen_at": seen_at,
            "last_seen_at": seen_at,
            "gone_at": None,
        }
        for item in listed
    ]
    if rows:
        stmt = insert(conn, model.__table__)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["source_id", "id"],
                set_={name: stmt.excluded[name] for name in _REFRESHED},
            ),
            rows,
        )
    if complete:
        conn.execute(
            update(model)
            .where(
                model.source_id == source_id,
                model.last_seen_at < seen_at,
                model.gone_at.is_(None),
            )
            .values(gone_at=seen_at)
        )
