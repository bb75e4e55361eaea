"""Stop requests for the sync (SIGTERM from cron or systemd, Ctrl-C), taken only
where taking them is safe.

Why: an exception raised from a signal handler lands wherever the main thread is.
Inside a database call it leaves the connection mid-command: psycopg then refuses
the rollback ("another command is already in progress") or SQLAlchemy's pre-ping
cannot restore autocommit, and recording the run as interrupted fails with exit 1.
So a signal only records the request. It is raised at once while the main thread
is blocked waiting for API calls, and otherwise at the next wait, between database
calls. A request that arrives while the last page is written lets the run finish;
a second request stops at once, for a user who will not wait for calls under way.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from archiver.errors import Stopped

_reason: str | None = None  # None: no request; "" is Ctrl-C ("interrupted")
_waiting = False


def _handler(signum: int, _frame: object) -> None:
    global _reason
    insisted = _reason is not None  # a second request stops at once, wherever it lands
    _reason = "" if signum == signal.SIGINT else f"stopped by signal {signal.Signals(signum).name}"
    if _waiting or insisted:
        raise Stopped(_reason)


def install(*, at_once: bool = False) -> None:
    """Route SIGINT and SIGTERM here for the rest of the process.

    The sync takes a stop only at its waits (``waiting``). ``at_once`` is for commands
    that only read the archive, such as export: a stop is raised wherever it lands, as
    Ctrl-C would be, so that their cleanup (a temporary file) runs and they exit 130.
    """
    global _reason, _waiting
    _reason = None
    _waiting = at_once
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _handler)


def requested() -> bool:
    """Whether a stop was asked for: API calls in flight poll this to abandon
    themselves (``wire``), so a stop never waits for a slow server."""
    return _reason is not None


def reason() -> str:
    """What stopped the run, for its one line: the signal's name, or "interrupted"."""
    return _reason or "interrupted"


@contextmanager
def waiting() -> Iterator[None]:
    """Around a wait on other threads: a stop already requested, or one that arrives
    during the wait, is raised here as errors.Stopped (a KeyboardInterrupt)."""
    global _waiting
    if _reason is not None:
        raise Stopped(_reason)
    _waiting = True
    try:
        yield
    finally:
        _waiting = False
