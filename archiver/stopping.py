"""Stop requests (SIGTERM from cron or systemd, Ctrl-C), taken only at a wait, never
inside a database call, whichever thread the kernel hands the signal to; exit 128 +
the signal's number. Why: docs/design.md, "The sync, step by step", step 5.
"""

import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from archiver.errors import Stopped

#: How often a wait looks for a stop request, in seconds.
POLL = 0.2

_reason: str | None = None  # None: no request; "" is Ctrl-C ("interrupted")
_signum = signal.SIGINT
_waiting = False  # the main thread waits for others: a stop may be raised at once
_at_once = False
_late = False  # a read's stop that a finalizer swallowed: taken as the command ends


def _handler(signum: int, _frame: object) -> None:
    global _reason, _signum
    insisted = _reason is not None  # a second request stops at once, wherever it lands
    _signum = signal.Signals(signum)
    _reason = "" if signum == signal.SIGINT else f"stopped by signal {_signum.name}"
    if _waiting or _at_once or insisted:
        raise Stopped(_reason)


def _unraisable(unraisable: Any) -> None:
    """Python prints a stop raised in a finalizer, with a traceback, and goes on: here it
    is quiet, and taken at the sync's next wait, or as a read command ends (``ending``)."""
    global _late
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        _late = _at_once
    else:
        sys.__unraisablehook__(unraisable)


def install(*, at_once: bool = False) -> None:
    """Route SIGINT and SIGTERM here for the rest of the process.

    The sync takes a stop only at its waits. ``at_once`` is for commands that only
    read the archive, such as export: a stop is raised wherever it lands, as Ctrl-C
    would be, so that their cleanup (a temporary file) runs and they exit 130 or 143.
    """
    global _reason, _signum, _at_once, _late
    _reason, _signum, _late = None, signal.SIGINT, False
    _at_once, sys.unraisablehook = at_once, _unraisable
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


def sleep(seconds: float) -> None:
    """A pool thread's pause (``--max-rps``), cut short by a stop request: its next call
    is then refused (``sync.wire``). A pause at 0.1 call a second, queued behind others,
    kept a stopped run alive for a minute or more."""
    end = time.monotonic() + seconds
    while not requested() and (left := end - time.monotonic()) > 0:
        time.sleep(min(left, POLL))


def check() -> None:
    """Raise a stop already requested as errors.Stopped (a KeyboardInterrupt)."""
    if _reason is not None:
        raise Stopped(_reason)


def ending() -> None:
    """A read command's last step: a stop its finalizers swallowed ends it 130 or 143."""
    if _late:
        check()


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


def wait_for(future: Future[Any]) -> Any:
    """The future's result, or a stop request raised here (never inside a database call):
    how the run waits for its pool's results, and the client for its credentials. The
    wait polls, so that a signal the kernel handed to another thread is seen."""
    with waiting():
        while True:
            try:
                return future.result(timeout=POLL)
            except TimeoutError:
                check()
