"""`query -o json` rendered in SQL: each operation leaves the database as its JSON text.

Building a record, two datetimes and a dict per row in Python held `query` to about
36,000 rows/s; the database writes the same object (GetOperation's names and order,
absent fields omitted, dates as ISO-8601 with ``Z``, then the names, Source and
Incomplete) as text, and Python only joins the texts. The rare row whose ``extra``
holds members this code does not know is finished in Python, where that JSON is
merged exactly as ``OperationRecord.to_api`` does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import String, case, func, literal, null, or_
from sqlalchemy.sql.functions import FunctionElement

from archiver.archive import Archive
from archiver.models import Namespace, Operation, Service, iso_text, templated
from archiver.query import Selection, is_incomplete, streamed, with_names
from archiver.records import FIELDS
from archiver.streams import write_joined


class json_text(FunctionElement[str]):
    """A text value as a JSON string literal (quoted and escaped), in SQL."""

    type = String()
    name = "json_text"
    inherit_cache = True


templated(json_text, "json_quote({0})", "CAST(to_json(CAST({0} AS text)) AS text)")


def _member(key: str, value: Any, *, shown: Any = None, first: bool = False) -> Any:
    """``, "Key": value`` (``shown`` instead when given: a date's text) — or nothing
    when the value is NULL, as GetOperation omits it. A CASE, not COALESCE: SQLite's
    json_quote(NULL) is the text ``null``, not NULL."""
    prefix = ("" if first else ", ") + json.dumps(key) + ": "
    text = json_text(value if shown is None else shown)
    return case((value.is_(None), ""), else_=literal(prefix) + text)


def json_object(names: dict[int, str]) -> Any:
    """One operation as the JSON text ``render.to_json_object`` would write (sans extra)."""
    parts: list[Any] = []
    for f in FIELDS:
        if f.api:
            column = getattr(Operation, f.name)
            shown = iso_text(column) if f.is_date else None
            parts.append(_member(f.api, column, shown=shown, first=not parts))
    targets = [(f.target, getattr(Operation, f.name)) for f in FIELDS if f.target]
    inner = [_member(key or "", col) for key, col in targets]
    present = or_(*(col.is_not(None) for _, col in targets))
    body = literal(', "Targets": {') + func.substr(_concat(inner), 3) + "}"
    parts.append(case((present, body), else_=""))
    parts.append(_member("NamespaceName", Namespace.name))
    parts.append(_member("ServiceName", Service.name))
    source = case(names, value=Operation.source_id) if names else null()
    parts.append(_member("Source", source))
    return literal("{") + _concat(parts) + "}"


def _concat(parts: list[Any]) -> Any:
    out = parts[0]
    for part in parts[1:]:
        out = out + part
    return out


def rows(archive: Archive, selection: Selection) -> Iterator[str]:
    """Each selected operation's JSON text, streamed in the query's order."""
    _, found = streamed(archive, selection, lambda names: with_names(
        json_object(names).label("json"), Operation.__table__.c.extra))  # fmt: skip
    return (_finished(row) for row in found)


def _finished(row: Any) -> str:
    text: str = row[0] if row[1] is None else _with_extra(row[0], row[1])
    return text[:-1] + ', "Incomplete": true}' if is_incomplete(row) else text


def _with_extra(text: str, extra: str) -> str:
    """Merge what ``operations.extra`` holds, as ``OperationRecord.to_api`` does: its
    members after the known ones (before Source), its Targets keys into Targets."""
    obj = json.loads(text)
    more = json.loads(extra)
    extra_targets = more.pop("Targets", {})
    source = obj.pop("Source")
    obj.update(more)
    if extra_targets:
        obj["Targets"] = {**obj.get("Targets", {}), **extra_targets}
    obj["Source"] = source
    return json.dumps(obj, ensure_ascii=False)


def write(texts: Iterator[str], out: Any) -> int:
    """The JSON array, one object per line."""
    out.write("[")
    n = write_joined(texts, out, sep=",\n  ", lead="\n  ")
    out.write("\n]\n" if n else "]\n")
    return n
