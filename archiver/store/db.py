"""Engines, migrations in code, and the schema-version check every command relies on.

SQLite is the embedded default. Its settings are applied in a connect hook so that no
connection ever runs without them, and writers begin with ``BEGIN IMMEDIATE``: a
deferred transaction that reads and then writes fails at once with "database is
locked" when another writer got there first, ignoring the busy timeout.
"""

import functools
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, String, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from archiver import __version__, stopping
from archiver.errors import ArchiverError, UsageError, WorkFailed, first_line
from archiver.guards import irregular, mask_url

#: How long a SQLite writer waits for another's lock. SQLite's busy handler polls, which
#: is not fair: a fleet of 16 sources in one archive waited up to 44 s for one batch (two
#: cron jobs contend alike), and at 10 s most of them failed with "database is locked".
#: A writer waits in slices of ``stopping.POLL``: SQLite's own wait is deaf to signals,
#: and a SIGTERM waited for the lock, minutes on end.
BUSY_TIMEOUT_S = 600
#: libpq's waits on a silent server, unless the URL sets its own: a new connection's
#: answer (else for ever); an idle one, by TCP keepalives (else two hours); what a
#: statement sent, by tcp_user_timeout (else TCP's retries, 15 minutes; keepalives do
#: not probe data in flight): a partition fails the run in minutes, not an hour.
PG_WAITS = {"connect_timeout": 30, "keepalives_idle": 30, "keepalives_interval": 10,
            "keepalives_count": 3, "tcp_user_timeout": 60_000}  # fmt: skip


def same_type(context: Any, inspected: Any, metadata: Any, found: Any, declared: Any) -> Any:
    """Alembic's type comparison, but SQLite's VARCHAR(n) is its TEXT: it enforces no
    length, so a widened column needs no change there (migration d3f8b2a6c471)."""
    sqlite = context.dialect.name == "sqlite"
    if sqlite and isinstance(found, String) and isinstance(declared, String):
        return False
    return None  # alembic's own comparison


def known_revisions() -> dict[str, str | None]:
    """Every packaged revision and the one it revises, read from the revision files'
    ``revision``/``down_revision`` lines (no Alembic loaded)."""
    from importlib.resources import files

    revisions: dict[str, str | None] = {}
    for script in files("archiver.migrations").joinpath("versions").iterdir():
        if script.name.endswith(".py") and not script.name.startswith("__"):
            text_ = script.read_text(encoding="utf-8")
            if rev := _REVISION.search(text_):
                down = _DOWN_REVISION.search(text_)
                revisions[rev.group(1)] = down.group(1) if down else None
    return revisions


def newer_than_us(rev: str | None, name: str) -> UsageError | None:
    """The error for an archive that a newer archiver migrated, or None: its revision
    is none this archiver knows, so neither `db upgrade` nor any command can use it."""
    if rev is None or rev in known_revisions():
        return None
    return UsageError(f"archive {name} is at revision {rev}, which archiver {__version__} does "
                      "not know: a newer one wrote it; use that version or newer")  # fmt: skip


@functools.cache
def head() -> str:
    """The migration head this code expects: the packaged revision nobody revises.

    Read from the revision files' ``revision``/``down_revision`` lines, so that every
    command checks the archive's version without loading Alembic (about half a
    second), and a new migration needs no constant bumped here. A test ties this to
    Alembic's own answer.
    """
    revisions = known_revisions()
    heads = set(revisions) - set(revisions.values())
    if len(heads) != 1:
        raise RuntimeError(f"the packaged migrations have {len(heads)} heads: {sorted(heads)}")
    return heads.pop()


_REVISION = re.compile(r"^revision(?:: str)? = ['\"](\w+)['\"]", re.M)
_DOWN_REVISION = re.compile(r"^down_revision[^=]*= ['\"](\w+)['\"]", re.M)


def url_of(db: str) -> URL:
    """A plain path means a SQLite file; anything with ``://`` is a SQLAlchemy URL. A
    SQLite database in memory is refused: it would vanish with the command."""
    if not db.strip():  # not the working directory
        raise UsageError("the archive's name is empty (--db or ARCHIVER_DB)")
    try:  # a path is never parsed as a URL: `a?b.db` and `a%20b.db` are files' names
        url = make_url(db) if "://" in db else URL.create(
            "sqlite", database=str(Path(db).expanduser().absolute()))  # fmt: skip
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise UsageError(f"{mask_url(db)!r} is not a database URL or path") from None
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise UsageError(f"{mask_url(db)} is a SQLite database in memory; an archive is a file")
    return url


def sqlite_path(db: str) -> Path | None:
    url = url_of(db)
    return Path(url.database or "") if url.get_backend_name() == "sqlite" else None


def create(db: str, *, write: bool) -> Engine:
    """An engine for ``db``; ``write`` engines take SQLite's write lock up front."""
    url = url_of(db)
    if url.get_backend_name() == "sqlite":
        if not write and _read_only_for_us(path := Path(url.database or "")):
            url = _read_only_url(path)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
        _configure_sqlite(engine, write=write)
        return engine
    try:
        wait = {name: value for name, value in PG_WAITS.items() if name not in url.query}
        return create_engine(url, pool_pre_ping=True, connect_args=wait)
    except (ModuleNotFoundError, ArgumentError) as exc:  # psycopg2 (the extra's is psycopg 3),
        # or a scheme SQLAlchemy does not know: foo://, or postgres:// as hosting services write it
        raise UsageError(
            f"no driver for {mask_url(db)} ({first_line(exc)}); archives are SQLite files or "
            "PostgreSQL through psycopg 3: install 'cloudmap-archiver[postgres]' and use "
            "postgresql+psycopg://user@host/db"
        ) from None


def _read_only_for_us(path: Path) -> bool:
    """We may not write the archive, or not add its -wal/-shm beside it."""
    return path.exists() and not (
        os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)
    )


def _read_only_url(path: Path) -> Any:
    """A reader that may not write the archive must leave nothing behind.

    In WAL mode even a read-only connection creates the -wal and -shm files when they
    are missing, owned by the reader, and the owner's next sync cannot write them. So
    such a reader opens the file read-only, using the -shm that a live writer keeps;
    when there is none, no writer is attached and the file is complete, so it opens
    it ``immutable`` (SQLite's own advice for read-only WAL databases), creating nothing.
    """
    query = {"mode": "ro", "uri": "true", **({"immutable": "1"} if immutable_for_us(path) else {})}
    return URL.create("sqlite", database=f"file:{quote(str(path))}", query=query)


def immutable_for_us(path: Path) -> bool:
    """We may not write the archive, and no writer is attached (no -shm): a reader opens
    it ``immutable``, or it would leave -wal and -shm of its own (``archiver web`` too)."""
    return _read_only_for_us(path) and not path.with_name(path.name + "-shm").exists()


def stamp(path: Path | None) -> tuple[int, ...]:
    """What changes when the file is written (a checkpoint) or replaced: an immutable
    reader's check that what it read was one state (``Archive.check_unchanged``, web)."""
    try:
        st = os.stat(path or "")
    except OSError:
        return ()
    return st.st_ino, st.st_size, st.st_mtime_ns


def write_problem(db: str) -> str | None:
    """Why a writer could not write this SQLite archive, in its words; None if it can.

    Checked before a writer opens the file, so that a read-only file or directory, or
    a -wal/-shm left by another user, is reported as what it is (exit 2), untouched.
    """
    path = sqlite_path(db)
    if path is None:
        return None
    if path.exists() and not os.access(path, os.W_OK):
        return f"cannot write {path}: no write permission on the archive"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return (f"cannot write {path}: its directory {path.parent} is not writable "
                "(SQLite keeps its -wal and -shm files beside the archive)")  # fmt: skip
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists() and not os.access(side, os.W_OK):
            return (f"cannot write {side}, which another user left; remove it when no "
                    "reader is using the archive")  # fmt: skip
    return None


WAL_CHECKPOINT_PAGES = 10_000  # about 40 MB of WAL between checkpoints
WRITER_CACHE_KIB = 32 * 1024  # the writer's page cache; a reader keeps SQLite's 2 MB


def _configure_sqlite(engine: Engine, *, write: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        # Let SQLAlchemy's "begin" event own transactions (pysqlite's own are deferred).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys = ON")  # busy timeout: connect()'s
        if write:
            cur.execute(f"PRAGMA busy_timeout = {stopping.POLL * 1000:.0f}")  # slices: _on_begin
            # Persistent settings are a writer's business: a reader leaves the file alone.
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
            # Each page's commit rewrites the same hot index pages (the right edges of
            # the date-ordered indexes) into the WAL; checkpointing every 1,000 pages
            # (SQLite's default) copied them back into the file, with an fsync, every
            # few commits. bench/ingest_large.py measures the gain.
            cur.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
            # A batch of 1,000 operations (sync.COMMIT_ROWS) dirties more index pages
            # than SQLite's 2 MB cache holds, which then spills them into the WAL before
            # the commit writes them again; 32 MB holds a batch (bench/ingest_large.py).
            cur.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:  # a stop is taken between slices; a run that stopped still records
            try:  # itself when the lock is free
                conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
                return
            except OperationalError as exc:
                busy = getattr(exc.orig, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY
                if not busy or time.monotonic() > deadline:
                    raise
                stopping.check()


def check_file(db: str, *, must_exist: bool) -> None:
    """Refuse a SQLite path that cannot be an archive, before any engine touches it."""
    path = sqlite_path(db)
    if path is None:
        return
    if not path.parent.is_dir():
        raise UsageError(f"directory {path.parent} does not exist (archive {db})")
    if must_exist and not path.exists():
        raise UsageError(f"no archive at {db}; run `archiver sync` or `archiver db upgrade` first")
    if path.exists() and (kind := irregular(path.stat().st_mode)):  # /dev/null, a FIFO
        raise UsageError(f"{db} is {kind}: an archive is a SQLite file")


def revision(engine: Engine, db: str) -> str | None:
    """The archive's Alembic revision, or None for a database without our schema. Read
    on a connection of its own (a failed read aborts a PostgreSQL transaction); an
    archive that cannot be read is told as every command tells it (``translate``)."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except DBAPIError as exc:
        message = str(exc.orig)
        if "alembic_version" in message and ("no such table" in message
                                             or "does not exist" in message):  # fmt: skip
            return None
        raise translate(exc, db) from None
    return rows[0][0] if rows else None


def insert(conn: Connection, table: Any) -> Any:
    """An INSERT with the dialect's ON CONFLICT clauses (both engines have them)."""
    return insert_for(conn.dialect.name, table)


def insert_for(dialect: str, table: Any) -> Any:
    """The dialect's INSERT; only that dialect's module is imported (a sync into
    SQLite need not load PostgreSQL's)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def translate(exc: DBAPIError, db: str) -> ArchiverError:
    """A driver error as the project's own: damaged file, unusable input, or failure."""
    message = first_line(exc.orig)
    if "not a database" in message or "file is encrypted" in message:
        return UsageError(f"{mask_url(db)} is not a SQLite database")
    if getattr(exc.orig, "sqlite_errorname", "") == "SQLITE_IOERR_SHMSIZE":  # SQLite's ENOSPC
        return WorkFailed(f"cannot open archive {mask_url(db)}: no room for its -shm (full disk?)")
    if "malformed" in message or "disk image" in message:
        return UsageError(f"{mask_url(db)} is damaged: {message}")
    if sqlite_path(db) and ("readonly" in message or "unable to open" in message):
        return UsageError(write_problem(db) or f"cannot open {mask_url(db)}: {message}")
    problem = f"cannot open archive {mask_url(db)}: {message}"
    # An unusable file is the caller's input; an unreachable server is a failure.
    return (UsageError if sqlite_path(db) else WorkFailed)(problem)


# --- migrations, from the packaged scripts --------------------------------------------


def migrate(db: str, action: str, target: str) -> None:
    """``alembic upgrade|downgrade target`` on the archive, from the packaged scripts."""
    from importlib.resources import files

    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    if not target.strip():  # Alembic asserted on it: "unexpected AssertionError"
        raise UsageError(f"db {action} needs a revision: head, base, an id, or a step (+1, -1)")
    check_file(db, must_exist=action != "upgrade")
    if problem := write_problem(db):
        raise UsageError(problem)
    engine = create(db, write=True)
    try:
        if newer := newer_than_us(revision(engine, db), mask_url(db)):
            raise newer
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # Batch migrations copy a table and drop the old one; with foreign keys
                # on, SQLite refuses to drop a table others refer to. Alembic's recipe:
                # off for the migration (set before any transaction, or it is ignored).
                conn.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")  # type: ignore[union-attr]
            cfg = Config()
            cfg.set_main_option("script_location", str(files("archiver.migrations")))
            cfg.attributes["connection"] = conn  # env.py runs on this connection
            getattr(command, action)(cfg, target)
    except DBAPIError as exc:
        raise WorkFailed(f"migration failed: {first_line(exc.orig)}") from None
    except CommandError as exc:
        raise UsageError(first_line(exc)) from None
    finally:
        engine.dispose()
