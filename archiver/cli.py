"""The `archiver` command line: thin commands over the library.

Every command is options → one library call → render → exit code. Errors the tool
understands are ``ArchiverError``s; ``_guarded`` prints them as one line on stderr and
exits with their code (ARCHITECTURE.md, "CLI contract"). Heavy imports (boto3, alembic,
the emulator) happen inside the commands that need them.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer

from archiver import __version__
from archiver.errors import ArchiverError

log = logging.getLogger("archiver")

app = typer.Typer(
    name="archiver",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="Create, inspect and migrate the archive's schema (Alembic).")
app.add_typer(db_app, name="db")


class LogFormat(StrEnum):
    text = "text"
    json = "json"


@dataclass
class Settings:
    db: str
    verbose: bool
    quiet: bool
    log_format: str


F = TypeVar("F", bound=Callable[..., Any])


def _guarded(fn: F) -> F:
    """Map the tool's errors to one line on stderr and their exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.get("ctx") or next(a for a in args if isinstance(a, typer.Context))
        settings: Settings | None = ctx.find_object(Settings)
        verbose = settings.verbose if settings else False
        log_format = settings.log_format if settings else "text"
        from archiver.logs import error_line

        try:
            return fn(*args, **kwargs)
        except ArchiverError as exc:
            if verbose:
                traceback.print_exc(file=sys.stderr)
            typer.echo(error_line(str(exc), log_format), err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo(error_line("interrupted", log_format), err=True)
            raise typer.Exit(130) from None
        except Exception as exc:  # the last line of defence: never a bare traceback
            if verbose:
                traceback.print_exc(file=sys.stderr)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            msg = f"unexpected {type(exc).__name__}: {first} (run with -v for details)"
            typer.echo(error_line(msg, log_format), err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _settings(ctx: typer.Context) -> Settings:
    return ctx.ensure_object(Settings) if ctx.obj is None else ctx.obj


def _version(value: bool) -> None:
    if value:
        typer.echo(f"archiver {__version__}")
        raise typer.Exit()


DbOption = Annotated[
    str,
    typer.Option(
        "--db",
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
        LogFormat, typer.Option("--log-format", help="Format of messages on stderr.")
    ] = LogFormat.text,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Keep a permanent, queryable history of AWS Cloud Map operations.

    Exit codes: 0 success; 1 the work failed; 2 bad input; 3 another sync holds the
    source's lock; 130 interrupted.
    """
    from archiver.logs import configure

    ctx.obj = Settings(db=db, verbose=verbose, quiet=quiet, log_format=log_format.value)
    configure(verbose=verbose, quiet=quiet, log_format=log_format.value)


# --- db ---------------------------------------------------------------------------------


@db_app.command("upgrade")
@_guarded
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Create the archive or bring it to the newest schema (safe to repeat)."""
    from archiver import db

    settings = _settings(ctx)
    db.upgrade(settings.db, revision)
    if not settings.quiet:
        typer.echo(f"{db.describe(settings.db)} is at revision {db.current(settings.db)}", err=True)


@db_app.command("downgrade")
@_guarded
def db_downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision; `base` removes every table.")],
) -> None:
    """Take the schema back to an older revision (data in dropped tables is lost)."""
    from archiver import db

    settings = _settings(ctx)
    db.downgrade(settings.db, revision)
    if not settings.quiet:
        now = db.current(settings.db) or "base (no schema)"
        typer.echo(f"{db.describe(settings.db)} is at revision {now}", err=True)


@db_app.command("current")
@_guarded
def db_current(ctx: typer.Context) -> None:
    """Print the archive's schema revision, and whether it is the one this archiver needs."""
    from archiver import db

    settings = _settings(ctx)
    rev = db.current(settings.db)
    mark = "(head)" if rev == db.HEAD else f"(this archiver needs {db.HEAD})"
    typer.echo(f"{rev or 'base'} {mark}")


# --- status -----------------------------------------------------------------------------


@app.command()
@_guarded
def status(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Per source: watermark, last runs and their counts, archive totals by status and type."""
    from archiver import db
    from archiver.status import summarize, to_text

    engine = db.open_archive(_settings(ctx).db)
    try:
        summary = summarize(engine, source=source)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        typer.echo(to_text(summary))


def main() -> None:
    """Console-script entry point."""
    app()
