"""`archiver web`: the archive in Datasette, read-only, described from its own models.

Datasette opens a file it is not told is immutable read-only (``mode=ro``) and runs
only SELECTs, so the archive is never written and a sync beside it is never blocked
(WAL: readers do not block the writer), and new operations show up as they land; for
a user who may not write it, as the query reads it (``db.immutable_for_us``). The
metadata is made here from what defines the archive: each table's model docstring,
each column's ``doc`` or the record field it holds, the README's cookbook (shipped as
``cookbook.md``) as canned queries, and the ``instances`` answer as one with
parameters ``service`` and ``at``.
"""

import logging
import re
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any

from sqlalchemy import String, bindparam, or_, select
from sqlalchemy.dialects import sqlite

from archiver import guards
from archiver.errors import UsageError
from archiver.read.query import STATES, registered_at
from archiver.records import FIELDS
from archiver.store.db import immutable_for_us, stamp
from archiver.store.models import Base

VIEWS = {
    "operations_named": "Every operation with its source's, namespace's and service's names, "
    "final (1 unless SUBMITTED or PENDING), duration_s, pending_s and update_day.",
    "status_changes": "Each observed status change of an operation, with the status before it "
    "and the seconds since.",
    "instance_states": "Each successful (de)registration of an instance and the span it decides, "
    "from valid_from to valid_until: what `archiver instances` answers from.",
}
REPORT_LIMIT = 100_000_000  # `archiver report` writes a few MB: plotly's script and the charts
_FIELD_DOCS = {f.name: "GetOperation's " + (f"Targets.{f.target}" if f.target else f.api or "")
               + (" (every other member, as JSON)" if f.name == "extra" else "")
               for f in FIELDS}  # fmt: skip


def instances_sql() -> str:
    """``archiver instances``' answer as SQL with Datasette's parameters: ``:service``
    (an id or a name) and ``:at``; the moment's rule is ``query.registered_at``."""
    c, service = STATES.c, bindparam("service", type_=String)
    stmt = (select(c.source, c.service_id, c.service_name, c.namespace_name, c.instance_id,
                   c.valid_from.label("registered_at"), c.operation_id)
            .where(or_(c.service_id == service, c.service_name == service),
                   registered_at(bindparam("at")))
            .order_by(c.source, c.instance_id))  # fmt: skip
    return str(stmt.compile(dialect=sqlite.dialect(paramstyle="named")))


def cookbook() -> dict[str, dict[str, str]]:
    """The README's "Ask the archive in SQL" questions, as Datasette canned queries."""
    text = files("archiver.read").joinpath("cookbook.md").read_text(encoding="utf-8")
    found = re.findall(r"^\*\*(.+?)\*\*.*?```sql\n(.*?)```", text, flags=re.M | re.S)
    return {re.sub(r"\W+", "_", title.lower()).strip("_"): {
        "title": title, "sql": sql.strip().rstrip(";")} for title, sql in found}  # fmt: skip


def metadata(name: str, report: Path | None) -> dict[str, Any]:
    """Datasette's metadata for the archive ``name`` (its file's stem)."""
    tables: dict[str, Any] = {}
    for mapper in Base.registry.mappers:
        table: Any = mapper.local_table
        doc = (mapper.class_.__doc__ or "").strip().split("\n\n")[0]
        fields = _FIELD_DOCS if table.name == "operations" else {}
        tables[table.name] = {"description": " ".join(doc.split()), "columns": {
            c.name: c.doc or fields.get(c.name) or c.name.replace("_", " ").capitalize()
            for c in table.columns}}  # fmt: skip
    tables.update({view: {"description": text} for view, text in VIEWS.items()})
    tables["operations_named"]["facets"] = ["type", "status", "namespace_name", "service_name"]
    queries: dict[str, Any] = {**cookbook(), "instances": {
        "title": "Instances registered at a moment",
        "description": "service: an id or name; at: an instant, 2026-07-01T00:00:00.000Z",
        "sql": instances_sql()}}  # fmt: skip
    link = f'<a href="/report/{report.name}">The HTML report</a>. ' if report else ""
    return {
        "title": "Cloud Map operations",  # Datasette names the archive after it: "…: name"
        "description_html": link + "Read-only. `archiver instances`, `query` and `export` "
        "answer the same questions on the command line.",
        "databases": {name: {"tables": tables, "queries": queries}},
    }


def app(path: Path) -> Any:
    """The Datasette instance serving the SQLite archive at ``path``, read-only."""
    try:
        from datasette.app import Datasette
    except ModuleNotFoundError:
        raise UsageError(
            "archiver web needs Datasette: pip install 'cloudmap-archiver[web]'"
        ) from None
    report = next((p for p in (path.with_suffix(".html"), path.parent / "report.html")
                   if p.is_file()), None)  # fmt: skip
    mounts = []
    if report:  # a copy, alone in its folder: the archive beside it is never served
        shown = tempfile.TemporaryDirectory(prefix="archiver-web-")
        html = guards.read_bytes(report, what="report", limit=REPORT_LIMIT)
        guards.write_file(guards.target(Path(shown.name) / report.name, flag="report"), html)
        mounts = [("report", shown.name)]
    from datasette import handle_exception, hookimpl  # after the app: registers a plugin
    from datasette.plugins import pm

    handle_exception.rich = None  # bad SQL is a 400 page, not a screen of locals on stdout
    seen = stamp(path)  # before the choice: a sync's write after it shows
    if frozen := immutable_for_us(path):  # Datasette's mode=ro would make -wal and -shm here
        logging.getLogger("archiver").warning(
            "%s is read-only for you and no sync is at work: served as it is now, without "
            "locks; once a sync writes it, pages are refused until a restart", path)  # fmt: skip
        if not pm.has_plugin(_REFUSE_CHANGED):  # a plugin is a hashable object with the hook
            hook = staticmethod(hookimpl(_refuse_changed))
            pm.register(type("RefuseChanged", (), {"asgi_wrapper": hook}), _REFUSE_CHANGED)
    opened = {"immutables" if frozen else "files": [str(path)]}  # else mode=ro
    ds = Datasette(**opened, static_mounts=mounts, metadata=metadata(path.stem, report),
                   settings={"allow_download": False})  # fmt: skip
    ds.archiver_report = shown if report else None  # lives as long as the server
    ds.archiver_seen = (path, seen) if frozen else None
    return ds


_REFUSE_CHANGED = "archiver-refuse-changed"


def _refuse_changed(datasette: Any) -> Any:
    """Datasette's asgi_wrapper hook. An archive served immutable is read without
    SQLite's locks and with its pages cached for good: once a sync has written the
    file, a page may mix old and new rows, so every request is a 503 until a restart."""

    def wrap(app: Any) -> Any:
        async def refusing(scope: Any, receive: Any, send: Any) -> None:
            path, seen = getattr(datasette, "archiver_seen", None) or (None, None)
            if scope["type"] != "http" or path is None or stamp(path) == seen:
                return await app(scope, receive, send)  # type: ignore[no-any-return]
            said = f"{path.name} was written by a sync since archiver web started: restart it\n"
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")]})  # fmt: skip
            await send({"type": "http.response.body", "body": said.encode()})

        return refusing

    return wrap
