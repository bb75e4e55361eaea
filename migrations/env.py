"""Alembic environment: one history for SQLite and PostgreSQL.

At runtime ``archiver.db`` passes its own connection in ``config.attributes``; the
``alembic`` command line (developers: ``alembic revision``/``alembic check``) builds one
from ``ARCHIVER_DB`` or ``sqlalchemy.url`` in alembic.ini.
"""

import os

from alembic import context
from sqlalchemy import text

from archiver.store import db as archive_db
from archiver.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=archive_db.same_type,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Many hosts may upgrade one shared archive at once; serialize them.
            connection.execute(text("SELECT pg_advisory_xact_lock(7236413571)"))
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # developers' `alembic` commands act on ARCHIVER_DB, or archive.db
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("ARCHIVER_DB") or "archive.db"
    engine = archive_db.create(url, write=True)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run against a database")
run_migrations_online()
