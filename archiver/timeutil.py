"""One place for time: UTC, millisecond-exact, and the forms users type.

The archive keeps milliseconds because the service does (O3); anything finer would make
two observations of the same UpdateDate compare unequal.
"""

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar, overload

from archiver.errors import UsageError

T = TypeVar("T")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_SPAN = timedelta(days=36_500)
_SPAN = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": timedelta(milliseconds=1), "s": timedelta(seconds=1), "m": timedelta(minutes=1),
          "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}  # fmt: skip


def utc_ms(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime truncated to the millisecond."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def now() -> datetime:
    return utc_ms(datetime.now(UTC))


def to_epoch_ms(value: datetime) -> int:
    return (utc_ms(value) - EPOCH) // timedelta(milliseconds=1)


def from_epoch_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def iso(value: datetime) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``: the one rendering users see."""
    value = utc_ms(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    """Parse ISO-8601; a value without an offset is taken as UTC."""
    try:
        return utc_ms(datetime.fromisoformat(text.strip().replace("z", "Z")))
    except ValueError:
        raise UsageError(f"{text!r} is not an ISO-8601 timestamp") from None


def parse_span(text: str) -> timedelta:
    """``15m``, ``2h``, ``30d``, ``1w``, ``90s``, ``500ms``; at most a century."""
    if not (m := _SPAN.match(text)):
        raise UsageError(f"{text!r} is not a span; use a number and a unit: ms, s, m, h, d or w")
    count = int(m.group(1))
    if count * _UNITS[m.group(2)].total_seconds() > MAX_SPAN.total_seconds():
        raise UsageError(f"{text!r} is longer than a span may be (36500d, a century)")
    return count * _UNITS[m.group(2)]


def span_text(delta: timedelta) -> str:
    """A span as people write it, in the largest unit that keeps it whole (hours below
    two days): 26h, 24h, 90s, 2d, 500ms, and 1.5s ("0.000277778h" said 1s)."""
    ms = round(delta.total_seconds() * 1000)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0 and not (unit == "d" and ms < 2 * size):
            return f"{ms // size}{unit}"
    return f"{ms}ms" if ms < 1000 else f"{ms / 1000:g}s"


def parse_when(text: str, *, now_: datetime | None = None) -> datetime:
    """A point in time as users write it: ISO-8601, epoch seconds, or a span ago (``30d``)."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
        if seconds > 1e11:
            raise UsageError(f"{text!r} looks like epoch milliseconds; give epoch seconds")
        return utc_ms(EPOCH + timedelta(seconds=seconds))
    if _SPAN.match(text):
        return utc_ms((now_ or now()) - parse_span(text))
    try:
        return parse_iso(text)
    except UsageError:
        raise UsageError(
            f"{text!r} is not a time; use ISO-8601 (2026-01-31T00:00:00Z), "
            "epoch seconds, or a span ago such as 30d"
        ) from None


@overload
def named(option: str, value: str, parse: Callable[[str], T]) -> T: ...
@overload
def named(option: str, value: str | None, parse: Callable[[str], T]) -> T | None: ...
def named(option: str, value: str | None, parse: Callable[[str], T]) -> T | None:
    """Parse one option's text (None stays None); its errors name the option (exit 2)."""
    if value is None:
        return None
    try:
        return parse(value)
    except UsageError as exc:
        raise UsageError(f"{option}: {exc}") from None
