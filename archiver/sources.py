"""The archive's sources, listed and removed.

A source is one account/region (or endpoint) that syncs into the archive. A typo in
``--region`` or ``--source`` creates one that never succeeds; `sources remove` takes it
out again, with everything it holds, in one transaction and under the source's lock
(so never under a running sync).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from archiver import store
from archiver.archive import Archive
from archiver.models import Operation, Source, SyncState
from archiver.query import source_ids
from archiver.timeutil import iso


def list_sources(archive: Archive) -> list[dict[str, Any]]:
    """Every source with its region, endpoint, operation count and watermark."""
    counts = (
        select(Operation.source_id, func.count().label("n"))
        .group_by(Operation.source_id)
        .subquery()
    )
    stmt = (
        select(Source.name, Source.region, Source.endpoint_url, SyncState.watermark, counts.c.n)
        .outerjoin(SyncState, SyncState.source_id == Source.id)
        .outerjoin(counts, counts.c.source_id == Source.id)
        .order_by(Source.name)
    )
    with archive.reader.connect() as conn:
        return [
            {
                "name": row.name,
                "region": row.region,
                "endpoint_url": row.endpoint_url,
                "operations": row.n or 0,
                "watermark": iso(row.watermark) if row.watermark else None,
            }
            for row in conn.execute(stmt)
        ]


def drop_source(archive: Archive, name: str) -> dict[str, int]:
    """Delete the source ``name`` and all it holds; an unknown name is bad input."""
    with archive.reader.connect() as conn:
        (source_id,) = source_ids(conn, name)
    with archive.lock(name), archive.writer.begin() as conn:
        return store.remove_source(conn, source_id)
