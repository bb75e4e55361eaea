"""The sync's options and plan, checked without any API call (fast tier)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from archiver.errors import UsageError
from archiver.store import write as store
from archiver.store.archive import Archive
from archiver.sync.options import ClientSettings, plan_windows
from archiver.timeutil import EPOCH, now, parse_when
from tests.conftest import invoke, requires_sqlite


def test_plan_windows() -> None:
    start, end = parse_when("2026-01-01T00:00:00Z"), parse_when("2026-01-03T12:00:00Z")
    day = parse_when("2026-01-02T00:00:00Z") - start
    assert plan_windows(start, end, None) == [(start, end)]
    assert plan_windows(start, end, day) == [
        (start, start + day),
        (start + day, start + 2 * day),
        (start + 2 * day, end),
    ]
    assert plan_windows(end, start, day) == []


@pytest.mark.parametrize("form", ["2026-01-31T00:00:00Z", "2026-01-31", "1769817600", "30d", "12h"])
def test_time_forms_are_accepted(runner, archive, form) -> None:
    result = _dry_run(runner, archive, "--since", form)
    assert result.exit_code == 0, result.output


def _dry_run(runner, archive, *options: str):  # type: ignore[no-untyped-def]
    """`sync --dry-run` with ``options``: the plan, and no call (the endpoint is closed)."""
    return invoke(runner, "--db", archive, "sync", "--region", "us-east-1", "--endpoint-url",
                  "http://127.0.0.1:9", "--dry-run", *options)  # fmt: skip


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--since", "yesterday"),
        ("--until", "2026-13-01"),
        ("--window", "7 days"),
        ("--lookback", "-5m"),
        ("--since", "1769817600000"),
    ],
)
def test_bad_time_values_exit_2(runner, archive, option, value) -> None:
    result = invoke(runner, "--db", archive, "sync", "--region", "us-east-1", option, value)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {option}: ")


def test_aws_region_comes_before_aws_default_region_and_the_option_before_both(
    monkeypatch,
) -> None:
    """The order the AWS CLI reads them in; boto3 alone knows only AWS_DEFAULT_REGION."""
    from archiver.sync.options import build

    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    opts = build({})[0]
    assert opts.region == "eu-west-3" and opts.source.endswith("@eu-west-3")
    assert build({"region": "ap-south-1"})[0].region == "ap-south-1"


def test_a_window_without_since_plans_a_first_run_from_1970(runner, archive) -> None:
    """--window with no --since: a first run cuts everything since 1970, and is not
    refused for that; a day's window over 56 years is more than 10,000 windows."""
    planned = _dry_run(runner, archive, "--window", "365d")
    assert planned.exit_code == 0, planned.output
    windows = json.loads(planned.stdout)["windows"]
    assert windows[0]["start"] == "1970-01-01T00:00:00.000Z" and 50 < len(windows) < 60
    refused = _dry_run(runner, archive, "--window", "1d")
    assert refused.exit_code == 2 and "more than 10,000 windows" in refused.stderr


@pytest.mark.parametrize(
    ("option", "low", "high"),
    [("--workers", "1", "64"), ("--max-attempts", "1", "50"), ("--call-timeout", "1", "3600")],
)
def test_a_ranges_ends_are_in_it_and_one_past_them_is_exit_2(runner, archive, option, low, high):
    """The ranges `--help` gives are inclusive: 64 workers may be asked for, 65 not."""
    for value in (low, high):
        assert _dry_run(runner, archive, option, value).exit_code == 0, (option, value)
    for value in (str(int(low) - 1), str(int(high) + 1)):
        refused = _dry_run(runner, archive, option, value)
        assert refused.exit_code == 2 and f"is not from {low} to {high}" in refused.stderr


def test_missing_region_and_profile_are_bad_input(runner, archive, monkeypatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    result = invoke(runner, "--db", archive, "sync")
    assert result.exit_code == 2 and "no AWS region" in result.stderr
    result = invoke(runner, "--db", archive, "sync", "--profile", "nope", "--region", "us-east-1")
    assert result.exit_code == 2 and "profile 'nope' not found" in result.stderr
    monkeypatch.setenv("AWS_PROFILE", "ghost")  # it said "AWS profile None not found"
    result = invoke(runner, "--db", archive, "sync", "--region", "us-east-1")
    assert result.exit_code == 2 and "profile 'ghost' not found" in result.stderr


@pytest.mark.slow
def test_aws_max_attempts_applies_when_the_option_is_not_given(runner, archive, monkeypatch):
    """Every AWS SDK reads AWS_MAX_ATTEMPTS (and the profile's max_attempts); the sync
    pinned 12 attempts whatever they said."""
    from archiver.emulator import Emulator

    calls = {}
    for attempts in ("1", "3"):
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", attempts)
        # one operation, whose every GetOperation is answered HTTP 500: its calls are
        # the attempts, with no call beside them that a failed run would abandon
        with Emulator(seed_operations=1, seed=9) as emu:
            emu.set_faults("GetOperation", error_rate=1.0)
            result = invoke(runner, "--db", archive, "sync", "--endpoint-url", emu.url,
                            "--region", "us-east-1", "--source", f"s{attempts}")  # fmt: skip
            assert result.exit_code == 1, result.output
            calls[attempts] = emu.counters.calls["GetOperation"]
    assert calls == {"1": 1, "3": 3}
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "lots")
    bad = invoke(runner, "--db", archive, "sync", "--region", "us-east-1", "--source", "s",
                 "--endpoint-url", "http://127.0.0.1:9")  # fmt: skip
    assert bad.exit_code == 2 and "AWS_MAX_ATTEMPTS" in bad.stderr


def test_an_sso_profile_without_a_token_says_aws_sso_login(runner, archive, tmp_path,
                                                          monkeypatch) -> None:  # fmt: skip
    """It gave exit 1, "Error loading SSO Token", with no hint of `aws sso login`."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no SSO token cache
    config = tmp_path / "config"
    config.write_text(
        "[profile corp]\nsso_session = corp\nsso_account_id = 111122223333\n"
        "sso_role_name = Reader\nregion = us-east-1\n"
        "[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\n"
        "sso_region = us-east-1\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    result = invoke(runner, "--db", archive, "sync", "--profile", "corp",
                    "--endpoint-url", "http://127.0.0.1:9")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "aws sso login --profile corp" in result.stderr and result.stderr.count("\n") == 1
    # a source that synced last night: its failed night is a run, which status tells now
    # (it said nothing until the source was a day stale); a new source gets no record
    with Archive(archive) as handle, handle.writer.begin() as conn:
        assert store.source_ids(conn, None) == {}  # nothing made for a source never synced
        sid = store.ensure_source(conn, "corp@us-east-1")
        store.record_run(conn, store.start_run(conn, sid, since=None, until=None),
                         outcome="succeeded", finished_at=now())  # fmt: skip
        store.advance_watermark(conn, sid, (EPOCH, now()))
    assert invoke(runner, "--db", archive, "status", "--check").exit_code == 0
    again = invoke(runner, "--db", archive, "sync", "--profile", "corp",
                   "--endpoint-url", "http://127.0.0.1:9")  # fmt: skip
    assert again.exit_code == 2 and again.stderr == result.stderr
    check = invoke(runner, "--db", archive, "status", "--check")
    assert check.exit_code == 1 and "corp@us-east-1: its latest run" in check.stdout
    assert "failed: the AWS SSO session of profile 'corp' is missing or expired" in check.stdout
    # beside a run at work (its lock held), the failure is told and recorded by no one
    with Archive(archive) as handle, handle.lock("corp@us-east-1"):
        beside = invoke(runner, "--db", archive, "sync", "--profile", "corp",
                        "--endpoint-url", "http://127.0.0.1:9")  # fmt: skip
    assert beside.exit_code == 2 and beside.stderr == result.stderr
    with Archive(archive) as handle, handle.reader.connect() as conn:
        runs = store.latest_runs(conn, sid, 5)
        assert [(r.outcome, r.finished_at is not None) for r in runs] == [
            ("failed", True), ("succeeded", True)]  # fmt: skip


@requires_sqlite
def test_missing_credentials_are_bad_input_before_any_file(runner, tmp_path, monkeypatch):
    """The archive file was made, then the run said "no AWS credentials"."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var, raising=False)
    db = tmp_path / "a.db"
    result = invoke(runner, "--db", str(db), "sync", "--region", "us-east-1",
                    "--endpoint-url", "http://127.0.0.1:9")  # fmt: skip
    assert (
        result.exit_code == 2 and "no AWS credentials found for profile 'default'" in result.stderr
    )
    assert result.stderr.count("\n") == 1 and not db.exists()


def test_a_source_name_longer_than_its_column_is_bad_input_on_both_engines(runner, archive):
    """PostgreSQL refused a 300-character --source when the run made the source
    ("StringDataRightTruncation", exit 1); SQLite kept it. Refused before any call now."""
    from archiver.store.models import Source
    from archiver.sync.options import NAME_WIDTH

    assert Source.__table__.c.name.type.length == NAME_WIDTH  # the bound is the column's
    name = "s" * (NAME_WIDTH + 1)
    result = invoke(runner, "--db", archive, "sync", "--region", "us-east-1", "--endpoint-url",
                    "http://127.0.0.1:9", "--source", name)  # fmt: skip
    assert (result.exit_code, result.stderr) == (
        2, "error: --source: a source's name is at most 255 characters\n")  # fmt: skip
    with Archive(archive) as handle, handle.reader.connect() as conn:
        assert store.find_source(conn, name) is None
    long_enough = invoke(runner, "--db", archive, "sync", "--region", "us-east-1",
                         "--endpoint-url", "http://127.0.0.1:9", "--source", name[:NAME_WIDTH],
                         "--dry-run")  # fmt: skip
    assert long_enough.exit_code == 0, long_enough.stderr


@pytest.mark.parametrize("where", ["command line", "config"])
def test_a_name_holding_a_control_character_is_bad_input(runner, archive, tmp_path, where):
    """A source named with a line break or an ESC was stored, and `sources list` then
    printed it: a forged line, or a terminal's escape sequence. Every text option is
    refused with one, from the command line or a config, before any call."""
    name = "prod\n\x1b[31mfake line"
    if where == "config":
        config = tmp_path / "fleet.toml"
        config.write_text(f"[[source]]\nname = {json.dumps(name)}\n"  # TOML's escapes too
                          'region = "us-east-1"\nendpoint_url = "http://127.0.0.1:9"\n')  # fmt: skip
        result = invoke(runner, "--db", archive, "--config", str(config), "sync", "--all")
    else:
        result = invoke(runner, "--db", archive, "sync", "--region", "us-east-1",
                        "--endpoint-url", "http://127.0.0.1:9", "--source", name)  # fmt: skip
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "\x1b" not in result.stderr and "control character" in result.stderr
    with Archive(archive) as handle, handle.reader.connect() as conn:
        assert store.find_source(conn, name) is None


def test_attempts_and_retry_mode_resolve_as_every_aws_sdk_does(tmp_path, monkeypatch) -> None:
    """--max-attempts, then AWS_MAX_ATTEMPTS / AWS_RETRY_MODE, then the profile's
    max_attempts / retry_mode, then 12 attempts in standard mode (README): each layer
    reaches the client alone, and the nearer one wins."""
    from archiver.sync.client import make_client

    config = tmp_path / "config"
    config.write_text("[profile p]\nregion = us-east-1\nmax_attempts = 5\nretry_mode = legacy\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    for var in ("AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)

    def retries(**given: Any) -> tuple[int, str]:
        settings = ClientSettings(region="us-east-1", endpoint_url="http://127.0.0.1:9",
                                  access_key="k", secret_key="s", **given)  # fmt: skip
        got = make_client(settings).meta.config.retries
        return got["total_max_attempts"], got["mode"]

    assert retries() == (12, "standard")
    assert retries(profile="p") == (5, "legacy")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    assert retries(profile="p") == (7, "adaptive")
    assert retries(profile="p", max_attempts=3, retry_mode="standard") == (3, "standard")
    for outside in ("0", "51"):  # the environment's value is held to --max-attempts' range
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", outside)
        with pytest.raises(UsageError, match=f"^max_attempts {outside} is not from 1 to 50$"):
            retries()
    for inside in (1, 50):
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", str(inside))
        assert retries() == (inside, "adaptive")


def test_a_dry_run_says_whether_the_archive_would_be_created_and_makes_none(
    runner, archive, tmp_path
) -> None:
    """A missing file or an empty one is an archive a run would create (and the dry run
    leaves it as it was); an archive that exists is not."""
    missing, empty = tmp_path / "new.db", tmp_path / "empty.db"
    empty.touch()
    for path in (missing, empty):
        planned = _dry_run(runner, str(path))
        assert planned.exit_code == 0, planned.output
        assert json.loads(planned.stdout)["archive"] == "would be created"
    assert not missing.exists() and empty.stat().st_size == 0
    existing = _dry_run(runner, archive)
    assert existing.exit_code == 0 and "archive" not in json.loads(existing.stdout)
