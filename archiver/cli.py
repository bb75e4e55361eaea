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

    Gives the answer the API would give for the same --filters (SPEC-filters.md), from
    the archive: newest first unless --ascending.
    """
    from archiver import db, render
    from archiver import query as q

    parsed = _filters(filters, more)
    engine = db.open_archive(_settings(ctx).db)
    try:
        if output is Output.count:
            typer.echo(q.count(engine, parsed, source=source))
            return
        rows = q.run(
            engine, parsed, source=source, order_by=order_by, ascending=ascending, limit=max_items
        )
        out = sys.stdout
        if output is Output.json:
            render.write_json(rows, out)
        elif output is Output.ids:
            render.write_ids(rows, out)
        elif output is Output.csv:
            from archiver import export

            export.write_csv((export.to_row(r) for r in rows), out)
        else:
            render.write_table(rows, out, width=_terminal_width() if out.isatty() else None)
        out.flush()
    finally:
        engine.dispose()


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
    from archiver import db
    from archiver import export as ex

    parsed = _filters(filters, more)
    compress = gzip or (out is not None and out.suffix == ".gz")
    if out is not None:
        ex.check_destination(out)
    engine = db.open_archive(_settings(ctx).db)
    try:
        if out is None:
            rows = ex.rows(engine, parsed, source=source, history=history, raw=raw)
            if compress:
                import gzip as gz
                import io

                with gz.GzipFile(fileobj=sys.stdout.buffer, mode="wb", mtime=0) as zf:
                    text = io.TextIOWrapper(zf, encoding="utf-8", newline="")
                    ex.write_csv(rows, text, history=history)
                    text.flush()
                    text.detach()
            else:
                ex.write_csv(rows, sys.stdout, history=history)
            sys.stdout.flush()
            return
        result = ex.export_to_file(
            engine, parsed, out, source=source, history=history, raw=raw, compress=compress
        )
        log.info("exported %d rows to %s (sha256 %s)", result.rows, out, result.sha256)
    finally:
        engine.dispose()


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


def _parsed(name: str, value: str | None, parse):  # type: ignore[no-untyped-def]
    """Parse one time option; its errors name the option (exit 2)."""
    from archiver.errors import UsageError

    if value is None:
        return None
    try:
        return parse(value)
    except UsageError as exc:
        raise UsageError(f"{name}: {exc}") from None


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

    from archiver import sync as sync_mod
    from archiver.cloudmap import ClientSettings, default_source_name, resolve_region
    from archiver.timeutil import now, parse_span, parse_when

    settings = _settings(ctx)
    started = now()

    def when(text: str):  # type: ignore[no-untyped-def]
        return parse_when(text, now_=started)

    opts_since, opts_until = _parsed("--since", since, when), _parsed("--until", until, when)
    opts_window = _parsed("--window", window, parse_span)
    opts_lookback = _parsed("--lookback", lookback, parse_span)
    client_settings = ClientSettings(
        region=region,
        profile=profile,
        endpoint_url=endpoint_url,
        max_attempts=max_attempts,
        pool_size=workers + 2,
    )
    name = source or default_source_name(client_settings)
    opts = sync_mod.SyncOptions(
        source=name,
        region=resolve_region(client_settings, None),
        endpoint_url=endpoint_url,
        since=opts_since,
        until=opts_until,
        window=opts_window,
        lookback=opts_lookback,
        workers=workers,
        max_rps=max_rps,
        full=full,
        started=started,
    )
    if dry_run:
        typer.echo(json.dumps(sync_mod.dry_run(settings.db, opts), indent=2))
        return
    from archiver import stopping

    stopping.install()
    summary = sync_mod.run_sync(settings.db, opts, client_settings, on_page=_progress(settings))
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
    from archiver import db, filters, query, render
    from archiver import status as status_mod
    from archiver import sync as sync_mod
    from archiver.cloudmap import ClientSettings
    from archiver.emulator import Emulator

    settings = _settings(ctx)
    target = settings.db if _db_given(ctx) else "demo.db"
    with Emulator(seed_operations=operations, days=30, seed=42) as emu:
        opts = sync_mod.SyncOptions(
            source="demo@emulator", region="us-east-1", endpoint_url=emu.url
        )
        client_settings = ClientSettings(
            region="us-east-1",
            endpoint_url=emu.url,
            access_key="demo",
            secret_key="demo",
            pool_size=10,
        )
        summary = sync_mod.run_sync(target, opts, client_settings, on_page=_progress(settings))
    typer.echo(f"synced {summary.stats.listed} operations from the emulator into {target}\n")
    engine = db.open_archive(target)
    try:
        typer.echo(status_mod.to_text(status_mod.summarize(engine, source="demo@emulator")))
        fails = filters.parse("Name=STATUS,Values=FAIL")
        typer.echo(
            "\n$ archiver --db " + target + " query --filters Name=STATUS,Values=FAIL --max-items 5"
        )
        width = _terminal_width() if sys.stdout.isatty() else None
        render.write_table(query.run(engine, fails, limit=5), sys.stdout, width=width)
    finally:
        engine.dispose()


def _db_given(ctx: typer.Context) -> bool:
    root_ctx = ctx.find_root()
    source = root_ctx.get_parameter_source("db")
    return source is not None and source.name != "DEFAULT"


def main() -> None:
    """Console-script entry point."""
    app()
