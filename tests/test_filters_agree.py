"""to_sql() over a real archive selects exactly what matches() keeps (the oracle);
so does to_sql_arms(), the same condition cut into disjoint arms, each row once.

This property is what keeps the query, the export, the emulator and the sync on one
definition of the filters; it runs on PostgreSQL too when the suite does.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from archiver.filters import Filters, validate
from archiver.records import STATUSES, TYPES, OperationRecord
from archiver.store import db as archive_db
from archiver.store import write as store
from archiver.store.archive import Archive
from archiver.store.models import Operation, OperationEvent
from archiver.timeutil import to_epoch_ms
from tests.helpers import T0

# A few instants, so that generated operations and window bounds collide at the edges.
POINTS = [T0 + timedelta(hours=h) for h in (0, 1, 5, 24)]
NAMESPACES = ["ns-a", "ns-b", "ns-ü"]
SERVICES = ["srv-1", "srv-2", "srv-☃"]


@st.composite
def operations(draw) -> list[OperationRecord]:
    ids = draw(
        st.lists(
            st.text(
                st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                min_size=1,
                max_size=20,
            ),
            min_size=1,
            max_size=300,
            unique=True,
        )
    )
    out = []
    for i in ids:
        when = draw(st.sampled_from(POINTS)) + timedelta(milliseconds=draw(st.integers(-2, 2)))
        out.append(
            OperationRecord(
                id=i,
                type=draw(st.sampled_from(TYPES)),
                status=draw(st.sampled_from(STATUSES)),
                create_date=when - timedelta(minutes=1),
                update_date=when,
                namespace_id=draw(st.none() | st.sampled_from(NAMESPACES)),
                service_id=draw(st.none() | st.sampled_from(SERVICES)),
                instance_id=draw(st.none() | st.just("i-1")),
            )
        )
    return out


def _ms(draw) -> str:
    point = draw(st.sampled_from(POINTS))
    return str(to_epoch_ms(point) + draw(st.integers(-2, 2)))


@st.composite
def filter_sets(draw) -> Filters:
    raw = []
    for _ in range(draw(st.integers(1, 4))):
        name = draw(
            st.sampled_from(["NAMESPACE_ID", "SERVICE_ID", "STATUS", "TYPE", "UPDATE_DATE"])
        )
        if name == "NAMESPACE_ID":
            raw.append({"Name": name, "Values": [draw(st.sampled_from([*NAMESPACES, "ns-x"]))]})
        elif name == "SERVICE_ID":
            raw.append(
                {
                    "Name": name,
                    "Condition": "EQ",
                    "Values": [draw(st.sampled_from([*SERVICES, "srv-x"]))],
                }
            )
        elif name in ("STATUS", "TYPE"):
            pool = STATUSES if name == "STATUS" else TYPES
            if draw(st.booleans()):
                raw.append(
                    {"Name": name, "Condition": "EQ", "Values": [draw(st.sampled_from(pool))]}
                )
            else:
                values = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4))
                raw.append({"Name": name, "Condition": "IN", "Values": values})
        else:
            raw.append({"Name": name, "Condition": "BETWEEN", "Values": [_ms(draw), _ms(draw)]})
    return validate(raw)


def test_to_sql_selects_exactly_what_matches_keeps(db) -> None:
    Archive(db).upgrade()
    engine = archive_db.create(db, write=True)
    with engine.begin() as conn:
        sid = store.ensure_source(conn, "agree")

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(ops=operations(), fs=filter_sets())
    def check(ops: list[OperationRecord], fs: Filters) -> None:
        with engine.begin() as conn:
            conn.execute(delete(OperationEvent))
            conn.execute(delete(Operation))
            store.upsert_operations(conn, sid, ops, seen_at=T0, run_id=None)
        expected = {o.id for o in ops if fs.matches(o)}
        with engine.connect() as conn:
            got = set(conn.execute(select(Operation.id).where(fs.to_sql(Operation))).scalars())
            # the query's UNION ALL of one arm per IN value: the same rows, each once
            arms = [
                i
                for arm in fs.to_sql_arms(Operation)
                for i in conn.execute(select(Operation.id).where(arm)).scalars()
            ]
        assert got == expected
        assert sorted(arms) == sorted(expected)

    try:
        check()
    finally:
        engine.dispose()


@settings(max_examples=200, deadline=None)
@given(fs=filter_sets())
def test_to_request_round_trips(fs: Filters) -> None:
    assert validate(fs.to_request()) == fs
