"""The commands that talk to a Cloud Map API: `sync`, `demo` and `emulator serve`."""

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO

import typer

from archiver.cli.app import (
    app,
    echo,
    emulator_app,
    guarded,
    log,
    say,
    settings_of,
    terminal_width,
)
from archiver.errors import UsageError
from archiver.sync.options import SPECS


@emulator_app.command("serve")
@guarded
def emulator_serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(metavar="ADDR", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", min=0, max=65535,
                                      help="Port; 0 picks a free one.")] = 8765,
    seed: Annotated[int, typer.Option(metavar="N", min=0, max=10_000_000,
                                      help="Synthetic operations to start with.")] = 1000,
    days: Annotated[float, typer.Option(metavar="DAYS", min=0, max=36_500,
                                        help="Spread them over this many days.")] = 90,
    random_seed: Annotated[int, typer.Option(metavar="N", min=0, max=2**32,
                           help="Seed of the generator (same seed, same data).")] = 0,
    latency_ms: Annotated[float, typer.Option(metavar="MS", min=0, max=600_000,
                                              help="Added latency per call.")] = 0,
    throttle_rate: Annotated[float, typer.Option(metavar="SHARE", min=0, max=1,
                             help="Share of calls answered ThrottlingException.")] = 0,
    error_rate: Annotated[float, typer.Option(metavar="SHARE", min=0, max=1,
                                              help="Share of calls answered HTTP 500.")] = 0,
    update_date_unit: Annotated[Literal["ms", "s"], typer.Option(
        help="How the emulated service reads UPDATE_DATE.")] = "ms",
    account: Annotated[str, typer.Option(metavar="ACCOUNT",
                       help="The caller's AWS account id (12 digits).")] = "111122223333",
    shared: Annotated[float, typer.Option(metavar="SHARE", min=0, max=1, help="Share of "
                      "namespaces owned by two other accounts and shared with the caller.")] = 0,
    rate_limit: Annotated[float | None, typer.Option(metavar="RPS", min=0.1, max=100_000,
        help="Throttle each API with a token bucket refilled at RPS per second "
             "(ThrottlingException when empty) [default: no limit].")] = None,
    burst: Annotated[int | None, typer.Option(metavar="N", min=1, max=100_000,
                     help="The token bucket's size [default: one second of --rate-limit].")] = None,
) -> None:  # fmt: skip
    """Serve the emulator until SIGINT/SIGTERM; prints its URL on stdout.

    Point any boto3 client or `archiver sync --endpoint-url URL` at it, with any
    credentials (requests must be signed, as with AWS).

    \b
    Example:
      archiver emulator serve --port 8765 --seed 5000 --latency-ms 20
    """
    from archiver.emulator import serve

    if not (account.isascii() and account.isdigit() and len(account) == 12):
        raise UsageError(f"--account {account!r} is not an AWS account id (12 digits)")
    serve(host=host, port=port, seed_operations=seed, days=days, seed=random_seed,
          latency_ms=latency_ms, throttle_rate=throttle_rate, error_rate=error_rate,
          update_date_unit=update_date_unit, account_id=account, shared=shared,
          rate_limit=rate_limit, burst=burst)  # fmt: skip


def _default(name: str) -> str:
    """An option's default, from the one definition of the sync's options."""
    default = SPECS[name].default
    return f" [default: {'none' if default is None else default}]"


@app.command()
@guarded
def sync(
    ctx: typer.Context,
    region: Annotated[str | None, typer.Option(metavar="REGION",
        help="AWS region (else AWS_REGION, AWS_DEFAULT_REGION, the profile's).")] = None,
    profile: Annotated[str | None, typer.Option(metavar="PROFILE",
        help="AWS profile (else AWS_PROFILE or the default chain).")] = None,
    endpoint_url: Annotated[str | None, typer.Option(metavar="URL",
        help="API endpoint, e.g. an `archiver emulator serve` URL "
             "(else AWS_ENDPOINT_URL_SERVICEDISCOVERY).")] = None,
    source: Annotated[list[str] | None, typer.Option(metavar="NAME",
        help="Name of this source in the archive [default: <profile>@<region>]; with "
             "--config, a configured source to sync (repeatable).")] = None,
    sync_all: Annotated[bool, typer.Option("--all",
        help="Sync every source of --config (ARCHIVER_CONFIG).")] = False,
    parallel: Annotated[int, typer.Option(metavar="N", min=1, max=64,
        help="With --config: sources synced at once.")] = 4,
    since: Annotated[str | None, typer.Option(metavar="WHEN",
        help="First sync's start: ISO-8601, epoch seconds, or a span ago like 30d "
             "[default: all the service holds].")] = None,
    until: Annotated[str | None, typer.Option(metavar="WHEN",
        help="End of the range [default: now].")] = None,
    window: Annotated[str | None, typer.Option(metavar="SPAN",
        help="Cut the range into windows of this span (e.g. 7d) so the watermark "
             "advances step by step; each window reads the service's whole list again.")] = None,
    lookback: Annotated[str | None, typer.Option(metavar="SPAN",
        help="Re-read this much before the watermark, for late updates."
             + _default("lookback"))] = None,
    workers: Annotated[int | None, typer.Option(metavar="N",
        help="The most GetOperation calls in flight, 1 to 64. The run starts at 8 and "
             "adapts: one more while the service answers without throttling, half as many "
             "when it throttles." + _default("workers"))] = None,
    max_rps: Annotated[float | None, typer.Option(metavar="RATE",
        help="Cap on API calls per second.")] = None,
    max_attempts: Annotated[int | None, typer.Option(metavar="N",
        help="Attempts per call, 1 to 50 (botocore's standard retry mode) [default: "
             "AWS_MAX_ATTEMPTS, else the profile's max_attempts, else 12]. AWS_RETRY_MODE "
             "and the profile's retry_mode choose the mode, as in every AWS SDK. "
             "Example: --max-attempts 5")] = None,
    call_timeout: Annotated[float | None, typer.Option(metavar="SECONDS",
        help="Seconds one attempt of a call may take in all (connect and whole answer)."
             + _default("call_timeout"))] = None,
    incomplete_retry_days: Annotated[float | None, typer.Option(metavar="DAYS",
        help="Days to keep retrying a listed operation GetOperation cannot find; after "
             "that it stays stored, marked gone." + _default("incomplete_retry_days"))] = None,
    full: Annotated[bool, typer.Option("--full",
        help="Ignore the watermark: re-read from --since (or everything).")] = False,
    retry_gone: Annotated[bool, typer.Option("--retry-gone",
        help="Ask again for operations given up on as gone "
             "(a run does so by itself when it learns a new namespace owner).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run",
        help="Print the plan; no API call, no write.")] = False,
    as_json: Annotated[bool, typer.Option("--json",
        help="Print a JSON summary on stdout.")] = False,
    metrics_file: Annotated[Path | None, typer.Option(metavar="PATH",
        help="After every run, write Prometheus metrics of every source here "
             "(textfile collector).")] = None,
) -> None:  # fmt: skip
    """Sync Cloud Map operations into the archive, incrementally; run it from cron.

    Reads UPDATE_DATE windows from the source's watermark (less --lookback) to now,
    fetches only new or changed operations, and stores each page in one transaction:
    safe to kill at any moment and to rerun. Prints nothing on success unless -v or
    --json. Exit codes: 0 done, 1 API or database failure (after retries), 2 bad
    input, 3 another sync of this source is running, 130 interrupted (143 by SIGTERM).

    \b
    Examples:
      archiver --db archive.db sync --profile prod --region eu-west-1 --json
      archiver --db archive.db sync --profile prod --retry-gone
    """
    from archiver.sync import fleet, options

    settings = settings_of(ctx)
    # the parameters are named as SPECS names the options: the typed values, by name
    typed = {name: value for name, value in locals().items() if name in SPECS}
    typed["source"] = source[0] if source else None
    typed["full"] = full or None
    typed["retry_gone"] = retry_gone or None
    from_config = sync_all or (settings.config is not None and bool(source))
    unlisted: list[fleet.Result] = []  # organizations not listed (a dry run's plan is whole)
    if from_config:
        if given := [n for n, v in typed.items() if v is not None and n != "source"]:
            raise UsageError(f"{options.flag(given[0])} applies to one source; for the "
                             "sources of --config, set it in the config ([defaults] or "
                             "[[source]])")  # fmt: skip
        if settings.config is None:
            raise UsageError("--all needs --config PATH (or ARCHIVER_CONFIG) naming the sources")
        jobs = fleet.plan(settings.config, None if sync_all else source,
                          failed=None if dry_run else unlisted)  # fmt: skip
    elif settings.config is not None:
        raise UsageError(f"config {settings.config.path} names the sources to sync: add --all, "
                         "or --source NAME for some of them")  # fmt: skip
    elif len(source or []) > 1:
        raise UsageError("give one --source, or name several sources in a --config file")
    else:
        jobs = [fleet.Job(*options.build(typed))]
    _sync(ctx, jobs, parallel=parallel, dry_run=dry_run, as_json=as_json,
          metrics_file=metrics_file, one=not from_config, failed=unlisted)  # fmt: skip


def _sync(ctx: typer.Context, jobs: list[Any], *, parallel: int, dry_run: bool, as_json: bool,
          metrics_file: Path | None, one: bool, failed: list[Any]) -> None:  # fmt: skip
    """Every job through ``fleet.run`` (one source is a fleet of one): the same runs,
    locks and metrics, whichever way the sources were named. ``failed``: organizations
    whose accounts could not be listed, told and counted as the sources' failures are."""
    import resource

    from archiver import stopping
    from archiver.read import status
    from archiver.store.archive import Archive
    from archiver.sync import fleet
    from archiver.sync import run as sync_run

    settings = settings_of(ctx)
    metrics = None if metrics_file is None else status.metrics_target(
        metrics_file, Archive(settings.db))  # fmt: skip
    if dry_run:
        plans = [sync_run.dry_run(settings.db, job.opts, job.client) for job in jobs]
        typer.echo(json.dumps(plans[0] if one else plans, indent=2))
        return
    stopping.install()
    # Each call in flight holds a socket, up to --workers + 2 a source: a fleet at
    # --parallel 30 needs about systemd's default of 1,024 open files, past which botocore
    # tells EMFILE as "Could not connect to the endpoint URL". Up to the hard limit, then.
    if (hard := resource.getrlimit(resource.RLIMIT_NOFILE)[1]) != resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def report(result: fleet.Result) -> None:
        if as_json:  # a reader that leaves: stderr, metrics and exit code still tell all
            echo(json.dumps(result.to_json()))
        if result.summary is not None:
            s = result.summary
            log.info("source %s: done in %.1fs: listed %d, new %d, changed %d; calls: "
                     "GetOperation %d, ListOperations %d; watermark %s", s.source, s.duration_s,
                     s.stats.listed, s.stats.inserted, s.stats.updated,
                     s.stats.api_calls["GetOperation"], s.stats.api_calls["ListOperations"],
                     s.watermark, extra={"source": s.source, "run_id": s.run_id})  # fmt: skip
        elif result.error is not None and not one:
            say(f"source {result.source}: {result.error}", settings.log_format,
                source=result.source)  # fmt: skip

    for result in failed:
        report(result)
    with for_terminal(quiet=settings.quiet or not one, source=jobs[0].opts.source if one
                      else "") as shown:  # fmt: skip
        results = fleet.run(settings.db, jobs, parallel=parallel, on_done=report, on_page=shown)
    if metrics is not None and not Archive(settings.db).is_new:  # new: no run made it
        with Archive.open(settings.db) as archive:  # every source's (none run keep theirs)
            retries = {r.source: r.summary.stats.retries for r in results if r.summary}
            status.write_metrics(metrics, archive, retries=retries)
    if one and results[0].error is not None:
        raise results[0].error
    raise typer.Exit(fleet.worst_exit(results + failed))


@app.command()
@guarded
def demo(
    ctx: typer.Context,
    operations: Annotated[
        int,
        typer.Option(
            metavar="N", min=1, max=1_000_000, help="Synthetic operations in the emulated account."
        ),
    ] = 1000,
) -> None:
    """The main job end to end, offline: emulator → sync into demo.db → status → a query.

    Needs no AWS account, credentials or network. Writes demo.db, or the --db given on
    this command line (never ARCHIVER_DB, which may name a real archive), and refuses
    an archive that holds any source but the demo's own.

    \b
    Example:
      archiver demo && archiver --db demo.db query -o count
    """
    from archiver import stopping

    settings = settings_of(ctx)
    typed = ctx.find_root().get_parameter_source("db")  # ARCHIVER_DB does not count
    target = settings.db if typed is not None and typed.name == "COMMANDLINE" else "demo.db"
    stopping.install()
    with for_terminal(quiet=settings.quiet, source=SOURCE) as shown:
        run_demo(target, sys.stdout, operations=operations, width=terminal_width(), on_page=shown)


SOURCE = "demo@emulator"


def run_demo(target: str, out: TextIO, *, operations: int = 1000, width: int | None = None,
             on_page: Callable[[Any], None] | None = None) -> None:  # fmt: skip
    """Sync ``operations`` synthetic operations into ``target``, then show what it holds."""
    from archiver import filters
    from archiver.emulator import Emulator
    from archiver.read import outputs as render
    from archiver.read import query
    from archiver.read import status as status_mod
    from archiver.store.archive import Archive
    from archiver.sync import options
    from archiver.sync.run import sync_source

    _refuse_a_real_archive(target)
    with Emulator(seed_operations=operations, days=30, seed=42) as emu:
        values = {"region": "us-east-1", "endpoint_url": emu.url, "source": SOURCE}

        def one_pass() -> Any:  # each plans from its own start, as each night does
            opts, client_settings = options.build(values, credentials=("demo", "demo"))
            return sync_source(target, opts, client_settings, on_page=on_page)

        # a night's work still under way, then finished by the next night: the second
        # pass stores the status changes the archive keeps after the service forgets
        unfinished = len(emu.account.add_operations(max(1, operations // 20), pending_share=1))
        first = one_pass()
        finished = len(emu.account.finish_pending())
        second = one_pass()
    for n, s in enumerate((first, second), start=1):
        stored = s.stats.inserted + s.stats.updated
        out.write(f"pass {n}: stored {stored} new or changed operations of {s.stats.listed} "
                  f"listed, into {target}\n")  # fmt: skip
    out.write(f"({unfinished} were still running at pass 1; {finished} finished before pass 2)"
              "\n\n")  # fmt: skip
    with Archive.open(target) as archive:
        out.write(status_mod.to_text(status_mod.summarize(archive, source=SOURCE)) + "\n")
        out.write(f"\n$ archiver --db {target} query --filters Name=STATUS,Values=FAIL "
                  "--max-items 5\n")  # fmt: skip
        selection = query.Selection(filters.parse("Name=STATUS,Values=FAIL"), limit=5)
        render.write("table", archive, selection, out, width=width)
    out.write(
        "\nNext, try:\n"
        f"  archiver --db {target} report --out report.html   # charts (the report extra)\n"
        f"  archiver --db {target} web --open                   # browse it (the web extra)\n"
        f"  sqlite3 {target} 'SELECT previous_status, status, count(*) FROM status_changes "
        "GROUP BY 1, 2'\n"
    )


def _refuse_a_real_archive(target: str) -> None:
    """Synthetic operations must never mix into an archive of real ones. An earlier
    demo's source goes: this emulator is new, with the same ids, and its older states
    would be listed behind the archive's (kept, and warned of, as a real service's)."""
    from archiver.store.archive import Archive
    from archiver.store.write import drop_source, source_ids

    # a new file, or an empty PostgreSQL database, is made an archive, as the sync makes one
    with Archive.open(target, create_missing=True) as archive:
        with archive.reader.connect() as conn:
            held = set(source_ids(conn, None).values())
        if others := sorted(held - {SOURCE}):
            raise UsageError(f"{archive.name} holds other sources ({', '.join(others)}); the demo "
                             "writes only into an archive of its own: run it without --db "
                             "(demo.db) or name a new file")  # fmt: skip
        if SOURCE in held:
            drop_source(archive, SOURCE)


class TerminalProgress:
    """A live rich display on stderr: elapsed time, window i/N, pages, operations
    fetched and their rate; stopped, it leaves its final state as one finished line."""

    def __init__(self, source: str) -> None:
        from rich.console import Console
        from rich.progress import Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[line]}"),
            console=Console(stderr=True),  # not transient: it ends as a finished line
        )
        self._task = self.progress.add_task(source, total=None, line="starting")
        self._began = time.monotonic()
        self.progress.start()

    def __call__(self, stats: Any) -> None:
        fetched = stats.inserted + stats.updated
        rate = fetched / max(time.monotonic() - self._began, 1e-6)
        line = (f"window {stats.windows}/{stats.planned_windows}  pages {stats.pages}  "
                f"listed {stats.listed}  fetched {fetched}  {rate:,.0f}/s")  # fmt: skip
        self.progress.update(self._task, line=line)


@contextmanager
def for_terminal(*, quiet: bool, source: str) -> Iterator[TerminalProgress | None]:
    """The display for the block, or None when stderr is not a terminal (cron, a pipe)
    or with -q; it ends as a finished line, not overwritten."""
    shown = None if quiet or not sys.stderr.isatty() else TerminalProgress(source)
    try:
        yield shown
    finally:
        if shown is not None:
            shown.progress.stop()
