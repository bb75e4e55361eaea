"""How an exception ends the process: one line on stderr and a documented exit code.

The library raises ``ArchiverError``s and never exits; this is the one place that
maps them (and the few others a command can meet) to what cron sees: exit codes 0,
1, 2, 3 and 130 as the README documents, and never a bare traceback.
"""

from __future__ import annotations

import os
import sys
import traceback

from archiver.errors import ArchiverError, first_line
from archiver.logs import error_line


def report(exc: BaseException, *, verbose: bool, log_format: str) -> int:
    """Print ``exc`` as the one line it deserves and return the exit code."""
    if isinstance(exc, BrokenPipeError):
        # `archiver query | head`: the reader has all it wanted.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    if isinstance(exc, KeyboardInterrupt):  # Ctrl-C, or SIGTERM as errors.Stopped
        _say(str(exc) or "interrupted", log_format)
        return 130
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, ArchiverError):
        _say(str(exc), log_format)
        return exc.exit_code
    # The last line of defence: an error nobody translated is still one line.
    _say(f"unexpected {type(exc).__name__}: {first_line(exc)} (run with -v for details)",
         log_format)  # fmt: skip
    return 1


def _say(message: str, log_format: str) -> None:
    sys.stderr.write(error_line(message, log_format) + "\n")
    sys.stderr.flush()
