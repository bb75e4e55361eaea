"""The `archiver` command line: thin commands over the library.

Every command is options → one library call → render → exit code. Errors the tool
understands are ``ArchiverError``s; ``guarded`` prints them as one line on stderr and
exits with their code (docs/design.md, "The command line"). Heavy imports (boto3,
alembic, the emulator) happen inside the commands that need them.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer
from typer.core import TyperGroup

from archiver import DISTRIBUTION, __version__, stopping
from archiver.errors import ArchiverError, Interrupted, first_line
from archiver.guards import printable, redact, shown
from archiver.logs import error_line

if TYPE_CHECKING:
    from archiver.store.archive import Archive
    from archiver.sync.fleet import Config

log = logging.getLogger("archiver")


def report(exc: BaseException, *, verbose: bool, log_format: str) -> int:
    """Print ``exc`` as the one line it deserves and return the exit code.

    With ``-v`` the traceback comes too: before the line in text mode, inside the one
    JSON object under ``--log-format json`` (so a log shipper still reads one object).
    """
    if isinstance(exc, BrokenPipeError):
        stdout_gone()  # `archiver query | head`: the reader has all it wanted
        return 0
    try:  # what stdout holds goes now or never: not as "Exception ignored" (exit 120) at exit
        sys.stdout.flush()
    except OSError:  # a full disk
        stdout_gone()
    trace = "".join(traceback.format_exception(exc)) if verbose else None
    if isinstance(exc, (KeyboardInterrupt, Interrupted)):  # Ctrl-C, SIGTERM (errors.Stopped)
        signal_landed = isinstance(exc, KeyboardInterrupt)  # where says nothing of the tool
        say(str(exc) or "interrupted", log_format, trace=None if signal_landed else trace)
        return stopping.exit_code()  # 130 for SIGINT, 143 for SIGTERM
    if isinstance(exc, ArchiverError):
        say(str(exc), log_format, trace=trace)
        return exc.exit_code
    # The last line of defence: an error nobody translated is still one line. The OS's
    # (a full disk, a lost mount) is told in its own words: no surprise, nor a bug.
    kind = "" if isinstance(exc, OSError) else f"unexpected {type(exc).__name__}: "
    say(f"{kind}{first_line(exc)} (run with -v for details)", log_format, trace=trace)
    return 1


def stdout_gone() -> None:
    """Its reader left: what is still written (and flushed at exit) goes to /dev/null."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def echo(text: str) -> None:
    """A line whose reader may leave (`| head -1`): the command's exit code still tells.
    On a terminal, escaped as CSV and JSON are (``guards.shown``): `status --json`."""
    try:
        shown(sys.stdout).write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_gone()


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


def say(message: str, log_format: str, *, trace: str | None = None,
        source: str | None = None) -> None:  # fmt: skip
    if trace and log_format != "json":
        sys.stderr.write(redact(trace))
    message = redact(message) if log_format == "json" else printable(redact(message))
    line = error_line(message, log_format, trace=redact(trace) if trace else None, source=source)
    print(line, file=sys.stderr, flush=True)


def hoisted(root: Any, words: list[str]) -> list[str]:
    """``words`` with the root's own options moved before the subcommand, wherever they
    were typed: ``archiver sync --db X -v`` reads as ``archiver --db X -v sync``, as the
    AWS CLI takes its global options anywhere. The subcommand's own options are read
    from its definition, so that a value of one (``--source -v``) is never taken for a
    global option; stacked flags (``-vq``) move when every letter is a global flag."""
    takes_value = _options(root)
    front: list[str] = []
    i = 0
    while i < len(words) and words[i].startswith("-"):  # the root's options, already first
        i += 1 + (words[i] in takes_value and takes_value[words[i]] and "=" not in words[i])
    command, rest = root, words[i:]
    kept: list[str] = []
    while rest and getattr(command, "commands", None) and rest[0] in command.commands:
        command = command.commands[rest[0]]
        kept.append(rest.pop(0))
    local = _options(command)
    j = 0
    while j < len(rest) and rest[j] != "--":  # nothing after "--" moves
        word = rest[j]
        name = word.split("=", 1)[0]
        stacked = len(name) > 2 and name[0] == "-" != name[1]  # -vq: one-letter flags
        flags = [f"-{letter}" for letter in name[1:]] if stacked else [name]
        hoist = all(f in takes_value and f not in local and not (stacked and takes_value[f])
                    for f in flags)  # fmt: skip
        width = 2 if (takes_value if hoist else local).get(name) and "=" not in word else 1
        if hoist and j + width > len(rest):  # `sync --db` and no value: click's own words
            return words[:i] + front + [word]  # for it, not the command taken for one
        (front if hoist else kept).extend(rest[j : j + width])
        j += width
    return words[:i] + front + kept + rest[j:]


def _options(command: Any) -> dict[str, bool]:
    """A command's option names, each with whether it takes a value."""
    params = [p for p in getattr(command, "params", []) if p.param_type_name == "option"]
    return {name: not p.is_flag for p in params for name in (*p.opts, *p.secondary_opts)}


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
        words = hoisted(self, list(sys.argv[1:] if args is None else args))
        try:
            rv = super().main(words, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.TyperException as exc:  # click's usage errors, as Typer carries them
            if type(exc).__name__ == "NoArgsIsHelpError":  # plain `archiver`: the help
                typer.echo(exc.format_message(), err=True)
                rv = 2
            else:
                rv = usage(exc, words)
        except typer.Abort:
            rv = stopping.exit_code()
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=OneLineUsageErrors,
    name="archiver",
    rich_markup_mode=None,
    no_args_is_help=True,
    add_completion=True,  # --install-completion for bash, zsh, fish
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="Create, inspect and migrate the archive's schema (Alembic).")
app.add_typer(db_app, name="db")
sources_app = typer.Typer(help="List the archive's sources; retire or remove one.")
app.add_typer(sources_app, name="sources")
emulator_app = typer.Typer(
    help="A local Cloud Map operations API (JSON 1.1 and CBOR) for tests, demos and tooling."
)
app.add_typer(emulator_app, name="emulator")


@dataclass
class Settings:
    db: str
    verbose: bool
    quiet: bool
    log_format: str
    config: Config | None = None  # --config: the fleet of sources (sync --all)


F = TypeVar("F", bound=Callable[..., Any])


def guarded(fn: F) -> F:
    """Map the tool's errors to one line on stderr and their exit code (``report``). A
    driver error met mid-command (a page found damaged during a query) is translated
    as one met while opening the archive is."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            done = fn(*args, **kwargs)
            sys.stdout.flush()  # its last output may fail to be written too: told as any error
            stopping.ending()
            return done
        except (typer.Exit, typer.Abort):  # a command's own exit code, chosen on purpose
            raise
        except (Exception, KeyboardInterrupt) as exc:
            settings = settings_of(kwargs["ctx"])
            driver = sys.modules.get("sqlalchemy.exc")  # loaded if it raised; never loaded here
            if driver is not None and isinstance(exc, driver.DBAPIError):
                from archiver.store import db

                exc = db.translate(exc, settings.db)
            code = report(exc, verbose=settings.verbose, log_format=settings.log_format)
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]


def settings_of(ctx: typer.Context) -> Settings:
    return ctx.ensure_object(Settings) if ctx.obj is None else ctx.obj


def _version(value: bool) -> None:
    """The distribution and what a bug report needs: the libraries and SQLite in use."""
    if value:
        import sqlite3
        from importlib.metadata import version

        # the runtime dependencies: installed wherever this runs
        libraries = ", ".join(f"{name} {version(name)}" for name in
                              ("SQLAlchemy", "alembic", "boto3", "botocore"))  # fmt: skip
        typer.echo(f"{DISTRIBUTION} {__version__} ({libraries}, SQLite {sqlite3.sqlite_version})")
        raise typer.Exit()


DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        metavar="PATH|URL",
        envvar="ARCHIVER_DB",
        help="The archive: a SQLite file path, or a SQLAlchemy URL such as "
        "postgresql+psycopg://user@host/db.",
        show_default=True,
    ),
]


@app.callback()
def root(
    ctx: typer.Context,
    db: DbOption = "archive.db",
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Progress on stderr; tracebacks on errors.")
    ] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Errors only.")] = False,
    log_format: Annotated[
        Literal["text", "json"], typer.Option(help="Format of messages on stderr.")
    ] = "text",
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    config: Annotated[
        str | None,  # not a Path: '' would be the working directory ('.')
        typer.Option(
            envvar="ARCHIVER_CONFIG",
            metavar="PATH",
            help="A TOML file of sources (and the archive) for `sync --all` [default: "
            "ARCHIVER_CONFIG, else $XDG_CONFIG_HOME/archiver/config.toml when it exists]. "
            "Example: --config /etc/archiver/fleet.toml",
        ),
    ] = None,
) -> None:
    """Keep a permanent, queryable history of AWS Cloud Map operations.

    Exit codes: 0 success; 1 the work failed; 2 bad input; 3 another sync holds the
    source's lock; 130 interrupted by SIGINT, 143 by SIGTERM.
    """
    from archiver.logs import configure

    ctx.obj = settings = Settings(db, verbose, quiet, log_format)
    configure(verbose=verbose, quiet=quiet, log_format=log_format)
    if (found := _discovered_config() if config is None else config) is not None:
        from archiver.sync import fleet

        try:
            settings.config = fleet.load(found)
        except ArchiverError as exc:  # before any command runs: one line, exit 2
            raise typer.Exit(report(exc, verbose=verbose, log_format=log_format)) from None
        source = ctx.get_parameter_source("db")
        if settings.config.db and (source is None or source.name == "DEFAULT"):
            settings.db = settings.config.db  # --db and ARCHIVER_DB win over the config


def _discovered_config() -> Path | None:
    """$XDG_CONFIG_HOME/archiver/config.toml (~/.config/… by default), when it exists:
    the convention after --config and ARCHIVER_CONFIG."""
    home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    path = Path(home) / "archiver" / "config.toml"
    try:
        return path if path.is_file() else None
    except OSError:  # a home this user may not read (another user's, under sudo -u)
        return None


def open_archive(ctx: typer.Context) -> Archive:
    """The archive ``--db`` names, checked to be at the schema this archiver needs."""
    from archiver.store.archive import Archive

    return Archive.open(settings_of(ctx).db)


def terminal_width() -> int | None:
    """The width of the terminal stdout is, or None when it is not one (never cut)."""
    import shutil

    return shutil.get_terminal_size((80, 24)).columns if sys.stdout.isatty() else None
