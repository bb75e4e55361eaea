"""How an exception ends the process: one line on stderr and a documented exit code.

The library raises ``ArchiverError``s and never exits; this is the one place that
maps them (and the few others a command can meet) to what cron sees: exit codes 0,
1, 2, 3 and 130 as the README documents, and never a bare traceback. The root
command's group (``OneLineUsageErrors``) sends click's own usage errors here too.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from archiver.errors import ArchiverError, first_line
from archiver.logs import error_line
from archiver.secrets import redact


def report(exc: BaseException, *, verbose: bool, log_format: str) -> int:
    """Print ``exc`` as the one line it deserves and return the exit code.

    With ``-v`` the traceback comes too: before the line in text mode, inside the one
    JSON object under ``--log-format json`` (so a log shipper still reads one object).
    """
    if isinstance(exc, BrokenPipeError):
        # `archiver query | head`: the reader has all it wanted.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    trace = "".join(traceback.format_exception(exc)) if verbose else None
    if isinstance(exc, KeyboardInterrupt):  # Ctrl-C, or SIGTERM as errors.Stopped
        say(str(exc) or "interrupted", log_format)
        return 130
    if isinstance(exc, ArchiverError):
        say(str(exc), log_format, trace=trace)
        return exc.exit_code
    # The last line of defence: an error nobody translated is still one line.
    say(f"unexpected {type(exc).__name__}: {first_line(exc)} (run with -v for details)",
        log_format, trace=trace)  # fmt: skip
    return 1


def usage(exc: Any, args: list[str]) -> int:
    """A usage error from option parsing (click's), as one line; exit 2 (or its code).

    The root callback may not have run, so ``--log-format`` is read from the words.
    """
    json_logs = any(
        a == "--log-format=json" or (a == "--log-format" and nxt == "json")
        for a, nxt in zip(args, [*args[1:], ""], strict=True)
    )
    message = exc.format_message().strip().splitlines()
    say(" ".join(line.strip() for line in message), "json" if json_logs else "text")
    return int(exc.exit_code)


def say(message: str, log_format: str, *, trace: str | None = None) -> None:
    if trace and log_format != "json":
        sys.stderr.write(redact(trace))
    line = error_line(redact(message), log_format, trace=redact(trace) if trace else None)
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class OneLineUsageErrors(TyperGroup):
    """The root command: click's usage errors become the documented one line (or one
    JSON object under --log-format json), exit 2, instead of a boxed panel."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        words = list(sys.argv[1:] if args is None else args)
        try:
            rv = super().main(words, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.TyperException as exc:  # click's usage errors, as Typer carries them
            if type(exc).__name__ == "NoArgsIsHelpError":  # plain `archiver`: the help
                typer.echo(exc.format_message(), err=True)
                rv = 2
            else:
                rv = usage(exc, words)
        except typer.Abort:
            rv = 130
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)
