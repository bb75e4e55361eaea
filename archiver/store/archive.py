"""One archive, opened once from ``--db``: the handle every library entry point takes.

Why a handle (as sqlite-utils has its ``Database``): the archive is a path or a URL,
two engines on SQLite (a writer that takes the write lock up front, and readers that
never write), a per-source lock whose kind depends on the engine, and a schema version that
every command checks. Opening all of that in one place keeps the engine differences
in ``db`` and here, and lets sync, query, export, status, the db commands and demo
share one way in (docs/design.md, "The parts").
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from archiver.errors import ArchiverError, LockHeld, UsageError, WorkFailed
from archiver.guards import hand_over, mask_url, open_in_place, owner
from archiver.store import db

_SIDECARS = ("", "-wal", "-shm", "-journal")


class Archive:
    """An archive location and its engines, created on first use and closed together."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.name = mask_url(location)  # for messages: never a password
        self.sqlite_path: Path | None = db.sqlite_path(location)
        self._writer: Engine | None = None
        self._reader: Engine | None = None
        self._seen: tuple[int, ...] | None = None  # the file as an immutable reader found it

    def size_bytes(self) -> int:
        """The archive's size: its SQLite files, or its PostgreSQL database."""
        if self.sqlite_path is None:
            with self.reader.connect() as conn:
                size = conn.execute(text("SELECT pg_database_size(current_database())"))
                return int(size.scalar_one())
        return sum(p.stat().st_size for p in self.files if p.exists())

    @property
    def files(self) -> list[Path]:
        """The SQLite archive's file and its -wal/-shm/-journal, made or not (none for a
        URL): what no file the tool writes may replace (``guards.target``)."""
        if self.sqlite_path is None:
            return []
        return [self.sqlite_path.with_name(self.sqlite_path.name + s) for s in _SIDECARS]

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
        if rev is None and create_missing and not inspect(self.reader).get_table_names():
            self.upgrade()
            return
        if newer := db.newer_than_us(rev, self.name):
            raise newer
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
        path = self.sqlite_path
        return path is not None and (not path.exists() or path.stat().st_size == 0)

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
        if self._reader is None and self.sqlite_path is None:  # the split is SQLite's: one
            # pool, one connection less for each source of a fleet (max_connections); a
            # read is one snapshot, as in SQLite, not one a statement (docs/design.md)
            self._reader = self.writer.execution_options(isolation_level="REPEATABLE READ")
        if self._reader is None:
            seen = db.stamp(self.sqlite_path)  # before the choice: a write after it shows
            self._reader = db.create(self.location, write=False)
            if self._seen is None and self._reader.url.query.get("immutable"):
                self._seen = seen
        return self._reader

    def check_unchanged(self) -> None:
        """A reader that may not write the archive opens it immutable (``db``), without
        the locks that keep a read whole: if a sync wrote the file meanwhile, what was
        read may mix two states or look damaged. Its stamp tells; the command fails."""
        if self._seen is not None and db.stamp(self.sqlite_path) != self._seen:
            raise WorkFailed(f"{self.name} was written while this command read it without "
                             "locks (you may not write it), so the answer may mix old and "
                             "new rows: run it again")  # fmt: skip

    def close(self) -> None:
        for engine in (self._writer, self._reader):
            if engine is not None:
                engine.dispose()
        self._writer = self._reader = None

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:  # a torn read's "damaged" is told as what it is; a stop stays a stop
            if kind is None or issubclass(kind, Exception):
                self.check_unchanged()
        finally:
            self.close()

    # --- schema ------------------------------------------------------------------------------

    def revision(self) -> str | None:
        """The archive's Alembic revision; None for a database without our schema."""
        db.check_file(self.location, must_exist=True)
        try:
            return db.revision(self.reader, self.location)
        except ArchiverError:
            self.close()
            raise

    def upgrade(self, target: str = "head") -> None:
        self.close()  # migrations use their own connection; cached engines would be stale
        db.migrate(self.location, "upgrade", target)

    def downgrade(self, target: str) -> None:
        self.close()
        db.migrate(self.location, "downgrade", target)

    # --- locking -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, source: str, *, last: bool = False) -> Iterator[None]:
        """Hold the source's lock for the block, or raise LockHeld (exit 3) at once: one
        sync per source at a time. A SQLite archive's lock is a file beside it; a server
        database holds the lock itself. ``last``: the source is being removed, so its
        lock file goes too."""
        if self.sqlite_path is not None:
            with _file_lock(self.sqlite_path, source, last=last):
                yield
        else:
            with _advisory_lock(self.writer, source):
                yield


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _key(source: str) -> int:
    """A stable signed 64-bit advisory-lock key for the source name."""
    return int.from_bytes(hashlib.sha256(b"archiver:" + source.encode()).digest()[:8], "big",
                          signed=True)  # fmt: skip


def _busy(source: str) -> LockHeld:
    return LockHeld(f"another sync of source {source!r} is running; try again when it ends")


@contextlib.contextmanager
def _file_lock(archive: Path, source: str, *, last: bool = False) -> Iterator[None]:
    import fcntl

    slug = re.sub(r"[^A-Za-z0-9_.@-]", "_", source)[:80]
    digest = hashlib.sha256(source.encode()).hexdigest()[:8]
    path = f"{archive.resolve()}.{slug}.{digest}.lock"  # beside the file, as SQLite's -wal
    fd = open_in_place(Path(path), what="the lock file")
    try:
        hand_over(fd, owner(archive))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(source) from None
        os.ftruncate(fd, 0)
        os.write(fd, holder_name().encode())
        yield
        if last:  # the source is gone: its lock file goes, still held, after the delete
            os.unlink(path)
    finally:
        os.close(fd)  # closing releases the flock


@contextlib.contextmanager
def _advisory_lock(engine: Engine, source: str) -> Iterator[None]:
    conn = engine.connect()
    try:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _key(source)}).scalar()
        conn.commit()
        if not got:
            raise _busy(source)
        failed = True
        try:
            yield
            failed = False
        finally:  # a run that did not finish ends the session, which frees the lock: an
            if failed:  # unlock sent into a partition would wait as long as its statement
                conn.invalidate()
            else:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _key(source)})
                    conn.commit()
                except DBAPIError as exc:  # a server restart ended the session, and the
                    if not exc.connection_invalidated:  # lock with it; the run's own
                        raise  # connections reconnected
                    logging.getLogger("archiver").warning(
                        "source %s: the session holding its lock ended mid-run (a server "
                        "restart, a partition?); the run went on without it", source)  # fmt: skip
    finally:
        conn.close()
