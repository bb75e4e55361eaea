"""`archiver query`: the API's answer from the archive, in every output form."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import replace
from datetime import timedelta

import pytest

from archiver.store.archive import Archive
from archiver.timeutil import iso, now, to_epoch_ms
from tests.conftest import invoke, requires_sqlite
from tests.helpers import T0, fill, op

OPS = [
    op(1, status="SUCCESS", type="REGISTER_INSTANCE", minutes=1, service="srv-1"),
    op(
        2,
        status="FAIL",
        type="UPDATE_SERVICE",
        minutes=2,
        namespace=None,
        service="srv-2",
        instance=None,
        error_code="Err",
        error_message='bad, "quoted"\nline ü',
    ),
    op(
        3,
        status="PENDING",
        type="CREATE_NAMESPACE",
        minutes=3,
        namespace="ns-2",
        service=None,
        instance=None,
        owner="123456789012",
    ),
    op(4, status="SUCCESS", type="DEREGISTER_INSTANCE", minutes=4, service="srv-2"),
]


@pytest.fixture
def filled(archive) -> str:
    fill(archive, OPS)
    return archive


def query_ids(runner, db: str, *args: str) -> list[str]:
    return ids(invoke(runner, "--db", db, "query", "-o", "ids", *args))


def ids(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return result.stdout.split()


def test_default_order_is_newest_first_and_ascending_reverses(runner, filled) -> None:
    assert ids(invoke(runner, "--db", filled, "query", "-o", "ids")) == [
        "op-000004",
        "op-000003",
        "op-000002",
        "op-000001",
    ]
    assert ids(
        invoke(runner, "--db", filled, "query", "-o", "ids", "--ascending", "--max-items", "2")
    ) == ["op-000001", "op-000002"]
    by_id = ids(invoke(runner, "--db", filled, "query", "-o", "ids", "--order-by", "id"))
    assert by_id == sorted(by_id, reverse=True)


def test_filters_select_what_the_api_would(runner, filled) -> None:
    both = ("--filters", "Name=STATUS,Condition=IN,Values=SUCCESS,FAIL",
            "--filters", "Name=SERVICE_ID,Values=srv-2")  # fmt: skip
    assert query_ids(runner, filled, *both) == ["op-000004", "op-000002"]


def test_in_lists_keep_the_order_limit_and_each_row_once(runner, filled) -> None:
    """An IN list is read one value at a time (UNION ALL) and merged: still newest
    first, --max-items still counts rows, a repeated value still yields a row once."""
    in_list = ("--filters", "Name=STATUS,Condition=IN,Values=SUCCESS,PENDING,SUCCESS")
    assert query_ids(runner, filled, *in_list) == ["op-000004", "op-000003", "op-000001"]
    assert query_ids(runner, filled, *in_list, "--ascending") == [
        "op-000001",
        "op-000003",
        "op-000004",
    ]
    assert query_ids(runner, filled, *in_list, "--max-items", "2") == ["op-000004", "op-000003"]
    by_id = query_ids(runner, filled, *in_list, "--order-by", "id")
    assert by_id == ["op-000004", "op-000003", "op-000001"]
    count = invoke(runner, "--db", filled, "query", "-o", "count", *in_list)
    assert count.stdout.strip() == "3"


def _plan_of_query(db: str, filters: list[str], **choices) -> list[str]:
    """SQLite's plan of the statement `query` really runs for ``filters``: caught as it
    is sent, then explained with its own parameters."""
    import sqlite3

    from sqlalchemy import event

    from archiver.filters import parse
    from archiver.read import query

    sent = []
    with Archive.open(db) as archive:
        event.listen(archive.reader, "before_cursor_execute",
                     lambda *a: sent.append(a[2:4]) if "FROM operations" in a[2] else None)  # fmt: skip
        list(query.run(archive, query.Selection(parse(filters), **choices)))
    ((sql, params),) = sent
    with sqlite3.connect(db) as conn:
        return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]


@requires_sqlite
def test_in_over_an_indexed_column_reads_that_columns_index(filled) -> None:
    """SQLite, asked for STATUS IN newest first, would walk the whole update_date index
    (it has no histograms to see that PENDING is rare); each value reads its own."""
    plan = _plan_of_query(filled, ["Name=STATUS,Condition=IN,Values=PENDING,SUBMITTED"])
    assert "MERGE (UNION ALL)" in plan
    reads = [line for line in plan if line.startswith(("SEARCH", "SCAN"))]
    assert (
        reads
        == [  # and nothing else: the names come from the catalog, read once
            "SEARCH operations USING INDEX ix_operations__status_update_date_source_id_id (status=?)"
        ]
        * 2
    )


@pytest.mark.parametrize(
    ("given", "index"),
    [
        ([], "ix_operations__update_date_source_id_id"),
        (["Name=STATUS,Values=FAIL"], "ix_operations__status_update_date_source_id_id"),
        (["Name=TYPE,Values=UPDATE_SERVICE"], "ix_operations__type_update_date_source_id_id"),
        (["Name=SERVICE_ID,Values=srv-1"], "ix_operations__service_id_update_date_source_id_id"),
        (["Name=NAMESPACE_ID,Values=ns-1"], "ix_operations__namespace_id_update_date_source_id_id"),
        (
            ["Name=UPDATE_DATE,Condition=BETWEEN,Values=0,1000"],
            "ix_operations__update_date_source_id_id",
        ),
    ],
)
@pytest.mark.parametrize("ascending", [False, True])
@requires_sqlite
def test_rows_come_from_the_index_in_their_final_order(filled, given, index, ascending) -> None:
    """No sort after the read: the index holds the order's tie-breaker, so a LIMIT
    stops the read after N rows however many match."""
    plan = _plan_of_query(filled, given, ascending=ascending, limit=10)
    assert not [line for line in plan if "TEMP B-TREE" in line], plan
    assert any(line.startswith(("SEARCH", "SCAN")) and index in line for line in plan), plan


def test_filters_pasted_from_an_aws_command_work_unchanged(runner, filled) -> None:
    # aws servicediscovery list-operations --filters A B  → B arrives as an argument
    pasted = ("--filters", "Name=STATUS,Condition=IN,Values=SUCCESS,FAIL",
              "Name=TYPE,Condition=EQ,Values=UPDATE_SERVICE")  # fmt: skip
    assert query_ids(runner, filled, *pasted) == ["op-000002"]


def test_shorthand_json_and_file_forms_give_the_same_result(runner, filled, tmp_path) -> None:
    shorthand = "Name=TYPE,Condition=IN,Values=[REGISTER_INSTANCE,CREATE_NAMESPACE]"
    as_json = '[{"Name":"TYPE","Condition":"IN","Values":["REGISTER_INSTANCE","CREATE_NAMESPACE"]}]'
    path = tmp_path / "filters.json"
    path.write_text(as_json)
    results = [
        ids(invoke(runner, "--db", filled, "query", "-o", "ids", "--filters", form))
        for form in (shorthand, as_json, f"file://{path}")
    ]
    assert results[0] == ["op-000003", "op-000001"]
    assert results[0] == results[1] == results[2]


def test_update_date_takes_iso_and_milliseconds(runner, filled) -> None:
    lo = to_epoch_ms(T0) + 2 * 60_000
    iso_form = "Name=UPDATE_DATE,Condition=BETWEEN,Values=2026-03-01T12:02:00Z,2026-03-01T12:03:00Z"
    ms_form = f"Name=UPDATE_DATE,Condition=BETWEEN,Values={lo},{lo + 60_000}"
    assert ids(invoke(runner, "--db", filled, "query", "-o", "ids", "--filters", iso_form)) == [
        "op-000003",
        "op-000002",
    ]
    assert ids(invoke(runner, "--db", filled, "query", "-o", "ids", "--filters", ms_form)) == [
        "op-000003",
        "op-000002",
    ]


def test_seconds_in_update_date_earn_a_warning(runner, filled) -> None:
    result = invoke(
        runner,
        "--db",
        filled,
        "query",
        "-o",
        "count",
        "--filters",
        "Name=UPDATE_DATE,Condition=BETWEEN,Values=1772366400,1772366520",
    )
    assert result.exit_code == 0
    assert result.stdout.strip() == "0"
    assert "did you give seconds?" in result.stderr


def test_json_output_has_getoperation_fields_and_omits_absent_ones(runner, filled) -> None:
    result = invoke(runner, "--db", filled, "query", "-o", "json", "--ascending")
    data = json.loads(result.stdout)
    assert data[1] == {
        "Id": "op-000002",
        "Type": "UPDATE_SERVICE",
        "Status": "FAIL",
        "ErrorCode": "Err",
        "ErrorMessage": 'bad, "quoted"\nline ü',
        "CreateDate": "2026-03-01T12:01:55.000Z",
        "UpdateDate": "2026-03-01T12:02:00.000Z",
        "Targets": {"SERVICE": "srv-2"},
        "Source": "test@us-east-1",
    }
    assert data[2]["OwnerAccount"] == "123456789012"
    assert data[2]["Targets"] == {"NAMESPACE": "ns-2"}
    empty = invoke(
        runner, "--db", filled, "query", "-o", "json", "--filters", "Name=STATUS,Values=SUBMITTED"
    )
    assert json.loads(empty.stdout) == []


def test_table_fits_80_columns(runner, filled) -> None:
    from archiver.read import query
    from archiver.read.outputs import write_table

    result = invoke(runner, "--db", filled, "query")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["UpdateDate", "Status", "Type", "Name", "Id"]
    assert lines[-1] == "(4 operations)"
    assert "op-000004" in lines[1]
    with Archive(filled) as handle:  # an 80-column terminal
        shown = io.StringIO()
        write_table(query.run(handle, query.Selection()), shown, width=80)
    assert all(len(line) <= 80 for line in shown.getvalue().splitlines())


def test_the_table_names_sources_when_it_shows_several_and_long_names_whole(runner, archive):
    from archiver.records import Listed
    from archiver.store import write as store

    name = "payments-settlement-reconciler-eu"  # 33 characters: cut at 32
    fill(archive, [op(1, minutes=1)], source="prod@eu-west-1")
    fill(archive, [op(1, minutes=2)], source="staging@eu-west-1")
    with Archive(archive) as handle, handle.writer.begin() as conn:
        sid = store.ensure_source(conn, "prod@eu-west-1")
        store.record_catalog(conn, sid, "services", [Listed("srv-1", name, None, None, None,
                             None)], seen_at=T0, complete=False)  # fmt: skip
    lines = invoke(runner, "--db", archive, "query").stdout.splitlines()
    assert lines[0].split()[0] == "Source"
    assert {ln.split()[0] for ln in lines[1:-1]} == {"prod@eu-west-1", "staging@eu-west-1"}
    assert name[:31] + "…" in "\n".join(lines)
    one = invoke(runner, "--db", archive, "query", "--source", "prod@eu-west-1").stdout
    assert one.splitlines()[0].split()[0] == "UpdateDate"


def test_count_and_csv_outputs(runner, filled) -> None:
    assert invoke(runner, "--db", filled, "query", "-o", "count").stdout.strip() == "4"
    result = invoke(runner, "--db", filled, "query", "-o", "csv", "--ascending")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["id"] for r in rows] == ["op-000001", "op-000002", "op-000003", "op-000004"]
    assert rows[1]["error_message"] == 'bad, "quoted"\nline ü'


def test_filter_values_are_bound_parameters(runner, archive) -> None:
    tricky = ["x' OR '1'='1", "%", "_", "a;b", "-- comment", 'q"uote']
    fill(archive, [op(i, service=v) for i, v in enumerate(tricky)] + [op(99, service="plain")])
    for i, value in enumerate(tricky):
        filters = json.dumps([{"Name": "SERVICE_ID", "Values": [value]}])
        result = invoke(runner, "--db", archive, "query", "-o", "ids", "--filters", filters)
        assert ids(result) == [f"op-{i:06d}"]


@pytest.mark.parametrize(
    "bad",
    [
        "Name=STATUS,Values=[FAIL",
        "Name",
        "[{bad json",
        "file:///no/such/file.json",
        "Name=STATUS,Condition=BETWEEN,Values=FAIL,SUCCESS",
        "Name=STATUS,Values=SUCCEED",
    ],
)
def test_invalid_filters_exit_2_with_one_line(runner, filled, bad) -> None:
    result = invoke(runner, "--db", filled, "query", "--filters", bad)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: InvalidInput: ")
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""


@requires_sqlite
def test_invalid_filters_are_rejected_before_the_archive_is_touched(runner, tmp_path) -> None:
    path = tmp_path / "never.db"
    result = invoke(runner, "--db", str(path), "query", "--filters", "Name=NOPE,Values=x")
    assert result.exit_code == 2
    assert not path.exists()


def test_unknown_source_is_bad_input(runner, filled) -> None:
    result = invoke(runner, "--db", filled, "query", "--source", "nope")
    said = "error: no source named 'nope' in the archive (sources: test@us-east-1)\n"
    assert (result.exit_code, result.stderr) == (2, said)
    assert ids(
        invoke(
            runner,
            "--db",
            filled,
            "query",
            "-o",
            "ids",
            "--source",
            "test@us-east-1",
            "--max-items",
            "1",
        )
    ) == ["op-000004"]


def test_an_unknown_source_in_an_empty_archive_says_there_is_none_yet(runner, archive) -> None:
    result = invoke(runner, "--db", archive, "query", "--source", "nope")
    assert (result.exit_code, result.stderr) == (
        2, "error: no source named 'nope' in the archive (sources: none yet)\n")  # fmt: skip


def test_stray_argument_without_filters_is_bad_input(runner, filled) -> None:
    result = invoke(runner, "--db", filled, "query", "Name=STATUS,Values=FAIL")
    assert result.exit_code == 2
    assert "filters go after --filters" in result.stderr


def test_table_shortens_long_ids_only_to_fit_a_terminal() -> None:
    from archiver.read.outputs import write_table
    from archiver.read.query import ArchivedOperation

    long_id = "gv4g5meo7ndmeh4fqskygvk23d2fijwa-k9xmplyzd"
    row = ArchivedOperation("s", op(long_id), T0, T0)
    narrow, whole = io.StringIO(), io.StringIO()
    write_table([row], narrow, width=100)
    write_table([row], whole, width=None)
    assert all(len(line) <= 100 for line in narrow.getvalue().splitlines())
    assert long_id[:20] in narrow.getvalue() and long_id not in narrow.getvalue()
    assert long_id in whole.getvalue()


def test_table_columns_hold_every_known_value_whole_and_the_id_fits_first() -> None:
    """A date, every Status and every Type fit their columns uncut; Name gives way first,
    to 14, so a terminal as wide as those columns and a 42-character id shows the id
    whole; no line is wider than its terminal."""
    from archiver.read.outputs import write_table
    from archiver.read.query import ArchivedOperation
    from archiver.records import STATUSES, TYPES

    long_id = "gv4g5meo7ndmeh4fqskygvk23d2fijwa-k9xmplyzd"
    rows = [ArchivedOperation("s", op(long_id, type=t, status=s), T0, T0,
                              service_name="a-service-name-of-forty-characters-long")
            for t in TYPES for s in STATUSES]  # fmt: skip
    fits = len(iso(T0)) + max(map(len, STATUSES)) + max(map(len, TYPES)) + 14 + len(long_id) + 4
    for width in (80, fits - 1, fits, 200):
        out = io.StringIO()
        write_table(rows, out, width=width)
        lines = out.getvalue().splitlines()[1:-1]
        assert all(len(line) <= width for line in lines), width
        assert [line.split()[:3] for line in lines] == [
            [iso(T0), s, t] for t in TYPES for s in STATUSES]  # fmt: skip
        assert all((long_id in line) == (width >= fits) for line in lines), width


def _days_ago(n: int, days: float):  # type: ignore[no-untyped-def]
    record = op(n)
    when = now() - timedelta(days=days)
    return replace(record, create_date=when - timedelta(seconds=5), update_date=when)


def test_since_is_the_update_date_between_it_stands_for(runner, archive) -> None:
    fill(archive, [_days_ago(i, d) for i, d in enumerate((1, 10, 29, 31, 45, 90))])
    by_since = query_ids(runner, archive, "--since", "30d")
    end = now()
    start = end - timedelta(days=30)  # no operation is within days of either end
    between = f"Name=UPDATE_DATE,Condition=BETWEEN,Values={to_epoch_ms(start)},{to_epoch_ms(end)}"
    assert by_since == query_ids(runner, archive, "--filters", between)
    assert sorted(by_since) == ["op-000000", "op-000001", "op-000002"]
    # combined with --filters, both apply (F8): an UPDATE_DATE filter there too
    older = f"Name=UPDATE_DATE,Condition=BETWEEN,Values=0,{to_epoch_ms(end) - 20 * 86_400_000}"
    assert query_ids(runner, archive, "--since", "30d", "--filters", older) == ["op-000002"]
    assert query_ids(runner, archive, "--since", "60d", "--until", "20d") == [
        "op-000002", "op-000003", "op-000004"]  # newest first  # fmt: skip
    csv_ids = [r["id"] for r in csv.DictReader(io.StringIO(
        invoke(runner, "--db", archive, "export", "--since", "30d").stdout))]  # fmt: skip
    assert csv_ids == ["op-000002", "op-000001", "op-000000"]  # oldest first


@pytest.mark.parametrize("command", ["query", "export"])
def test_since_and_until_take_in_an_operation_at_either_end(runner, archive, command) -> None:
    """As BETWEEN's ends do (M4): an operation stamped at --since or --until to the
    millisecond is in the answer, one a millisecond outside is not."""
    fill(archive, [op(i, ms=ms) for i, ms in enumerate((-1, 0, 5, 10, 11))])
    since, until = iso(T0), iso(T0 + timedelta(milliseconds=10))
    result = invoke(runner, "--db", archive, command, "--since", since, "--until", until)
    assert result.exit_code == 0, result.output
    assert sorted(re.findall(r"op-\d+", result.stdout)) == ["op-000001", "op-000002", "op-000003"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--since", "last tuesday"), "--since: 'last tuesday' is not a time"),
        (("--until", "99999999999999"), "--until: '99999999999999' looks like epoch milliseconds"),
        (("--since", "10d", "--until", "20d"), "--until is before --since"),
    ],
)
@pytest.mark.parametrize("command", ["query", "export"])
def test_a_malformed_since_or_until_is_one_line_and_exit_2(
    runner, archive, command, args, words
) -> None:
    result = invoke(runner, "--db", archive, command, *args)
    assert result.exit_code == 2
    assert result.stdout == "" and result.stderr.count("\n") == 1 and words in result.stderr


def test_a_read_takes_its_names_and_rows_from_one_snapshot(archive) -> None:
    """The catalog and the rows are two statements. A sync that lists a new service and
    stores its operations between them must not leave them unnamed: on PostgreSQL each
    statement of a READ COMMITTED transaction had its own snapshot."""
    from archiver.filters import Filters
    from archiver.read import outputs
    from archiver.read.query import Selection
    from archiver.records import Listed
    from archiver.store import write as store

    def listing(conn, *services: str) -> None:  # type: ignore[no-untyped-def]
        sid = store.ensure_source(conn, "test@us-east-1", region="us-east-1")
        store.record_catalog(conn, sid, "services", [Listed(s, f"name-{s}", "HTTP", None, None, T0)
                             for s in services], seen_at=T0, complete=False)  # fmt: skip
        store.upsert_operations(conn, sid, [op(s, service=s) for s in services], seen_at=T0,
                                run_id=None)  # fmt: skip

    with Archive(archive) as handle:
        with handle.writer.begin() as conn:
            listing(conn, "srv-1")
        objects = outputs.json_rows(handle, Selection(Filters()))  # the names are read
        with handle.writer.begin() as conn:  # a sync commits before the first row
            listing(conn, "srv-2")
        shown = [json.loads(text) for batch in objects for text in batch]
    assert [o.get("ServiceName") for o in shown] == ["name-srv-1"]
