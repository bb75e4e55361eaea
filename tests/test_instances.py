"""`archiver instances`: who was registered when, rebuilt from the archived
(de)registrations, equal to a reference that applies the same rule to the emulator's
own records; names resolved, coverage told, and only index searches."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import datetime, timedelta

import hypothesis
import pytest
from hypothesis import strategies as st
from sqlalchemy import event

from archiver.emulator import Emulator
from archiver.errors import UsageError
from archiver.read import outputs, query
from archiver.store.archive import Archive
from archiver.timeutil import iso
from tests.conftest import invoke, requires_sqlite
from tests.helpers import T0 as T
from tests.helpers import cli_sync, fill, op

INSTANCE_TYPES = ("REGISTER_INSTANCE", "DEREGISTER_INSTANCE")


def reference(ops, service: str, at: datetime) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """instance → deciding operation id: the rule, written out plainly."""
    last: dict[str, object] = {}
    decisive = sorted(
        (o for o in ops if o.service_id == service and o.type in INSTANCE_TYPES
         and o.status == "SUCCESS" and o.instance_id and o.update_date <= at),
        key=lambda o: (o.update_date, o.create_date, o.id),
    )  # fmt: skip
    for o in decisive:
        last[o.instance_id] = o
    return {i: o.id for i, o in last.items() if o.type == "REGISTER_INSTANCE"}  # type: ignore[attr-defined]


@pytest.mark.slow
def test_instances_equal_a_reference_rebuilt_from_the_emulators_records(runner, db) -> None:
    with Emulator(seed_operations=1000, days=30, seed=71) as emu:
        assert cli_sync(runner, db, emu.url, "--source", "acct").exit_code == 0
        ops = emu.account.all()
        names = {s.id: s.name for s in emu.account.services}
    counts: dict[str, int] = {}
    for o in ops:
        if o.type in INSTANCE_TYPES and o.service_id:
            counts[o.service_id] = counts.get(o.service_id, 0) + 1
    busiest = sorted(counts, key=lambda s: (-counts[s], s))[:3]
    first = min(o.update_date for o in ops)
    last = max(o.update_date for o in ops)
    moments = [first + (last - first) / 3, first + 2 * (last - first) / 3, last]
    checked = 0
    for service in busiest:
        for at in moments:
            args = ("--db", db, "instances", "--at", at.isoformat(), "-o", "json")
            got = json.loads(invoke(runner, *args, "--service", service).stdout)
            want = reference(ops, service, at)
            assert {r["InstanceId"]: r["OperationId"] for r in got["instances"]} == want
            checked += len(want)
            by_name = json.loads(invoke(runner, *args, "--service", names[service]).stdout)
            assert by_name == got  # a name answers as its id does
    assert checked > 10  # the comparison was about something


def test_the_rule_failures_pending_and_ties(archive) -> None:
    """FAIL and PENDING change nothing; of two changes at one instant the later
    CreateDate, then the larger Id, decides; the answer is as of --at."""

    def at(minutes: int) -> datetime:
        return T + timedelta(minutes=minutes)

    fill(archive, [
        op(1, minutes=0, instance="i-a"),
        op(2, minutes=10, type="DEREGISTER_INSTANCE", status="FAIL", instance="i-a"),
        op(3, minutes=20, type="DEREGISTER_INSTANCE", status="PENDING", instance="i-a"),
        op(4, minutes=5, instance="i-b"),
        op("op-x", minutes=30, type="DEREGISTER_INSTANCE", instance="i-b"),
        op("op-y", minutes=30, instance="i-b"),  # same instant, larger id: it decides
        op(7, minutes=40, type="DEREGISTER_INSTANCE", instance="i-c"),  # known only leaving
    ])  # fmt: skip
    with Archive(archive) as archive:

        def registered(minutes: int) -> dict[str, str]:
            got = query.instances(archive, service="srv-1", at=at(minutes))
            return {r["InstanceId"]: r["OperationId"] for r in got.rows}

        assert registered(-1) == {}
        early = outputs.instances_note(query.instances(archive, service="srv-1", at=at(-1)))
        assert early == (f"the archive cannot say what was registered at {iso(at(-1))}: "
                         f"its record of these services begins {iso(at(0))}")  # fmt: skip
        assert registered(1) == {"i-a": "op-000001"}
        assert registered(25) == {"i-a": "op-000001", "i-b": "op-000004"}
        assert registered(30) == {"i-a": "op-000001", "i-b": "op-y"}
        before = query.instances(archive, service="srv-1", at=at(35))
        assert before.uncertain == ["i-c"]
        assert outputs.instances_note(before) == (
            f"1 instance(s) were registered before the archive began ({iso(at(0))}): their "
            "first archived change is a later deregistration, so they may have been "
            "registered then too")  # fmt: skip
        after = query.instances(archive, service="srv-1", at=at(45))
        assert after.uncertain == [] and outputs.instances_note(after) is None  # nothing to tell
        history = query.instances(archive, service="srv-1", history=True)
        assert [r["OperationId"] for r in history.rows] == [
            "op-000001", "op-000004", "op-x", "op-y", "op-000007"]  # fmt: skip


@st.composite
def crowded_registrations(draw) -> list:  # type: ignore[no-untyped-def, type-arg]
    """(De)registrations of three instances of two services crowded into five minutes:
    many share an UpdateDate, and of those many a CreateDate, so the ties decide."""
    ids = draw(st.lists(st.text("abc019", min_size=6, max_size=6), min_size=1, max_size=30,
                        unique=True))  # fmt: skip
    return [
        replace(
            op(op_id, type=draw(st.sampled_from(INSTANCE_TYPES)),
               status=draw(st.sampled_from(["SUCCESS", "SUCCESS", "FAIL", "PENDING", "SUBMITTED"])),
               minutes=draw(st.integers(0, 4)), service=draw(st.sampled_from(["srv-1", "srv-2"])),
               instance=draw(st.sampled_from(["i-a", "i-b", "i-c"]))),
            create_date=T - timedelta(minutes=draw(st.integers(0, 1))),
        )
        for op_id in ids
    ]  # fmt: skip


def test_any_crowd_of_changes_answers_as_the_rule_says(archive) -> None:
    """Against the rule written out plainly (``reference``), at every minute of the
    span and between them, on both engines: who is registered, which operation
    decided it, the history's order, and the instances only a deregistration after
    --at tells of (registered before the archive began, it may be)."""
    from sqlalchemy import delete

    from archiver.store.models import Operation, OperationEvent

    @hypothesis.settings(max_examples=40, deadline=None,
                         suppress_health_check=list(hypothesis.HealthCheck))  # fmt: skip
    @hypothesis.given(ops=crowded_registrations())
    def check(ops: list) -> None:  # type: ignore[type-arg]
        with Archive(archive) as handle, handle.writer.begin() as conn:
            conn.execute(delete(OperationEvent))
            conn.execute(delete(Operation))
        fill(archive, ops)
        with Archive(archive) as handle:
            for service in sorted({o.service_id for o in ops}):
                changes = sorted((o for o in ops if o.service_id == service
                                  and o.status == "SUCCESS"),
                                 key=lambda o: (o.update_date, o.create_date, o.id))  # fmt: skip
                # the history: by instant, then instance; one instance's ties as they decide
                history = query.instances(handle, service=service, history=True).rows
                assert [r["OperationId"] for r in history] == [o.id for o in sorted(
                    changes, key=lambda o: (o.update_date, o.instance_id))]  # fmt: skip
                first = {}  # each instance's first change
                for o in changes:
                    first.setdefault(o.instance_id, o)
                for seconds in range(-30, 300, 30):
                    at = T + timedelta(seconds=seconds)
                    got = query.instances(handle, service=service, at=at)
                    registered = {r["InstanceId"]: r["OperationId"] for r in got.rows}
                    assert registered == reference(ops, service, at), (service, at)
                    assert got.uncertain == sorted(
                        i for i, o in first.items()
                        if o.type == "DEREGISTER_INSTANCE" and o.update_date > at)  # fmt: skip

    check()


def test_names_that_match_several_or_none_are_exit_2(runner, archive) -> None:
    from archiver.records import Listed
    from archiver.store import write as store

    fill(archive, [op(1, service="srv-1"), op(2, service="srv-2")])
    with Archive(archive) as handle, handle.writer.begin() as conn:
        services = [Listed("srv-1", "api", None, None, None, None),
                    Listed("srv-2", "api", None, None, None, None)]  # fmt: skip
        store.record_catalog(conn, 1, "services", services, seen_at=T, complete=True)
    # an empty name (`--service "$SVC"` with SVC unset) answered for every service
    for kind, given, says in (("service", "api", "names 2 services: srv-1, srv-2"),
                              ("service", "nope", "no service"), ("service", "", "no service"),
                              ("namespace", "", "no namespace"),
                              ("at", "99999999999999", "--at: '99999999999999' looks like "
                               "epoch milliseconds; give epoch seconds")):  # fmt: skip
        result = invoke(runner, "--db", archive, "instances", f"--{kind}", given)
        assert result.exit_code == 2 and says in result.stderr, result.output
        assert result.stderr.count("\n") == 1
    # --history is one service's timeline, as the README documents it
    alone = invoke(runner, "--db", archive, "instances", "--namespace", "ns-1", "--history")
    assert (alone.exit_code, alone.stderr) == (2, "error: --history needs --service\n")
    table = invoke(runner, "--db", archive, "instances", "--service", "srv-1", "--at", "2026-03-02")
    assert table.exit_code == 0 and "(1 instance)" in table.stdout, table.output


@requires_sqlite
def test_an_answer_reads_the_service_index_only(archive) -> None:
    """On a 1M-operation archive the answer must be index searches (bench/README.md
    measures it): every statement it runs is checked here with SQLite's planner."""
    fill(archive, [op(i, minutes=i, service=f"srv-{i % 7}", instance=f"i-{i % 5}")
              for i in range(200)])  # fmt: skip
    statements: list[tuple[str, object]] = []
    with Archive(archive) as archive:
        engine = archive.reader

        @event.listens_for(engine, "before_cursor_execute")
        def keep(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            statements.append((statement, parameters))

        query.instances(archive, service="srv-3", at=T + timedelta(minutes=100))
        event.remove(engine, "before_cursor_execute", keep)
        with engine.connect() as conn:
            plans = [
                row[3]
                for sql, params in statements
                if "operations" in sql or "instance_states" in sql
                for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)
            ]
    scans = [p for p in plans if p.startswith("SCAN") and ("operations" in p or " o" in p)]
    assert not scans, plans
    assert any("ix_operations__service_id_update_date" in p for p in plans), plans


def test_coverage_and_csv_keep_to_the_rules_of_the_rest(runner, archive) -> None:
    """--source narrows the coverage as it narrows the answer; CSV guards the names
    against formulas and leaves ids as the service sent them, as export does."""
    from archiver.records import Listed
    from archiver.store import write as store

    fill(archive, [op(1, minutes=5, instance="=i-1")], source="a@us-east-1")
    fill(archive, [op(2, minutes=-60, instance="i-2")], source="b@us-east-1")
    with Archive(archive) as handle, handle.writer.begin() as conn:
        store.record_catalog(conn, 1, "services", [Listed("srv-1", "=svc", None, None, None,
                                                          None)], seen_at=T, complete=True)  # fmt: skip
    with Archive(archive) as handle:
        got = query.instances(handle, service="srv-1", at=T + timedelta(hours=1),
                               source="a@us-east-1")  # fmt: skip
    assert got.coverage_start == T + timedelta(minutes=5)  # not b's, an hour earlier
    out = invoke(runner, "--db", archive, "instances", "--service", "srv-1", "--source",
                 "a@us-east-1", "--at", "2030-01-01", "-o", "csv").stdout  # fmt: skip
    (row,) = csv.DictReader(io.StringIO(out, newline=""))
    assert (row["InstanceId"], row["ServiceName"]) == ("=i-1", "'=svc")


def test_service_and_namespace_together_are_their_intersection(runner, archive) -> None:
    """--namespace answers for its services; with --service too, for that service, and
    the coverage narrows with the answer; each row names both. A service of another
    namespace is a slip, told as one (exit 2), not an empty answer a script would take
    for "none registered"."""
    from archiver.records import Listed
    from archiver.store import write as store

    fill(archive, [op(1, minutes=1, service="srv-1", instance="i-1"),
                   op(2, minutes=2, service="srv-2", instance="i-2"),
                   op(3, minutes=-30, namespace="ns-2", service="srv-3", instance="i-3")])  # fmt: skip
    with Archive(archive) as handle, handle.writer.begin() as conn:
        spaces = [Listed(n, f"{n}.local", None, None, None, None) for n in ("ns-1", "ns-2")]
        store.record_catalog(conn, 1, "namespaces", spaces, seen_at=T, complete=True)
        services = [Listed(s, s.upper(), None, None, None, None, namespace_id=n)
                    for s, n in (("srv-1", "ns-1"), ("srv-2", "ns-1"), ("srv-3", "ns-2"))]  # fmt: skip
        store.record_catalog(conn, 1, "services", services, seen_at=T, complete=True)
    at = T + timedelta(hours=1)
    with Archive(archive) as handle:

        def answer(**given: str) -> tuple[set[str], datetime | None]:
            got = query.instances(handle, at=at, **given)
            return {r["InstanceId"] for r in got.rows}, got.coverage_start

        assert answer(namespace="ns-1") == ({"i-1", "i-2"}, T + timedelta(minutes=1))
        assert answer(namespace="ns-1.local", service="SRV-2") == (
            {"i-2"},
            T + timedelta(minutes=2),
        )
        with pytest.raises(UsageError, match="is not in --namespace 'ns-1' per the"):
            answer(namespace="ns-1", service="srv-3")
        assert answer(namespace="ns-2") == ({"i-3"}, T - timedelta(minutes=30))
        for history in (False, True):  # each row names its service and that one's namespace
            got = query.instances(handle, service="srv-3", at=at, history=history).rows
            named = [(r["ServiceName"], r["NamespaceName"]) for r in got]
            assert named == [("SRV-3", "ns-2.local")]
    both = invoke(runner, "--db", archive, "instances", "--namespace", "ns-1", "--service",
                  "srv-3", "--at", "2030-01-01", "-o", "count")  # fmt: skip
    assert (both.exit_code, both.stdout) == (2, ""), both.output
    assert "--service 'srv-3' is not in --namespace 'ns-1'" in both.stderr


def test_a_history_is_every_change_in_order_with_its_update_date_and_type(runner, archive) -> None:
    """`--history` (README): a row per registration change of the service, in order,
    with UpdateDate and Type in place of RegisteredAt; a failed operation changed
    nothing, so it is no row. The table counts changes, and json's ``at`` is null."""
    fill(archive, [op(1, minutes=1, instance="i-1"), op(4, minutes=4, instance="i-3", status="FAIL"),
                   op(2, minutes=2, type="DEREGISTER_INSTANCE", instance="i-1"),
                   op(3, minutes=3, instance="i-2")])  # fmt: skip

    def history(output: str) -> str:
        result = invoke(runner, "--db", archive, "instances", "--service", "srv-1", "--history",
                        "-o", output)  # fmt: skip
        assert result.exit_code == 0, result.output
        return result.stdout

    rows = list(csv.DictReader(io.StringIO(history("csv"), newline="")))
    assert list(rows[0]) == ["Source", "ServiceId", "ServiceName", "NamespaceName",
                             "InstanceId", "UpdateDate", "Type", "OperationId"]  # fmt: skip
    changes = [(r["InstanceId"], r["UpdateDate"], r["Type"], r["OperationId"]) for r in rows]
    assert changes == [
        ("i-1", iso(T + timedelta(minutes=1)), "REGISTER_INSTANCE", "op-000001"),
        ("i-1", iso(T + timedelta(minutes=2)), "DEREGISTER_INSTANCE", "op-000002"),
        ("i-2", iso(T + timedelta(minutes=3)), "REGISTER_INSTANCE", "op-000003"),
    ]
    table = history("table").splitlines()
    assert table[0].split() == list(rows[0]) and table[-1] == "(3 changes)"
    envelope = json.loads(history("json"))
    assert envelope["at"] is None
    assert [r["OperationId"] for r in envelope["instances"]] == [c[3] for c in changes]


def test_the_note_is_one_line_on_stderr_only_when_there_is_something_to_tell(
    runner, archive
) -> None:
    """A table, csv, ids or count answer tells what it cannot know on stderr, in one
    line for cron; json carries the coverage in its envelope instead; an answer with
    nothing to tell leaves stderr empty."""
    fill(archive, [op(1, instance="i-a")])

    def told(at: datetime, output: str) -> str:
        result = invoke(runner, "--db", archive, "instances", "--service", "srv-1", "--at",
                        iso(at), "-o", output)  # fmt: skip
        assert result.exit_code == 0, result.output
        return result.stderr

    before, after = T - timedelta(hours=1), T + timedelta(hours=1)
    for output in ("table", "csv", "ids", "count"):
        assert told(after, output) == ""
        said = told(before, output)
        assert said.count("\n") == 1 and f"cannot say what was registered at {iso(before)}" in said
    assert told(before, "json") == ""
