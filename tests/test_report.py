"""`archiver report`: the figures equal the archive's content, the file is whole and
self-contained, and it renders in a real browser (headless Chromium) offline."""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from archiver.read.query import Selection
from archiver.read.report import BUCKETS, CHARTS, gather
from archiver.records import Listed
from archiver.store import write as catalog
from archiver.store.archive import Archive
from tests.conftest import invoke, prerequisite_missing
from tests.helpers import T0, fill, op

HOSTILE = "</script><img src=x onerror=alert(1)>=cmd"
#: plotly reads a subset of HTML in labels: this became a live link, and <b> bold
LINK = '<a href="https://evil.example/phish">pay</a><b>now</b>'


def _content() -> list:
    ops = []
    for i in range(60):
        status = ("SUCCESS", "FAIL", "PENDING")[i % 3] if i % 5 else "FAIL"
        record = op(i, status=status, minutes=i * 97, service=f"srv-{i % 4}",
                    type=("REGISTER_INSTANCE", "UPDATE_SERVICE")[i % 2])  # fmt: skip
        took = timedelta(seconds=(0.5, 5, 50, 500, 5000, 50_000)[i % 6])
        ops.append(replace(record, create_date=record.update_date - took))
    return ops


@pytest.fixture
def reported(archive: str) -> str:
    fill(archive, _content())
    with Archive(archive) as handle, handle.writer.begin() as conn:
        shown = {1: HOSTILE, 2: LINK}
        names = [Listed(f"srv-{i}", shown.get(i, f"svc-{i}"), "HTTP", None, None, None)
                 for i in range(3)]  # srv-3 never listed: shown by its id  # fmt: skip
        catalog.record_catalog(conn, 1, "services", names, seen_at=T0, complete=True)
    return archive


def test_the_figures_are_the_archives_own(reported) -> None:
    ops = _content()
    with Archive(reported) as handle:
        figures = gather(handle, Selection())
    assert figures.total == len(ops)
    per_day = Counter()
    for o in ops:
        per_day[(o.update_date.strftime("%Y-%m-%d"), o.status)] += 1
    assert {(d, s): n for d, s, n in figures.per_day} == per_day
    by_type = {t: (sum(o.type == t for o in ops), sum(o.type == t and o.status == "FAIL"
                                                       for o in ops)) for t in {o.type for o in ops}}  # fmt: skip
    assert {t: (n, f) for t, n, f in figures.by_type} == by_type
    fails = Counter(o.service_id for o in ops if o.status == "FAIL")
    names = {"srv-0": "svc-0", "srv-1": HOSTILE, "srv-2": LINK, "srv-3": "srv-3"}
    assert {(name, n) for name, _, n in figures.top_failing} == {
        (names[s], n) for s, n in fails.items()}  # fmt: skip
    assert [n for *_, n in figures.top_failing] == sorted(fails.values(), reverse=True)
    labels = [label for _, label in BUCKETS]
    durations = Counter()
    for o in ops:
        if o.status != "PENDING":
            seconds = (o.update_date - o.create_date).total_seconds()
            index = next((i for i, (bound, _) in enumerate(BUCKETS) if bound and seconds < bound),
                         len(BUCKETS) - 1)  # fmt: skip
            durations[(o.type, labels[index])] += 1
    assert {(t, b): n for t, b, n in figures.durations} == durations


def test_a_duration_on_a_buckets_bound_is_in_the_bucket_it_opens(archive) -> None:
    """An operation that took exactly 1 s belongs in "1–10 s", as the label says. SQLite
    read the seconds between two dates from Julian days, 0.99999 s for that one, and
    put it in "< 1 s" (and 10 s in "1–10 s", 60 s in "10–60 s")."""
    took = {0.999: "< 1 s", 1: "1–10 s", 9.999: "1–10 s", 10: "10–60 s", 60: "1–5 min",
            300: "5–30 min", 1800: "30 min–2 h", 7199.999: "30 min–2 h", 7200: "≥ 2 h"}  # fmt: skip
    ops = []
    for i, seconds in enumerate(took):
        record = op(i, type=f"T{i}", minutes=i * 7, ms=i * 37)
        ops.append(replace(record, create_date=record.update_date - timedelta(seconds=seconds)))
    fill(archive, ops)
    with Archive(archive) as handle:
        figures = gather(handle, Selection())
    assert sorted(figures.durations) == [(f"T{i}", label, 1) for i, label in
                                         enumerate(took.values())]  # fmt: skip


def test_the_top_failing_services_are_the_ten_with_the_most_failures(archive) -> None:
    fill(archive, [op(f"{k}-{j}", status="FAIL", service=f"srv-{k:02d}")
                   for k in range(12) for j in range(k + 1)])  # srv-k fails k + 1 times  # fmt: skip
    with Archive(archive) as handle:
        top = gather(handle, Selection()).top_failing
    assert [(service, n) for _, service, n in top] == [(f"srv-{k:02d}", k + 1)
                                                       for k in range(11, 1, -1)]  # fmt: skip


def test_each_run_has_its_duration_and_the_watermarks_lag(reported) -> None:
    """A run's duration, and how far behind its end the archive was complete: its own
    ``until`` when it succeeded, else the last good run's; a run still going has
    neither. With --source, the runs and the operations are that source's; over
    several sources, a failing service is named with its source."""
    fill(reported, [op(100 + i, status="FAIL", service="srv-0") for i in range(3)],
         source="other@eu-west-1")  # fmt: skip
    t = T0 + timedelta(days=30)
    with Archive(reported) as handle, handle.writer.begin() as conn:
        mine, other = (catalog.find_source(conn, n) for n in ("test@us-east-1", "other@eu-west-1"))

        def ran(source: int | None, outcome: str, started: timedelta, took: int | None) -> None:
            assert source is not None
            run = catalog.start_run(conn, source, since=None, until=t + started)
            catalog.record_run(conn, run, outcome=outcome, started_at=t + started, finished_at=(
                t + started + timedelta(seconds=took) if took is not None else None))  # fmt: skip

        ran(mine, "succeeded", timedelta(0), 60)  # complete to its start, t
        ran(other, "failed", timedelta(seconds=1), 5)  # no good run yet: no lag
        ran(mine, "failed", timedelta(hours=1), 10)
        ran(mine, "running", timedelta(hours=2), None)
    with Archive(reported) as handle:
        one = gather(handle, Selection(source="test@us-east-1"))
        every = gather(handle, Selection())
    assert [(r.outcome, r.duration_s, r.lag_s) for r in one.runs] == [
        ("succeeded", 60, 60), ("failed", 10, 3610), ("running", None, None)]  # fmt: skip
    assert [(r.source, r.lag_s) for r in every.runs][:2] == [("test@us-east-1", 60),
                                                              ("other@eu-west-1", None)]  # fmt: skip
    assert (one.total, every.total) == (len(_content()), len(_content()) + 3)
    assert "svc-0" in [name for name, _, _ in one.top_failing]
    failed = sum(o.status == "FAIL" and o.service_id == "srv-0" for o in _content())
    assert ("svc-0 (test@us-east-1)", "srv-0", failed) in every.top_failing
    assert ("srv-0 (other@eu-west-1)", "srv-0", 3) in every.top_failing


@pytest.mark.parametrize(("ago", "said"), [(timedelta(minutes=30), "30 min ago"),
                                           (timedelta(minutes=60.5), "1 h ago"),
                                           (timedelta(hours=47), "47 h ago"),
                                           (timedelta(hours=49), "2 days ago")])  # fmt: skip
def test_the_headline_says_how_fresh_the_archive_is(ago: timedelta, said: str) -> None:
    """The figures a reader wants first: the last successful sync's end and its age (a
    failed run since does not count), the operations and the failure rate."""
    from archiver.read.report import Figures, Run, render
    from archiver.timeutil import iso, now

    ended = now() - ago
    runs = [Run("a", ended - timedelta(days=3), "succeeded", 60.0, 0.0),
            Run("a", ended - timedelta(seconds=90), "succeeded", 90.0, 0.0),
            Run("a", ended + timedelta(seconds=1), "failed", 1.0, None)]  # fmt: skip
    shown = Figures(sources=["a"], total=3, by_type=[("REGISTER_INSTANCE", 3, 1)], runs=runs)
    page = render(shown, archive_name="a.db", selection_text="all")
    assert _headline(page) == {"Operations": "3", "Failure rate": "33.3%",
                               "Last successful sync": iso(ended), "Freshness": said}  # fmt: skip
    # each chart's figures in its table: a float to one place, a lag not known left empty
    assert "<tr><td>REGISTER_INSTANCE</td><td>3</td><td>1</td><td>33.3</td></tr>" in page
    assert (
        f"<tr><td>a</td><td>{iso(runs[2].started_at)}</td><td>failed</td><td>1.0</td><td></td>"
        in page
    )


def test_an_empty_archives_headline_says_never() -> None:
    from archiver.read.report import Figures, render

    page = render(Figures(sources=[]), archive_name="a.db", selection_text="all")
    assert _headline(page) == {"Operations": "0", "Failure rate": "–",
                               "Last successful sync": "never", "Freshness": "never"}  # fmt: skip
    assert "sources: none yet" in page


def _headline(page: str) -> dict[str, str]:
    return dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", page.split('id="headline"')[1]))


def test_the_report_takes_querys_selection(runner, reported, tmp_path) -> None:
    out = tmp_path / "fails.html"
    result = invoke(runner, "--db", reported, "report", "--out", str(out),
                    "--filters", "Name=STATUS,Values=FAIL")  # fmt: skip
    assert result.exit_code == 0, result.output
    fails = sum(o.status == "FAIL" for o in _content())
    text = out.read_text(encoding="utf-8")
    assert f"{fails:,} operations selected (STATUS EQ FAIL)" in text
    assert all(f'id="chart-{c}"' in text for c in CHARTS)
    assert HOSTILE not in text  # escaped in the tables, and in the charts' JSON


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--since", "someday"), "--since: 'someday' is not a time"),
        (("--source", "nope"), "no source named 'nope'"),
        (("--filters", "Name=COLOUR,Values=red"), "COLOUR"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_file(runner, reported, tmp_path, args, words) -> None:
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "r.html"
    result = invoke(runner, "--db", reported, "report", "--out", str(out), *args)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and words in result.stderr
    assert list(out.parent.iterdir()) == []  # nothing written, not even a temporary file


def test_without_the_charting_library_it_says_which_extra(runner, reported, tmp_path,
                                                          monkeypatch) -> None:  # fmt: skip
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)  # as if not installed
    result = invoke(runner, "--db", reported, "report", "--out", str(tmp_path / "r.html"))
    assert result.exit_code == 2
    assert "pip install 'cloudmap-archiver[report]'" in result.stderr
    assert result.stderr.count("\n") == 1


def chromium() -> str:
    """Chromium for the browser test: ARCHIVER_TEST_CHROMIUM, else the distribution's
    (`.ci/run` installs it when missing)."""
    found = os.environ.get("ARCHIVER_TEST_CHROMIUM") or shutil.which("chromium") \
        or shutil.which("chromium-browser")  # fmt: skip
    if not found:
        prerequisite_missing("browser", "headless Chromium: apt-get install chromium, or set "
                             "ARCHIVER_TEST_CHROMIUM")  # fmt: skip
    assert found is not None
    return found


@pytest.fixture(params=["demo", "hostile"])
def shown_archive(request, runner, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """The demo's archive (what the README pictures), and one whose service is named
    to break out of the page."""
    if request.param == "demo":
        db = str(tmp_path / "demo.db")
        result = invoke(runner, "--db", db, "demo")
        assert result.exit_code == 0, result.output
        return db
    return request.getfixturevalue("reported")


@pytest.mark.slow
@pytest.mark.engine_free  # the figures are checked on both engines above; this is the page
def test_the_report_renders_offline_in_a_real_browser(runner, shown_archive, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    out = tmp_path / "report.html"
    assert invoke(runner, "--db", shown_archive, "report", "--out", str(out)).exit_code == 0
    problems: list[str] = []
    fetched: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("dialog", lambda d: (problems.append("dialog: " + d.message), d.dismiss()))
            page.on("request", lambda r: fetched.append(r.url))
            page.goto(out.as_uri())
            page.wait_for_function(
                f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {len(CHARTS)}",
                timeout=30_000,
            )
            drawn = page.evaluate(
                "Array.from(document.querySelectorAll('.js-plotly-plot'))"
                ".map(d => [d.id, d._fullData.length, d.querySelectorAll('.point').length])"
            )
            links = page.evaluate("document.querySelectorAll('.js-plotly-plot a').length")
            headline = page.inner_text("#headline")
            named = page.evaluate(
                "Array.from(document.querySelectorAll('.js-plotly-plot'))"
                ".map(d => [d.closest('figure[role=img]')?.getAttribute('aria-label') || '',"
                " d.layout.yaxis2 === undefined])"
            )
            captions = page.evaluate("Array.from(document.querySelectorAll('table'))"
                                     ".map(t => t.caption ? t.caption.textContent : '')")  # fmt: skip
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert [d[0] for d in drawn] == [f"chart-{c}" for c in CHARTS]  # every chart, in order
    runs = shown_archive.endswith("demo.db")  # the hostile archive has no sync runs
    assert all(traces > 0 for chart, traces, _ in drawn if runs or chart != "chart-sync-runs")
    for said in ("Operations", "Failure rate", "Last successful sync", "Freshness"):
        assert said in headline  # the headline figures come first
    assert all(label.startswith("Chart: ") and one_axis for label, one_axis in named), named
    assert len(captions) == len(CHARTS) and all(captions), captions  # a caption per table
    assert sum(points for *_, points in drawn) > 20  # bars and markers were drawn
    assert problems == [], problems  # no console error, no script error, no alert
    assert links == 0  # no name became a live link in a chart
    assert fetched == [out.as_uri()]  # offline: nothing but the file itself
    assert shot.stat().st_size > 50_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_report_appears_whole_or_not_at_all(runner, reported, tmp_path) -> None:
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "r.html"
    out.write_text("old")
    out.chmod(0o600)
    assert invoke(runner, "--db", reported, "report", "--out", str(out)).exit_code == 0
    assert out.stat().st_mode & 0o777 == 0o600 and out.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in out.parent.iterdir()] == ["r.html"]  # no temporary file left
    if Path(reported).exists():  # a SQLite archive: --out never overwrites it
        result = invoke(runner, "--db", reported, "report", "--out", reported)
        assert result.exit_code == 2 and "archive itself" in result.stderr


@pytest.mark.slow
@pytest.mark.engine_free  # about the process and the file, on a SQLite archive
def test_sigterm_mid_report_exits_143_and_leaves_no_file(tmp_path) -> None:
    import signal
    import subprocess
    import time

    from archiver.store.archive import Archive

    db = str(tmp_path / "archive.db")
    Archive(db).upgrade()
    fill(db, [op(i, minutes=i % 5000, status=("SUCCESS", "FAIL")[i % 2]) for i in range(30_000)])
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "report.html"
    proc = subprocess.Popen([sys.executable, "-m", "archiver", "--db", db, "report", "--out",
                             str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    deadline = time.monotonic() + 30
    reading = False
    while not reading and proc.poll() is None and time.monotonic() < deadline:
        try:  # the report is under way once it holds the archive open
            fds = os.listdir(f"/proc/{proc.pid}/fd")
            reading = any(os.readlink(f"/proc/{proc.pid}/fd/{fd}") == db for fd in fds)
        except OSError:
            pass
        time.sleep(0.002)
    assert reading, "the report never opened the archive"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert err.count("\n") == 1 and "SIGTERM" in err
    assert list(out.parent.iterdir()) == []  # no report, no temporary file
