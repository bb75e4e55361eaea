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
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from archiver import DISTRIBUTION, __version__
from archiver.archive import Archive
from archiver.exits import OneLineUsageErrors
from archiver.filters import Filters
from archiver.query import OrderBy
from archiver.render import Output

if TYPE_CHECKING:
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


# --- query and export share their filter options ---------------------------------------

FiltersOption = Annotated[
    list[str] | None,
    typer.Option(
        "--filters",
        metavar="FILTER",
        help="ListOperations filters, as the AWS CLI takes them: shorthand "
        "'Name=STATUS,Condition=IN,Values=PENDING,SUCCESS' (repeatable), a JSON list, "
        "or file://path.json. UPDATE_DATE takes epoch milliseconds or ISO-8601.",
    ),
]
MoreFilters = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[FILTER]...",
        help="More filter structures, as pasted after --filters from an aws command.",
        show_default=False,
    ),
]
IncompleteOption = Annotated[
    bool,
    typer.Option(
        "--include-incomplete",
        help="Also listed operations GetOperation never found (only Id and Status known).",
    ),
]
SourceOption = Annotated[
    str | None,
    typer.Option("--source", metavar="NAME", help="Only this source (default: every source)."),
]


def _filters(ctx: typer.Context, given: list[str] | None, more: list[str] | None) -> Filters:
    """Parse and validate before anything opens the archive (a bad filter writes nothing);
    a TYPE or STATUS the model does not list is checked against what the archive holds."""
    from archiver.filters import from_command_line
    from archiver.query import stored_values

    def stored() -> dict[str, Sequence[str]]:
        with open_archive(ctx) as archive:
            return stored_values(archive)

    parsed = from_command_line(given or [], more or [], stored=stored)
    for warning in parsed.warnings:
        log.warning(warning)
    return parsed


@app.command()
@guarded
def query(
    ctx: typer.Context,
    filters: FiltersOption = None,
    more: MoreFilters = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="How to print.")] = Output.table,
    max_items: Annotated[
        int | None,
        typer.Option(
            "--max-items",
            metavar="N",
            min=1,
            max=10**12,
            help="At most N operations (default: all).",
        ),
    ] = None,
    order_by: Annotated[
        OrderBy, typer.Option("--order-by", help="Sort key.")
    ] = OrderBy.update_date,
    ascending: Annotated[bool, typer.Option("--ascending", help="Oldest first.")] = False,
    source: SourceOption = None,
    include_incomplete: IncompleteOption = False,
) -> None:
    """Query the archive with ListOperations' own filters, offline.

    Gives the answer the API would give for the same --filters (the rules are in the
    README), from the archive: newest first unless --ascending.

    \b
    Example:
      archiver query --filters Name=STATUS,Condition=IN,Values=FAIL,PENDING -o json
    """
    from archiver import render
    from archiver.query import Selection

    selection = Selection(_filters(ctx, filters, more), source, order_by, ascending, max_items,
                          include_incomplete)  # fmt: skip
    with open_archive(ctx) as archive:
        rows = render.fetch(output, archive, selection)
        width = terminal_width() if sys.stdout.isatty() else None
        render.write(output, rows, sys.stdout, width=width)
        sys.stdout.flush()


def terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((80, 24)).columns


@app.command()
@guarded
def export(
    ctx: typer.Context,
    filters: FiltersOption = None,
    more: MoreFilters = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="PATH", help="Write to this file (default: stdout)."),
    ] = None,
    history: Annotated[
        bool, typer.Option("--history", help="One row per observed status change.")
    ] = False,
    gzip: Annotated[
        bool, typer.Option("--gzip", help="Compress (implied by an --out ending in .gz).")
    ] = False,
    raw: Annotated[
        bool, typer.Option("--raw", help="Turn off the spreadsheet formula guard.")
    ] = False,
    source: SourceOption = None,
    include_incomplete: IncompleteOption = False,
) -> None:
    """Export operations as CSV for audits, with a manifest beside a file.

    Streams any number of rows. Free-text cells starting with = + - @ tab or CR get a
    leading ' so spreadsheets do not run them (--raw turns this off). With --out, the
    file appears complete or not at all, and PATH.manifest.json records its row count,
    SHA-256, filters and each source's watermark.

    \b
    Example:
      archiver export --filters Name=STATUS,Values=FAIL --out failures.csv.gz
    """
    from archiver import export as ex
    from archiver import stopping
    from archiver.errors import UsageError
    from archiver.query import Selection

    if include_incomplete and history:
        raise UsageError("--include-incomplete has no history to add: use it without --history")
    selection = Selection(_filters(ctx, filters, more), source, ascending=True,  # oldest first
                          include_incomplete=include_incomplete)  # fmt: skip
    stopping.install(at_once=True)  # SIGTERM stops the export and removes its temporary file
    with open_archive(ctx) as archive:
        sys.stdout.flush()
        result = ex.export(archive, selection, out, stdout=sys.stdout.buffer, history=history,
                           raw=raw, compress=ex.wants_gzip(out, gzip))  # fmt: skip
        sys.stdout.buffer.flush()
    if out is not None:
        log.info("exported %d rows to %s (sha256 %s)", result.rows, out, result.sha256)


def db_given(ctx: typer.Context) -> bool:
    """Whether ``--db`` was typed on this command line (``ARCHIVER_DB`` does not count)."""
    source = ctx.find_root().get_parameter_source("db")
    return source is not None and source.name == "COMMANDLINE"


# The commands that talk to a Cloud Map API (sync, demo, emulator serve) live in
# cli_api, and those that administer the archive (db, sources) in cli_admin; they
# register themselves on ``app``, and importing them here makes them part of it.
from archiver import cli_admin, cli_api  # noqa: E402, F401


def main() -> None:
    """Console-script entry point."""
    app()
