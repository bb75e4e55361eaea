"""One renderer for `query`'s outputs: table, json, csv, ids, count.

Each renderer consumes the stream row by row and writes as it goes, so a query of a
million operations prints without holding them in memory. ``fetch`` asks the library
for what each output needs (csv comes from the export's SQL, where the formula guard
lives), and ``write`` prints it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TextIO

from archiver.archive import Archive
from archiver.choices import Output
from archiver.query import ArchivedOperation, Selection
from archiver.streams import write_batches
from archiver.timeutil import iso


def to_json_object(op: ArchivedOperation) -> dict[str, Any]:
    """GetOperation's field names and omissions, dates as ISO-8601 with ``Z``, plus Source.

    The definition of ``-o json``'s objects, in Python; ``as_json`` writes the same in
    SQL for speed, and the tests hold the two equal.
    """
    api = op.record.to_api()
    names = {"NamespaceName": op.namespace_name, "ServiceName": op.service_name}
    out: dict[str, Any] = {}
    for key, value in api.items():
        out[key] = value
        if key == "Targets":  # the names sit beside the ids they name
            out.update((k, v) for k, v in names.items() if v is not None)
    for key, value in (("CreateDate", op.record.create_date),
                       ("UpdateDate", op.record.update_date)):  # fmt: skip
        if value is not None:  # unknown for an incomplete operation
            out[key] = iso(value)
    out["Source"] = op.source
    if op.incomplete:
        out["Incomplete"] = True
    return out


def write_ids(batches: Iterable[list[str]], out: TextIO) -> int:
    return write_batches(batches, out, sep="\n", end="\n")


# The id is what a user copies, so it is shown whole when the terminal is wide enough;
# Name is the service's name, or the namespace's for a namespace operation.
_TABLE = (("UpdateDate", 24), ("Status", 9), ("Type", 19), ("Name", 14), ("Id", 0))


def write_table(rows: Iterable[ArchivedOperation], out: TextIO, *, width: int | None = 80) -> int:
    """Ids are shortened only to fit a terminal of ``width``; ``None`` never shortens."""
    fixed = sum(w + 1 for _, w in _TABLE[:-1])
    id_width = max(10, width - fixed) if width else None
    out.write(" ".join(name.ljust(w) if w else name for name, w in _TABLE).rstrip() + "\n")
    n = 0
    for op in rows:
        r = op.record
        rid = r.id if id_width is None or len(r.id) <= id_width else r.id[: id_width - 1] + "…"
        when = iso(r.update_date) if r.update_date else "(incomplete)"
        name = op.service_name or op.namespace_name or ""
        name = name if len(name) <= 14 else name[:13] + "…"
        out.write(f"{when:<24} {r.status:<9} {r.type or '?':<19} {name:<14} {rid}\n")
        n += 1
    out.write(f"({n} operation{'s' if n != 1 else ''})\n")
    return n


def fetch(output: Output, archive: Archive, selection: Selection) -> Iterable[Any]:
    """The rows ``write`` takes for this output, streamed from the archive."""
    from archiver import as_json, export, query

    if output is Output.count:
        return [query.count(archive, selection)]
    if output is Output.csv:
        return export.rows(archive, selection)
    if output is Output.json:
        return as_json.json_rows(archive, selection)
    if output is Output.ids:
        return query.ids(archive, selection)
    return query.run(archive, selection)


def write(output: Output, rows: Iterable[Any], out: TextIO, *, width: int | None = None) -> int:
    """Print ``rows`` (from ``fetch``) in ``output``'s form; returns how many."""
    if output is Output.count:
        (n,) = rows
        out.write(f"{n}\n")
        return int(n)
    if output is Output.csv:
        from archiver.export import write_csv

        return write_csv(rows, out)
    if output is Output.json:
        from archiver import as_json

        return as_json.write_json(rows, out)
    if output is Output.ids:
        return write_ids(rows, out)
    return write_table(rows, out, width=width)
