"""The commands that read or keep the archive: query, instances, web, export, report,
status, db and sources. query, export and report share their selection options,
checked before the archive is opened: bad input writes nothing and prints one line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from archiver.cli.app import (
    app,
    db_app,
    echo,
    guarded,
    log,
    open_archive,
    settings_of,
    sources_app,
    terminal_width,
)
from archiver.errors import UsageError
from archiver.guards import printable
from archiver.read import OrderBy, Output

if TYPE_CHECKING:
    from archiver.read.query import Selection


# --- the selection options that query, export and report share -------------------------

FiltersOption = Annotated[list[str] | None, typer.Option("--filters", metavar="FILTER",
    help="ListOperations filters, as the AWS CLI takes them: shorthand "
         "'Name=STATUS,Condition=IN,Values=PENDING,SUCCESS' (repeatable), a JSON list, "
         "or file://path.json. UPDATE_DATE takes epoch milliseconds or ISO-8601.")]  # fmt: skip
MoreFilters = Annotated[list[str] | None, typer.Argument(metavar="[FILTER]...", show_default=False,
    help="More filter structures, as pasted after --filters from an aws command.")]  # fmt: skip
IncompleteOption = Annotated[bool, typer.Option("--include-incomplete", help="Also listed "
    "operations GetOperation never found (only Id and Status known).")]  # fmt: skip
SourceOption = Annotated[str | None, typer.Option("--source", metavar="NAME",
    help="Only this source (default: every source).")]  # fmt: skip
SinceOption = Annotated[str | None, typer.Option("--since", metavar="WHEN",
    help="Only operations last updated at or after WHEN: ISO-8601, epoch seconds, or a "
         "span ago like 30d (shorthand for an UPDATE_DATE BETWEEN; ANDed with "
         "--filters).")]  # fmt: skip
OutputOption = Annotated[Output, typer.Option("--output", "-o", help="How to print.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
UntilOption = Annotated[str | None, typer.Option("--until", metavar="WHEN",
    help="Only operations last updated at or before WHEN, in --since's forms.")]  # fmt: skip


def selection_of(ctx: typer.Context, filters: list[str] | None, more: list[str] | None, *,
                 since: str | None, until: str | None, **choices: Any) -> Selection:  # fmt: skip
    """The options as a ``Selection``, checked before the archive is read (exit 2): a bad
    filter writes nothing. A TYPE or STATUS the model does not list is checked against
    what the archive holds."""
    from archiver.filters import from_command_line
    from archiver.read.query import Selection, stored_values
    from archiver.timeutil import named, now, parse_when

    started = now()

    def when(text: str) -> datetime:
        return parse_when(text, now_=started)

    start, end = named("--since", since, when), named("--until", until, when)
    if start is not None and end is not None and end < start:
        raise UsageError("--until is before --since; nothing can match")

    def stored() -> dict[str, Sequence[str]]:
        with open_archive(ctx) as archive:
            return stored_values(archive)

    parsed = from_command_line(filters or [], more or [], stored=stored)
    for warning in parsed.warnings:
        log.warning(warning)
    return Selection(parsed, since=start, until=end, **choices)


@app.command()
@guarded
def query(
    ctx: typer.Context,
    filters: FiltersOption = None,
    more: MoreFilters = None,
    output: OutputOption = "table",
    max_items: Annotated[
        int | None,
        typer.Option(metavar="N", min=1, max=10**12, help="At most N operations (default: all)."),
    ] = None,
    order_by: Annotated[OrderBy, typer.Option(help="Sort key.")] = "update_date",
    ascending: Annotated[bool, typer.Option("--ascending", help="Oldest first.")] = False,
    source: SourceOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    include_incomplete: IncompleteOption = False,
) -> None:
    """Query the archive with ListOperations' own filters, offline.

    Gives the answer the API would give for the same --filters (the rules are in the
    README), from the archive: newest first unless --ascending.

    \b
    Example:
      archiver query --filters Name=STATUS,Condition=IN,Values=FAIL,PENDING -o json
    """
    from archiver.read import outputs as render

    selection = selection_of(ctx, filters, more, since=since, until=until, source=source,
                             order_by=order_by, ascending=ascending, limit=max_items,
                             include_incomplete=include_incomplete)  # fmt: skip
    with open_archive(ctx) as archive:
        render.write(output, archive, selection, sys.stdout, width=terminal_width())


@app.command()
@guarded
def instances(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Option(metavar="ID|NAME",
        help="This service's instances.")] = None,
    namespace: Annotated[str | None, typer.Option(metavar="ID|NAME",
        help="The instances of this namespace's services.")] = None,
    at: Annotated[str | None, typer.Option(metavar="WHEN",
        help="The moment: ISO-8601, epoch seconds or a span ago like 2d [default: now].")] = None,
    history: Annotated[bool, typer.Option("--history",
        help="Every registration change instead, in order.")] = False,
    source: SourceOption = None,
    output: OutputOption = "table",
) -> None:  # fmt: skip
    """Which instances were registered at a moment, rebuilt from the archived
    REGISTER_INSTANCE and DEREGISTER_INSTANCE operations.

    An operation takes effect when it succeeds, at its UpdateDate; FAIL, SUBMITTED and
    PENDING change nothing; the last change at or before --at decides (ties by
    UpdateDate, CreateDate, Id). The archive knows nothing before its first operation
    of a service: stderr says so of an --at before it, and names the instances
    registered before it (json: "uncertain" and "coverage_start").

    \b
    Example:
      archiver instances --service checkout --at 2026-11-30T12:00:00Z
    """
    from archiver.read import outputs, query
    from archiver.timeutil import named, now, parse_when

    if history and not service:
        raise UsageError("--history needs --service")
    when = None if history else named("--at", at, lambda t: parse_when(t, now_=now()))
    with open_archive(ctx) as archive:  # no --at: the library's now
        result = query.instances(archive, service=service, namespace=namespace,
                                 at=when, history=history, source=source)  # fmt: skip
    outputs.write_instances(result, output, sys.stdout)
    if (line := outputs.instances_note(result)) and output != "json":
        log.warning("%s", line)


@app.command()
@guarded
def web(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(metavar="ADDR", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", min=0, max=65535, help="Port.")] = 8001,
    open_browser: Annotated[bool, typer.Option("--open", help="Open it in a browser.")] = False,
) -> None:
    """Browse the archive in Datasette, read-only, until Ctrl-C or SIGTERM (needs the web extra).

    Tables, views and columns are described; the README's cookbook and the instances
    answer are canned queries; a sync beside it is never blocked, and its operations
    show up at once. A SQLite archive only.

    \b
    Example:
      archiver --db archive.db web --open
    """
    from archiver.read.web import app as web_app
    from archiver.store.db import sqlite_path

    if not host.strip():  # "$HOST" unset bound every interface, the SQL console with it
        raise UsageError("--host is empty: give an address (0.0.0.0 for every interface)")
    if (path := sqlite_path(settings_of(ctx).db)) is None:
        raise UsageError("archiver web serves a SQLite archive; for PostgreSQL, point "
                         "Datasette's PostgreSQL peers or psql at the database")  # fmt: skip
    open_archive(ctx).close()  # it exists, and is at our revision
    ds = web_app(path)
    import socket
    from contextlib import suppress

    import uvicorn

    try:  # bound here: a port in use is one line and exit 2 (uvicorn's is exit 3, "locked")
        listening = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host
                                         else socket.AF_INET)  # fmt: skip
    except OSError as exc:
        raise UsageError(f"cannot listen: {exc.strerror or exc}") from None  # names the address
    addr, got = listening.getsockname()[:2]  # --port 0: the port it got
    url = f"http://[{addr}]:{got}/" if ":" in addr else f"http://{addr}:{got}/"
    typer.echo(url)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    with suppress(KeyboardInterrupt):  # uvicorn takes a stop, shuts down, hands it back: done
        uvicorn.Server(uvicorn.Config(ds.app(), log_level="warning")).run(sockets=[listening])


@app.command()
@guarded
def export(
    ctx: typer.Context,
    filters: FiltersOption = None,
    more: MoreFilters = None,
    out: Annotated[Path | None, typer.Option(metavar="PATH",
        help="Write to this file (default: stdout).")] = None,
    history: Annotated[bool, typer.Option("--history",
        help="One row per observed status change.")] = False,
    gzip: Annotated[bool, typer.Option("--gzip",
        help="Compress (implied by an --out ending in .gz).")] = False,
    raw: Annotated[bool, typer.Option("--raw",
        help="Turn off the spreadsheet formula guard.")] = False,
    source: SourceOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    include_incomplete: IncompleteOption = False,
) -> None:  # fmt: skip
    """Export operations as CSV for audits, with a manifest beside a file.

    Streams any number of rows. Free-text cells starting with = + - @ tab or CR get a
    leading ' so spreadsheets do not run them (--raw turns this off). With --out, the
    file appears complete or not at all, and PATH.manifest.json records its row count,
    SHA-256, filters and each source's watermark.

    \b
    Example:
      archiver export --filters Name=STATUS,Values=FAIL --out failures.csv.gz
    """
    from archiver import guards
    from archiver.read import outputs

    if include_incomplete and history:
        raise UsageError("--include-incomplete has no history to add: use it without --history")
    selection = selection_of(ctx, filters, more, since=since, until=until, source=source,
                             ascending=True,  # oldest first
                             include_incomplete=include_incomplete)  # fmt: skip
    compress = gzip or (out is not None and guards.named_gz(out))  # --gzip, or --out x.gz
    if compress and out is None and sys.stdout.isatty():  # as gzip: no binary to a terminal
        raise UsageError("--gzip writes binary: give --out PATH, or send stdout to a file or pipe")
    with open_archive(ctx) as archive:
        sys.stdout.flush()
        result = outputs.export(archive, selection, out, stdout=sys.stdout.buffer,
                                history=history, raw=raw, compress=compress)  # fmt: skip
    if out is not None:
        log.info("exported %d rows to %s (sha256 %s)", result.rows, out, result.sha256)


@app.command()
@guarded
def report(
    ctx: typer.Context,
    filters: FiltersOption = None,
    more: MoreFilters = None,
    out: Annotated[
        Path,
        typer.Option(metavar="PATH", help="The HTML file to write."),
    ] = Path("report.html"),
    source: SourceOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
) -> None:
    """Write one self-contained HTML report with charts, for people who read pictures.

    Operations per day by status, failure rate by type, the ten services with the
    most failures (by name), durations by type and the sync runs over time, each
    with its figures in a table under it. The file opens offline (no network, no
    CDN) and appears complete or not at all. Needs the report extra (plotly).

    \b
    Example:
      archiver report --since 90d --out report.html
    """
    from archiver import guards
    from archiver.read import report as rep

    rep.plotly()  # the extra is missing: say so before any work
    selection = selection_of(ctx, filters, more, since=since, until=until, source=source)
    with open_archive(ctx) as archive:
        dest = guards.target(out, flag="--out", protected=archive.files)
        figures = rep.gather(archive, selection)
        text = rep.render(figures, archive_name=archive.name,
                                  selection_text=describe(selection))  # fmt: skip
    guards.write_file(dest, text.encode("utf-8"))  # gzipped when --out ends in .gz
    log.info("wrote %s: %d operations, %d sync runs", out, figures.total, len(figures.runs))


def describe(selection: Selection) -> str:
    """The selection in the words the user typed, for the report's header."""
    from archiver.timeutil import iso

    parts = [f"{f['Name']} {f['Condition']} {','.join(f['Values'])}"
             for f in selection.filters.to_request()]  # fmt: skip
    bounds = (("since", selection.since), ("until", selection.until))
    parts += [f"{word} {iso(when)}" for word, when in bounds if when]
    if selection.source:
        parts.append(f"source {selection.source}")
    return "; ".join(parts) or "everything"


YesOption = Annotated[bool, typer.Option("--yes", help="Do not ask (required without a terminal).")]
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The source, as `sources list` "
                                             "names it.")]  # fmt: skip


def _confirm(yes: bool, action: str, consequence: str) -> None:
    """Ask on a terminal; without one (cron, a pipe), refuse unless --yes (exit 2)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"not going to {action} without --yes (stdin is not a terminal). "
                         f"{consequence}")  # fmt: skip
    if not typer.confirm(f"{action[0].upper()}{action[1:]}? {consequence}"):
        raise UsageError("nothing changed")


@db_app.command("upgrade")
@guarded
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(metavar="REVISION", help="Target revision.")] = "head",
) -> None:
    """Create the archive or bring it to the newest schema (safe to repeat).

    \b
    Example:
      archiver --db archive.db db upgrade
    """
    _migrate(ctx, "upgrade", revision)


@db_app.command("downgrade", context_settings={"ignore_unknown_options": True})  # -1: a step
@guarded
def db_downgrade(
    ctx: typer.Context,
    revision: Annotated[
        str, typer.Argument(metavar="REVISION", help="An id, -1 (one back), or `base` (no table).")
    ],
    yes: YesOption = False,
) -> None:
    """Take the schema back to an older revision (data in dropped tables is lost).

    Asks first on a terminal; without one (cron, a pipe) it refuses unless --yes.

    \b
    Example:
      archiver --db archive.db db downgrade 8c2f1d3a9b10 --yes
    """
    _confirm(yes, f"downgrade to {revision}", "Data in dropped tables is lost.")
    _migrate(ctx, "downgrade", revision)


def _migrate(ctx: typer.Context, action: str, target: str) -> None:
    from archiver.store.archive import Archive

    settings = settings_of(ctx)
    with Archive(settings.db) as archive:
        getattr(archive, action)(target)
        if not settings.quiet:
            now = archive.revision() or "base (no schema)"
            typer.echo(f"{archive.name} is at revision {now}", err=True)


@db_app.command("current")
@guarded
def db_current(ctx: typer.Context) -> None:
    """Print the archive's schema revision, and whether it is the one this archiver needs.

    \b
    Example:
      archiver --db archive.db db current
    """
    from archiver.store.archive import Archive
    from archiver.store.db import head

    with Archive(settings_of(ctx).db) as archive:
        rev = archive.revision()
    mark = "(head)" if rev == head() else f"(this archiver needs {head()})"
    typer.echo(f"{rev or 'base'} {mark}")


@sources_app.command("list")
@guarded
def sources_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every source in the archive: region, endpoint, operations, watermark, retired.

    \b
    Example:
      archiver --db archive.db sources list --json
    """
    from archiver.read.status import summarize

    with open_archive(ctx) as archive:
        shown = ("region", "endpoint_url", "operations", "watermark", "retired")
        rows = [{"name": s["source"], **{k: s[k] for k in shown}}
                for s in summarize(archive)["sources"]]  # fmt: skip
    _print(rows, as_json, (f"{r['name']}  region {r['region'] or '-'}  operations {r['operations']}"
                           f"  watermark {r['watermark'] or 'none'}"
                           + ("  retired" if r["retired"] else "") for r in rows))  # fmt: skip


def _print(data: Any, as_json: bool, lines: Iterable[str]) -> None:
    """``data`` as indented JSON (--json), or ``lines``, one each and escaped as server
    text is (a name an older archiver took, an account id a server sent)."""
    texts = [json.dumps(data, indent=2, ensure_ascii=False)] if as_json else map(printable, lines)
    for text in texts:
        echo(text)  # status --check's verdict stands when its reader has left


@sources_app.command("plan")
@guarded
def sources_plan(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The sources a --config expands to (regions, accounts), with no Cloud Map call.

    \b
    Example:
      archiver --config /etc/archiver/fleet.toml sources plan
    """
    from archiver.guards import mask_url
    from archiver.sync import fleet

    if (config := settings_of(ctx).config) is None:
        raise UsageError("sources plan needs --config PATH (or ARCHIVER_CONFIG)")
    rows = [
        {"name": job.opts.source, "region": job.opts.region, "profile": job.client.profile,
         "endpoint_url": mask_url(job.client.endpoint_url) or None}
        for job in fleet.plan(config, None)
    ]  # fmt: skip
    _print(rows, as_json, (f"{r['name']}  region {r['region']}  profile {r['profile'] or 'default'}"
                           + (f"  endpoint {r['endpoint_url']}" if r["endpoint_url"] else "")
                           for r in rows))  # fmt: skip


@sources_app.command("remove")
@guarded
def sources_remove(ctx: typer.Context, name: NameArgument, yes: YesOption = False) -> None:
    """Delete a source with its operations, events, runs and state, in one transaction.

    Asks first on a terminal; without one (cron, a pipe) it refuses unless --yes.

    \b
    Example:
      archiver --db archive.db sources remove typo@eu-west-9 --yes
    """
    from archiver.store.write import drop_source, source_holdings

    with open_archive(ctx) as archive:
        held = source_holdings(archive, name)
        holds = (f"It holds {held['operations']} operations, {held['operation_events']} "
                 f"status events and {held['sync_runs']} runs; all are deleted.")  # fmt: skip
        _confirm(yes, f"remove source {name!r}", holds)
        removed = drop_source(archive, name)
    if not settings_of(ctx).quiet:
        counts = (removed["operations"], removed["operation_events"], removed["sync_runs"])
        typer.echo(f"removed source {name!r}: %d operations, %d events, %d runs" % counts, err=True)


@sources_app.command("retire")
@guarded
def sources_retire(ctx: typer.Context, name: NameArgument) -> None:
    """Stop watching a source that is synced no more (an account closed, a region left),
    keeping all it holds: `status --check` and the metrics leave it out. A later sync of
    it brings it back.

    \b
    Example:
      archiver --db archive.db sources retire 111122223333@ap-southeast-2
    """
    from archiver.store.write import retire_source

    with open_archive(ctx) as archive:
        done = retire_source(archive, name)
    if not settings_of(ctx).quiet:
        typer.echo(f"{'retired' if done else 'already retired:'} source {name!r}; its history "
                   "stays, and a sync of it brings it back", err=True)  # fmt: skip


@app.command()
@guarded
def status(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option(metavar="NAME", help="Only this source.")] = None,
    as_json: JsonOption = False,
    check: Annotated[bool, typer.Option("--check",
        help="Exit 1, one line per source, when one is stale or failing.")] = False,
    max_age: Annotated[str, typer.Option(metavar="SPAN",
        help="With --check: the stalest allowed.")] = "26h",
    max_fail_rate: Annotated[float | None, typer.Option(metavar="RATE", min=0, max=1,
        help="With --check: also fail when more than this share of a source's operations "
             "updated within --fail-window failed (0.5 is half).")] = None,
    fail_window: Annotated[str, typer.Option(metavar="SPAN",
        help="With --max-fail-rate: how far back to look.")] = "24h",
    min_operations: Annotated[int, typer.Option(metavar="N", min=1,
        help="With --max-fail-rate: say nothing of a source with fewer operations in the "
             "window.")] = 10,
) -> None:  # fmt: skip
    """Per source: watermark, last runs and their counts, archive totals by status and type.

    With --check, a verdict for cron and alerting instead: silent and exit 0 when
    every source's last successful sync is younger than --max-age (its watermark no
    more than that behind it), its latest run did not fail and (with --max-fail-rate)
    its operations do not fail more than that; otherwise one line per problem, exit 1.

    \b
    Examples:
      archiver --db /var/lib/archiver/archive.db status --check --max-age 26h
      archiver --db archive.db status --check --max-fail-rate 0.5 --fail-window 1h
    """
    from archiver.read import status as state  # this function is named status
    from archiver.timeutil import named, parse_span

    for name in ("max_age", "max_fail_rate", "fail_window", "min_operations"):
        typed = ctx.get_parameter_source(name)
        if not check and typed is not None and typed.name == "COMMANDLINE":
            raise UsageError(f"--{name.replace('_', '-')} goes with --check (the verdict it "
                             "sets a limit of)")  # fmt: skip
    age = named("--max-age", max_age, parse_span)
    window = named("--fail-window", fail_window, parse_span)
    rated = check and max_fail_rate is not None  # 0 too: any failure fails the check
    with open_archive(ctx) as archive:
        summary = state.summarize(archive, source=source)
        rates = state.fail_rates(archive, window=window, source=source) if rated else None
    if not check:
        _print(summary, as_json, state.to_text(summary).splitlines())
        return
    fleet, db = settings_of(ctx).config, settings_of(ctx).db
    # a config's [[source]]s are expected in its archive: its db, or, when it names none,
    # one that holds any of them (an unrelated archive is not held to a config in effect)
    names = [s["source"] for s in fleet.sources] if fleet and source is None else []
    held = {s["source"] for s in summary["sources"]}
    ours = fleet is not None and (fleet.db == db or (fleet.db is None and bool(held & {*names})))
    problems = state.check_freshness(summary, max_age=age, expected=names if ours else [])
    if rates is not None and max_fail_rate is not None:
        problems += state.check_failures(rates, max_rate=max_fail_rate, window=window,
                                         min_operations=min_operations)  # fmt: skip
    summary["check"] = {"ok": not problems, "max_age": max_age, "problems": problems,
                        **({"fail_window": fail_window, "max_fail_rate": max_fail_rate,
                            "fail_rates": rates} if rates is not None else {})}  # fmt: skip
    _print(summary, as_json, problems)
    if problems:
        raise typer.Exit(1)
