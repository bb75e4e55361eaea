"""The README's "Ask the archive in SQL": every query runs on this engine (the suite
runs on SQLite and again on PostgreSQL) and gives the answer the archive's known
content implies, computed here from that content, not written down."""

from __future__ import annotations

import math
import random
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from archiver.records import Listed, OperationRecord
from archiver.store import write as catalog
from archiver.store import write as store
from archiver.store.archive import Archive
from archiver.timeutil import iso

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
SECTION = README.split("## Ask the archive in SQL", 1)[1].split("\n## ", 1)[0]
QUERIES = re.findall(r"```sql\n(.*?)```", SECTION, flags=re.S)

S0 = datetime(2026, 10, 19, tzinfo=UTC)  # B's first listing
S1 = datetime(2026, 10, 20, tzinfo=UTC)  # run 1 of both sources
S2 = datetime(2026, 10, 21, tzinfo=UTC)  # run 2, of A only: the last run
UNFINISHED = ("SUBMITTED", "PENDING")
TYPES = ("REGISTER_INSTANCE", "DEREGISTER_INSTANCE", "UPDATE_SERVICE", "CREATE_NAMESPACE")


def _listed(items: list[tuple[str, str]], when: datetime) -> list[Listed]:
    return [Listed(i, name, "HTTP", f"arn:x:{i}", "111122223333", when) for i, name in items]


NAMESPACES = {
    "A": [("ns-orders", "orders.internal"), ("ns-legacy", "legacy.internal")],
    "B": [("ns-stage", "stage.internal"), ("ns-old", "old.internal")],
}
SERVICES = {"A": [("srv-co", "checkout"), ("srv-pay", "payments")], "B": [("srv-cob", "checkout")]}


class Content:
    """The archive's known content: final records by (source, id), and what ran."""

    def __init__(self) -> None:
        self.final: dict[tuple[str, str], OperationRecord] = {}
        self.last_seen: dict[tuple[str, str], datetime] = {}
        self.changes_of_last_run: list[tuple[Any, ...]] = []
        self.gone: list[tuple[Any, ...]] = []
        self.failed_runs: list[tuple[Any, ...]] = []
        self.services: dict[tuple[str, str], str] = {}


def _ops(rng: random.Random, prefix: str, count: int, services: list[str],
         namespaces: list[str]) -> list[OperationRecord]:  # fmt: skip
    out = []
    for i in range(count):
        created = datetime(2026, 6, 1, tzinfo=UTC) + timedelta(
            milliseconds=rng.randrange(0, 140 * 86_400_000)
        )
        op_type = rng.choice(TYPES)
        status = rng.choices(("SUCCESS", "FAIL", "PENDING", "SUBMITTED"), (7, 2, 1, 0.5))[0]
        took = timedelta(milliseconds=rng.randrange(1000, 600_000))
        target = (
            {"namespace_id": rng.choice(namespaces)}
            if op_type == "CREATE_NAMESPACE"
            else {"service_id": rng.choice(services)}
        )
        if op_type.endswith("_INSTANCE"):  # a few instances that come and go
            target["instance_id"] = f"i-{rng.randrange(4)}"
        out.append(
            OperationRecord(
                id=f"{prefix}-{i:03d}",
                type=op_type,
                status=status,
                create_date=created,
                update_date=created + (took if status not in UNFINISHED else timedelta(0)),
                error_code="E" if status == "FAIL" else None,
                error_message="failed" if status == "FAIL" else None,
                **target,
            )
        )
    # one unfinished operation less than a day old when run 1 saw it
    out.append(OperationRecord(id=f"{prefix}-young", type="REGISTER_INSTANCE",
                               status="PENDING", create_date=S1 - timedelta(hours=5),
                               update_date=S1 - timedelta(hours=5),
                               service_id=services[0]))  # fmt: skip
    return out


@pytest.fixture
def content(archive: str) -> Content:
    rng = random.Random(20261202)
    known = Content()
    with Archive(archive) as handle, handle.writer.begin() as conn:
        sids = {k: store.ensure_source(conn, name, region=name.split("@")[1])
                for k, name in (("A", "prod@us-east-1"), ("B", "staging@eu-west-1"))}  # fmt: skip
        names = {"A": "prod@us-east-1", "B": "staging@eu-west-1"}
        for key in ("A", "B"):
            known.services.update({(names[key], i): n for i, n in SERVICES[key]})
        # B: first listing at S0 with both namespaces, the second at S1 without ns-old
        catalog.record_catalog(conn, sids["B"], "namespaces", _listed(NAMESPACES["B"], S0),
                       seen_at=S0, complete=True)  # fmt: skip
        runs = {}
        for key in ("A", "B"):
            sid = sids[key]
            runs[key] = store.start_run(conn, sid, since=None, until=S1)
            catalog.record_catalog(conn, sid, "namespaces", _listed(NAMESPACES[key][:1], S1)
                           if key == "B" else _listed(NAMESPACES[key], S1),
                           seen_at=S1, complete=True)  # fmt: skip
            catalog.record_catalog(conn, sid, "services", _listed(SERVICES[key], S1), seen_at=S1,
                           complete=True)  # fmt: skip
            ops = _ops(rng, key, 70 if key == "A" else 30, [i for i, _ in SERVICES[key]],
                       [i for i, _ in NAMESPACES[key]])  # fmt: skip
            store.upsert_operations(conn, sid, ops, seen_at=S1, run_id=runs[key])
            store.record_run(conn, runs[key], outcome="succeeded", finished_at=S1)
            for o in ops:
                known.final[(names[key], o.id)] = o
                known.last_seen[(names[key], o.id)] = S1
        failed = store.start_run(conn, sids["B"], since=S1, until=S2)
        store.record_run(conn, failed, outcome="failed", error="ListOperations failed: boom")
        known.failed_runs.append(("staging@eu-west-1", failed, "failed"))
        known.gone.append(("staging@eu-west-1", "old.internal", "ns-old", iso(S0), iso(S1)))

        # run 2 of A: three unfinished operations finish, two are new, ns-legacy is gone
        last = store.start_run(conn, sids["A"], since=S1, until=S2)
        catalog.record_catalog(conn, sids["A"], "namespaces", _listed(NAMESPACES["A"][:1], S2),
                       seen_at=S2, complete=True)  # fmt: skip
        known.gone.append(("prod@us-east-1", "legacy.internal", "ns-legacy", iso(S1), iso(S2)))
        unfinished = [o for (s, _), o in known.final.items() if s == names["A"]
                      and o.status in UNFINISHED and not o.id.endswith("young")]  # fmt: skip
        finishing = sorted(unfinished, key=lambda o: o.id)[:3]
        finished = [replace(o, status=s, update_date=S2 - timedelta(minutes=i + 1))
                    for i, (o, s) in enumerate(zip(finishing, ("SUCCESS", "FAIL", "SUCCESS"),
                                                   strict=True))]  # fmt: skip
        new = [OperationRecord(id=f"A-new-{i}", type="UPDATE_SERVICE", status="SUCCESS",
                               create_date=S2 - timedelta(hours=2, seconds=i),
                               update_date=S2 - timedelta(hours=1, seconds=i),
                               service_id="srv-pay") for i in range(2)]  # fmt: skip
        store.upsert_operations(conn, sids["A"], finished + new, seen_at=S2, run_id=last)
        store.record_run(conn, last, outcome="succeeded", finished_at=S2)
        for o in finishing:
            prev = known.final[(names["A"], o.id)].status
            after = next(f for f in finished if f.id == o.id)
            if prev != after.status:
                known.changes_of_last_run.append(
                    (names["A"], o.id, o.type, prev, after.status, iso(after.update_date))
                )
        for o in new:
            known.changes_of_last_run.append(
                (names["A"], o.id, o.type, None, o.status, iso(o.update_date))
            )
        for o in finished + new:
            known.final[(names["A"], o.id)] = o
            known.last_seen[(names["A"], o.id)] = S2
    assert len(QUERIES) >= 6 and len(finishing) == 3
    return known


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


def _run(db: str, sql: str) -> list[tuple[Any, ...]]:
    with Archive(db) as handle, handle.reader.connect() as conn:
        return [tuple(_plain(v) for v in row) for row in conn.exec_driver_sql(sql).all()]


def _seconds(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds()


def _expected(known: Content) -> list[list[tuple[Any, ...]]]:
    final = known.final
    q1 = sorted(((o.id, o.type, iso(o.update_date), o.error_code, o.error_message)
                 for (s, _), o in final.items()
                 if known.services.get((s, o.service_id or "")) == "checkout"
                 and o.status == "FAIL"
                 and datetime(2026, 7, 1, tzinfo=UTC) <= o.update_date
                 < datetime(2026, 10, 1, tzinfo=UTC)),
                key=lambda r: (r[2], r[0]))  # fmt: skip
    durations: dict[str, list[float]] = {}
    for o in final.values():
        if o.status not in UNFINISHED:
            durations.setdefault(o.type, []).append(_seconds(o.create_date, o.update_date))
    q2 = []
    for t in sorted(durations):
        d = sorted(durations[t])
        rank = math.ceil(19 * len(d) / 20)  # the smallest n with 20n >= 19 total
        q2.append((t, len(d), round(sum(d) / len(d), 1), d[rank - 1]))
    q3 = sorted(known.changes_of_last_run, key=lambda r: (r[5], r[1]))
    q4 = sorted(((s, o.id, o.type, o.status, iso(o.create_date), iso(known.last_seen[(s, i)]),
                  round(_seconds(o.create_date, known.last_seen[(s, i)]) / 3600, 1))
                 for (s, i), o in final.items()
                 if o.status in UNFINISHED
                 and _seconds(o.create_date, known.last_seen[(s, i)]) > 86400),
                key=lambda r: (-(datetime.fromisoformat(r[5]) - datetime.fromisoformat(r[4])),
                               r[1]))  # fmt: skip
    q5 = sorted(known.gone, key=lambda r: (r[3], r[2]))
    days: dict[tuple[str, str], int] = {}
    for o in final.values():
        key = (o.update_date.strftime("%Y-%m-%d"), o.status)
        days[key] = days.get(key, 0) + 1
    q6 = [(d, s, n) for (d, s), n in sorted(days.items())]
    q7 = [
        (s, i, "x", outcome, "ListOperations failed: boom") for s, i, outcome in known.failed_runs
    ]
    at = datetime(2026, 9, 1, tzinfo=UTC)
    decided: dict[tuple[str, str, str], OperationRecord] = {}
    for (s, _), o in sorted(
        final.items(), key=lambda kv: (kv[1].update_date, kv[1].create_date, kv[1].id)
    ):
        if (known.services.get((s, o.service_id or "")) == "checkout" and o.instance_id
                and o.status == "SUCCESS" and o.update_date <= at):  # fmt: skip
            decided[(s, o.service_id or "", o.instance_id)] = o
    q8 = sorted((s, i, iso(o.update_date), o.id) for (s, _, i), o in decided.items()
                if o.type == "REGISTER_INSTANCE")  # fmt: skip
    return [q1, q2, q3, q4, q5, q6, q7, q8]


def test_the_cookbook_has_its_questions() -> None:
    questions = re.findall(r"^\*\*(.+?)\*\*", SECTION, flags=re.M)
    assert len(questions) == len(QUERIES) >= 6


def _close(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> bool:
    if len(got) != len(want):
        return False
    for g, w in zip(got, want, strict=True):
        if len(g) != len(w):
            return False
        for a, b in zip(g, w, strict=True):
            if isinstance(b, float) and isinstance(a, (int, float)):
                if abs(a - b) > 0.0011:
                    return False
            elif a != b:
                return False
    return True


@pytest.mark.parametrize("n", range(8), ids=lambda n: f"q{n + 1}")
def test_every_cookbook_query_gives_the_known_answer(archive, content, n) -> None:
    got = _run(archive, QUERIES[n])
    want = _expected(content)[n]
    assert want, "the known content must give each query something to find"
    if n == 6:  # sync runs: started_at is the wall clock's
        got = [(s, i, "x", o, e) for s, i, _, o, e in got]
    assert _close(got, want), (got[:5], want[:5])
