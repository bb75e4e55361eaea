"""Operations → CSV for audits: streamed, formula-safe, and verifiable by a manifest.

The header names are a contract (README, "archiver export"). Cells that hold free
text from the service or the user — ``source``, ``error_code``, ``error_message``, the names —
are guarded against spreadsheet formula injection (OWASP "CSV injection"): one that
begins with ``= + - @``, a tab or a carriage return gets a leading ``'``. Ids, enums
and dates are never altered. ``raw=True`` turns the guard off.

A file export is written under a temporary name and renamed into place, then the
manifest is written beside it; a failed or killed export leaves neither under the
final names.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select

from archiver import __version__
from archiver.errors import UsageError
from archiver.read.outputs import COLUMNS, HISTORY_COLUMNS, csv_rows, write_csv
from archiver.read.query import Selection
from archiver.store.archive import Archive, pid_alive
from archiver.store.models import SyncState
from archiver.store.write import source_ids
from archiver.timeutil import iso, now


@dataclass(frozen=True)
class ExportResult:
    rows: int
    sha256: str | None  # of the file written; None for a stream to stdout
    path: Path | None
    manifest: Path | None


class _CountingWriter(io.RawIOBase):
    """Counts the bytes as they reach the file, and hashes them when asked: the
    manifest's checksum. A stream to stdout has no manifest, and hashing it was 3% of
    a million-row export."""

    def __init__(self, raw: BinaryIO, *, hashed: bool) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256() if hashed else None
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        view = memoryview(b)
        self._raw.write(view)
        if self.sha256 is not None:
            self.sha256.update(view)
        self.size += view.nbytes
        return view.nbytes


@dataclass(frozen=True)
class Destination:
    """Where ``--out`` really writes: a symlink followed to its file, and the mode an
    existing file keeps."""

    path: Path
    mode: int | None


def check_destination(out: Path, archive: Archive | None = None) -> Destination:
    """Refuse an ``--out`` that would destroy something, before any query runs (exit 2).

    The rename that puts the export in place replaces whatever the name points to, so
    the archive itself (or its -wal/-shm/-journal), a device, a FIFO, a socket or a
    directory must never be the target; they are compared by device and inode, not by
    spelling. A symlink is followed to a regular file, or refused.
    """
    target = Path(os.path.realpath(out)) if out.is_symlink() else out
    own = _archive_files(archive)
    if out.is_symlink() and not target.exists():
        raise UsageError(f"--out {out} is a symlink to nothing ({target})")
    if target.exists():
        st = target.stat()
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"--out {out} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"--out {out} is not a regular file (a device, FIFO or socket)")
        if any(_same_file(st, f) for f in own):
            raise UsageError(f"--out {out} is the archive itself; choose another file")
        if not os.access(target, os.W_OK):
            raise UsageError(f"--out {out} exists and is not writable")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"--out {out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: directory {parent} is not writable")
    if os.path.abspath(target) in {os.path.abspath(f) for f in own}:  # ones not made yet
        raise UsageError(f"--out {out} is one of the archive's own files; choose another")
    return Destination(target, stat.S_IMODE(target.stat().st_mode) if target.exists() else None)


_SIDECARS = ("", "-wal", "-shm", "-journal")


def _archive_files(archive: Archive | None) -> list[Path]:
    """The SQLite archive's file and its -wal/-shm/-journal, whether they exist or not."""
    if archive is None or archive.sqlite_path is None:
        return []
    return [archive.sqlite_path.with_name(archive.sqlite_path.name + s) for s in _SIDECARS]


def _same_file(st: os.stat_result, path: Path) -> bool:
    try:
        other = os.stat(path)
    except OSError:
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)


def _remove_stale_partials(target: Path) -> None:
    """Temporary files of earlier exports to the same path whose process is gone (a
    SIGKILL leaves them): they are tens of megabytes that nothing else would remove."""
    for tmp in target.parent.glob(f".{target.name}.partial-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _partial(target: Path) -> Path:
    """The temporary name a file is written under before it is renamed into place."""
    return target.with_name(f".{target.name}.partial-{os.getpid()}")


def replace_with(dest: Destination, data: bytes) -> None:
    """Put ``data`` at ``dest`` complete or not at all (a whole file made in memory,
    such as the report): written under a temporary name, fsynced, renamed."""
    _remove_stale_partials(dest.path)
    tmp = _partial(dest.path)
    try:
        with open(tmp, "wb") as fh:
            if dest.mode is not None:
                os.fchmod(fh.fileno(), dest.mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest.path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def wants_gzip(out: Path | None, gzip_flag: bool) -> bool:
    """``--gzip``, or an ``--out`` that ends in ``.gz`` (any case)."""
    return gzip_flag or (out is not None and out.suffix.lower() == ".gz")


@dataclass(frozen=True)
class Written:
    rows: int
    sha256: str | None  # None when not asked for
    size: int


def write_stream(
    records: Iterable[list[str]], binary: BinaryIO, *, history: bool, compress: bool,
    name: str = "", hashed: bool = True,
) -> Written:  # fmt: skip
    """The CSV (gzipped when asked) onto a binary stream, counted (and hashed, unless
    ``hashed`` is false) as it goes."""
    counting = _CountingWriter(binary, hashed=hashed)
    buffered = io.BufferedWriter(counting, buffer_size=1 << 20)
    inner: Any = buffered
    if compress:
        inner = gzip.GzipFile(filename=name, mode="wb", fileobj=buffered, mtime=0)
    text = io.TextIOWrapper(inner, encoding="utf-8", newline="", write_through=False)
    n = write_csv(records, text, history=history)
    text.flush()
    text.detach()
    if compress:
        inner.close()  # writes the gzip trailer; the buffered writer stays open
    buffered.flush()
    digest = counting.sha256.hexdigest() if counting.sha256 is not None else None
    return Written(n, digest, counting.size)


def export(
    archive: Archive,
    selection: Selection,
    out: Path | None,
    *,
    stdout: BinaryIO | None = None,
    history: bool = False,
    raw: bool = False,
    compress: bool = False,
) -> ExportResult:
    """The export to ``out`` (complete or not at all, with a manifest), or to ``stdout``."""
    dest = check_destination(out, archive) if out is not None else None
    records = csv_rows(archive, selection, history=history, raw=raw)
    if out is None or dest is None:
        assert stdout is not None
        done = write_stream(records, stdout, history=history, compress=compress, hashed=False)
        return ExportResult(rows=done.rows, sha256=None, path=None, manifest=None)
    target = dest.path
    _remove_stale_partials(target)
    tmp = _partial(target)
    manifest = out.with_name(out.name + ".manifest.json")
    try:
        with open(tmp, "wb") as fh:
            if dest.mode is not None:
                os.fchmod(fh.fileno(), dest.mode)  # the file keeps its mode (0600 stays 0600)
            done = write_stream(records, fh, history=history, compress=compress, name=out.name)
            fh.flush()
            os.fsync(fh.fileno())
        if manifest.exists():
            manifest.unlink()  # an old manifest must never describe the new file
        os.replace(tmp, target)
    except BaseException:  # SIGTERM arrives here too, as errors.Stopped
        tmp.unlink(missing_ok=True)
        raise
    _write_manifest(archive, manifest, out=out, done=done, selection=selection,
                    history=history, raw=raw, compress=compress)  # fmt: skip
    return ExportResult(rows=done.rows, sha256=done.sha256, path=out, manifest=manifest)


def _write_manifest(
    archive: Archive,
    manifest: Path,
    *,
    out: Path,
    done: Written,
    selection: Selection,
    history: bool,
    raw: bool,
    compress: bool,
) -> None:
    with archive.reader.connect() as conn:
        names = source_ids(conn, selection.source)
        marks = dict(conn.execute(select(SyncState.source_id, SyncState.watermark)).all())
    body = {
        "file": out.name,
        "rows": done.rows,
        "bytes": done.size,
        "sha256": done.sha256,
        "gzip": compress,
        "columns": list(HISTORY_COLUMNS if history else COLUMNS),
        "history": history,
        "formula_guard": not raw,
        "filters": selection.filters.to_request(),
        "since": iso(selection.since) if selection.since else None,
        "until": iso(selection.until) if selection.until else None,
        "source": selection.source,
        "sources": [
            {"name": name, "watermark": iso(mark) if (mark := marks.get(i)) else None}
            for i, name in sorted(names.items(), key=lambda kv: kv[1])
        ],
        "generated_at": iso(now()),
        "archiver_version": __version__,
    }
    tmp = manifest.with_name(f".{manifest.name}.partial-{os.getpid()}")
    tmp.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, manifest)
