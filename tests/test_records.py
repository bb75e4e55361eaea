"""The operation record is the one definition of an operation's fields.

These tests fail when a field is added to the record without its migration, or when
a column of the model or the migrated archive disagrees with what the record says.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Text, inspect

from archiver.read.outputs import COLUMNS
from archiver.records import FIELDS, NAMES, STATUSES, TYPES, OperationRecord
from archiver.store import db as archive_db
from archiver.store.models import Operation, UTCDateTime


def _declared(f) -> tuple[str, int | None, bool]:
    kind = "date" if f.is_date else "text" if f.size is None else "string"
    return kind, f.size, f.optional


def _model_column(col) -> tuple[str, int | None, bool]:
    if isinstance(col.type, UTCDateTime):
        return "date", None, col.nullable
    if isinstance(col.type, Text):
        return "text", None, col.nullable
    return "string", col.type.length, col.nullable


def test_every_record_field_is_a_model_column_as_declared() -> None:
    columns = Operation.__table__.columns
    archive_own = ("source_id", "first_seen_at", "last_seen_at")
    record_columns = [c.name for c in columns if c.name not in archive_own]
    assert record_columns == list(NAMES)
    for f in FIELDS:
        assert _model_column(columns[f.name]) == _declared(f), f.name


def test_the_migrated_archive_has_every_record_field(archive) -> None:
    """A field added to the record without a migration fails here (and `alembic check`)."""
    engine = archive_db.create(archive, write=False)
    try:
        live = {c["name"]: c for c in inspect(engine).get_columns("operations")}
    finally:
        engine.dispose()
    for f in FIELDS:
        assert f.name in live, f"{f.name}: add an Alembic revision for the new field"
        assert live[f.name]["nullable"] == f.optional, f.name


def test_csv_columns_are_the_records_fields_between_source_and_seen_times() -> None:
    in_csv = [f.name for f in FIELDS if f.csv]  # extra lives in JSON and its column only
    names = ("namespace_name", "service_name")  # not the record's: the catalog's
    assert ("source", *in_csv, "first_seen_at", "last_seen_at", *names) == COLUMNS
    assert "extra" in NAMES and "extra" not in COLUMNS


_ids = st.text("abcdef0123456789-", min_size=1, max_size=40)
_dates = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
_records = st.builds(
    OperationRecord,
    id=_ids,
    type=st.sampled_from(TYPES),
    status=st.sampled_from(STATUSES),
    error_code=st.none() | st.text(max_size=20),
    error_message=st.none() | st.text(max_size=50),
    create_date=_dates,
    update_date=_dates,
    namespace_id=st.none() | _ids,
    service_id=st.none() | _ids,
    instance_id=st.none() | _ids,
    owner_account=st.none() | st.from_regex(r"\A[0-9]{12}\Z"),
)


@given(_records)
def test_to_api_and_from_api_round_trip_every_field(record: OperationRecord) -> None:
    api = record.to_api()
    assert OperationRecord.from_api(api) == record
    assert all(value is not None for value in api.values())  # absent fields are omitted
    assert ("Targets" in api) == any(
        getattr(record, f.name) is not None for f in FIELDS if f.target
    )


@given(st.integers(min_value=0, max_value=4_102_444_800_000))  # 1970 to 2100, in ms
def test_answer_timestamps_are_read_as_the_instant_botocore_reads(ms: int) -> None:
    """The sync reads dates with its own parser (``api_timestamp``); it must land on
    the same millisecond as botocore's, which reads them in the local zone."""
    from botocore.utils import parse_timestamp

    from archiver.sync.wire import api_timestamp
    from archiver.timeutil import utc_ms

    sent = ms / 1000  # as the JSON and CBOR protocols send it: epoch seconds
    ours = api_timestamp(sent)
    assert ours.tzinfo is UTC
    assert utc_ms(ours) == utc_ms(parse_timestamp(sent))
    assert ours == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def test_an_answer_timestamp_in_text_is_left_to_botocore() -> None:
    from archiver.sync.wire import api_timestamp

    assert api_timestamp("2026-01-31T12:00:00.125Z") == datetime(2026, 1, 31, 12, 0, 0, 125000,
                                                                 tzinfo=UTC)  # fmt: skip
    assert api_timestamp(1_767_225_600) == datetime(2026, 1, 1, tzinfo=UTC)


def test_a_records_dates_are_utc_to_the_millisecond_whatever_the_answer_carried() -> None:
    """O3: the archive keeps milliseconds in UTC, as the service does; a finer date (a
    text date botocore parsed with microseconds) would make two observations of one
    UpdateDate compare unequal."""
    paris = timezone(timedelta(hours=1))
    sent = {"Id": "op-1", "Type": "REGISTER_INSTANCE", "Status": "SUCCESS",
            "CreateDate": datetime(2026, 3, 1, 13, 0, 0, 123456, tzinfo=paris),
            "UpdateDate": datetime(2026, 3, 1, 13, 0, 1, 999999, tzinfo=paris)}  # fmt: skip
    record = OperationRecord.from_api(sent)
    assert record.create_date == datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert record.update_date == datetime(2026, 3, 1, 12, 0, 1, 999000, tzinfo=UTC)
    assert record.update_date.tzinfo is UTC
