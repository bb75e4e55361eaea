"""From the sync's command-line words to ``SyncOptions`` and ``ClientSettings``.

One place, so that `sync`, `demo` (and any caller of the library) resolve the region,
the default source name and the time options the same way. The region is resolved as
the client resolves it: ``--region``, ``AWS_REGION``, ``AWS_DEFAULT_REGION``, then the
profile's own ``region`` in ``~/.aws/config``; the source is named after that region.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from archiver.cloudmap import (
    DEFAULT_ATTEMPTS,
    DEFAULT_CALL_TIMEOUT,
    ClientSettings,
    default_source_name,
    profile_region,
    resolve_region,
)
from archiver.errors import UsageError, parsed
from archiver.planning import SyncOptions, check_windows
from archiver.timeutil import now, parse_span, parse_when


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
