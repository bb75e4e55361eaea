"""One archive, opened once from ``--db``: the handle every library entry point takes.

Why a handle (as sqlite-utils has its ``Database``): the archive is a path or a URL,
two engines (a writer that takes SQLite's write lock up front, and readers that never
write), a per-source lock whose kind depends on the engine, and a schema version that
every command checks. Opening all of that in one place keeps the engine differences
in ``db`` and here, and lets sync, query, export, status, the db commands and demo
share one way in (docs/design.md, "The parts").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from archiver import db
from archiver.errors import UsageError


class Archive:
    """An archive location and its engines, created on first use and closed together."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.name = db.describe(location)  # for messages: never a password
        self.sqlite_path: Path | None = db.sqlite_path(location)
        self._writer: Engine | None = None
        self._reader: Engine | None = None

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, location: str, *, create_missing: bool = False) -> Archive:
        """An archive at the migration head, or a one-line UsageError.

        ``create_missing`` (the sync, the demo) builds a brand-new or empty archive by
        running the migrations; every other command refuses an archive that is not at
        head and leaves the file exactly as it found it.
        """
        archive = cls(location)
        try:
            archive._check_head(create_missing=create_missing)
        except BaseException:
            archive.close()
            raise
        return archive

    def _check_head(self, *, create_missing: bool) -> None:
        db.check_file(self.location, must_exist=not create_missing)
        if create_missing and self.is_new:
            self.upgrade()
        rev = self.revision()
        if rev == db.head():
            return
        if rev is None and create_missing and not db.has_tables(self.reader):
            self.upgrade()
            return
        if rev is None:
            raise UsageError(
                f"{self.name} is not an archiver archive (no schema version); "
                "run `archiver db upgrade` to create one in an empty database"
            )
        raise UsageError(
            f"archive {self.name} is at revision {rev}, this archiver needs {db.head()}; "
            "run `archiver db upgrade`"
        )

    @property
    def is_new(self) -> bool:
        """A SQLite archive that does not exist yet, or an empty file."""
        return db.is_new_sqlite(self.location)

    # --- engines -----------------------------------------------------------------------------

    @property
    def writer(self) -> Engine:
        if self._writer is None:
            if problem := db.write_problem(self.location):
                raise UsageError(problem)
            self._writer = db.create(self.location, write=True)
        return self._writer

    @property
    def reader(self) -> Engine:
        if self._reader is None:
            self._reader = db.create(self.location, write=False)
        return self._reader

    def close(self) -> None:
        for engine in (self._writer, self._reader):
            if engine is not None:
                engine.dispose()
        self._writer = self._reader = None

    def __enter__(self) -> Archive:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- schema ------------------------------------------------------------------------------

    def revision(self) -> str | None:
        """The archive's Alembic revision; None for a database without our schema."""
        db.check_file(self.location, must_exist=True)
        try:
            with self.reader.connect() as conn:
                return db.revision(conn)
        except DBAPIError as exc:
            self.close()
            raise db.translate(exc, self.location) from None

    def upgrade(self, target: str = "head") -> None:
        self.close()  # migrations use their own connection; cached engines would be stale
        db.migrate(self.location, "upgrade", target)

    def downgrade(self, target: str) -> None:
        self.close()
        db.migrate(self.location, "downgrade", target)

    # --- locking -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, source: str) -> Iterator[None]:
        """One sync per source at a time (``lock``): LockHeld (exit 3) when taken."""
        from archiver.lock import source_lock

        with source_lock(self.writer, self.sqlite_path, source):
            yield
