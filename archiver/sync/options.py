"""The sync's options: one definition, checked the same from the command line and a config.

``SPECS`` names every option a sync takes, with its type, default and range. The
command line (``cli.sync``) and a config's ``[defaults]`` / ``[[source]]`` tables
(``fleet``) both hand their values to ``build``, which checks each one here — the
type (a config's ``full = "no"`` is refused, not read as true), the range, an
unknown name with a "did you mean" — then parses times and spans and resolves the
region as the client does: ``--region``, ``AWS_REGION``, ``AWS_DEFAULT_REGION``,
then the profile's own ``region``. The source is named after that region.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

from archiver.errors import UsageError, first_line
from archiver.guards import mask_url, printable
from archiver.timeutil import EPOCH, iso, named, now, parse_span, parse_when, span_text


@dataclass(frozen=True)
class Spec:
    """One option: its type, its default, and the range a number must be in."""

    kind: type
    default: Any = None
    low: float | None = None
    high: float | None = None


#: Every option of a sync. Times and spans stay text here; ``build`` parses them.
SPECS: dict[str, Spec] = {
    "region": Spec(str),
    "profile": Spec(str),
    "endpoint_url": Spec(str),
    "source": Spec(str),
    "since": Spec(str),
    "until": Spec(str),
    "window": Spec(str),
    # Wide: under P2 every pass reads every page whatever its window, so a wider window
    # costs no list call, and it covers a service clock behind ours or a late listing.
    "lookback": Spec(str, "2h"),
    "workers": Spec(int, 32, 1, 64),
    "max_rps": Spec(float, None, 0.1, 10_000),
    # None: AWS_MAX_ATTEMPTS, then the profile's max_attempts, then DEFAULT_ATTEMPTS
    "max_attempts": Spec(int, None, 1, 50),
    "call_timeout": Spec(float, 60.0, 1, 3600),
    "incomplete_retry_days": Spec(float, 7.0, 0, 3650),
    "full": Spec(bool, False),
    "retry_gone": Spec(bool, False),
    # a role to assume through STS (a config's [[source]] or [defaults]; an organization's
    # sources name theirs), refreshed before it expires during a long run
    "role_arn": Spec(str),
    "external_id": Spec(str),
    "session_name": Spec(str, "archiver"),
}


NAME_WIDTH = 255  #: sources.name's; store.models may not import this, a test holds them equal

#: The options that reach ClientSettings and SyncOptions as they are (the rest are parsed).
_CLIENT_OPTIONS = ("region", "profile", "endpoint_url", "max_attempts", "call_timeout",
                   "role_arn", "external_id", "session_name")  # fmt: skip
_RUN_OPTIONS = ("endpoint_url", "workers", "max_rps", "full", "retry_gone",
                "incomplete_retry_days")  # fmt: skip


def flag(name: str, *, key: bool = False) -> str:
    """How an option is spelled: ``--max-rps`` for ``max_rps`` on the command line, the
    name itself as a config's ``key``."""
    return name if key else "--" + name.replace("_", "-")


def check(name: str, value: Any, *, context: str = "", key: bool | str = False) -> Any:
    """``value`` if it is of the option's type and in its range, else UsageError (exit
    2). ``key``: the value comes from a config, after ``context`` (the file and table);
    named as written there (``key`` itself, when text), else as ``--flag``."""
    shown = key if isinstance(key, str) else flag(name, key=key)
    if (spec := SPECS.get(name)) is None:
        near = difflib.get_close_matches(name, SPECS, n=1)
        hint = f"; did you mean {flag(near[0], key=bool(key))!r}?" if near else ""
        raise UsageError(f"{context}unknown {'key' if key else 'option'} {shown!r}{hint}")
    if value is None:
        return spec.default
    if name in ("since", "until") and isinstance(value, date):  # TOML's date or date-time
        value = value.isoformat()  # read as typed text is: without an offset, UTC
    kinds = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}[spec.kind]
    if not isinstance(value, kinds) or (spec.kind is not bool and isinstance(value, bool)):
        words = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}
        raise UsageError(f"{context}{shown}: {value!r} is not {words[spec.kind]}")
    if spec.kind is str and not str(value).strip():  # "$VAR" unset: never the default
        raise UsageError(f"{context}{shown} is empty: give a value, or leave it out")
    if spec.kind is str and printable(str(value)) != value:  # a name would forge a printed line
        raise UsageError(f"{context}{shown}: {value!r} holds a control character")
    number = cast(float, value)  # as given: an int too large for a float is out of range
    if spec.low is not None and spec.high is not None and not spec.low <= number <= spec.high:
        raise UsageError(f"{context}{shown}: {value!r} is not from {spec.low:g} to {spec.high:g}")
    return float(number) if spec.kind is float else value


@dataclass(frozen=True)
class ClientSettings:
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    max_attempts: int | None = None  # None: as every AWS SDK resolves it (``client``)
    call_timeout: float = SPECS["call_timeout"].default  # connect + whole answer, per attempt
    #: botocore's retry mode; "adaptive" (its client-side rate limiter) is measured
    #: against the sync's own AIMD by bench/throttled.py, and lost.
    retry_mode: str | None = None  # None: AWS_RETRY_MODE, the profile's, or "standard"
    access_key: str | None = None  # only for the in-process emulator (demo, benchmarks)
    secret_key: str | None = None
    role_arn: str | None = None  # assumed through STS, refreshed as it expires
    external_id: str | None = None
    session_name: str = "archiver"


def session(settings: ClientSettings, botocore_session: Any = None) -> Any:
    """A boto3 session for the profile; a missing or broken profile is bad input."""
    import boto3
    from botocore.exceptions import ConfigParseError, ProfileNotFound

    try:
        return boto3.Session(profile_name=settings.profile, botocore_session=botocore_session)
    except ProfileNotFound as exc:  # named by --profile, a config or AWS_PROFILE
        raise UsageError(f"AWS profile {exc.kwargs.get('profile')!r} not found") from None
    except ConfigParseError as exc:
        raise UsageError(f"cannot read the AWS config: {first_line(exc)}") from None


def resolve_region(settings: ClientSettings, profile_region: str | None) -> str | None:
    """--region, then AWS_REGION (which boto3 ignores), AWS_DEFAULT_REGION, the profile's."""
    environment = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return settings.region or environment or profile_region


def build(values: Mapping[str, Any], *, started: datetime | None = None, context: str = "",
          key: bool = False, credentials: tuple[str, str] | None = None,
          ) -> tuple[SyncOptions, ClientSettings]:  # fmt: skip
    """The run's options and the client's settings from ``values`` (option → value;
    a missing or None value takes the default). Every value is checked (``check``,
    which names it as ``context`` and ``key`` say);
    ``credentials`` are for the in-process emulator only (demo, benchmarks)."""
    for name in values:
        check(name, None, context=context, key=key)  # an unknown name is refused
    v = {name: check(name, values.get(name), context=context, key=key) for name in SPECS}

    def where(name: str) -> str:
        return context + flag(name, key=key)

    if v["endpoint_url"]:
        check_endpoint(where("endpoint_url"), v["endpoint_url"])
    started = started or now()

    def when(text: str) -> datetime:
        return parse_when(text, now_=started)

    access, secret = credentials or (None, None)
    client = ClientSettings(**{k: v[k] for k in _CLIENT_OPTIONS}, access_key=access,
                            secret_key=secret)  # fmt: skip
    # the profile's own region last, as the client would use it (``session`` reports a
    # broken config: creating the session parses it)
    region = resolve_region(client, None) or session(client).region_name
    since = named(where("since"), v["since"], when)
    until = named(where("until"), v["until"], when)
    window = named(where("window"), v["window"], parse_span)
    _check_range(since, until, window, started, context, key)
    # a source per account and region, named <profile>@<region> (docs/design.md)
    profile = client.profile or os.environ.get("AWS_PROFILE") or "default"
    if len(source := v["source"] or f"{profile}@{region or 'unknown-region'}") > NAME_WIDTH:
        raise UsageError(f"{where('source')}: a source's name is at most {NAME_WIDTH} characters")
    opts = SyncOptions(
        **{k: v[k] for k in _RUN_OPTIONS},
        source=source,
        region=region,
        since=since,
        until=until,
        window=window,
        lookback=named(where("lookback"), v["lookback"], parse_span),  # SPECS: never None
        started=started,
    )
    return opts, client


def check_endpoint(name: str, url: str) -> None:
    """botocore refuses a malformed endpoint only when the client is made, as a ValueError
    that says neither which option nor which source; one it takes (ftp://) fails later."""
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number
        ok = False
    if not ok:
        raise UsageError(f"{name}: {mask_url(url)!r} is not an http:// or https:// URL")


def _check_range(since: datetime | None, until: datetime | None, window: timedelta | None,
                 started: datetime, context: str, key: bool) -> None:  # fmt: skip
    """Refuse a range that can only read nothing, or that would plan without end; named
    as the command line or the config (``context``, a file and a table) names it."""
    s, u = flag("since", key=key), flag("until", key=key)
    for name, when in ((s, since), (u, until)):
        if when is not None and when < EPOCH:
            raise UsageError(
                f"{context}{name} {when:%Y-%m-%d} is before 1970: the service's dates start there"
            )
    if since is not None and since > started:
        raise UsageError(f"{context}{s} is in the future ({since:%Y-%m-%dT%H:%M:%SZ}); nothing "
                         "to read")  # fmt: skip
    if until is not None and until > started:
        raise UsageError(f"{context}{u} is in the future ({until:%Y-%m-%dT%H:%M:%SZ}); a "
                         "watermark there would skip what happens until then: leave "
                         f"{u} out")  # fmt: skip
    if since is not None and until is not None and until < since:
        raise UsageError(f"{context}{u} is before {s}; nothing to read")
    if window is not None:
        check_windows(since, until or started, window, context, key=key)


@dataclass(frozen=True)
class SyncOptions:
    source: str
    region: str | None = None
    endpoint_url: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    window: timedelta | None = None
    lookback: timedelta = timedelta(hours=2)
    workers: int = 32  # the cap on GetOperation calls in flight (``client.AdaptiveLimit``)
    adaptive: bool = True  # False: exactly ``workers`` in flight (benchmarks compare)
    max_rps: float | None = None
    full: bool = False
    retry_gone: bool = False  # ask again for operations given up on as gone
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
    """Cut [start, end] into windows of ``window`` (at least 1s: ``check_windows``)."""
    if start > end:
        return []
    if window is None:
        return [(start, end)]
    out, cursor = [], start
    while cursor < end:
        nxt = min(cursor + window, end)
        out.append((cursor, nxt))
        cursor = nxt
    return out or [(start, end)]


#: More windows than this in one run is a mistake (a window of 1s over a day plans
#: 86,400 passes, each reading the whole list under P2), not a plan.
MAX_WINDOWS = 10_000


def check_windows(start: datetime | None, end: datetime, window: timedelta, context: str = "",
                  *, key: bool = False) -> None:  # fmt: skip
    """``--window`` is at least a second, and cuts a range into at most MAX_WINDOWS."""
    if window < timedelta(seconds=1):
        raise UsageError(f"{context}{flag('window', key=key)} must be at least 1s")
    if start is not None and (end - start) / window > MAX_WINDOWS:
        raise UsageError(
            f"{context}{flag('window', key=key)} {span_text(window)} cuts the range into more than "
            f"{MAX_WINDOWS:,} windows; use a larger one, or cut the backfill into runs with "
            f"{flag('since', key=key)}/{flag('until', key=key)}"
        )


def plan(opts: SyncOptions, watermark: datetime | None,
         resume: tuple[datetime, datetime, str] | None, *, started: datetime) -> Plan:  # fmt: skip
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
