"""`archiver web`: the archive in Datasette, read-only, described, with the cookbook
and the instances answer as canned queries; a sync beside it is never blocked."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from archiver.emulator import Emulator
from tests.conftest import invoke, prerequisite_missing
from tests.helpers import cli_sync

pytestmark = pytest.mark.engine_free  # Datasette serves SQLite files only
README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def test_the_shipped_cookbook_is_the_readmes() -> None:
    from importlib.resources import files

    shipped = files("archiver.read").joinpath("cookbook.md").read_text(encoding="utf-8")
    section = README.split("## Ask the archive in SQL", 1)[1].split("\n## ", 1)[0]
    assert section[section.index("**") :].strip() in shipped


@pytest.fixture
def synced(runner, tmp_path) -> str:  # type: ignore[no-untyped-def]
    db = str(tmp_path / "archive.db")
    with Emulator(seed_operations=300, days=10, seed=93) as emu:
        assert cli_sync(runner, db, emu.url, "--source", "acct").exit_code == 0
    return db


def _get(ds, path: str):  # type: ignore[no-untyped-def]
    return asyncio.run(ds.client.get(path))


@pytest.mark.slow  # over HTTP
def test_the_views_and_every_canned_query_answer(synced) -> None:
    from archiver.read.query import instances
    from archiver.read.web import app
    from archiver.store.archive import Archive
    from archiver.timeutil import parse_when

    ds = app(Path(synced))
    home = _get(ds, "/archive.json").json()
    assert {"operations_named", "status_changes", "instance_states"} <= {
        v["name"] for v in home["views"]}  # fmt: skip
    queries = {q["name"] for q in home["queries"]}
    assert len(queries) >= 9 and "instances" in queries
    for name in queries:
        args = "?service=svc1&at=2030-01-01T00:00:00.000Z" if name == "instances" else ""
        answer = _get(ds, f"/archive/{name}.json{args}")
        assert answer.status_code == 200, (name, answer.text[:300])
    registered = _get(ds, "/archive/instances.json?service=svc1&at=2030-01-01T00:00:00.000Z"
                      "&_shape=array").json()  # fmt: skip
    assert registered and {r["service_name"] for r in registered} == {"svc1"}
    with Archive.open(synced) as archive:  # the command line's answer, the same rows
        cli = instances(archive, service="svc1", at=parse_when("2030-01-01T00:00:00Z"))
    assert [(r["instance_id"], r["operation_id"]) for r in registered] == [
        (r["InstanceId"], r["OperationId"]) for r in cli.rows]  # fmt: skip
    table = _get(ds, "/archive/operations.json").json()
    described = _get(ds, "/-/metadata.json").json()["databases"]["archive"]["tables"]
    assert set(described) >= {"operations", "namespaces", "sync_runs", "instance_states"}
    assert all(t["description"] for t in described.values())
    assert all(all(c.values()) for t in described.values() for c in [t.get("columns", {})])
    assert described["operations"]["columns"]["status"] == "GetOperation's Status"
    assert "listed late" in described["sync_runs"]["columns"]["late"]  # the models' own docs
    assert table["rows"]
    refused = _get(ds, "/archive.json?sql=" + "delete from operations")
    assert refused.status_code == 400  # SQL writes are refused
    facets = _get(ds, "/archive/operations_named.json").json()["facet_results"]
    assert {"type", "status", "namespace_name", "service_name"} <= set(facets)


@pytest.mark.slow  # over HTTP
def test_a_report_beside_the_archive_is_linked_and_served_alone(synced) -> None:
    from archiver.read.web import app

    report = Path(synced).with_suffix(".html")
    report.write_text("<html><body>the report é</body></html>", encoding="utf-8")
    ds = app(Path(synced))
    home = _get(ds, "/-/metadata.json").json()
    assert '<a href="/report/archive.html">' in home["description_html"]
    served = _get(ds, "/report/archive.html")
    assert served.status_code == 200 and "the report é" in served.text
    assert _get(ds, "/report/archive.db").status_code == 404  # never the archive itself


@pytest.mark.slow  # over HTTP
def test_a_report_is_served_byte_for_byte_whatever_its_encoding(synced) -> None:
    from archiver.read.web import app

    report = Path(synced).parent / "report.html"
    report.write_bytes(b"<html><meta charset=latin1><body>caf\xe9</body></html>")
    served = _get(app(Path(synced)), "/report/report.html")
    assert served.status_code == 200 and served.content == report.read_bytes()


def test_a_report_too_large_to_serve_is_exit_2_one_line(runner, tmp_path, monkeypatch) -> None:
    from archiver.read import web

    db = tmp_path / "archive.db"
    assert invoke(runner, "--db", str(db), "db", "upgrade").exit_code == 0
    db.with_suffix(".html").write_text("x" * 101, encoding="utf-8")
    monkeypatch.setattr(web, "REPORT_LIMIT", 100)
    result = invoke(runner, "--db", str(db), "web")
    assert result.exit_code == 2 and "larger than 100 bytes" in result.stderr, result.output
    assert result.stderr.count("\n") == 1


def test_a_postgresql_archive_is_exit_2_one_line(runner) -> None:
    result = invoke(runner, "--db", "postgresql+psycopg://u@127.0.0.1:1/x", "web")
    assert result.exit_code == 2 and "SQLite archive" in result.stderr, result.output
    assert result.stderr.count("\n") == 1


def test_a_port_in_use_is_exit_2_one_line_before_any_url(runner, tmp_path) -> None:
    """uvicorn answered a port in use with its own log line and exit 3, which is
    "another sync holds the lock" here, after the URL was printed as if served."""
    db = str(tmp_path / "archive.db")
    assert invoke(runner, "--db", db, "db", "upgrade").exit_code == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = invoke(runner, "--db", db, "web", "--port", port)
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert result.stderr.startswith("error: cannot listen: ") and port in result.stderr
    assert result.stderr.count("\n") == 1
    # `--host "$HOST"` with HOST unset served every interface (0.0.0.0), SQL and all
    empty = invoke(runner, "--db", db, "web", "--host", "", "--port", "0")
    assert (empty.exit_code, empty.stdout) == (2, ""), empty.output
    assert empty.stderr == "error: --host is empty: give an address (0.0.0.0 for every interface)\n"


@pytest.mark.slow  # a server in a subprocess
def test_an_ipv6_address_prints_a_url_that_opens(runner, tmp_path) -> None:
    """`--host ::1` printed http://::1:PORT/, which no browser or client opens."""
    db = str(tmp_path / "archive.db")
    assert invoke(runner, "--db", db, "db", "upgrade").exit_code == 0
    server = subprocess.Popen([sys.executable, "-m", "archiver", "--db", db, "web", "--host",
                               "::1", "--port", "0"], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("http://[::1]:"), url
        deadline = time.monotonic() + 30
        while not _serves(url):
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(30)


@pytest.mark.slow  # a server in a subprocess
def test_sigterm_stops_the_web_view_at_any_moment(runner, tmp_path) -> None:
    """A SIGTERM after the URL, before uvicorn took the signals, was recorded for a sync's
    next wait, which never came: the server ran on until SIGKILL. Served, a stop is its
    clean end (exit 0)."""
    db = str(tmp_path / "archive.db")
    assert invoke(runner, "--db", db, "db", "upgrade").exit_code == 0
    for wait in (0, 3):  # at once, and once it serves
        server = subprocess.Popen([sys.executable, "-m", "archiver", "--db", db, "web",
                                   "--port", "0"], stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert server.stdout is not None and server.stdout.readline().startswith("http")
            time.sleep(wait)
            server.terminate()
            assert server.wait(20) in ((0, 143) if wait == 0 else (0,))  # 143: not serving yet
        finally:
            server.kill()


@pytest.mark.slow  # a server in a subprocess
def test_the_readmes_web_line_serves_the_defaults_and_opens_a_browser(runner, tmp_path) -> None:
    """The README's `web` line, as written: the default address, port 8001, and `--open`
    handing the printed URL to the user's browser (``$BROWSER`` here, a script)."""
    from tests.test_readme import command_lines

    [line] = [ln for ln, _ in command_lines() if " web " in ln]
    assert invoke(runner, "--db", str(tmp_path / "archive.db"), "db", "upgrade").exit_code == 0
    with socket.socket() as taken:  # without --host and --port: 127.0.0.1:8001
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a last run's TIME_WAIT
        try:
            taken.bind(("127.0.0.1", 8001))
        except OSError:  # Datasette's own default: a developer may be running one
            prerequisite_missing("port8001", "127.0.0.1:8001 free (the README's web line)")
        taken.listen()
        result = subprocess.run([sys.executable, "-m", "archiver", "--db", "archive.db", "web"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "('127.0.0.1', 8001)" in result.stderr, result.stderr
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\necho "$1" >>{tmp_path / "opened"}\n', encoding="utf-8")
    browser.chmod(0o755)
    server = subprocess.Popen(["bash", "-c", line], cwd=tmp_path, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "BROWSER": str(browser)})  # fmt: skip
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url == "http://127.0.0.1:8001/"
        deadline = time.monotonic() + 30
        while not (tmp_path / "opened").exists() or not _serves(url):
            assert time.monotonic() < deadline and server.poll() is None
            time.sleep(0.2)
        assert (tmp_path / "opened").read_text(encoding="utf-8") == url + "\n"
    finally:
        server.terminate()
        server.wait(30)


def _serves(url: str) -> bool:
    """Datasette answers at ``url`` (its versions page); not yet while it cannot connect."""
    try:
        return bool(_json(url + "-/versions.json")["datasette"]["version"])
    except OSError:
        return False


def _json(url: str):  # type: ignore[no-untyped-def]
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())


@pytest.mark.slow  # a server in a subprocess, a sync beside it, a browser
def test_a_sync_beside_the_web_view_is_never_blocked_and_shows_up(runner, tmp_path) -> None:
    db = str(tmp_path / "archive.db")
    with Emulator(seed_operations=300, days=10, seed=94) as emu:
        assert cli_sync(runner, db, emu.url, "--source", "acct").exit_code == 0
        server = subprocess.Popen([sys.executable, "-m", "archiver", "--db", db, "web",
                                   "--port", "0"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert server.stdout is not None
            base = server.stdout.readline().strip().rstrip("/")  # --port 0: the port it got
            assert base.startswith("http://127.0.0.1:") and not base.endswith(":0"), base
            deadline = time.monotonic() + 30
            while True:
                try:
                    first = _json(f"{base}/archive/operations_named.json?_shape=array&_size=5")
                    break
                except OSError:
                    assert time.monotonic() < deadline and server.poll() is None
                    time.sleep(0.2)
            assert len(first) == 5
            t = emu.account.clock.now()
            newest = None
            for i in range(20):  # 20 new operations, the last the newest
                op = replace(emu.account.all()[i], id=f"new-{i:02d}",
                             create_date=t - timedelta(seconds=40 - i),
                             update_date=t - timedelta(seconds=20 - i))  # fmt: skip
                emu.account.put(op)
                newest = op
            synced = cli_sync(runner, db, emu.url, "--source", "acct")
            assert synced.exit_code == 0, synced.output
            rows = _json(f"{base}/archive/operations.json?_sort_desc=update_date&_shape=array")
            assert newest is not None and rows[0]["id"] == newest.id
            _in_a_browser(base)
            with pytest.raises(urllib.error.HTTPError) as refused:  # read-only: a 400 page
                _json(f"{base}/archive.json?sql=delete+from+operations")
            assert refused.value.code == 400
        finally:
            server.terminate()
            server.wait(30)
    assert server.stdout is not None and server.stderr is not None
    assert "Traceback" not in server.stdout.read() + server.stderr.read()  # nor its locals


def _in_a_browser(base: str) -> None:
    """The home page and a canned query render in headless Chromium."""
    from playwright.sync_api import sync_playwright

    from tests.test_report import chromium

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(base + "/")
            assert "Cloud Map operations" in page.inner_text("body")
            assert page.title() == "Cloud Map operations: archive"  # the archive named once
            page.goto(base + "/archive/daily_counts_by_status")
            assert page.locator("table.rows-and-columns tbody tr").count() > 0
        finally:
            browser.close()
