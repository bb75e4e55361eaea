"""`sync --metrics-file`: what Prometheus reads after every run, success or failure."""

from __future__ import annotations

import json
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from archiver.emulator import Emulator
from tests.helpers import cli_sync

pytestmark = pytest.mark.slow  # over HTTP or in subprocesses (docs/design.md, "Tests")


def _samples(path) -> dict[tuple[str, tuple], float]:  # type: ignore[no-untyped-def]
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_describe_each_run_and_keep_the_last_success(runner, archive, tmp_path):
    path = tmp_path / "archiver.prom"
    src = (("source", "acct"),)
    with Emulator(seed_operations=300, seed=61) as emu:
        before = time.time()
        ok = cli_sync(runner, archive, emu.url, "--source", "acct", "--metrics-file", str(path))
        assert ok.exit_code == 0, ok.output
    m = _samples(path)
    assert m[("archiver_sync_last_run_outcome", (("outcome", "succeeded"), *src))] == 1
    assert m[("archiver_sync_last_run_listed", src)] == 300
    assert m[("archiver_sync_last_run_inserted", src)] == 300
    calls = {
        op: m[("archiver_sync_api_calls", (("operation", op), *src))]
        for op in ("ListOperations", "GetOperation", "ListNamespaces", "ListServices")
    }
    assert calls == dict(emu.counters.calls) and calls["GetOperation"] == 300
    assert m[("archiver_sync_last_run_retries", src)] == 0
    success = m[("archiver_sync_last_success_timestamp_seconds", src)]
    assert before - 1 <= success <= time.time() + 1
    assert m[("archiver_sync_watermark_timestamp_seconds", src)] >= before - 1
    assert m[("archiver_sync_last_run_duration_seconds", src)] >= 0

    with Emulator(seed_operations=0, seed=61) as emu:  # another port: --full reads from it
        emu.set_faults(error_rate=1.0)
        failed = cli_sync(runner, archive, emu.url, "--source", "acct", "--max-attempts", "1",
                          "--full", "--metrics-file", str(path))  # fmt: skip
    assert failed.exit_code == 1
    m = _samples(path)  # rewritten after the failure too
    assert m[("archiver_sync_last_run_outcome", (("outcome", "failed"), *src))] == 1
    assert m[("archiver_sync_last_success_timestamp_seconds", src)] == success
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically, nothing left beside it


def test_an_unwritable_metrics_directory_is_bad_input(runner, archive) -> None:
    result = cli_sync(runner, archive, "http://127.0.0.1:9", "--metrics-file",
                      "/no/such/dir/archiver.prom")  # fmt: skip
    assert result.exit_code == 2 and "--metrics-file" in result.stderr


def test_metrics_without_the_prometheus_client_are_refused_before_the_sync(
    runner, tmp_path, monkeypatch
) -> None:
    """Without the metrics extra, a night's sync ran whole and then exited 2 for the
    metrics: bad input found after the work, and told only once it was done."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    archive = tmp_path / "new.db"
    with Emulator(seed_operations=20, seed=3) as emu:
        result = cli_sync(runner, str(archive), emu.url, "--metrics-file", str(tmp_path / "m"))
        calls = sum(emu.counters.calls.values())
    assert (result.exit_code, result.stderr) == (2, "error: --metrics-file needs the Prometheus "
                                                 "client: pip install 'cloudmap-archiver[metrics]'"
                                                 "\n")  # fmt: skip
    assert calls == 0 and sorted(p.name for p in tmp_path.iterdir()) == []


def test_two_sources_synced_in_turn_into_one_metrics_file_both_keep_their_series(
    runner, archive, tmp_path
) -> None:
    """Cron runs each source on its own line with the same --metrics-file: the second
    run must not erase the first one's series (the file describes the archive)."""
    path = tmp_path / "archiver.prom"
    with Emulator(seed_operations=40, seed=62) as a, Emulator(seed_operations=30, seed=63) as b:
        for url, name in ((a.url, "a"), (b.url, "b")):
            done = cli_sync(runner, archive, url, "--source", name, "--metrics-file", str(path))
            assert done.exit_code == 0, done.output
    m = _samples(path)
    assert m[("archiver_sync_last_run_listed", (("source", "a"),))] == 40
    assert m[("archiver_sync_last_run_listed", (("source", "b"),))] == 30
    for name in ("a", "b"):
        assert ("archiver_sync_last_success_timestamp_seconds", (("source", name),)) in m


def test_the_readmes_alert_rules_name_metrics_the_file_holds(runner, archive, tmp_path):
    """The rules are checked against a file written by a real run, read with the same
    client library that writes it: a renamed metric cannot leave an alert silent."""
    import re
    from pathlib import Path

    import yaml

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if "archiver" in b]
    rules = yaml.safe_load(block)["groups"][0]["rules"]
    exprs = [r["expr"] for r in rules]
    assert any(e.startswith("absent(") for e in exprs)  # a vanished series alerts too
    assert any("unless archiver_sync_last_success" in e for e in exprs)  # never succeeded
    path = tmp_path / "archiver.prom"
    with Emulator(seed_operations=20, seed=64) as emu:
        assert cli_sync(runner, archive, emu.url, "--metrics-file", str(path)).exit_code == 0
    written = {family.name for family in text_string_to_metric_families(path.read_text())}
    for expr in exprs:
        for name in re.findall(r"archiver_[a-z_]+", expr):
            assert name in written, (name, expr)


def test_a_retired_source_leaves_the_check_and_the_metrics_until_it_syncs_again(
    runner, archive, tmp_path
) -> None:
    """An account closed or a region left is synced no more: `status --check` called it
    stale every night for ever, and only `sources remove`, which deletes its history,
    quietened it. Retired, its history stays and nothing asks it to be fresh."""
    from tests.conftest import invoke

    path = tmp_path / "archiver.prom"

    def check() -> list[str]:
        verdict = invoke(runner, "--db", archive, "status", "--check", "--max-age", "1ms")
        assert verdict.exit_code == (1 if verdict.stdout else 0), verdict.output
        return [line.split(":")[1] for line in verdict.stdout.splitlines()]

    with Emulator(seed_operations=40, seed=62) as a, Emulator(seed_operations=30, seed=63) as b:
        for url, name in ((a.url, "a"), (b.url, "b")):
            assert cli_sync(runner, archive, url, "--source", name).exit_code == 0
        assert check() == [" source a", " source b"]  # both stale by a 1 ms --max-age
        retired = invoke(runner, "--db", archive, "sources", "retire", "a")
        assert (retired.exit_code, retired.stderr) == (0, "retired source 'a'; its history "
                                                           "stays, and a sync of it brings it back\n")  # fmt: skip
        again = invoke(runner, "--db", archive, "sources", "retire", "a")
        assert again.exit_code == 0 and again.stderr.startswith("already retired: ")
        assert check() == [" source b"]
        listed = json.loads(invoke(runner, "--db", archive, "sources", "list", "--json").stdout)
        assert {r["name"]: r["retired"] for r in listed} == {"a": True, "b": False}
        shown = invoke(runner, "--db", archive, "status").stdout
        assert "source a  (region us-east-1, UPDATE_DATE unit ms)  retired: not synced" in shown
        done = cli_sync(runner, archive, b.url, "--source", "b", "--metrics-file", str(path))
        assert done.exit_code == 0, done.output
        assert {dict(labels).get("source") for _, labels in _samples(path)} == {None, "b"}
        count = invoke(runner, "--db", archive, "query", "--source", "a", "-o", "count")
        assert count.stdout == "40\n"  # its history stays
        back = cli_sync(runner, archive, a.url, "--source", "a", "--metrics-file", str(path))
        assert back.exit_code == 0, back.output
    assert check() == [" source a", " source b"]
    assert ("archiver_sync_last_run_listed", (("source", "a"),)) in _samples(path)
    listed = json.loads(invoke(runner, "--db", archive, "sources", "list", "--json").stdout)
    assert not any(r["retired"] for r in listed)
    unknown = invoke(runner, "--db", archive, "sources", "retire", "nope")
    assert unknown.exit_code == 2 and unknown.stderr.count("\n") == 1
