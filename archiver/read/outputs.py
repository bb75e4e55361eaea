"""Every form the read side writes, each defined once: `query`'s table, json, csv, ids
and count; `export`'s CSV file and its manifest; `instances`' answer.

Each renderer consumes the stream row by row and writes as it goes, so a query of a
million operations prints without holding them in memory. The CSV header names are a
contract (README, "archiver export"). Cells that hold free text from the service or
the user — ``source``, ``error_code``, ``error_message``, the names — are guarded
against spreadsheet formula injection (OWASP "CSV injection"): one that begins with
``= + - @``, a tab or a carriage return gets a leading ``'``. Ids, enums and dates are
never altered. ``raw=True`` turns the guard off.
"""

import csv
import functools
import gzip
import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from sqlalchemy import String, case, func, literal, or_, select
from sqlalchemy.sql.functions import FunctionElement

from archiver import __version__, guards
from archiver.read import Output, query
from archiver.read.query import (
    TARGET_KEYS,
    ArchivedOperation,
    Instances,
    Selection,
    batches,
    chosen_source,
    merged,
    streamed,
)
from archiver.records import FIELDS, KNOWN_VALUES, FieldSpec, with_extra
from archiver.store.archive import Archive
from archiver.store.models import (
    Operation,
    OperationEvent,
    SyncState,
    iso_text,
    sql_function,
    text_format,
)
from archiver.store.write import source_ids
from archiver.timeutil import iso, now

# The id is what a user copies, so it is shown whole when the terminal is wide enough;
# Name is the service's name, or the namespace's for a namespace operation.
_TABLE = (("UpdateDate", 24), ("Status", 9), ("Type", 19), ("Name", 32), ("Id", 0))
_SOURCE_WIDTH = 32  # the most a Source column takes


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def write_table(rows: Iterable[ArchivedOperation], out: TextIO, *, width: int | None = 80,
                sources: Sequence[str] = ()) -> int:  # fmt: skip
    """Ids are shortened only to fit a terminal of ``width``; ``None`` never shortens.
    When the read covers several ``sources``, a Source column tells their rows apart."""
    columns = list(_TABLE)
    if len(sources) > 1:
        columns.insert(0, ("Source", min(_SOURCE_WIDTH, max(len(s) for s in sources))))
    if width:  # a terminal: Name gives way first, to 14, so that a whole id (42) fits
        others = sum(w + 1 for c, w in columns[:-1] if c != "Name")
        columns[-2] = ("Name", max(14, min(32, width - others - 43)))
    fixed = sum(w + 1 for _, w in columns[:-1])
    id_width = max(10, width - fixed) if width else None
    out.write(" ".join(name.ljust(w) if w else name for name, w in columns).rstrip() + "\n")
    n = 0
    for op in rows:
        r = op.record
        cells = {
            "Source": op.source,
            "UpdateDate": iso(r.update_date) if r.update_date else "(incomplete)",
            "Status": r.status,
            "Type": r.type or "?",
            "Name": op.service_name or op.namespace_name or "",
        }
        line = " ".join(_cut(cells[c], w).ljust(w) for c, w in columns[:-1])
        line += " " + (r.id if id_width is None else _cut(r.id, id_width))
        out.write(guards.printable(line) + "\n")  # server text never moves a cursor
        n += 1
    out.write(f"({n} operation{'s' if n != 1 else ''})\n")
    return n


def write(output: Output, archive: Archive, selection: Selection, out: TextIO, *,
          width: int | None = None) -> int:  # fmt: skip
    """Print the selection in ``output``'s form, streamed from the archive; returns how
    many. An unknown ``--source`` fails before anything is printed."""
    out = guards.shown(out)  # CSV and JSON on a terminal: escaped (the table is already)
    if output == "count":
        n = query.count(archive, selection)
        out.write(f"{n}\n")
        return n
    if output == "csv":
        return write_csv(csv_rows(archive, selection), out)
    if output == "json":
        objects = json_rows(archive, selection)  # an unknown source fails before the "["
        out.write("[")  # the JSON array, one object per line
        n = write_batches(objects, out, sep=",\n  ", lead="\n  ")
        out.write("\n]\n" if n else "]\n")
        return n
    if output == "ids":
        # a control character (a line break) in an id is escaped: it never forges a line
        ids = (b if guards.printable(t := "".join(b)) == t else [guards.printable(i) for i in b]
               for b in query.ids(archive, selection))  # fmt: skip
        return write_batches(ids, out, sep="\n", end="\n")
    with archive.reader.connect() as conn:  # the table names them when several
        sources = list(source_ids(conn, selection.source).values())
    return write_table(query.run(archive, selection), out, width=width, sources=sources)


@sql_function(String(), "json_quote({0})", "CAST(to_json(CAST({0} AS text)) AS text)")
class json_text(FunctionElement[str]):
    """A text value as a JSON string literal (quoted and escaped), in SQL."""


def _member(key: str, value: Any, text: Any, *, first: bool = False) -> Any:
    """``, "Key": text`` — or nothing when the value is NULL, as GetOperation omits it.
    A CASE, not COALESCE: SQLite's json_quote(NULL) is the text ``null``, not NULL."""
    prefix = ("" if first else ", ") + json.dumps(key) + ": "
    return case((value.is_(None), ""), else_=literal(prefix) + text)


def _json_value(f: FieldSpec) -> Any:
    """A field's column as a JSON value: a date between quotes as the database writes
    it (``iso_text``: digits and ``-:.TZ``, nothing to escape), the rest through
    ``json_quote``."""
    column = getattr(Operation, f.name)
    return literal('"') + iso_text(column) + literal('"') if f.is_date else json_text(column)


def json_head() -> Any:
    """One operation as JSON text, unclosed: GetOperation's record
    (``OperationRecord.to_api``, dates in ISO-8601) in one ``text_format``; the names,
    Source and the members of ``extra`` are the reader's (``json_rows``, ``_finished``;
    tests/test_as_json.py holds the whole to its definition). Every member is left out
    when NULL, as GetOperation omits it (an incomplete operation has only Id and Status)."""
    api = [f for f in FIELDS if f.api]
    args = [_member(f.api or "", getattr(Operation, f.name), _json_value(f), first=not i)
            for i, f in enumerate(api)]  # fmt: skip
    targets = [f for f in FIELDS if f.target]
    inner = [_member(f.target or "", getattr(Operation, f.name), _json_value(f))
             for f in targets]  # fmt: skip
    present = or_(*(getattr(Operation, f.name).is_not(None) for f in targets))
    body = text_format(', "Targets": {%s}', func.substr(text_format("%s" * len(inner), *inner), 3))
    args.append(case((present, body), else_=""))
    return text_format("{" + "%s" * len(args), *args)


def json_rows(archive: Archive, selection: Selection) -> Iterator[list[str]]:
    """Each selected operation's JSON text, streamed in the query's order a batch at a
    time. An unknown ``--source`` fails here, before any output."""
    partial = selection.include_incomplete
    read = batches(archive, selection, lambda _: select(json_head().label("json"),
                   Operation.__table__.c.extra, *TARGET_KEYS), named=True)  # fmt: skip

    @functools.cache  # a target's names and Source, worked out once
    def tail(sid: int, namespace: str | None, service: str | None) -> str:
        shown = zip(("NamespaceName", "ServiceName"), read.names(sid, namespace, service),
                    strict=True)  # fmt: skip
        members = [(k, v) for k, v in shown if v is not None] + [("Source", read.sources[sid])]
        return "".join(f", {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}"
                       for k, v in members) + "}"  # fmt: skip

    # after the columns selected here: the incomplete flag when ``partial``, else any sort keys
    return ([_finished(text + tail(sid, ns, svc), extra, partial and rest[0])
             for text, extra, sid, ns, svc, *rest in batch] for batch in read.rows)  # fmt: skip


def _finished(text: str, extra: str | None, incomplete: Any) -> str:
    """A closed text with the members of ``extra`` merged, and marked when the
    operation is incomplete (the rare row: the others are as SQL made them)."""
    if extra is not None:  # as ``OperationRecord.to_api`` merges it: before Source, the last
        obj = json.loads(text)
        source = obj.pop("Source")
        text = json.dumps({**with_extra(obj, extra), "Source": source}, ensure_ascii=False)
    return text[:-1] + ', "Incomplete": true}' if incomplete else text


def write_batches(batches: Iterable[Sequence[str]], out: TextIO, *, sep: str, lead: str = "",
                  end: str = "") -> int:  # fmt: skip
    """Write ``lead`` + every batch's texts joined by ``sep`` + ``end`` (lead and end
    only when there is at least one text); returns how many texts."""
    n = 0
    for batch in batches:
        if batch:
            out.write((sep if n else lead) + sep.join(batch))
            n += len(batch)
    if n:
        out.write(end)
    return n


_SEEN = ("first_seen_at", "last_seen_at")
_NAMES = ("namespace_name", "service_name")  # appended in 0.3: the header only grows at its end
COLUMNS = ("source", *(f.name for f in FIELDS if f.csv), *_SEEN, *_NAMES)
HISTORY_COLUMNS = ("source", "id", "type", "status", "update_date", "observed_at", "sync_run_id")
_GUARDED = frozenset({"source", *_NAMES, *(f.name for f in FIELDS if f.free_text)})
_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_DATES = frozenset({*(f.name for f in FIELDS if f.is_date), *_SEEN, "observed_at"})


def guard(cell: str | None) -> str | None:
    """Neutralise a cell a spreadsheet would evaluate as a formula."""
    return "'" + cell if cell and cell.startswith(_TRIGGERS) else cell


def _cell_sql(guarded: bool, dialect: str) -> str:
    """``csv_field``'s SQL in ``dialect``, as a template of the cell's text ({0})."""
    value = "{0}"
    if dialect == "postgresql":
        lf, cr, tab, find = "chr(10)", "chr(13)", "chr(9)", "strpos({}, {}) > 0"
    else:
        lf, cr, tab, find = "char(10)", "char(13)", "char(9)", "instr({}, {})"
    special = " OR ".join(find.format(value, c) for c in ("'\"'", "','", lf, cr))
    quoted = f"replace({value}, '\"', '\"\"') || '\"'"
    # An empty cell is the commonest (no error on a success, no instance on a namespace's
    # operation): one test of it spares four searches and a substr that would all give
    # NULL anyway.
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


@sql_function(String(), _cell_sql(False, "sqlite"), _cell_sql(False, "postgresql"))
class csv_field(FunctionElement[str]):
    """A text cell as it stands in the CSV line, in SQL: quoted with its quotes doubled
    when it holds a quote, comma, CR or LF (RFC 4180, as Python's csv module writes
    it); NULL stays NULL, which ``text_format`` writes as the empty cell."""


@sql_function(String(), _cell_sql(True, "sqlite"), _cell_sql(True, "postgresql"))
class csv_guarded_field(FunctionElement[str]):
    """``csv_field`` with the formula guard (inside the quotes)."""


def _csv_cell(text: str | None) -> str:
    """One cell as Python's csv module writes it in a line (for values known in Python).
    The line's own terminator is what makes the module quote a CR or LF, so the cell is
    written with it and cut from it: with no terminator, a name holding a line break
    stood unquoted and split its row. A row of one empty cell is written "": not ours."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow([text])
    return buf.getvalue()[:-2] if text else ""


def _line(cols: dict[str, Any], table: Any, names: dict[int, str], *, raw: bool) -> Any:
    """One CSV line of ``cols`` (header name → column of ``table``; None for source)
    as one text made in SQL: a million rows never become a million Python tuples for
    the csv module to join."""
    # Sources are few and already read: their names, guarded and quoted here, go in as
    # a CASE on source_id. A join steers SQLite's planner away from the filter's index.
    shown = {sid: _csv_cell(n if raw else guard(n)) for sid, n in names.items()}
    name: Any = case(shown, value=table.source_id, else_="") if shown else literal("")

    def text(col: Any) -> Any:
        return csv_field(col) if raw else csv_guarded_field(col)

    def cell(column: str, col: Any) -> Any:  # NULL is the empty cell
        if column == "source":
            return name
        if column in _DATES:
            return iso_text(col)
        if column in KNOWN_VALUES:  # a known value as it is; any other quoted as needed,
            # never altered
            return case((col.in_(KNOWN_VALUES[column]), col), else_=csv_field(col))
        if column in _GUARDED:
            return text(col)
        if col.type.python_type is int:
            return col
        return csv_field(col)

    fmt = ",".join(["%s"] * len(cols))
    return text_format(fmt, *(cell(c, v) for c, v in cols.items())).label("line")


def _history_select(selection: Selection, names: dict[int, str], *, raw: bool) -> Any:
    """The status history as one SELECT of CSV lines, in the export's order."""
    source_id = chosen_source(selection.source, names)
    e, o = OperationEvent, Operation
    cols = dict(zip(HISTORY_COLUMNS, (None, e.operation_id, o.type, e.status, e.update_date,
                                      e.observed_at, e.sync_run_id), strict=True))  # fmt: skip
    base = select(_line(cols, e, names, raw=raw)).select_from(e)
    base = base.join(o, (o.source_id == e.source_id) & (o.id == e.operation_id))
    if source_id is not None:
        base = base.where(e.source_id == source_id)
    return merged(base.where(*selection.bounds()), selection.filters, [e.update_date, e.id])


def csv_rows(
    archive: Archive, selection: Selection, *, history: bool = False, raw: bool = False
) -> Iterator[Sequence[str]]:
    """The CSV's lines (without their line ends), in the export's order, streamed a
    batch at a time. An unknown ``--source`` fails here, before any output."""
    if history:
        return streamed(archive, selection, lambda names: _history_select(selection, names,
                        raw=raw), first=True).rows  # fmt: skip
    cols = {c: None if c == "source" else getattr(Operation, c) for c in COLUMNS if c not in _NAMES}
    read = batches(archive, selection, lambda n: select(_line(cols, Operation, n, raw=raw),
                   *TARGET_KEYS), named=True)  # fmt: skip

    @functools.cache  # the names' two cells, worked out once a target
    def names(sid: int, namespace: str | None, service: str | None) -> str:
        shown = read.names(sid, namespace, service)
        return "".join("," + _csv_cell(n if raw else guard(n)) for n in shown)

    return ([line + names(sid, ns, svc) for line, sid, ns, svc, *_ in batch]  # sort keys: _
            for batch in read.rows)  # fmt: skip


def write_csv(batches: Iterable[Sequence[str]], out: TextIO, *, history: bool = False) -> int:
    """RFC 4180, UTF-8, CRLF line ends; None is an empty cell. The header comes from
    the csv module; the lines come rendered from the database (``rows``)."""
    csv.writer(out, lineterminator="\r\n").writerow(HISTORY_COLUMNS if history else COLUMNS)
    return write_batches(batches, out, sep="\r\n", end="\r\n")


# --- export: CSV to a file, complete or not at all, and its manifest ---------------------
# A file export is written under a temporary name and renamed into place, then the
# manifest is written beside it; a failed or killed export leaves neither under the
# final names.


class _CountingWriter(io.RawIOBase):
    """Counts and hashes the bytes as they reach the file: the manifest's checksum."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int | None:
        view = memoryview(b)
        # a raw file (an unbuffered stdout) may take less: the writer above sends the rest
        if n := self._raw.write(view):
            self.sha256.update(view[:n])
            self.size += n
        return n


@dataclass(frozen=True)
class Written:
    rows: int
    sha256: str
    size: int


def write_stream(
    records: Iterable[Sequence[str]], binary: BinaryIO, *, history: bool, compress: bool,
    name: str = "",
) -> Written:  # fmt: skip
    """The CSV (gzipped when asked) onto a binary stream, counted and hashed as it goes."""
    counting = _CountingWriter(binary)
    buffered = io.BufferedWriter(counting, buffer_size=1 << 20)
    inner: Any = buffered
    if compress:
        inner = gzip.GzipFile(filename=name, mode="wb", fileobj=buffered, mtime=0)
    text = io.TextIOWrapper(inner, encoding="utf-8", newline="", write_through=False)
    n = write_csv(records, guards.shown(text, on=binary), history=history)
    text.flush()
    text.detach()
    if compress:
        inner.close()  # writes the gzip trailer; the buffered writer stays open
    buffered.flush()
    return Written(n, counting.sha256.hexdigest(), counting.size)


def export(archive: Archive, selection: Selection, out: Path | None, *,
           stdout: BinaryIO | None = None, history: bool = False, raw: bool = False,
           compress: bool = False) -> Written:  # fmt: skip
    """The export to ``out`` (complete or not at all, with a manifest), or to ``stdout``.
    Both files pass the write guard, and the manifest's watermarks are read, before any
    row: read after, one a sync moved meanwhile would claim rows the file lacks."""
    if out is None:
        assert stdout is not None
        records = csv_rows(archive, selection, history=history, raw=raw)
        return write_stream(records, stdout, history=history, compress=compress)
    dest = guards.target(out, flag="--out", protected=archive.files)
    manifest = guards.target(out.with_name(out.name + ".manifest.json"),
                             flag="--out's manifest", protected=archive.files)  # fmt: skip
    with archive.reader.connect() as conn:
        names = source_ids(conn, selection.source)
        marks = dict(conn.execute(select(SyncState.source_id, SyncState.watermark)).all())
    records = csv_rows(archive, selection, history=history, raw=raw)
    with guards.replacing(dest) as fh:
        done = write_stream(records, fh, history=history, compress=compress, name=out.name)
        archive.check_unchanged()  # before the file takes its name
        manifest.path.unlink(missing_ok=True)  # an old manifest never describes the new file
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


# --- instances: who was registered at a moment (``query.instances``) --------------------

INSTANCE_COLUMNS = ("Source", "ServiceId", "ServiceName", "NamespaceName", "InstanceId",
                    "RegisteredAt", "OperationId")  # fmt: skip
INSTANCE_HISTORY_COLUMNS = (*INSTANCE_COLUMNS[:5], "UpdateDate", "Type", "OperationId")
#: Guarded against spreadsheet formulas in CSV, as export guards its source and names;
#: ids and dates must match the service's to the character, and are never altered.
_FREE_TEXT = frozenset({"Source", "ServiceName", "NamespaceName"})


def instances_note(result: Instances) -> str | None:
    """What the answer cannot know, in one line, or None."""
    at, start = result.at, result.coverage_start
    if at is not None and (start is None or at < start):  # before the archive knew them
        return (f"the archive cannot say what was registered at {iso(at)}: its record of "
                f"these services {f'begins {iso(start)}' if start else 'is empty'}")  # fmt: skip
    if not result.uncertain or start is None:  # an instance is uncertain after the start
        return None
    return (f"{len(result.uncertain)} instance(s) were registered before the archive began "
            f"({iso(start)}): their first archived change is a later deregistration, so they "
            "may have been registered then too")  # fmt: skip


def write_instances(result: Instances, output: Output, out: TextIO) -> None:
    """table, json (an envelope with the coverage), csv (formula-guarded), ids or count."""
    columns: Sequence[str] = INSTANCE_HISTORY_COLUMNS if result.at is None else INSTANCE_COLUMNS
    out = guards.shown(out)
    if output == "count":
        out.write(f"{len(result.rows)}\n")
    elif output == "json":
        envelope = {"at": iso(result.at) if result.at else None,
                    "coverage_start": iso(result.coverage_start) if result.coverage_start
                    else None, "uncertain": result.uncertain, "instances": result.rows}  # fmt: skip
        out.write(json.dumps(envelope, ensure_ascii=False, indent=1) + "\n")
    elif output == "csv":
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(columns)
        writer.writerows([guard(str(r[c])) if c in _FREE_TEXT else r[c] for c in columns]
                         for r in result.rows)  # fmt: skip
    elif output == "ids":
        out.writelines(f"{guards.printable(r['InstanceId'])}\n" for r in result.rows)
    else:
        widths = {c: max([len(c), *(len(str(r[c])) for r in result.rows)]) for c in columns}
        for cells in [dict(zip(columns, columns, strict=True)), *result.rows]:
            line = " ".join(str(cells[c]).ljust(widths[c]) for c in columns)
            out.write(guards.printable(line).rstrip() + "\n")
        out.write(f"({len(result.rows)} {'change' if result.at is None else 'instance'}"
                  f"{'' if len(result.rows) == 1 else 's'})\n")  # fmt: skip
