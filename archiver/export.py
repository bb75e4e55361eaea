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

import csv
import gzip
import hashlib
import io
import json
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from sqlalchemy import String, case, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from archiver import __version__
from archiver.archive import Archive
from archiver.errors import UsageError
from archiver.lock import pid_alive
from archiver.models import (
    Operation,
    OperationEvent,
    SyncState,
    iso_text,
    text_format,
)
from archiver.query import (
    Selection,
    chosen_source,
    merged,
    named_batches,
    reading,
    source_ids,
    tuples,
)
from archiver.records import FIELDS, ID_FIELDS, KNOWN_VALUES
from archiver.streams import write_batches
from archiver.timeutil import iso, now

_SEEN = ("first_seen_at", "last_seen_at")
_NAMES = ("namespace_name", "service_name")  # appended in 0.3: the header only grows at its end
COLUMNS = ("source", *(f.name for f in FIELDS if f.csv), *_SEEN, *_NAMES)
HISTORY_COLUMNS = ("source", "id", "type", "status", "update_date", "observed_at", "sync_run_id")
_GUARDED = frozenset({"source", *_NAMES, *(f.name for f in FIELDS if f.free_text)})
_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
#: The ids (``records.ID_FIELDS``): written as they are, unchecked, in the rows whose
#: ``plain_ids`` says they can be (the store tests each record once), which saves a
#: third of the export's SQL; in any other row they are quoted as needed, never
#: altered.
_IDS = frozenset(ID_FIELDS)
_DATES = frozenset({*(f.name for f in FIELDS if f.is_date), *_SEEN, "observed_at"})


def guard(cell: str | None) -> str | None:
    """Neutralise a cell a spreadsheet would evaluate as a formula."""
    if cell and cell.startswith(_TRIGGERS):
        return "'" + cell
    return cell


@dataclass(frozen=True)
class ExportResult:
    rows: int
    sha256: str | None  # of the file written; None for a stream to stdout
    path: Path | None
    manifest: Path | None


class csv_field(FunctionElement[str]):
    """A text cell as it stands in the CSV line, in SQL: quoted with its quotes doubled
    when it holds a quote, comma, CR or LF (RFC 4180, as Python's csv module writes
    it); NULL stays NULL, which ``text_format`` writes as the empty cell.
    ``csv_guarded_field`` also applies the formula guard (inside the quotes)."""

    type = String()
    name = "csv_field"
    inherit_cache = True


class csv_guarded_field(csv_field):
    name = "csv_guarded_field"
    inherit_cache = True


def _field_sql(value: str, guarded: bool, dialect: str) -> str:
    if dialect == "postgresql":
        lf, cr, tab, find = "chr(10)", "chr(13)", "chr(9)", "strpos({}, {}) > 0"
    else:
        lf, cr, tab, find = "char(10)", "char(13)", "char(9)", "instr({}, {})"
    special = " OR ".join(find.format(value, c) for c in ("'\"'", "','", lf, cr))
    quoted = f"replace({value}, '\"', '\"\"') || '\"'"
    # An empty cell is the commonest (no error on a success, no instance on a namespace's
    # operation): one test of it spares four searches and a substr that would all give
    # NULL anyway, a tenth of the statement's time on a million-row export.
    empty = f"WHEN {value} IS NULL THEN NULL"
    if not guarded:
        return f"CASE {empty} WHEN {special} THEN '\"' || {quoted} ELSE {value} END"
    sql_of = {"\t": tab, "\r": cr}  # the guard's own triggers (_TRIGGERS), as SQL
    firsts = ", ".join(sql_of.get(t, f"'{t}'") for t in _TRIGGERS)
    trigger = f"substr({value}, 1, 1) IN ({firsts})"
    mark = "''''"  # SQL for the text ', the guard
    return (  # the common cell, plain text, is returned as it is: no string is built
        f"CASE {empty} WHEN {special} THEN '\"' || CASE WHEN {trigger} THEN {mark} ELSE '' END || "
        f"{quoted} WHEN {trigger} THEN {mark} || {value} ELSE {value} END"
    )


@compiles(csv_field)
def _csv_field(element: csv_field, compiler: Any, **kw: Any) -> str:
    value = compiler.process(next(iter(element.clauses)), **kw)
    guarded = isinstance(element, csv_guarded_field)
    return _field_sql(value, guarded, compiler.dialect.name)


def _csv_cell(text: str | None) -> str:
    """One cell as Python's csv module writes it (for values known in Python)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([text])
    return buf.getvalue()


def _line(cols: dict[str, Any], table: Any, names: dict[int, str], *, raw: bool,
          plain: Any) -> Any:  # fmt: skip
    """One CSV line of ``cols`` (header name → column of ``table``; None for source)
    as one text made in SQL: a million rows never become a million Python tuples for
    the csv module to join. ``plain`` (the row's ``operations.plain_ids``) chooses
    between the line with its ids as they are and the line with them quoted."""
    # Sources are few and already read: their names, guarded and quoted here, go in as
    # a CASE on source_id. A join steers SQLite's planner away from the filter's index.
    shown = {sid: _csv_cell(n if raw else guard(n)) for sid, n in names.items()}
    name: Any = case(shown, value=table.source_id, else_="") if shown else literal("")

    def text(col: Any) -> Any:
        return csv_field(col) if raw else csv_guarded_field(col)

    def cell(column: str, col: Any, *, plain: bool) -> Any:  # NULL is the empty cell
        if column == "source":
            return name
        if column in _DATES:
            return iso_text(col)
        if column in KNOWN_VALUES:  # a known value as it is; any other quoted as needed,
            # never altered
            return case((col.in_(KNOWN_VALUES[column]), col), else_=csv_field(col))
        if column in _IDS:
            return col if plain else csv_field(col)
        if column in _GUARDED:
            return text(col)
        if col.type.python_type is int:
            return col
        return csv_field(col)

    fmt = ",".join(["%s"] * len(cols))
    checked = text_format(fmt, *(cell(c, v, plain=False) for c, v in cols.items()))
    fast = text_format(fmt, *(cell(c, v, plain=True) for c, v in cols.items()))
    return case((plain.is_(True), fast), else_=checked).label("line")


def _history_select(selection: Selection, names: dict[int, str], *, raw: bool,
                    source_id: int | None) -> Any:  # fmt: skip
    """The status history as one SELECT of CSV lines, in the export's order."""
    e, o = OperationEvent, Operation
    cols = dict(zip(HISTORY_COLUMNS, (None, e.operation_id, o.type, e.status, e.update_date,
                                      e.observed_at, e.sync_run_id), strict=True))  # fmt: skip
    base = select(_line(cols, e, names, raw=raw, plain=o.plain_ids)).select_from(e)
    base = base.join(o, (o.source_id == e.source_id) & (o.id == e.operation_id))
    if source_id is not None:
        base = base.where(e.source_id == source_id)
    return merged(base.where(*selection.bounds()), selection.filters, [e.update_date, e.id])


def rows(
    archive: Archive, selection: Selection, *, history: bool = False, raw: bool = False
) -> Iterator[list[str]]:
    """The CSV's lines (without their line ends), in the export's order, streamed a
    batch at a time. An unknown ``--source`` fails here, before any output."""
    if history:
        conn, names = reading(archive, selection)
        return _history(conn, selection, names, raw=raw)
    # the names, the line's last two cells, are put in by the reader (named_batches)
    cols = {c: None if c == "source" else getattr(Operation, c)
            for c in COLUMNS if c not in _NAMES}  # fmt: skip
    _, found = named_batches(archive, selection,
                             lambda names: [_line(cols, Operation, names, raw=raw,
                                                  plain=Operation.plain_ids)],
                             _csv_cell if raw else lambda n: _csv_cell(guard(n)))  # fmt: skip
    return ([f"{r[3]},{ns},{srv}" for r, ns, srv in zip(batch, namespaces, services, strict=True)]
            for batch, namespaces, services in found)  # fmt: skip


def _history(conn: Any, selection: Selection, names: dict[int, str], *,
             raw: bool) -> Iterator[list[str]]:  # fmt: skip
    with conn:
        stmt = _history_select(selection, names, raw=raw,
                               source_id=chosen_source(selection, names))  # fmt: skip
        for batch in tuples(conn, stmt):
            yield [row[0] for row in batch]  # merged arms' sort keys ride after it


def write_csv(batches: Iterable[list[str]], out: TextIO, *, history: bool = False) -> int:
    """RFC 4180, UTF-8, CRLF line ends; None is an empty cell. The header comes from
    the csv module; the lines come rendered from the database (``rows``)."""
    csv.writer(out, lineterminator="\r\n").writerow(HISTORY_COLUMNS if history else COLUMNS)
    return write_batches(batches, out, sep="\r\n", end="\r\n")


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
    records = rows(archive, selection, history=history, raw=raw)
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
