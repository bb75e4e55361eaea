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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select

from archiver import __version__, guards
from archiver.read.outputs import COLUMNS, HISTORY_COLUMNS, csv_rows, write_csv
from archiver.read.query import Selection
from archiver.store.archive import Archive
from archiver.store.models import SyncState
from archiver.store.write import source_ids
from archiver.timeutil import iso, now


class _CountingWriter(io.RawIOBase):
    """Counts the bytes as they reach the file, and hashes them when asked: the
    manifest's checksum. A stream to stdout has no manifest, so it is not hashed."""

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


def wants_gzip(out: Path | None, gzip_flag: bool) -> bool:
    """``--gzip``, or an ``--out`` that ends in ``.gz`` (any case)."""
    return gzip_flag or (out is not None and guards.named_gz(out))


@dataclass(frozen=True)
class Written:
    rows: int
    sha256: str | None  # of a file; None for a stream (stdout), which is not hashed
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
) -> Written:
    """The export to ``out`` (complete or not at all, with a manifest), or to ``stdout``.
    Both files pass the write guard before any row is read."""
    if out is None:
        assert stdout is not None
        records = csv_rows(archive, selection, history=history, raw=raw)
        return write_stream(records, stdout, history=history, compress=compress, hashed=False)
    dest = guards.target(out, flag="--out", protected=archive.files)
    manifest = guards.target(out.with_name(out.name + ".manifest.json"),
                             flag="--out's manifest", protected=archive.files)  # fmt: skip
    records = csv_rows(archive, selection, history=history, raw=raw)
    with guards.replacing(dest) as fh:
        done = write_stream(records, fh, history=history, compress=compress, name=out.name)
        manifest.path.unlink(missing_ok=True)  # an old manifest never describes the new file
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
    text = json.dumps(body, indent=2, ensure_ascii=False) + "\n"
    guards.write_file(manifest, text.encode("utf-8"))
    return done
