"""From the sync's command-line words to ``SyncOptions`` and ``ClientSettings``.

One place, so that `sync`, `demo` (and any caller of the library) resolve the region,
the default source name and the time options the same way. The region is resolved as
the client resolves it: ``--region``, ``AWS_REGION``, ``AWS_DEFAULT_REGION``, then the
profile's own ``region`` in ``~/.aws/config``; the source is named after that region.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from archiver.errors import UsageError, parsed
from archiver.sync.client import (
    DEFAULT_ATTEMPTS,
    DEFAULT_CALL_TIMEOUT,
    ClientSettings,
    default_source_name,
    profile_region,
    resolve_region,
)
from archiver.timeutil import EPOCH, iso, now, parse_span, parse_when


@dataclass(frozen=True)
class SyncWords:
    """The sync's options as the user typed them (times and spans still text)."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    source: str | None = None
    since: str | None = None
    until: str | None = None
    window: str | None = None
    lookback: str = "15m"
    workers: int = 32
    max_rps: float | None = None
    max_attempts: int = DEFAULT_ATTEMPTS
    full: bool = False
    call_timeout: float = DEFAULT_CALL_TIMEOUT
    incomplete_retry_days: float = 7.0
    access_key: str | None = None  # only for the in-process emulator (demo, benchmarks)
    secret_key: str | None = None


def build(
    words: SyncWords, *, started: datetime | None = None
) -> tuple[SyncOptions, ClientSettings]:
    """The run's options and the client's settings; bad words are a UsageError."""
    started = started or now()

    def when(text: str) -> datetime:
        return parse_when(text, now_=started)

    client = ClientSettings(
        region=words.region,
        profile=words.profile,
        endpoint_url=words.endpoint_url,
        max_attempts=words.max_attempts,
        call_timeout=words.call_timeout,
        pool_size=words.workers + 2,
        access_key=words.access_key,
        secret_key=words.secret_key,
    )
    region = resolve_region(client, None) or profile_region(client)
    lookback = parsed("--lookback", words.lookback, parse_span)
    since = parsed("--since", words.since, when)
    until = parsed("--until", words.until, when)
    window = parsed("--window", words.window, parse_span)
    _check_range(since, until, window, started)
    opts = SyncOptions(
        source=words.source or default_source_name(client, region),
        region=region,
        endpoint_url=words.endpoint_url,
        since=since,
        until=until,
        window=window,
        lookback=lookback if lookback is not None else timedelta(minutes=15),
        workers=words.workers,
        max_rps=words.max_rps,
        full=words.full,
        incomplete_retry_days=words.incomplete_retry_days,
        started=started,
    )
    return opts, client


def _check_range(
    since: datetime | None, until: datetime | None, window: timedelta | None, started: datetime
) -> None:
    """Refuse a range that can only read nothing, or that would plan without end."""
    if since is not None and since > started:
        raise UsageError(f"--since is in the future ({since:%Y-%m-%dT%H:%M:%SZ}); nothing to read")
    if since is not None and until is not None and until < since:
        raise UsageError("--until is before --since; nothing to read")
    if window is not None:
        check_windows(since, until or started, window)


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
