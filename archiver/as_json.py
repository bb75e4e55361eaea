"""`query -o json` rendered in SQL: each operation leaves the database as its JSON text.

Building a record, two datetimes and a dict per row in Python held `query` to about
36,000 rows/s; the database writes the same object (GetOperation's names and order,
absent fields omitted, dates as ISO-8601 with ``Z``) as text up to its Targets, and
Python closes it with the targets' names and Source, rendered once per catalog entry
and source (two joins per row were a third of the database's time), and joins the
texts. The rare row whose ``extra`` holds members this code does not know, or that
is incomplete, is finished in Python, where that JSON is merged exactly as
``OperationRecord.to_api`` does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import String, case, func, literal, or_
from sqlalchemy.sql.functions import FunctionElement

from archiver.archive import Archive
from archiver.models import Operation, iso_text, templated, text_format
from archiver.query import Selection, named_batches
from archiver.records import FIELDS, ID_FIELDS, KNOWN_VALUES, FieldSpec
from archiver.streams import write_batches


class json_text(FunctionElement[str]):
    """A text value as a JSON string literal (quoted and escaped), in SQL."""

    type = String()
    name = "json_text"
    inherit_cache = True


templated(json_text, "json_quote({0})", "CAST(to_json(CAST({0} AS text)) AS text)")


def _member(key: str, value: Any, text: Any, *, first: bool = False) -> Any:
    """``, "Key": text`` — or nothing when the value is NULL, as GetOperation omits it.
    A CASE, not COALESCE: SQLite's json_quote(NULL) is the text ``null``, not NULL."""
    prefix = ("" if first else ", ") + json.dumps(key) + ": "
    return case((value.is_(None), ""), else_=literal(prefix) + text)


def _as_is(f: FieldSpec, *, plain: bool) -> Any:
    """The SQL text of a field that may stand between quotes as it is, or None. A date
    is the database's own ``iso_text`` (digits and ``-:.TZ``) and, in a row whose
    ``plain_ids`` says so, an id is plain too."""
    column = getattr(Operation, f.name)
    if f.is_date:
        return iso_text(column)
    if plain and f.name in ID_FIELDS:
        return column
    return None


def _json_value(f: FieldSpec, *, plain: bool) -> Any:
    """A field's column as a JSON value, quoting in SQL only what may need it: what
    ``_as_is`` allows goes between quotes as it is, and a value from a closed set (Type,
    Status) is matched against the set's literals, already quoted. Only the rest — free
    text, an unknown value kept as the service sent it, the ids of a row that is not
    plain — goes through ``json_quote``, a call a row each, which were most of the
    statement's time."""
    if (text := _as_is(f, plain=plain)) is not None:
        return literal('"') + text + literal('"')
    column = getattr(Operation, f.name)
    known = KNOWN_VALUES.get(f.name)
    if known:
        return case({v: literal(json.dumps(v)) for v in known}, value=column,
                    else_=json_text(column))  # fmt: skip
    return json_text(column)


def json_head(*, complete: bool = True) -> Any:
    """One operation as the JSON text ``render.to_json_object`` would write, up to its
    Targets and left open: the names, Source and the closing brace are the reader's
    (``_closed``), and so are the members of ``extra``. The row's ``plain_ids`` chooses
    between two forms of it, with its ids written as they are or quoted (``_head``)."""
    return case((Operation.plain_ids.is_(True), _head(complete=complete, plain=True)),
                else_=_head(complete=complete, plain=False))  # fmt: skip


def _head(*, complete: bool, plain: bool) -> Any:
    """One ``text_format``: the members every complete operation has stand in the
    format itself; only those that may be absent are a CASE each. ``complete=False`` (a
    read that includes incomplete operations, whose fields are NULL) makes every member
    a CASE."""
    fmt: list[str] = []
    args: list[Any] = []
    for f in FIELDS:
        if not f.api:
            continue
        if complete and not f.optional:
            text = _as_is(f, plain=plain)  # if any, its quotes stand in the format
            value = '"%s"' if text is not None else "%s"
            fmt.append(("" if not fmt else ", ") + _escaped(json.dumps(f.api)) + ": " + value)
            args.append(text if text is not None else _json_value(f, plain=plain))
        else:
            fmt.append("%s")
            args.append(_member(f.api, getattr(Operation, f.name), _json_value(f, plain=plain),
                                first=not fmt[:-1]))  # fmt: skip
    targets = [f for f in FIELDS if f.target]
    inner = [_member(f.target or "", getattr(Operation, f.name), _json_value(f, plain=plain))
             for f in targets]  # fmt: skip
    present = or_(*(getattr(Operation, f.name).is_not(None) for f in targets))
    body = text_format(', "Targets": {%s}', func.substr(text_format("%s" * len(inner), *inner), 3))
    fmt.append("%s")
    args.append(case((present, body), else_=""))
    return text_format("{" + "".join(fmt), *args)


def _escaped(text: str) -> str:
    return text.replace("%", "%%")


def json_rows(archive: Archive, selection: Selection) -> Iterator[list[str]]:
    """Each selected operation's JSON text, streamed in the query's order a batch at a
    time. An unknown ``--source`` fails here, before any output."""
    complete = not selection.include_incomplete
    sources, found = named_batches(
        archive, selection,
        lambda _: [json_head(complete=complete).label("json"), Operation.__table__.c.extra],
        lambda n: ', "NamespaceName": ' + _text(n), lambda n: ', "ServiceName": ' + _text(n),
    )  # fmt: skip
    tails = {sid: ', "Source": ' + _text(name) + "}" for sid, name in sources.items()}
    return (_closed(*named, tails, flagged=not complete) for named in found)


def _text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _closed(batch: Sequence[Any], namespaces: Iterable[str], services: Iterable[str],
            tails: dict[int, str], *, flagged: bool) -> list[str]:  # fmt: skip
    """A batch's JSON texts, each closed with its names and Source. A row is
    ``TARGET_KEYS``, the head, extra, then the incomplete flag when the read includes
    them (``named_batches``)."""
    texts = [f"{r[3]}{ns}{srv}{tails[r[0]]}"
             for r, ns, srv in zip(batch, namespaces, services, strict=True)]  # fmt: skip
    for i, row in enumerate(batch):
        if row[4] is not None or (flagged and row[5]):
            texts[i] = _finished(texts[i], row[4], flagged and row[5])
    return texts


def _finished(text: str, extra: str | None, incomplete: Any) -> str:
    """A closed text with the members of ``extra`` merged, and marked when the
    operation is incomplete."""
    text = text if extra is None else _with_extra(text, extra)
    return text[:-1] + ', "Incomplete": true}' if incomplete else text


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


def write_json(batches: Iterable[list[str]], out: Any) -> int:
    """The JSON array, one object per line."""
    out.write("[")
    n = write_batches(batches, out, sep=",\n  ", lead="\n  ")
    out.write("\n]\n" if n else "]\n")
    return n
