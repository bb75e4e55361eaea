"""`query -o json` is rendered in SQL (``json_head``) for speed; it must say exactly
what the Python definition (``to_json_object``, from the record) says, key order included, for
every kind of row: hostile and non-ASCII text, absent fields, no targets, members
AWS added later (``extra``), incomplete operations, names."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from archiver.read.query import ArchivedOperation, Selection, run
from archiver.records import Listed
from archiver.store import write as catalog
from archiver.store import write as store
from archiver.store.archive import Archive
from archiver.timeutil import iso
from tests.conftest import invoke
from tests.helpers import T0, fill, op

TEXTS = ['commas, "quotes"\nand newlines\r\nü 日本 🎉', "\ttab \x01\x1f control \\ slash /",
         "=HYPERLINK(\"x\")", "</script>", ""]  # fmt: skip


def to_json_object(op: ArchivedOperation) -> dict[str, Any]:
    """GetOperation's field names and omissions, dates as ISO-8601 with ``Z``, plus Source.

    The definition of ``-o json``'s objects, in Python, from the record.
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


def _content() -> list:
    ops = []
    for i, text in enumerate(TEXTS):
        ops.append(op(i, status="FAIL", minutes=i, error_code=text, error_message=text,
                      owner="123456789012" if i % 2 else None))  # fmt: skip
    ops.append(op(10, namespace=None, service=None, instance=None, minutes=20))  # no Targets
    ops.append(op(11, type="CREATE_NAMESPACE", namespace="ns-2", service=None, instance=None,
                  minutes=21))  # fmt: skip
    added = json.dumps({"Targets": {"ROUTE": "r-1"}, "Region": "eu-west-1", "Weight": 2})
    ops.append(replace(op(12, minutes=22), extra=added, status="CANCELLED"))
    # a Type this code does not know, with what JSON must escape: kept and quoted
    ops.append(op(13, minutes=23, type='MOVE_"SERVICE"\\\n'))
    # ids that are not plain (kept as the service sent them): quoted, not written as is
    ops.append(replace(op(14, minutes=24), id='op-"14"\\', namespace_id="ns\t1",
                                         service_id='srv"1', owner_account="12\n3"))  # fmt: skip
    ops.append(op(15, minutes=25, instance='i-"1"\\\n'))  # only the instance id is not plain
    return ops


def test_sql_json_says_what_the_python_definition_says(runner, archive) -> None:
    fill(archive, _content())
    with Archive(archive) as handle, handle.writer.begin() as conn:
        store.keep_incomplete(conn, 1, [("op-listed-only", "PENDING")], seen_at=T0)
        names = [Listed("ns-1", "orders\n=cmd", None, None, None, None),
                 Listed("srv-1", "checkout ü \"q\"", None, None, None, None)]  # fmt: skip
        for item in names:
            kind = "namespaces" if item.id.startswith("ns") else "services"
            catalog.record_catalog(conn, 1, kind, [item], seen_at=T0, complete=False)
    for args, selection in (
        ((), Selection()),
        (("--ascending",), Selection(ascending=True)),
        (("--include-incomplete",), Selection(include_incomplete=True)),
        (("--filters", "Name=STATUS,Condition=IN,Values=FAIL,SUCCESS"), None),
    ):
        result = invoke(runner, "--db", archive, "query", "-o", "json", *args)
        assert result.exit_code == 0, result.output
        got = json.loads(result.stdout)
        if selection is None:
            from archiver.filters import parse

            selection = Selection(parse(["Name=STATUS,Condition=IN,Values=FAIL,SUCCESS"]))
        with Archive(archive) as handle:
            want = [to_json_object(o) for o in run(handle, selection)]
        assert [list(o.items()) for o in got] == [list(o.items()) for o in want]
        assert len(got) >= 7
