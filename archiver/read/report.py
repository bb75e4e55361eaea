"""`archiver report`: figures aggregated in SQL, drawn by plotly into one HTML file.

Every figure is a GROUP BY over the selected operations (the same filters,
``--since``/``--until`` and ``--source`` as ``query``), so a report of a million
operations moves a few thousand numbers into Python, never the rows. The sync runs
are read per source (the filters are about operations, not runs).
"""

import html
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, select

from archiver import __version__
from archiver.errors import UsageError
from archiver.read.query import Selection, target_names
from archiver.store.archive import Archive
from archiver.store.models import Operation, SyncRun, seconds_between, utc_day
from archiver.store.write import source_ids
from archiver.timeutil import iso, now

UNFINISHED = ("SUBMITTED", "PENDING")
#: Duration buckets: (upper bound in seconds, label); the last has no bound.
BUCKETS: tuple[tuple[float | None, str], ...] = (
    (1, "< 1 s"), (10, "1–10 s"), (60, "10–60 s"), (300, "1–5 min"), (1800, "5–30 min"),
    (7200, "30 min–2 h"), (None, "≥ 2 h"),
)  # fmt: skip
TOP_SERVICES = 10


@dataclass(frozen=True)
class Run:
    """One sync run as the report draws it."""

    source: str
    started_at: datetime
    outcome: str
    duration_s: float | None  # None while running, or for a killed run
    lag_s: float | None  # how far the watermark stood behind the run's end


@dataclass
class Figures:
    sources: list[str]
    total: int = 0
    per_day: list[tuple[str, str, int]] = field(default_factory=list)  # day, status, n
    by_type: list[tuple[str, int, int]] = field(default_factory=list)  # type, n, failed
    top_failing: list[tuple[str, str, int]] = field(default_factory=list)  # name, id, n
    durations: list[tuple[str, str, int]] = field(default_factory=list)  # type, bucket, n
    runs: list[Run] = field(default_factory=list)


def gather(archive: Archive, selection: Selection) -> Figures:
    """Every figure of the report for ``selection``; an unknown source is exit 2."""
    with archive.reader.connect() as conn:
        names = source_ids(conn, selection.source)
        of = target_names(conn, names)
        figures = Figures(sources=sorted(names.values()))
        where = [selection.filters.to_sql(Operation), *selection.bounds()]
        if selection.source is not None:
            where.append(Operation.source_id.in_(names))

        def rows(*columns: Any, group: list[Any], extra: Any = ()) -> list[Any]:
            stmt = select(*columns).select_from(Operation).where(*where, *extra)
            return list(conn.execute(stmt.group_by(*group).order_by(*group)).all())

        day, status, kind = utc_day(Operation.update_date), Operation.status, Operation.type
        figures.per_day = [tuple(r) for r in rows(day, status, func.count(), group=[day, status])]
        failed = func.sum(case((status == "FAIL", 1), else_=0))
        figures.by_type = [
            (t, n, int(f or 0)) for t, n, f in rows(kind, func.count(), failed, group=[kind])
        ]
        figures.total = sum(n for _, n, _ in figures.by_type)
        figures.top_failing = _top_failing(conn, where, names, of)
        took = seconds_between(Operation.create_date, Operation.update_date)
        whens = [(took < bound, i) for i, (bound, _) in enumerate(BUCKETS) if bound is not None]
        bucket = case(*whens, else_=len(BUCKETS) - 1)  # the index of its BUCKETS entry
        final = [status.not_in(UNFINISHED)]
        figures.durations = [
            (t, BUCKETS[b][1], n)
            for t, b, n in rows(kind, bucket, func.count(), group=[kind, bucket], extra=final)
        ]
        figures.runs = _runs(conn, names)
    return figures


def _top_failing(
    conn: Connection, where: list[Any], names: dict[int, str], of: Callable[..., tuple[Any, Any]]
) -> list[tuple[str, str, int]]:
    """The services with the most FAIL operations, by name (the id when no sync listed
    it), with the source's name when the report covers several sources."""
    n = func.count().label("n")
    stmt = (
        select(Operation.source_id, Operation.service_id, n)
        .where(*where, Operation.status == "FAIL", Operation.service_id.is_not(None))
        .group_by(Operation.source_id, Operation.service_id)
        .order_by(n.desc(), Operation.service_id)
        .limit(TOP_SERVICES)
    )
    out: list[tuple[str, str, int]] = []
    for sid, service_id, count in conn.execute(stmt):
        label = str(of(sid, None, service_id)[1] or service_id)
        out.append((f"{label} ({names[sid]})" if len(names) > 1 else label, str(service_id),
                    int(count)))  # fmt: skip
    return out


def _runs(conn: Connection, names: dict[int, str]) -> list[Run]:
    """Each run of the selected sources, oldest first, with the watermark's lag: how
    far behind the run's end the archive was complete (the run's ``until`` when it
    succeeded, else the last good run's)."""
    r = SyncRun
    stmt = (select(r.source_id, r.started_at, r.finished_at, r.outcome, r.until)
            .where(r.source_id.in_(names)).order_by(r.started_at, r.id))  # fmt: skip
    complete_to: dict[int, datetime] = {}
    out = []
    for sid, started, finished, outcome, until in conn.execute(stmt):
        if outcome == "succeeded" and until is not None:
            complete_to[sid] = until
        mark = complete_to.get(sid)
        took = (finished - started).total_seconds() if finished else None
        lag = (finished - mark).total_seconds() if finished and mark else None
        out.append(Run(names[sid], started, outcome, took, lag))
    return out


#: The chart ids, in page order; the browser test checks each is drawn.
CHARTS = ("per-day", "failure-rate", "top-failing", "durations", "sync-runs")
#: Okabe and Ito's palette, told apart by readers with any common colour blindness
#: (red and green are not): blue for success, vermillion for failure.
SUCCESS_COLOUR, FAIL_COLOUR = "#0072B2", "#D55E00"
STATUS_COLOURS = {
    "SUCCESS": SUCCESS_COLOUR,
    "FAIL": FAIL_COLOUR,
    "PENDING": "#E69F00",
    "SUBMITTED": "#56B4E9",
}
_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'unsafe-inline'; img-src data: blob:; font-src data:"
)
_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.2em; margin-top: 2.2em; border-bottom: 1px solid #ddd; }
.meta { color: #555; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: 12px; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
details summary { cursor: pointer; color: #0072B2; }
caption { text-align: left; color: #555; padding: 2px 0; }
figure { margin: 0; }
.headline { display: flex; gap: 2em; margin: 1em 0; }
.headline dt { color: #555; font-size: .9em; }
.headline dd { margin: 0; font-size: 1.5em; font-weight: 600; }
"""


def plotly() -> Any:
    """plotly's graph objects, or a one-line usage error naming the extra to install."""
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise UsageError(
            "archiver report draws its charts with plotly: pip install 'cloudmap-archiver[report]'"
        ) from None
    return go


def render(figures: Figures, *, archive_name: str, selection_text: str) -> str:
    """The whole report as one HTML document."""
    go = plotly()
    from plotly.offline import get_plotlyjs

    sections = [
        _per_day(go, figures),
        _failure_rate(go, figures),
        _top_failing_chart(go, figures),
        _durations(go, figures),
        _sync_runs(go, figures),
    ]
    sources = ", ".join(figures.sources) or "none yet"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Cloud Map operations — {html.escape(archive_name)}</title>
<style>{_STYLE}</style>
<script>{get_plotlyjs()}</script>
</head>
<body>
<h1>Cloud Map operations</h1>
<p class="meta">Archive <b>{html.escape(archive_name)}</b> · sources: {html.escape(sources)}
· {figures.total:,} operations selected ({html.escape(selection_text)})
· made {iso(now())} by archiver {__version__}</p>
{_headline(figures)}
{"".join(sections)}
</body>
</html>
"""


def _headline(f: Figures) -> str:
    """The figures a reader wants first: operations, failure rate, the last successful
    sync and how fresh the archive is."""
    failed = sum(n_failed for _, _, n_failed in f.by_type)
    rate = f"{100 * failed / f.total:.1f}%" if f.total else "–"
    good = [r.started_at + timedelta(seconds=r.duration_s or 0) for r in f.runs
            if r.outcome == "succeeded"]  # fmt: skip
    last = max(good) if good else None
    age = _ago(now() - last) if last else "never"
    cells = (("Operations", f"{f.total:,}"), ("Failure rate", rate),
             ("Last successful sync", iso(last) if last else "never"),
             ("Freshness", age))  # fmt: skip
    items = "".join(f'<div class="figure"><dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>'
                    "</div>" for k, v in cells)  # fmt: skip
    return f'<dl id="headline" class="headline">{items}</dl>'


def _ago(delta: timedelta) -> str:
    minutes = delta.total_seconds() / 60
    if minutes < 60:
        return f"{minutes:.0f} min ago"
    return f"{minutes / 60:.0f} h ago" if minutes < 48 * 60 else f"{minutes / 1440:.0f} days ago"


def _section(chart_id: str, title: str, figure: Any, table: str, note: str = "") -> str:
    """A chart and its figures; a long table starts folded, so the charts come first."""
    figure.update_layout(template="plotly_white", height=380,
                         legend={"orientation": "h", "y": -0.2},
                         margin={"l": 60, "r": 20, "t": 30, "b": 60})  # fmt: skip
    chart = figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{chart_id}",
                           config={"displaylogo": False, "responsive": True})  # fmt: skip
    note_html = f'<p class="meta">{html.escape(note)}</p>' if note else ""
    name = html.escape(f"Chart: {title}; its figures are in the table below it", quote=True)
    table = table.replace("<table>", f"<table><caption>{html.escape(title)}: the figures"
                          "</caption>", 1)  # fmt: skip
    return (
        f'<section id="{chart_id}"><h2>{html.escape(title)}</h2>{note_html}'
        f'<figure role="img" aria-label="{name}">{chart}</figure>'
        f"<details{' open' if table.count('<tr>') <= 13 else ''}><summary>The figures"
        f"</summary>{table}</details></section>\n"
    )


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _plain(text: str) -> str:
    """Server text as a chart label: plotly reads a subset of HTML in labels (a
    service named ``<a href=…>`` became a live link), and shows entities as the
    characters they stand for, so the label is escaped and reads as it was sent."""
    return html.escape(text, quote=False)


def _per_day(go: Any, f: Figures) -> str:
    days = sorted({d for d, _, _ in f.per_day})
    known = list(STATUS_COLOURS)  # in their order, then any other by name
    statuses = sorted({s for _, s, _ in f.per_day},
                      key=lambda s: (known.index(s) if s in known else len(known), s))  # fmt: skip
    counts = {(d, s): n for d, s, n in f.per_day}
    per_status = {s: [counts.get((d, s), 0) for d in days] for s in statuses}
    fig = go.Figure([go.Bar(name=_plain(s), x=days, y=ys, marker_color=STATUS_COLOURS.get(s))
                     for s, ys in per_status.items()])  # fmt: skip
    fig.update_layout(barmode="stack", yaxis_title="operations")
    rows = [[d, *(ys[i] for ys in per_status.values()), sum(ys[i] for ys in per_status.values())]
            for i, d in enumerate(days)]  # fmt: skip
    table = _table(["day (UTC, last update)", *statuses, "all"], rows)
    return _section("per-day", "Operations per day, by status", fig, table)


def _failure_rate(go: Any, f: Figures) -> str:
    rates = [(t, n, failed, 100.0 * failed / n if n else 0.0) for t, n, failed in f.by_type]
    fig = go.Figure(
        go.Bar(
            x=[_plain(t) for t, *_ in rates],
            y=[r for *_, r in rates],
            marker_color=FAIL_COLOUR,
            text=[f"{r:.1f}%" for *_, r in rates],
        )
    )
    fig.update_layout(yaxis_title="FAIL, % of the type's operations")
    table = _table(["type", "operations", "failed", "failed %"], rates)
    return _section("failure-rate", "Failure rate by type", fig, table)


def _top_failing_chart(go: Any, f: Figures) -> str:
    top = list(reversed(f.top_failing))  # the most failures at the top of the chart
    fig = go.Figure(go.Bar(x=[n for *_, n in top], y=[_plain(name) for name, *_ in top],
                           orientation="h", marker_color="#c62828"))  # fmt: skip
    fig.update_layout(xaxis_title="FAIL operations")
    table = _table(["service", "service id", "failures"], f.top_failing)
    return _section(
        "top-failing",
        "The ten services with the most failures",
        fig,
        table,
        "By name as the archive last listed it; the id where no sync listed it.",
    )


def _durations(go: Any, f: Figures) -> str:
    labels = [label for _, label in BUCKETS]
    types = sorted({t for t, _, _ in f.durations})
    counts = {(t, b): n for t, b, n in f.durations}
    fig = go.Figure(
        [go.Bar(name=_plain(t), x=labels, y=[counts.get((t, b), 0) for b in labels]) for t in types]
    )
    fig.update_layout(
        barmode="group", yaxis_title="operations", xaxis_title="create to last update"
    )
    rows = [[t, *(counts.get((t, b), 0) for b in labels)] for t in types]
    table = _table(["type", *labels], rows)
    return _section("durations", "Duration by type (final operations)", fig, table)


def _sync_runs(go: Any, f: Figures) -> str:
    fig = go.Figure()
    for outcome in sorted({r.outcome for r in f.runs}):
        runs = [r for r in f.runs if r.outcome == outcome]
        colour = SUCCESS_COLOUR if outcome == "succeeded" else FAIL_COLOUR
        fig.add_trace(go.Scatter(name=f"{outcome} (duration)", mode="markers",
                                 x=[iso(r.started_at) for r in runs],
                                 y=[r.duration_s for r in runs],
                                 marker={"color": colour, "size": 8}))  # fmt: skip
    fig.update_layout(yaxis_title="run duration, s")  # one axis: the lag is in the table
    rows = [[r.source, r.started_at, r.outcome, r.duration_s, r.lag_s] for r in f.runs]
    table = _table(["source", "started", "outcome", "duration s", "watermark lag s"], rows)
    return _section("sync-runs", "Sync runs over time", fig, table,
                    "Each run of the selected sources; the filters select operations, not runs. "
                    "Lag: how far behind the run's end the archive was complete.")  # fmt: skip
