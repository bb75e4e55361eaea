"""The `archiver` command line: thin commands over the library.

Every command is options → one library call → render → exit code. Errors the tool
understands are ``ArchiverError``s; ``_guarded`` prints them as one line on stderr and
exits with their code (docs/design.md, "The command line"). Heavy imports (boto3,
alembic, the emulator) happen inside the commands that need them.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from archiver import __version__
from archiver.archive import Archive
from archiver.errors import ArchiverError
from archiver.query import OrderBy
from archiver.render import Output

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
        except BrokenPipeError:
            # `archiver query | head`: the reader has all it wanted.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(0) from None
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as errors.Stopped
            typer.echo(error_line(str(exc) or "interrupted", log_format), err=True)
            raise typer.Exit(130) from None
        except Exception as exc:  # the last line of defence: never a bare traceback
            if verbose:
                traceback.print_exc(file=sys.stderr)
            from archiver.errors import first_line

            msg = f"unexpected {type(exc).__name__}: {first_line(exc)} (run with -v for details)"
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


def _archive(ctx: typer.Context, *, create_missing: bool = False) -> Archive:
    """The archive ``--db`` names, checked to be at the schema this archiver needs."""
    from archiver.archive import Archive

    return Archive.open(_settings(ctx).db, create_missing=create_missing)


@db_app.command("upgrade")
@_guarded
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Create the archive or bring it to the newest schema (safe to repeat)."""
    _migrate(ctx, "upgrade", revision)


@db_app.command("downgrade")
@_guarded
def db_downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision; `base` removes every table.")],
) -> None:
    """Take the schema back to an older revision (data in dropped tables is lost)."""
    _migrate(ctx, "downgrade", revision)


def _migrate(ctx: typer.Context, action: str, target: str) -> None:
    from archiver.archive import Archive

    settings = _settings(ctx)
    with Archive(settings.db) as archive:
        getattr(archive, action)(target)
        if not settings.quiet:
            now = archive.revision() or "base (no schema)"
            typer.echo(f"{archive.name} is at revision {now}", err=True)


@db_app.command("current")
@_guarded
def db_current(ctx: typer.Context) -> None:
    """Print the archive's schema revision, and whether it is the one this archiver needs."""
    from archiver.archive import Archive
    from archiver.db import HEAD

    with Archive(_settings(ctx).db) as archive:
        rev = archive.revision()
    mark = "(head)" if rev == HEAD else f"(this archiver needs {HEAD})"
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
    from archiver.status import summarize, to_text

    with _archive(ctx) as archive:
        summary = summarize(archive, source=source)
    typer.echo(json.dumps(summary, indent=2, ensure_ascii=False) if as_json else to_text(summary))


# --- query and export share their filter options ---------------------------------------

FiltersOption = Annotated[
    list[str] | None,
    typer.Option(
        "--filters",
        help="ListOperations filters, as the AWS CLI takes them: shorthand "
        "'Name=STATUS,Condition=IN,Values=PENDING,SUCCESS' (repeatable), a JSON list, "
        "or file://path.json. UPDATE_DATE takes epoch milliseconds or ISO-8601.",
    ),
]
MoreFilters = Annotated[
    list[str] | None,
    typer.Argument(
        help="More filter structures, as pasted after --filters from an aws command.",
        show_default=False,
    ),
]
SourceOption = Annotated[
    str | None, typer.Option("--source", help="Only this source (default: every source).")
]


def _filters(given: list[str] | None, more: list[str] | None):  # type: ignore[no-untyped-def]
    """Parse and validate before anything opens the archive (a bad filter writes nothing)."""
    from archiver import filters
    from archiver.errors import UsageError

    args = list(given or [])
    for arg in more or []:
        if not args:
            raise UsageError(f"unexpected argument {arg!r}; filters go after --filters")
        args.append(arg)
    parsed = filters.parse(args) if args else filters.Filters()
    for warning in parsed.warnings:
        log.warning(warning)
    return parsed


@app.command()
@_guarded
def query(
    ctx: typer.Context,
    filters: FiltersOption = None,
    more: MoreFilters = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="How to print.")] = Output.table,
    max_items: Annotated[
        int | None, typer.Option("--max-items", min=1, help="At most N operations (default: all).")
    ] = None,
    order_by: Annotated[
        OrderBy, typer.Option("--order-by", help="Sort key.")
    ] = OrderBy.update_date,
    ascending: Annotated[bool, typer.Option("--ascending", help="Oldest first.")] = False,
    source: SourceOption = None,
) -> None:
    """Query the archive with ListOperations' own filters, offline.

    Gives the answer the API would give for the same --filters (the rules are in the
    README), from the archive: newest first unless --ascending.
    """
    from archiver import render
    from archiver.query import Selection

    selection = Selection(_filters(filters, more), source, order_by, ascending, max_items)
    with _archive(ctx) as archive:
        rows = render.fetch(output, archive, selection)
        width = _terminal_width() if sys.stdout.isatty() else None
        render.write(output, rows, sys.stdout, width=width)
        sys.stdout.flush()


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((80, 24)).columns


@app.command()
@_guarded
def export(
    ctx: typer.Context,
    filters: FiltersOption = None,
    more: MoreFilters = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write to this file (default: stdout).")
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
) -> None:
    """Export operations as CSV for audits, with a manifest beside a file.

    Streams any number of rows. Free-text cells starting with = + - @ tab or CR get a
    leading ' so spreadsheets do not run them (--raw turns this off). With --out, the
    file appears complete or not at all, and PATH.manifest.json records its row count,
    SHA-256, filters and each source's watermark.
    """
    from archiver import export as ex
    from archiver.query import Selection

    selection = Selection(_filters(filters, more), source, ascending=True)  # oldest first
    if out is not None:
        ex.check_destination(out)
    with _archive(ctx) as archive:
        sys.stdout.flush()
        result = ex.export(archive, selection, out, stdout=sys.stdout.buffer, history=history,
                           raw=raw, compress=ex.wants_gzip(out, gzip))  # fmt: skip
        sys.stdout.buffer.flush()
    if out is not None:
        log.info("exported %d rows to %s (sha256 %s)", result.rows, out, result.sha256)


# --- emulator -----------------------------------------------------------------------------


@emulator_app.command("serve")
@_guarded
def emulator_serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port; 0 picks a free one.")] = 8765,
    seed: Annotated[int, typer.Option(min=0, help="Synthetic operations to start with.")] = 1000,
    days: Annotated[float, typer.Option(min=0, help="Spread them over this many days.")] = 90,
    random_seed: Annotated[
        int, typer.Option(help="Seed of the generator (same seed, same data).")
    ] = 0,
    latency_ms: Annotated[float, typer.Option(min=0, help="Added latency per call.")] = 0,
    throttle_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of calls answered ThrottlingException.")
    ] = 0,
    error_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of calls answered HTTP 500.")
    ] = 0,
) -> None:
    """Serve the emulator until SIGINT/SIGTERM; prints its URL on stdout.

    Point any boto3 client or `archiver sync --endpoint-url URL` at it, with any
    credentials (requests must be signed, as with AWS).
    """
    import signal

    from archiver.emulator import Emulator
    from archiver.errors import UsageError

    try:
        emu = Emulator(
            seed_operations=seed,
            days=days,
            seed=random_seed,
            host=host,
            port=port,
            latency_ms=latency_ms,
            throttle_rate=throttle_rate,
            error_rate=error_rate,
        )
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: emu.shutdown())
    typer.echo(emu.url)
    sys.stdout.flush()
    log.info("serving %d operations at %s", len(emu.account), emu.url)
    try:
        emu.serve_forever()
    finally:
        emu.close()


# --- sync and demo --------------------------------------------------------------------------


@app.command()
@_guarded
def sync(
    ctx: typer.Context,
    region: Annotated[
        str | None,
        typer.Option(help="AWS region (else AWS_REGION, AWS_DEFAULT_REGION, the profile's)."),
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="AWS profile (else AWS_PROFILE or the default chain).")
    ] = None,
    endpoint_url: Annotated[
        str | None,
        typer.Option(
            "--endpoint-url",
            help="API endpoint, e.g. an `archiver emulator serve` URL "
            "(else AWS_ENDPOINT_URL_SERVICEDISCOVERY).",
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(help="Name of this source in the archive [default: <profile>@<region>]."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="First sync's start: ISO-8601, epoch seconds, or a span ago like 30d "
            "[default: all the service holds]."
        ),
    ] = None,
    until: Annotated[str | None, typer.Option(help="End of the range [default: now].")] = None,
    window: Annotated[
        str | None,
        typer.Option(
            help="Cut the range into windows of this span (e.g. 7d) so the watermark "
            "advances step by step."
        ),
    ] = None,
    lookback: Annotated[
        str, typer.Option(help="Re-read this much before the watermark, for late updates.")
    ] = "15m",
    workers: Annotated[int, typer.Option(min=1, max=64, help="Concurrent GetOperation calls.")] = 8,
    max_rps: Annotated[
        float | None, typer.Option("--max-rps", min=0.1, help="Cap on API calls per second.")
    ] = None,
    max_attempts: Annotated[
        int, typer.Option(min=1, max=50, help="Attempts per call (botocore standard retry mode).")
    ] = 12,
    full: Annotated[
        bool,
        typer.Option("--full", help="Ignore the watermark: re-read from --since (or everything)."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; no API call, no write.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON summary on stdout.")
    ] = False,
) -> None:
    """Sync Cloud Map operations into the archive, incrementally; run it from cron.

    Reads UPDATE_DATE windows from the source's watermark (less --lookback) to now,
    fetches only new or changed operations, and stores each page in one transaction:
    safe to kill at any moment and to rerun. Prints nothing on success unless -v or
    --json. Exit codes: 0 done, 1 API or database failure (after retries), 2 bad
    input, 3 another sync of this source is running, 130 interrupted.
    """
    from archiver import options
    from archiver import sync as sync_mod

    words = options.SyncWords(region, profile, endpoint_url, source, since, until, window,
                              lookback, workers, max_rps, max_attempts, full)  # fmt: skip
    opts, client_settings = options.build(words)
    if dry_run:
        typer.echo(json.dumps(sync_mod.dry_run(_settings(ctx).db, opts), indent=2))
        return
    summary = _run_sync(ctx, opts, client_settings)
    if as_json:
        typer.echo(json.dumps(summary.to_json()))
    log.info(
        "source %s: listed %d, new %d, changed %d, GetOperation %d, list pages %d; watermark %s",
        summary.source,
        summary.stats.listed,
        summary.stats.inserted,
        summary.stats.updated,
        summary.stats.get_calls,
        summary.stats.list_calls,
        summary.watermark,
    )


def _run_sync(ctx: typer.Context, opts: Any, client_settings: Any, *, location: str | None = None):  # type: ignore[no-untyped-def]
    """The client first (bad AWS settings fail before any file is made), then the run."""
    from archiver import stopping
    from archiver.cloudmap import make_client
    from archiver.sync import run_sync

    client = make_client(client_settings)
    stopping.install()
    with Archive.open(location or _settings(ctx).db, create_missing=True) as archive:
        return run_sync(archive, client, opts, on_page=_progress(_settings(ctx)))


def _progress(settings: Settings):  # type: ignore[no-untyped-def]
    """A live line on stderr, only for a person at a terminal (never in cron mail)."""
    if settings.quiet or not sys.stderr.isatty():
        return None
    from rich.console import Console

    console = Console(stderr=True)

    def show(stats) -> None:  # type: ignore[no-untyped-def]
        console.print(
            f"listed {stats.listed}  new {stats.inserted}  changed {stats.updated}  "
            f"GetOperation {stats.get_calls}  pages {stats.list_calls}",
            end="\r",
            highlight=False,
            soft_wrap=True,
        )

    return show


@app.command()
@_guarded
def demo(
    ctx: typer.Context,
    operations: Annotated[
        int, typer.Option(min=1, help="Synthetic operations in the emulated account.")
    ] = 3000,
) -> None:
    """The main job end to end, offline: emulator → sync into demo.db → status → a query.

    Needs no AWS account, credentials or network. Uses --db when given, else demo.db.
    """
    from archiver import filters, options, query, render
    from archiver import status as status_mod
    from archiver.emulator import Emulator

    target = _settings(ctx).db if _db_given(ctx) else "demo.db"
    with Emulator(seed_operations=operations, days=30, seed=42) as emu:
        words = options.SyncWords(
            region="us-east-1",
            endpoint_url=emu.url,
            source="demo@emulator",
            access_key="demo",
            secret_key="demo",
        )
        opts, client_settings = options.build(words)
        summary = _run_sync(ctx, opts, client_settings, location=target)
    typer.echo(f"synced {summary.stats.listed} operations from the emulator into {target}\n")
    with Archive.open(target) as archive:
        typer.echo(status_mod.to_text(status_mod.summarize(archive, source="demo@emulator")))
        typer.echo(
            "\n$ archiver --db " + target + " query --filters Name=STATUS,Values=FAIL --max-items 5"
        )
        selection = query.Selection(filters.parse("Name=STATUS,Values=FAIL"), limit=5)
        width = _terminal_width() if sys.stdout.isatty() else None
        render.write(render.Output.table, query.run(archive, selection), sys.stdout, width=width)


def _db_given(ctx: typer.Context) -> bool:
    root_ctx = ctx.find_root()
    source = root_ctx.get_parameter_source("db")
    return source is not None and source.name != "DEFAULT"


def main() -> None:
    """Console-script entry point."""
    app()
