"""The words commands take as choices (``--order-by``, ``--output``).

Kept apart from the modules that act on them, which import SQLAlchemy: `archiver
--help` must list the choices without loading the database layer (it answers in
well under a second from cron's shell and from a user's).
"""

from __future__ import annotations

from enum import StrEnum


class OrderBy(StrEnum):
    update_date = "update_date"
    create_date = "create_date"
    id = "id"


class Output(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    ids = "ids"
    count = "count"  # type: ignore[assignment]  # the word users type; shadows str.count
