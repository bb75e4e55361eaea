"""One sync per source at a time, with a lock that dies with its holder.

A SIGKILLed or OOM-killed run must never block the next one, so the lock is held by
the kernel or the database on the holder's behalf: ``flock`` on a file beside a SQLite
archive, a session advisory lock on PostgreSQL (released when its connection closes,
and safe across hosts). ``sync_state.lock_holder`` only tells `status` who holds it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, text

from archiver.errors import LockHeld


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether a process of this host still runs (one we may not signal still runs)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _key(source: str) -> int:
    """A stable signed 64-bit advisory-lock key for the source name."""
    return int.from_bytes(hashlib.sha256(b"archiver:" + source.encode()).digest()[:8], "big",
                          signed=True)  # fmt: skip


def _busy(source: str) -> LockHeld:
    return LockHeld(f"another sync of source {source!r} is running; try again when it ends")


@contextlib.contextmanager
def source_lock(engine: Engine, sqlite_path: Path | None, source: str) -> Iterator[None]:
    """Hold the source's lock for the block, or raise LockHeld (exit 3) at once.

    ``sqlite_path`` is the archive's file, beside which the lock file lives; None for a
    server database, which holds the lock itself.
    """
    if sqlite_path is not None:
        with _file_lock(sqlite_path, source):
            yield
        return
    with _advisory_lock(engine, source):
        yield


@contextlib.contextmanager
def _file_lock(archive: Path, source: str) -> Iterator[None]:
    import fcntl

    slug = re.sub(r"[^A-Za-z0-9_.@-]", "_", source)[:80]
    digest = hashlib.sha256(source.encode()).hexdigest()[:8]
    path = f"{archive}.{slug}.{digest}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(source) from None
        os.ftruncate(fd, 0)
        os.write(fd, holder_name().encode())
        yield
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
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _key(source)})
            conn.commit()
    finally:
        conn.close()
