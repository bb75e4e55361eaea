"""The commands that read the archive: query, export and report.

They share their selection options — ListOperations' filters, --since/--until, the
source and --include-incomplete — which are parsed and checked before the archive
is opened, so that bad input writes nothing and prints one line (exit 2).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from archiver.choices import OrderBy, Output
from archiver.cli import app, guarded, log, open_archive, terminal_width

if TYPE_CHECKING:
    from archiver.filters import Filters
    from archiver.query import Selection


# --- the selection options that query, export and report share -------------------------

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
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="WHEN",
        help="Only operations last updated at or after WHEN: ISO-8601, epoch seconds, or a "
        "span ago like 30d (shorthand for an UPDATE_DATE BETWEEN; ANDed with --filters).",
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option(
        "--until",
        metavar="WHEN",
        help="Only operations last updated at or before WHEN, in --since's forms.",
    ),
]


def selection_of(
    ctx: typer.Context,
    filters: list[str] | None,
    more: list[str] | None,
    *,
    since: str | None,
    until: str | None,
    **choices: Any,
) -> Selection:
    """The options as a ``Selection``, checked before the archive is read (exit 2)."""
    from archiver.errors import UsageError, parsed
    from archiver.query import Selection
    from archiver.timeutil import now, parse_when

    started = now()

    def when(text: str) -> datetime:
        return parse_when(text, now_=started)

    start = parsed("--since", since, when)
    end = parsed("--until", until, when)
    if start is not None and end is not None and end < start:
        raise UsageError("--until is before --since; nothing can match")
    return Selection(_filters(ctx, filters, more), since=start, until=end, **choices)


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
    from archiver import render

    selection = selection_of(ctx, filters, more, since=since, until=until, source=source,
                             order_by=order_by, ascending=ascending, limit=max_items,
                             include_incomplete=include_incomplete)  # fmt: skip
    with open_archive(ctx) as archive:
        rows = render.fetch(output, archive, selection)
        width = terminal_width() if sys.stdout.isatty() else None
        render.write(output, rows, sys.stdout, width=width)
        sys.stdout.flush()


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
    since: SinceOption = None,
    until: UntilOption = None,
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

    if include_incomplete and history:
        raise UsageError("--include-incomplete has no history to add: use it without --history")
    selection = selection_of(ctx, filters, more, since=since, until=until, source=source,
                             ascending=True,  # oldest first
                             include_incomplete=include_incomplete)  # fmt: skip
    stopping.install(at_once=True)  # SIGTERM stops the export and removes its temporary file
    with open_archive(ctx) as archive:
        sys.stdout.flush()
        result = ex.export(archive, selection, out, stdout=sys.stdout.buffer, history=history,
                           raw=raw, compress=ex.wants_gzip(out, gzip))  # fmt: skip
        sys.stdout.buffer.flush()
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
        typer.Option("--out", metavar="PATH", help="The HTML file to write."),
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
    from archiver import report as rep
    from archiver import report_html, stopping
    from archiver.export import check_destination, replace_with

    report_html.plotly()  # the extra is missing: say so before any work
    selection = selection_of(ctx, filters, more, since=since, until=until, source=source)
    stopping.install(at_once=True)  # SIGTERM: exit 130, and no file half-written
    with open_archive(ctx) as archive:
        dest = check_destination(out, archive)
        figures = rep.gather(archive, selection)
        text = report_html.render(figures, archive_name=archive.name,
                                  selection_text=describe(selection))  # fmt: skip
    replace_with(dest, text.encode("utf-8"))
    log.info("wrote %s: %d operations, %d sync runs", out, figures.total, len(figures.runs))


def describe(selection: Selection) -> str:
    """The selection in the words the user typed, for the report's header."""
    from archiver.timeutil import iso

    parts = [f"{f['Name']} {f['Condition']} {','.join(f['Values'])}"
             for f in selection.filters.to_request()]  # fmt: skip
    if selection.since:
        parts.append(f"since {iso(selection.since)}")
    if selection.until:
        parts.append(f"until {iso(selection.until)}")
    if selection.source:
        parts.append(f"source {selection.source}")
    return "; ".join(parts) or "everything"
