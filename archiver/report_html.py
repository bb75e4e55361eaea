"""`archiver report`'s one self-contained HTML file: charts, and the figures under each.

The charts are drawn by plotly (the ``report`` extra): interactive (hover for the
figure, zoom a busy month) and drawn in the browser from a few thousand numbers, so
the file stays small in memory to make. plotly.js is inlined once, so the file opens
offline with no CDN, and a Content-Security-Policy forbids every fetch, so a report
mailed to an auditor never calls home. Every chart has its figures in a table under
it: readable without JavaScript, and copyable into a spreadsheet.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from archiver import __version__
from archiver.errors import UsageError
from archiver.report import BUCKETS, Figures
from archiver.timeutil import iso, now

#: The chart ids, in page order; the browser test checks each is drawn.
CHARTS = ("per-day", "failure-rate", "top-failing", "durations", "sync-runs")
STATUS_COLOURS = {
    "SUCCESS": "#2e7d32",
    "FAIL": "#c62828",
    "PENDING": "#f9a825",
    "SUBMITTED": "#1565c0",
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
details summary { cursor: pointer; color: #1565c0; }
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
{"".join(sections)}
</body>
</html>
"""


def _section(go: Any, chart_id: str, title: str, figure: Any, table: str, note: str = "") -> str:
    """A chart and its figures; a long table starts folded, so the charts come first."""
    figure.update_layout(
        template="plotly_white",
        height=380,
        margin={"l": 60, "r": 20, "t": 30, "b": 60},
        legend={"orientation": "h", "y": -0.2},
    )
    chart = figure.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=f"chart-{chart_id}",
        config={"displaylogo": False, "responsive": True},
    )
    note_html = f'<p class="meta">{html.escape(note)}</p>' if note else ""
    return (
        f'<section id="{chart_id}"><h2>{html.escape(title)}</h2>{note_html}{chart}'
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


def _per_day(go: Any, f: Figures) -> str:
    days = sorted({d for d, _, _ in f.per_day})
    statuses = sorted({s for _, s, _ in f.per_day}, key=_status_order)
    counts = {(d, s): n for d, s, n in f.per_day}
    fig = go.Figure(
        [
            go.Bar(
                name=s,
                x=days,
                y=[counts.get((d, s), 0) for d in days],
                marker_color=STATUS_COLOURS.get(s),
            )
            for s in statuses
        ]
    )
    fig.update_layout(barmode="stack", yaxis_title="operations")
    rows = [
        [
            d,
            *(counts.get((d, s), 0) for s in statuses),
            sum(counts.get((d, s), 0) for s in statuses),
        ]
        for d in days
    ]
    return _section(
        go,
        "per-day",
        "Operations per day, by status",
        fig,
        _table(["day (UTC, last update)", *statuses, "all"], rows),
    )


def _failure_rate(go: Any, f: Figures) -> str:
    rates = [(t, n, failed, 100.0 * failed / n if n else 0.0) for t, n, failed in f.by_type]
    fig = go.Figure(
        go.Bar(
            x=[t for t, *_ in rates],
            y=[r for *_, r in rates],
            marker_color="#c62828",
            text=[f"{r:.1f}%" for *_, r in rates],
        )
    )
    fig.update_layout(yaxis_title="FAIL, % of the type's operations")
    return _section(
        go,
        "failure-rate",
        "Failure rate by type",
        fig,
        _table(["type", "operations", "failed", "failed %"], rates),
    )


def _top_failing_chart(go: Any, f: Figures) -> str:
    top = list(reversed(f.top_failing))  # the most failures at the top of the chart
    fig = go.Figure(
        go.Bar(
            x=[n for *_, n in top],
            y=[name for name, *_ in top],
            orientation="h",
            marker_color="#c62828",
        )
    )
    fig.update_layout(xaxis_title="FAIL operations")
    return _section(
        go,
        "top-failing",
        "The ten services with the most failures",
        fig,
        _table(["service", "service id", "failures"], f.top_failing),
        "By name as the archive last listed it; the id where no sync listed it.",
    )


def _durations(go: Any, f: Figures) -> str:
    labels = [label for _, label in BUCKETS]
    types = sorted({t for t, _, _ in f.durations})
    counts = {(t, b): n for t, b, n in f.durations}
    fig = go.Figure(
        [go.Bar(name=t, x=labels, y=[counts.get((t, b), 0) for b in labels]) for t in types]
    )
    fig.update_layout(
        barmode="group", yaxis_title="operations", xaxis_title="create to last update"
    )
    rows = [[t, *(counts.get((t, b), 0) for b in labels)] for t in types]
    return _section(
        go, "durations", "Duration by type (final operations)", fig, _table(["type", *labels], rows)
    )


def _sync_runs(go: Any, f: Figures) -> str:
    fig = go.Figure()
    for outcome in sorted({r.outcome for r in f.runs}):
        runs = [r for r in f.runs if r.outcome == outcome]
        fig.add_trace(
            go.Scatter(
                name=f"{outcome} (duration)",
                mode="markers",
                x=[iso(r.started_at) for r in runs],
                y=[r.duration_s for r in runs],
                marker={"color": "#2e7d32" if outcome == "succeeded" else "#c62828", "size": 8},
            )
        )
    fig.add_trace(
        go.Scatter(
            name="watermark lag",
            mode="lines",
            x=[iso(r.started_at) for r in f.runs],
            y=[r.lag_s for r in f.runs],
            yaxis="y2",
            line={"color": "#777", "dash": "dot"},
        )
    )
    fig.update_layout(
        yaxis_title="run duration, s",
        yaxis2={"title": "watermark lag, s", "overlaying": "y", "side": "right"},
    )
    rows = [[r.source, r.started_at, r.outcome, r.duration_s, r.lag_s] for r in f.runs]
    return _section(
        go,
        "sync-runs",
        "Sync runs over time",
        fig,
        _table(["source", "started", "outcome", "duration s", "watermark lag s"], rows),
        "Each run of the selected sources; the filters select operations, "
        "not runs. Lag: how far behind the run's end the archive was complete.",
    )


def _status_order(status: str) -> tuple[int, str]:
    known = list(STATUS_COLOURS)
    return (known.index(status) if status in known else len(known), status)
