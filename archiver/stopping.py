"""Stop requests (SIGTERM from cron or systemd, Ctrl-C), taken only where taking them
is safe, whichever thread the kernel hands the signal to.

Why: an exception raised from a signal handler lands wherever the main thread is.
Inside a database call it leaves the connection mid-command: psycopg then refuses
the rollback ("another command is already in progress") or SQLAlchemy's pre-ping
cannot restore autocommit, and recording the run as interrupted fails with exit 1.
So a signal only records the request. It is raised at once while the main thread
waits for other threads (``waiting``), and every wait, on any thread, polls for it
(``check``): a wait without a timeout would never see a signal the kernel handed to
another thread (a fleet once ran on after SIGTERM and exited 0). A
second request stops at once, for a user who will not wait for calls under way.

The exit code is 128 + the signal's number: 130 for SIGINT, 143 for SIGTERM.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from archiver.errors import Stopped

#: How often a wait looks for a stop request, in seconds.
POLL = 0.2

_reason: str | None = None  # None: no request; "" is Ctrl-C ("interrupted")
_signum = signal.SIGINT
_waiting = False  # the main thread waits for others: a stop may be raised at once
_at_once = False


def _handler(signum: int, _frame: object) -> None:
    global _reason, _signum
    insisted = _reason is not None  # a second request stops at once, wherever it lands
    _signum = signal.Signals(signum)
    _reason = "" if signum == signal.SIGINT else f"stopped by signal {_signum.name}"
    if _waiting or _at_once or insisted:
        raise Stopped(_reason)


def install(*, at_once: bool = False) -> None:
    """Route SIGINT and SIGTERM here for the rest of the process.

    The sync takes a stop only at its waits. ``at_once`` is for commands that only
    read the archive, such as export: a stop is raised wherever it lands, as Ctrl-C
    would be, so that their cleanup (a temporary file) runs and they exit 130 or 143.
    """
    global _reason, _signum, _at_once
    _reason, _signum = None, signal.SIGINT
    _at_once = at_once
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _handler)


def requested() -> bool:
    """Whether a stop was asked for: API calls in flight poll this to abandon
    themselves (``sync.wire``), so a stop never waits for a slow server."""
    return _reason is not None


def reason() -> str:
    """What stopped the run, for its one line: the signal's name, or "interrupted"."""
    return _reason or "interrupted"


def exit_code() -> int:
    """128 + the number of the signal that stopped the process (130 without one)."""
    return 128 + int(_signum)


def check() -> None:
    """Raise a stop already requested as errors.Stopped (a KeyboardInterrupt)."""
    if _reason is not None:
        raise Stopped(_reason)


@contextmanager
def waiting() -> Iterator[None]:
    """Around a wait on other threads: a stop already requested is raised here; one
    that arrives during the main thread's wait is raised at once."""
    global _waiting
    check()
    main = threading.current_thread() is threading.main_thread()
    if main:
        _waiting = True
    try:
        yield
    finally:
        if main:
            _waiting = False
