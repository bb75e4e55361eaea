"""The `archiver` command line: thin commands over the library.

Every command is options → one library call → render → exit code. Errors the tool
understands are ``ArchiverError``s; ``guarded`` prints them as one line on stderr and
exits with their code (docs/design.md, "The command line"). Heavy imports (boto3,
alembic, the emulator) happen inside the commands that need them.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from archiver import DISTRIBUTION, __version__
from archiver.exits import OneLineUsageErrors

if TYPE_CHECKING:
    from archiver.archive import Archive
    from archiver.fleet import Config

log = logging.getLogger("archiver")


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
sources_app = typer.Typer(help="List the archive's sources, or remove one with all it holds.")
app.add_typer(sources_app, name="sources")
emulator_app = typer.Typer(
    help="A local Cloud Map operations API (JSON 1.1 and CBOR) for tests, demos and tooling."
)
app.add_typer(emulator_app, name="emulator")


class LogFormat(StrEnum):
    text = "text"
    json = "json"


@dataclass
class Settings:
    db: str
    verbose: bool
    quiet: bool
    log_format: str
    config: Config | None = None  # --config: the fleet of sources (sync --all)


F = TypeVar("F", bound=Callable[..., Any])


def guarded(fn: F) -> F:
    """Map the tool's errors to one line on stderr and their exit code (``exits``)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):  # a command's own exit code, chosen on purpose
            raise
        except (Exception, KeyboardInterrupt) as exc:
            from archiver.exits import report

            settings = settings_of(kwargs["ctx"])
            code = report(exc, verbose=settings.verbose, log_format=settings.log_format)
            raise typer.Exit(code) from None

    return wrapper  # type: ignore[return-value]


def settings_of(ctx: typer.Context) -> Settings:
    return ctx.ensure_object(Settings) if ctx.obj is None else ctx.obj


def _version(value: bool) -> None:
    """The distribution and what a bug report needs: the libraries and SQLite in use."""
    if value:
        import sqlite3
        from importlib.metadata import PackageNotFoundError, version

        def of(name: str) -> str:
            try:
                return version(name)
            except PackageNotFoundError:
                return "not installed"

        libraries = ", ".join(f"{name} {of(name)}" for name in
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
        LogFormat, typer.Option("--log-format", help="Format of messages on stderr.")
    ] = LogFormat.text,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="ARCHIVER_CONFIG",
            metavar="PATH",
            help="A TOML file of sources (and the archive) for `sync --all`.",
        ),
    ] = None,
) -> None:
    """Keep a permanent, queryable history of AWS Cloud Map operations.

    Exit codes: 0 success; 1 the work failed; 2 bad input; 3 another sync holds the
    source's lock; 130 interrupted.
    """
    from archiver.logs import configure

    ctx.obj = settings = Settings(db, verbose, quiet, log_format.value)
    configure(verbose=verbose, quiet=quiet, log_format=log_format.value)
    if config is not None:
        from archiver import fleet
        from archiver.errors import ArchiverError
        from archiver.exits import report

        try:
            settings.config = fleet.load(config)
        except ArchiverError as exc:  # before any command runs: one line, exit 2
            raise typer.Exit(report(exc, verbose=verbose, log_format=log_format.value)) from None
        source = ctx.get_parameter_source("db")
        if settings.config.db and (source is None or source.name == "DEFAULT"):
            settings.db = settings.config.db  # --db and ARCHIVER_DB win over the config


# --- db ---------------------------------------------------------------------------------


def open_archive(ctx: typer.Context, *, create_missing: bool = False) -> Archive:
    """The archive ``--db`` names, checked to be at the schema this archiver needs."""
    from archiver.archive import Archive

    return Archive.open(settings_of(ctx).db, create_missing=create_missing)


# --- status -----------------------------------------------------------------------------


@app.command()
@guarded
def status(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(metavar="NAME", help="Only this source.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    check: Annotated[
        bool,
        typer.Option("--check", help="Exit 1, one line per source, when one is stale or failing."),
    ] = False,
    max_age: Annotated[
        str, typer.Option("--max-age", metavar="SPAN", help="With --check: the stalest allowed.")
    ] = "26h",
) -> None:
    """Per source: watermark, last runs and their counts, archive totals by status and type.

    With --check, a verdict for cron and alerting instead: silent and exit 0 when
    every source's last successful sync is younger than --max-age and its latest run
    did not fail; otherwise one line per stale or failing source, exit 1.

    \b
    Example:
      archiver --db /var/lib/archiver/archive.db status --check --max-age 26h
    """
    from archiver.status import check_freshness, summarize, to_text
    from archiver.timeutil import parse_span

    age = parse_span(max_age) if check else None
    with open_archive(ctx) as archive:
        summary = summarize(archive, source=source)
    if age is not None:
        problems = check_freshness(summary, max_age=age)
        summary["check"] = {"ok": not problems, "max_age": max_age, "problems": problems}
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    elif age is None:
        typer.echo(to_text(summary))
    else:
        for line in summary["check"]["problems"]:
            typer.echo(line)
    if age is not None and summary["check"]["problems"]:
        raise typer.Exit(1)


def terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((80, 24)).columns


def db_given(ctx: typer.Context) -> bool:
    """Whether ``--db`` was typed on this command line (``ARCHIVER_DB`` does not count)."""
    source = ctx.find_root().get_parameter_source("db")
    return source is not None and source.name == "COMMANDLINE"


# The commands that read the archive (query, export, report) live in cli_read, those
# that talk to a Cloud Map API (sync, demo, emulator serve) in cli_api, and those that
# administer the archive (db, sources) in cli_admin; they register themselves on
# ``app``, and importing them here makes them part of it, in this order in --help.
from archiver import cli_read  # noqa: E402, F401, I001
from archiver import cli_admin, cli_api  # noqa: E402, F401


def main() -> None:
    """Console-script entry point."""
    app()
