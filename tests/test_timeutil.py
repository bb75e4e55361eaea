"""The times and spans users type, and the spans the archive says back.

Every option that takes a time (`--since`, `--until`, `--at`) or a span (`--lookback`,
`--window`, `--max-age`, a config's values) goes through ``timeutil``, and the status
lines and warnings say spans with ``span_text``: these are the forms the README
promises, held here once rather than through each option.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from archiver.errors import UsageError
from archiver.timeutil import iso, named, parse_iso, parse_span, parse_when, span_text, utc_ms

pytestmark = pytest.mark.engine_free  # no archive takes part

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("30d", timedelta(days=30)),
        ("1w", timedelta(weeks=1)),
        (" 2 h ", timedelta(hours=2)),  # as a config or a shell may space it
        ("0s", timedelta(0)),  # --lookback 0s: read from the watermark exactly
        ("36500d", timedelta(days=36_500)),  # a century, the longest
        ("5214w", timedelta(weeks=5214)),
    ],
)
def test_a_span_is_a_count_and_a_unit(text: str, span: timedelta) -> None:
    assert parse_span(text) == span


@pytest.mark.parametrize("text", ["36501d", "5215w", "876001h", "3153600001s"])
def test_a_span_longer_than_a_century_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match="longer than a span may be"):
        parse_span(text)


@pytest.mark.parametrize("text", ["1.5h", "-1h", "2 hours", "2H", "h", "2", ""])
def test_a_span_in_another_form_is_refused_with_the_forms_it_takes(text: str) -> None:
    with pytest.raises(UsageError, match="use a number and a unit: ms, s, m, h, d or w"):
        parse_span(text)


@pytest.mark.parametrize(
    ("span", "said"),
    [
        (timedelta(hours=26), "26h"),
        (timedelta(days=2), "2d"),
        (timedelta(days=1), "24h"),  # under two days, hours: as `--max-age 24h` is typed
        (timedelta(weeks=1), "7d"),
        (timedelta(minutes=1), "1m"),
        (timedelta(seconds=90), "90s"),
        (timedelta(seconds=1), "1s"),
        (timedelta(milliseconds=1500), "1.5s"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(0), "0ms"),
    ],
)
def test_a_span_is_said_in_the_largest_unit_that_keeps_it_whole(span: timedelta, said: str) -> None:
    assert span_text(span) == said
    if "." not in said:  # a whole count is a span a user may type back
        assert parse_span(said) == span


def test_a_time_is_iso_8601_epoch_seconds_or_a_span_ago() -> None:
    assert parse_when("30d", now_=NOW) == NOW - timedelta(days=30)
    assert parse_when("2026-01-31T00:00:00Z") == datetime(2026, 1, 31, tzinfo=UTC)
    assert parse_when("1700000000") == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert parse_when(" 1700000000.25 ") == datetime(2023, 11, 14, 22, 13, 20, 250_000, tzinfo=UTC)
    with pytest.raises(UsageError, match="is not a time; use ISO-8601"):
        parse_when("yesterday")


def test_epoch_milliseconds_are_refused_as_seconds_from_beyond_year_5000() -> None:
    """F7's slip the other way: a number past 10^11 seconds (year 5138) is taken for
    milliseconds, which a user copied from the API, and refused rather than read."""
    assert parse_when("100000000000").year == 5138
    with pytest.raises(UsageError, match="looks like epoch milliseconds; give epoch seconds"):
        parse_when("100000000001")


def test_a_time_without_an_offset_is_utc_and_any_offset_is_converted() -> None:
    assert parse_iso("2026-01-31T00:00:00") == datetime(2026, 1, 31, tzinfo=UTC)
    assert parse_iso("2026-01-31T02:00:00+02:00") == datetime(2026, 1, 31, tzinfo=UTC)
    assert parse_iso("2026-01-31t00:00:00z") == datetime(2026, 1, 31, tzinfo=UTC)
    east = datetime(2026, 1, 31, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    assert utc_ms(east) == datetime(2026, 1, 31, tzinfo=UTC)
    assert utc_ms(east).tzinfo is UTC


def test_times_are_cut_to_the_millisecond_never_rounded() -> None:
    """Rounding .9995 up would move a time into the next millisecond, past an
    UpdateDate the service holds to the millisecond (O3)."""
    late = datetime(2026, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert utc_ms(late) == datetime(2026, 1, 31, 23, 59, 59, 999_000, tzinfo=UTC)
    assert iso(late) == "2026-01-31T23:59:59.999Z"
    assert parse_iso("2026-01-31T00:00:00.123999Z") == datetime(2026, 1, 31, 0, 0, 0, 123_000,
                                                                tzinfo=UTC)  # fmt: skip


def test_an_options_error_names_the_option_and_no_value_stays_none() -> None:
    with pytest.raises(UsageError, match=r"^--lookback: '2 hours' is not a span"):
        named("--lookback", "2 hours", parse_span)
    assert named("--lookback", None, parse_span) is None
    assert named("--lookback", "2h", parse_span) == timedelta(hours=2)
