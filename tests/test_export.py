"""`archiver export`: what auditors receive must equal the archive, and be safe to open."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, select

from archiver.filters import Filters
from archiver.read import outputs
from archiver.read.query import Selection
from archiver.store import write as store
from archiver.store.archive import Archive
from archiver.store.models import Operation
from archiver.timeutil import iso
from tests.conftest import invoke
from tests.helpers import T0, fill, op, read_rows, small_files

HEADER = (
    "source,id,type,status,error_code,error_message,create_date,update_date,"
    "namespace_id,service_id,instance_id,owner_account,first_seen_at,last_seen_at,"
    "namespace_name,service_name"  # appended in 0.3.0, after the columns of 0.2
)
HISTORY_HEADER = "source,id,type,status,update_date,observed_at,sync_run_id"

MESSAGES = [
    'commas, "quotes"\nand newlines\r\nü 日本 🎉',
    '=HYPERLINK("http://x")',
    "+1+2",
    "-2+3",
    "@SUM(A1)",
    "\tTabbed",
    "\rReturn",
    "plain",
]


@pytest.fixture
def filled(archive) -> str:
    fill(
        archive,
        [
            op(i, status="FAIL", minutes=i, error_code="Code" if i else "=Code", error_message=m)
            for i, m in enumerate(MESSAGES)
        ]
        + [op("-starts-with-dash", minutes=50, service="-srv", namespace="+ns", instance="@i")],
    )
    return archive


def read(path: Path) -> list[dict[str, str]]:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def test_export_equals_the_archive_and_has_the_documented_header(runner, filled, tmp_path) -> None:
    out = tmp_path / "ops.csv"
    result = invoke(runner, "--db", filled, "export", "--out", str(out), "--raw")
    assert result.exit_code == 0, result.output
    raw = out.read_bytes()
    assert raw.startswith(HEADER.encode() + b"\r\n")
    rows = read(out)
    assert [r["error_message"] for r in rows[:-1]] == MESSAGES
    first = rows[0]
    expected = op(0, status="FAIL", minutes=0, error_code="=Code", error_message=MESSAGES[0])
    assert first == {
        "source": "test@us-east-1",
        "id": expected.id,
        "type": expected.type,
        "status": "FAIL",
        "error_code": "=Code",
        "error_message": MESSAGES[0],
        "create_date": iso(expected.create_date),
        "update_date": iso(expected.update_date),
        "namespace_id": "ns-1",
        "service_id": "srv-1",
        "instance_id": "i-1",
        "owner_account": "",
        "first_seen_at": iso(T0),
        "last_seen_at": iso(T0),
        "namespace_name": "",  # no sync has listed the names: empty, never made up
        "service_name": "",
    }
    assert first["update_date"] == "2026-03-01T12:00:00.000Z"


def test_every_line_is_what_the_csv_module_writes_for_its_cells(runner, filled, tmp_path) -> None:
    """A cell with nothing in it is an empty cell, unquoted, as in any row Python's csv
    module writes: a name no sync has listed came out as "" beside the empty cells."""
    out = tmp_path / "ops.csv"
    assert invoke(runner, "--db", filled, "export", "--out", str(out)).exit_code == 0
    data = out.read_bytes().decode("utf-8")
    again = io.StringIO()
    csv.writer(again, lineterminator="\r\n").writerows(csv.reader(io.StringIO(data, newline="")))
    assert data == again.getvalue()


def test_formula_guard_neutralises_every_prefix_and_leaves_ids(runner, filled, tmp_path) -> None:
    out = tmp_path / "ops.csv"
    assert invoke(runner, "--db", filled, "export", "--out", str(out)).exit_code == 0
    rows = read(out)
    messages = [r["error_message"] for r in rows[:-1]]
    assert messages == [MESSAGES[0]] + ["'" + m for m in MESSAGES[1:-1]] + ["plain"]
    assert rows[0]["error_code"] == "'=Code"
    last = rows[-1]
    assert (last["id"], last["service_id"], last["namespace_id"], last["instance_id"]) == (
        "-starts-with-dash",
        "-srv",
        "+ns",
        "@i",
    )


JUNK_IDS = ['op-"1",\n', "op\\2\r", "op\t3"]


@pytest.mark.parametrize("history", [False, True], ids=["operations", "history"])
def test_ids_and_enums_the_service_sent_malformed_keep_each_line_whole(
    runner, archive, tmp_path, history
) -> None:
    """Ids and unknown enum values holding a comma, quote or line break are kept as the
    service sent them, so they are quoted, and read back to the character."""
    odd = [replace(op(i, minutes=i), id=junk, namespace_id=f"ns,{i}", service_id=f'srv"{i}',
                                   owner_account=f"12\n{i}", type=f"NEW,{i}", status=f'S"{i}')
           for i, junk in enumerate(JUNK_IDS)]  # fmt: skip
    # every id plain but the instance id, which users choose
    users = op(11, minutes=11, instance='i-"1",\r\n2')
    fill(archive, [*odd, op(10, minutes=10), users])
    extra = ["--history"] if history else []
    out = tmp_path / "odd.csv"
    assert invoke(runner, "--db", archive, "export", *extra, "--out", str(out)).exit_code == 0
    got = {r["id"]: r for r in read(out)}
    assert set(got) == {*JUNK_IDS, op(10).id, users.id}
    if not history:  # the history's columns hold no targets
        assert got[users.id]["instance_id"] == users.instance_id
    for o in odd:
        row = got[o.id]
        assert (row["type"], row["status"]) == (o.type, o.status)
        if not history:
            assert (row["namespace_id"], row["service_id"], row["owner_account"]) == (
                o.namespace_id, o.service_id, o.owner_account)  # fmt: skip
    query = invoke(runner, "--db", archive, "query", "-o", "csv")
    assert {r["id"] for r in csv.DictReader(io.StringIO(query.stdout, newline=""))} == set(got)


def test_manifest_matches_the_file(runner, filled, tmp_path) -> None:
    out = tmp_path / "ops.csv"
    f = "Name=STATUS,Values=FAIL"
    assert (
        invoke(runner, "--db", filled, "export", "--out", str(out), "--filters", f).exit_code == 0
    )
    manifest = json.loads((tmp_path / "ops.csv.manifest.json").read_text())
    assert manifest["rows"] == len(read(out)) == len(MESSAGES)
    assert manifest["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert manifest["bytes"] == out.stat().st_size
    assert manifest["filters"] == [{"Name": "STATUS", "Condition": "EQ", "Values": ["FAIL"]}]
    assert manifest["sources"] == [{"name": "test@us-east-1", "watermark": None}]
    assert manifest["columns"] == HEADER.split(",")
    assert manifest["formula_guard"] is True


@pytest.mark.slow  # a process on a pseudo-terminal
def test_gzip_to_a_terminal_is_refused_and_to_a_pipe_is_written(filled) -> None:
    """`archiver export --gzip` typed at a shell poured compressed bytes onto the
    terminal, where any of them may be a control sequence; gzip itself refuses."""
    import pty

    leader, follower = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "archiver", "--db", filled, "export",
                               "--gzip"], stdout=follower, stderr=subprocess.PIPE, timeout=60)  # fmt: skip
    finally:
        os.close(follower)
        os.close(leader)
    assert (done.returncode, done.stderr) == (2, b"error: --gzip writes binary: give --out PATH, "
                                              b"or send stdout to a file or pipe\n")  # fmt: skip
    piped = subprocess.run([sys.executable, "-m", "archiver", "--db", filled, "export", "--gzip"],
                           capture_output=True, timeout=60)  # fmt: skip
    assert piped.returncode == 0 and gzip.decompress(piped.stdout).startswith(HEADER.encode())


def test_gzip_decompresses_to_the_same_csv(runner, filled, tmp_path) -> None:
    plain, packed, implied = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv.gz"
    assert invoke(runner, "--db", filled, "export", "--out", str(plain)).exit_code == 0
    assert invoke(runner, "--db", filled, "export", "--out", str(packed), "--gzip").exit_code == 0
    assert invoke(runner, "--db", filled, "export", "--out", str(implied)).exit_code == 0
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    assert gzip.decompress(implied.read_bytes()) == plain.read_bytes()
    manifest = json.loads((tmp_path / "c.csv.gz.manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(implied.read_bytes()).hexdigest()
    assert manifest["gzip"] is True


def test_stdout_export_has_no_manifest(runner, filled, tmp_path) -> None:
    result = invoke(runner, "--db", filled, "export", "--filters", "Name=STATUS,Values=SUCCESS")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == HEADER
    assert len(list(csv.DictReader(io.StringIO(result.stdout)))) == 1
    assert not list(tmp_path.glob("*.manifest.json"))


def test_history_has_one_row_per_observed_status(runner, archive, tmp_path) -> None:
    fill(archive, [op(1, status="PENDING", minutes=1)])
    fill(archive, [op(1, status="SUCCESS", minutes=2)])
    out = tmp_path / "h.csv"
    assert invoke(runner, "--db", archive, "export", "--history", "--out", str(out)).exit_code == 0
    assert out.read_text().splitlines()[0] == HISTORY_HEADER
    rows = read(out)
    assert [(r["id"], r["status"], r["update_date"]) for r in rows] == [
        ("op-000001", "PENDING", "2026-03-01T12:01:00.000Z"),
        ("op-000001", "SUCCESS", "2026-03-01T12:02:00.000Z"),
    ]


@pytest.mark.parametrize("history", [False, True], ids=["operations", "history"])
def test_an_in_list_exports_what_filtering_the_full_export_keeps(
    runner, archive, tmp_path, history
) -> None:
    """An IN list is read one value at a time and merged (UNION ALL): the file still
    holds exactly the full export's matching rows, in its order, with its columns."""
    statuses = ("SUCCESS", "FAIL", "PENDING")
    fill(archive, [op(i, status=statuses[i % 3], minutes=i % 4, error_code="=E" if i % 3 == 1 else None)
                   for i in range(12)])  # fmt: skip
    fill(archive, [op(20, status="PENDING", minutes=1)], source="other@eu-west-1")
    mode = ["--history"] if history else []
    full, some = tmp_path / "full.csv", tmp_path / "some.csv"
    assert invoke(runner, "--db", archive, "export", *mode, "--out", str(full)).exit_code == 0
    in_list = ("--filters", "Name=STATUS,Condition=IN,Values=PENDING,SUCCESS,PENDING")
    done = invoke(runner, "--db", archive, "export", *mode, *in_list, "--out", str(some))
    assert done.exit_code == 0, done.output
    assert some.read_text().splitlines()[0] == full.read_text().splitlines()[0]
    kept = [r for r in read(full) if r["status"] in ("PENDING", "SUCCESS")]
    assert len(kept) == 9
    assert read(some) == kept


@pytest.mark.parametrize("history", [False, True], ids=["operations", "history"])
def test_source_names_are_guarded_like_any_cell(runner, archive, tmp_path, history) -> None:
    """A source is named by its user (`--source`), so a name can start a formula too."""
    fill(archive, [op(1, minutes=1)], source='=HYPERLINK("x")')
    fill(archive, [op(2, minutes=2)], source="prod@eu-west-1")
    mode = ["--history"] if history else []
    guarded, raw = tmp_path / "g.csv", tmp_path / "r.csv"
    assert invoke(runner, "--db", archive, "export", *mode, "--out", str(guarded)).exit_code == 0
    assert (
        invoke(runner, "--db", archive, "export", *mode, "--raw", "--out", str(raw)).exit_code == 0
    )
    assert [r["source"] for r in read(guarded)] == ['\'=HYPERLINK("x")', "prod@eu-west-1"]
    assert [r["source"] for r in read(raw)] == ['=HYPERLINK("x")', "prod@eu-west-1"]
    only = tmp_path / "only.csv"
    chosen = invoke(runner, "--db", archive, "export", *mode, "--source", "prod@eu-west-1",
                    "--out", str(only))  # fmt: skip
    assert chosen.exit_code == 0, chosen.output
    assert [(r["source"], r["id"]) for r in read(only)] == [("prod@eu-west-1", "op-000002")]


def test_invalid_filters_create_no_file(runner, filled, tmp_path) -> None:
    out = tmp_path / "x.csv"
    result = invoke(
        runner, "--db", filled, "export", "--out", str(out), "--filters", "Name=X,Values=1"
    )
    assert result.exit_code == 2
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [] or all(
        p.suffix == ".db" or "archive" in p.name for p in tmp_path.iterdir()
    )


def test_options_that_cannot_go_together_create_no_file(runner, filled, tmp_path) -> None:
    """Incomplete operations have only their listed Status: no history to add."""
    out = tmp_path / "x.csv"
    result = invoke(runner, "--db", filled, "export", "--out", str(out), "--history",
                    "--include-incomplete")  # fmt: skip
    assert (result.exit_code, result.stderr) == (
        2,
        "error: --include-incomplete has no history to add: use it without --history\n",
    )
    assert not out.exists()


def test_unwritable_out_exits_2_with_one_line(runner, filled, tmp_path) -> None:
    result = invoke(runner, "--db", filled, "export", "--out", str(tmp_path / "no" / "x.csv"))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "does not exist" in result.stderr
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        # root ignores the mode bits; a directory as --out is refused either way
        target = locked if os.access(locked, os.W_OK) else locked / "x.csv"
        result = invoke(runner, "--db", filled, "export", "--out", str(target))
        assert result.exit_code == 2
        assert result.stderr.count("\n") == 1
    finally:
        locked.chmod(0o700)


@pytest.mark.slow
@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_an_export_to_stdout_the_disk_cuts_short_fails(archive, tmp_path, unbuffered) -> None:
    """Where PYTHONUNBUFFERED=1 (many container images set it), stdout takes each write
    straight to the file and may take part of it on a full disk: the export counted the
    rest as written, and exited 0 with the CSV cut short."""
    fill(archive, [op(i) for i in range(1000)])  # about 300 kB of CSV, more than the limit
    with open(tmp_path / "ops.csv", "wb") as stdout:
        done = subprocess.run([sys.executable, "-m", "archiver", "--db", archive, "export"],
                              stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=30,
                              env={**os.environ, "PYTHONUNBUFFERED": unbuffered},
                              preexec_fn=small_files(100_000))  # fmt: skip
    assert (done.returncode, done.stderr) == (1, "error: [Errno 27] File too large (run with -v "
                                              "for details)\n")  # fmt: skip


@pytest.mark.slow
def test_a_killed_export_leaves_nothing_under_the_final_name(archive, tmp_path) -> None:
    fill(archive, [op(i, minutes=i % 1000, error_message="x" * 200) for i in range(30_000)])
    out = tmp_path / "big.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "archiver", "--db", archive, "export", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob(".big.csv.partial-*")) and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert not (tmp_path / "big.csv.manifest.json").exists()


@pytest.mark.slow
def test_sigterm_stops_an_export_and_removes_its_temporary_file(archive, tmp_path) -> None:
    fill(archive, [op(i, minutes=i % 1000, error_message="x" * 200) for i in range(30_000)])
    out = tmp_path / "big.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "archiver", "--db", archive, "export", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob(".big.csv.partial-*")) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert list(tmp_path.glob(".big.csv.partial-*")), "the export never started writing"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err  # 128 + SIGTERM
    assert err.count("\n") == 1 and "SIGTERM" in err
    assert not out.exists()
    assert list(tmp_path.glob(".big.csv.partial-*")) == []


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    messages=st.lists(
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
        min_size=1,
        max_size=20,
    ),
    raw=st.booleans(),
)
def test_any_unicode_round_trips_through_csv(tmp_path_factory, messages, raw) -> None:
    path = tmp_path_factory.mktemp("rt") / "a.db"
    db = str(path)
    Archive(db).upgrade()
    fill(db, [op(i, error_message=m or None) for i, m in enumerate(messages)])
    buf = io.StringIO(newline="")
    with Archive(db) as archive:
        outputs.write_csv(
            outputs.csv_rows(archive, Selection(Filters(), ascending=True), raw=raw), buf
        )
    got = [r["error_message"] for r in csv.DictReader(io.StringIO(buf.getvalue(), newline=""))]
    want = [m if raw else outputs.guard(m) for m in messages]
    assert got == [w or "" for w in want]


def test_each_row_shows_its_own_sources_names(runner, archive) -> None:
    """Two sources may hold the same namespace and service ids under other names (two
    accounts, or one account in two regions): each row is named by its own source's
    catalog, in every shape of read (one source, all of them, an IN list)."""
    from archiver.records import Listed
    from archiver.store import write as catalog
    from archiver.store import write as store
    from tests.conftest import invoke
    from tests.helpers import T0, fill, op

    named = {"a@us-east-1": ("=orders", 'pay, "ments"'), "b@eu-west-1": ("billing", None)}
    for k, (source, (ns_name, srv_name)) in enumerate(named.items()):
        fill(archive, [op(i, minutes=i, status=("FAIL", "SUCCESS")[(i + k) % 2],
                          service="srv-1" if i % 3 else "srv-unlisted") for i in range(6)],
             source=source)  # fmt: skip
        with Archive(archive) as handle, handle.writer.begin() as conn:
            sid = store.ensure_source(conn, source, region="us-east-1")
            catalog.record_catalog(conn, sid, "namespaces", [Listed("ns-1", ns_name, None, None, None,
                           None)], seen_at=T0, complete=False)  # fmt: skip
            if srv_name is not None:
                catalog.record_catalog(conn, sid, "services", [Listed("srv-1", srv_name, None, None,
                               None, None)], seen_at=T0, complete=False)  # fmt: skip

    def want(source: str, service: str) -> tuple[str, str]:
        ns_name, srv_name = named[source]
        return ns_name, (srv_name or "") if service == "srv-1" else ""

    for args in ((), ("--source", "b@eu-west-1"), ("--filters", "Name=STATUS,Condition=IN,"
                                                   "Values=FAIL,SUCCESS")):  # fmt: skip
        for command in (("export", "--raw"), ("export",), ("query", "-o", "csv")):
            out = invoke(runner, "--db", archive, *command, *args)
            assert out.exit_code == 0, out.output
            rows = list(csv.DictReader(io.StringIO(out.stdout, newline="")))
            assert len(rows) == (6 if args[:1] == ("--source",) else 12)
            shown_as = (lambda v: v) if "--raw" in command else outputs.guard
            for row in rows:
                got = (row["namespace_name"], row["service_name"])
                expected = tuple(shown_as(v) for v in want(row["source"], row["service_id"]))
                assert got == expected, (command, args, row)
        shown = json.loads(invoke(runner, "--db", archive, "query", "-o", "json", *args).stdout)
        for obj in shown:
            got = (obj.get("NamespaceName", ""), obj.get("ServiceName", ""))
            assert got == want(obj["Source"], obj["Targets"]["SERVICE"])
    guarded = invoke(runner, "--db", archive, "export", "--source", "a@us-east-1").stdout
    assert guarded.rstrip().endswith(',\'=orders,"pay, ""ments"""')  # guarded, quoted


def test_names_are_right_past_the_first_batch_of_a_stream(runner, archive) -> None:
    """The names are read while the rows stream, on the stream's own connection (a
    server-side cursor on PostgreSQL): rows of later batches name new targets too."""
    from archiver.read.query import STREAM_BATCH
    from archiver.records import Listed
    from archiver.store import write as catalog
    from archiver.store import write as store
    from tests.conftest import invoke
    from tests.helpers import T0, fill, op

    n = STREAM_BATCH + 700
    fill(archive, [op(i, minutes=i, service=f"srv-{i // 10}") for i in range(n)])
    with Archive(archive) as handle, handle.writer.begin() as conn:
        sid = store.ensure_source(conn, "test@us-east-1", region="us-east-1")
        listed = [Listed(f"srv-{k}", f"svc {k}", None, None, None, None) for k in range(n // 10)]
        catalog.record_catalog(conn, sid, "services", listed, seen_at=T0, complete=False)
    shown = json.loads(invoke(runner, "--db", archive, "query", "-o", "json").stdout)
    assert len(shown) == n
    assert all(o["ServiceName"] == "svc " + o["Targets"]["SERVICE"][4:] for o in shown)
    rows = list(csv.DictReader(io.StringIO(invoke(runner, "--db", archive, "export").stdout,
                                           newline="")))  # fmt: skip
    assert len(rows) == n
    assert all(r["service_name"] == "svc " + r["service_id"][4:] for r in rows)


@pytest.mark.parametrize("history", [False, True], ids=["operations", "history"])
def test_a_line_break_in_any_cell_keeps_one_record_per_operation(runner, archive, tmp_path,
                                                               history):  # fmt: skip
    """CR/LF in a source's, a namespace's or a service's name (text we render in
    Python) split the row: 1,042 CSV rows for 1,000 operations."""
    from archiver.records import Listed
    from archiver.store import write as store
    from tests.helpers import T0

    broken = "a\r\nb\nc\rd"
    records = [op(i, minutes=i, error_code="E", error_message=broken) for i in range(5)]
    fill(archive, records, source=f"prod{broken}")
    with Archive(archive) as handle, handle.writer.begin() as conn:
        sid = store.ensure_source(conn, f"prod{broken}", region="us-east-1")
        store.record_catalog(conn, sid, "namespaces", [Listed("ns-1", broken, None, None, None, None)],
                             seen_at=T0, complete=False)  # fmt: skip
        store.record_catalog(conn, sid, "services", [Listed("srv-1", broken, None, None, None, None)],
                             seen_at=T0, complete=False)  # fmt: skip
    mode = ["--history"] if history else []
    for raw in ([], ["--raw"]):
        path = tmp_path / f"x{len(raw)}.csv"
        out = invoke(runner, "--db", archive, "export", *mode, *raw, "--out", str(path))
        assert out.exit_code == 0, out.output
        rows = read(path)
        assert len(rows) == 5 and {r["source"] for r in rows} == {f"prod{broken}"}
        if not history:
            assert {(r["namespace_name"], r["service_name"]) for r in rows} == {(broken, broken)}


def test_the_manifest_never_claims_a_watermark_its_rows_were_read_before(filled, tmp_path) -> None:
    """An auditor reads the manifest's watermark as "everything updated before it is in
    the file". A sync that commits while the export streams (new operations and the
    watermark after them) must not make the manifest claim what the file lacks."""
    with Archive(filled) as archive, archive.writer.begin() as conn:
        sid = store.ensure_source(conn, "test@us-east-1", region="us-east-1")
        store.advance_watermark(conn, sid, (T0, T0 + timedelta(hours=1)))
    late = op("committed-mid-export", minutes=90)
    with Archive(filled) as archive:

        @event.listens_for(archive.reader, "after_cursor_execute")
        def a_sync_commits(conn, cursor, statement, *_: object) -> None:  # type: ignore[no-untyped-def]
            if "FROM operations" in statement and not a_sync_commits.done:
                a_sync_commits.done = True  # the stream's statement runs: a sync commits
                with archive.writer.begin() as w:
                    store.upsert_operations(w, sid, [late], seen_at=T0, run_id=None)
                    store.advance_watermark(w, sid, (T0, T0 + timedelta(hours=2)))

        a_sync_commits.done = False
        out = tmp_path / "ops.csv"
        outputs.export(archive, Selection(Filters()), out)
    assert a_sync_commits.done
    mark = json.loads((tmp_path / "ops.csv.manifest.json").read_text())["sources"][0]["watermark"]
    exported = {row["id"] for row in read(out)}
    held = read_rows(filled, select(Operation.id, Operation.update_date))
    claimed = {op_id for op_id, updated in held if mark and iso(updated) <= mark}
    assert claimed and claimed <= exported, (mark, claimed - exported)
