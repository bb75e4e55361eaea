"""Errors that the CLI turns into one line on stderr and a documented exit code.

The library raises these instead of calling ``sys.exit`` so that it stays importable
and testable; ``cli.app.report`` is the only place that maps them to exit codes.
"""


class ArchiverError(Exception):
    """Base of the tool's own errors; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(ArchiverError):
    """Bad input: options, filters, dates, an archive in the wrong state (exit 2)."""

    exit_code = 2


class FilterError(UsageError):
    """A filter breaks a rule of docs/filters.md; printed as ``InvalidInput: …``."""

    def __str__(self) -> str:
        return f"InvalidInput: {self.args[0]}"


class WorkFailed(ArchiverError):
    """The work itself failed: API errors after retries, database errors (exit 1)."""


class LockHeld(ArchiverError):
    """Another live sync holds this source's lock (exit 3)."""

    exit_code = 3


class Interrupted(ArchiverError):
    """SIGINT/SIGTERM stopped a run; pages still in flight were not stored (exit 130 or
    143: 128 + the signal's number, as ``stopping.exit_code`` says)."""

    exit_code = 130


class Stopped(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt, and caught with it.

    Why not an ArchiverError: libraries clean up after KeyboardInterrupt only. psycopg
    cancels the query in flight and leaves the connection usable; an ordinary exception
    raised mid-query left it busy, so recording the run as interrupted failed (exit 1).
    """


class TokenRefused(WorkFailed):
    """The service refused a NextToken it once issued (the sync starts the pass over)."""


def first_line(exc: BaseException | None) -> str:
    """An exception's first line, or its type's name when it has no message."""
    text = str(exc).strip() if exc is not None else ""
    return text.splitlines()[0] if text else type(exc).__name__
