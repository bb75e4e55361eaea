"""What a sync run will read: its options and the windows planned from the watermark.

Apart from the run itself (``sync``) because it needs neither the archive's libraries
nor botocore: the command line resolves its options with it, and a run's first pages
are guessed with it (``head_start``) before SQLAlchemy has loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from archiver.errors import UsageError
from archiver.timeutil import EPOCH, iso


@dataclass(frozen=True)
class SyncOptions:
    source: str
    region: str | None = None
    endpoint_url: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    window: timedelta | None = None
    lookback: timedelta = timedelta(minutes=15)
    workers: int = 32  # the cap on GetOperation calls in flight (``concurrency``)
    adaptive: bool = True  # False: exactly ``workers`` in flight (benchmarks compare)
    max_rps: float | None = None
    full: bool = False
    incomplete_retry_days: float = 7.0  # how long a listed, unfindable operation is retried
    started: datetime | None = None  # "now" for this run: the default end, and spans' origin


@dataclass(frozen=True)
class Plan:
    source: str
    watermark: datetime | None
    windows: list[tuple[datetime, datetime]]
    resume: tuple[datetime, datetime, str] | None

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "watermark": iso(self.watermark) if self.watermark else None,
            "windows": [{"start": iso(s), "end": iso(e)} for s, e in self.windows],
            "resumes_interrupted_pass": bool(
                self.resume and self.windows and self.resume[:2] == self.windows[0]
            ),
        }


def plan_windows(
    start: datetime, end: datetime, window: timedelta | None
) -> list[tuple[datetime, datetime]]:
    """Cut [start, end] into windows of ``window`` (one window when None)."""
    if start > end:
        return []
    if window is None or window <= timedelta(0):
        return [(start, end)]
    out = []
    cursor = start
    while cursor < end:
        nxt = min(cursor + window, end)
        out.append((cursor, nxt))
        cursor = nxt
    return out or [(start, end)]


#: More windows than this in one run is a mistake (a window of 1s over a day plans
#: 86,400 passes, each reading the whole list under P2), not a plan.
MAX_WINDOWS = 10_000


def check_windows(start: datetime | None, end: datetime, window: timedelta) -> None:
    """``--window`` is at least a second, and cuts a range into at most MAX_WINDOWS."""
    if window < timedelta(seconds=1):
        raise UsageError("--window must be at least 1s")
    if start is not None and (end - start) / window > MAX_WINDOWS:
        raise UsageError(
            f"--window {window} cuts the range into more than {MAX_WINDOWS:,} windows; "
            "use a larger --window, or cut the backfill into runs with --since/--until"
        )


def plan(
    opts: SyncOptions,
    watermark: datetime | None,
    resume: tuple[datetime, datetime, str] | None,
    *,
    started: datetime,
) -> Plan:
    if opts.full or watermark is None:
        start = opts.since or EPOCH
    else:
        start = max(watermark - opts.lookback, EPOCH)
        if opts.since and opts.since < start:
            start = opts.since
    end = opts.until or started
    if opts.window is not None:
        check_windows(start, end, opts.window)
    return Plan(opts.source, watermark, plan_windows(start, end, opts.window), resume)
