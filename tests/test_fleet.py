"""Many sources in one command: `archiver --config fleet.toml sync --all`."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from archiver.emulator import Emulator
from archiver.errors import Interrupted, LockHeld, UsageError, WorkFailed
from archiver.store.models import Operation, Source, SyncRun
from archiver.sync.fleet import Result, worst_exit
from archiver.timeutil import parse_iso
from tests.conftest import invoke
from tests.helpers import read_rows


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.slow
def test_three_sources_one_failing_every_call(runner, db, tmp_path) -> None:
    with (
        Emulator(seed_operations=120, seed=71) as a,
        Emulator(seed_operations=80, seed=72) as b,
        Emulator(seed_operations=50, seed=73, error_rate=1.0) as broken,
    ):
        config = _config(
            tmp_path,
            f"""
db = "{db}"
[defaults]
region = "us-east-1"
lookback = "30m"
[[source]]
name = "a@us-east-1"
endpoint_url = "{a.url}"
[[source]]
name = "b@us-east-1"
endpoint_url = "{b.url}"
workers = 4
[[source]]
name = "broken@us-east-1"
endpoint_url = "{broken.url}"
max_attempts = 2
""",
        )
        result = invoke(runner, "--config", config, "sync", "--all", "--json", "--parallel", "2")
        assert result.exit_code == 1, result.output  # the worst of 0, 0 and 1
        summaries = {s["source"]: s for s in map(json.loads, result.stdout.splitlines())}
        assert set(summaries) == {"a@us-east-1", "b@us-east-1", "broken@us-east-1"}
        assert summaries["a@us-east-1"].get("inserted") == 120, summaries
        assert summaries["b@us-east-1"]["inserted"] == 80
        assert summaries["broken@us-east-1"]["outcome"] == "failed"
        (line,) = result.stderr.splitlines()  # one line for the one failing source
        assert line.startswith("error: source broken@us-east-1: ")
        runs = read_rows(db, select(Source.name, SyncRun.outcome).join(SyncRun))
        assert sorted(runs) == [("a@us-east-1", "succeeded"), ("b@us-east-1", "succeeded"),
                                ("broken@us-east-1", "failed")]  # fmt: skip
        assert len(read_rows(db, select(Operation.id))) == 200
        # --source picks some; the config's db is the archive (no --db given)
        again = invoke(runner, "--config", config, "sync", "--source", "b@us-east-1")
        assert again.exit_code == 0, again.output
        assert b.counters.calls["ListOperations"] > 0


def test_status_check_names_a_configured_source_that_never_synced(runner, db, tmp_path) -> None:
    """A [[source]] whose every sync fails before it starts (its profile is gone) left
    no run behind: the README's `--config F status --check` said all was well, exit 0.
    Another archive checked beside the config (which names no db) is not the fleet's."""
    with Emulator(seed_operations=20, seed=74) as emu:
        config = _config(tmp_path, f"""[defaults]
region = "us-east-1"
endpoint_url = "{emu.url}"
[[source]]
name = "a"
[[source]]
name = "b"
profile = "gone"
""")  # fmt: skip
        assert invoke(runner, "--config", config, "--db", db, "sync", "--all").exit_code == 2
        other = str(tmp_path / "other.db")
        assert invoke(runner, "--db", other, "sync", "--endpoint-url", emu.url).exit_code == 0
    check = invoke(runner, "--config", config, "--db", db, "status", "--check")
    assert (check.exit_code, check.stdout) == (1, "stale: source b: configured, never synced\n")
    only_a = invoke(runner, "--config", config, "--db", db, "status", "--check", "--source", "a")
    beside = invoke(runner, "--config", config, "--db", other, "status", "--check")
    assert (only_a.exit_code, beside.exit_code) == (0, 0), beside.stdout


@pytest.mark.slow  # over HTTP
def test_a_configs_source_is_incremental_unless_it_says_full(runner, db, tmp_path) -> None:
    """A key a config leaves out takes the command line's default: a mutant whose config
    default was `full = true` passed every test, and would have read each source whole
    every night. After one sync, a plain source plans from its watermark less its
    lookback; one that says `full = true` (and `retry_gone = true`) from the start."""
    from archiver.sync import fleet

    with Emulator(seed_operations=40, seed=74) as emu:
        config = _config(tmp_path, f"""
db = "{db}"
[defaults]
region = "us-east-1"
endpoint_url = "{emu.url}"
[[source]]
name = "nightly"
[[source]]
name = "whole"
full = true
retry_gone = true
""")  # fmt: skip
        assert invoke(runner, "--config", config, "sync", "--all").exit_code == 0
        result = invoke(runner, "--config", config, "sync", "--all", "--dry-run")
    assert result.exit_code == 0, result.output
    starts = {p["source"]: (p["watermark"], p["windows"][0]["start"])
              for p in json.loads(result.stdout)}  # fmt: skip
    mark = parse_iso(starts["nightly"][0])
    assert parse_iso(starts["nightly"][1]) == mark - timedelta(hours=2)  # lookback's default
    assert starts["whole"][1] == "1970-01-01T00:00:00.000Z"
    jobs = {j.opts.source: j.opts for j in fleet.plan(fleet.load(Path(config)), None)}
    assert (jobs["nightly"].retry_gone, jobs["whole"].retry_gone) == (False, True)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[[source]\nname = 'x'", "is not TOML"),
        # nothing to sync: refused, not a cron line that archives nothing every night
        ("[defaults]\nlookback = '1h'", "no [[source]] or [[organization]]; name one"),
        ("[source]\nname = 'x'\nregion = 'us-east-1'", "no [[source]] or [[organization]]"),
        ("colour = 'red'\n[[source]]\nname = 'x'\nregion = 'us-east-1'", "unknown key 'colour'"),
        ("[[source]]\nname = 'x'\nregion = 'us-east-1'\nspeed = 3", "unknown key 'speed'"),
        (
            "[[source]]\nname = 'x'\nregion = 'us-east-1'\n[[source]]\nname = 'x'\nregion = 'eu-west-1'",
            "named twice",
        ),
        ("[[source]]\nname = 'x'", "no AWS region"),
        ("db = ''\n[[source]]\nname = 'x'\nregion = 'us-east-1'", "db must be a path"),
        ("[[source]]\nregion = 'us-east-1'", "has no name"),
        # a name in [defaults] would name every source alike: not a default
        (
            "[defaults]\nname = 'x'\n[[source]]\nname = 'y'\nregion = 'us-east-1'",
            "[defaults]: unknown key 'name'",
        ),
        ("[[source]]\nname = 'x'\nregion = 'us-east-1'\nlookback = 'soon'", "lookback: 'soon'"),
        # values the command line would refuse are refused from a config by the same check
        ("[[source]]\nname = 'x'\nregion = 'us-east-1'\nfull = 'no'", "full: 'no' is not true or"),
        (
            "[[source]]\nname = 'x'\nregion = 'us-east-1'\nworkers = 'four'",
            "workers: 'four' is not a whole",
        ),
        (
            "[defaults]\nworkers = 1000\n[[source]]\nname = 'x'\nregion = 'us-east-1'",
            "workers: 1000 is not from 1 to 64",
        ),
        (
            "[[source]]\nname = 'x'\nregion = 'us-east-1'\nmax_attempts = -1",
            "max_attempts: -1 is not from 1",
        ),
        (
            "[[source]]\nname = 'x'\nregion = 'us-east-1'\nworkers = 99999999999999999",
            "is not from 1 to 64",
        ),
        (
            "[[source]]\nname = 'x'\nregion = 'us-east-1'\nlookbak = '1h'",
            "did you mean 'lookback'?",
        ),
        # the key as the config writes it: it was "source: 3" and "max_rps"
        ("[[source]]\nname = 3\nregion = 'us-east-1'", "[[source]] 1: name: 3 is not text"),
        ("[[source]]\nname = 'x'\nregion = 'us-east-1'\nmax-rps = 0", "max-rps: 0 is not from"),
        (  # botocore refused it only when the client was made: exit 1, the archive made
            "[[source]]\nname = 'x'\nregion = 'us-east-1'\nendpoint_url = 'http://u:S3@h:x'",
            "endpoint_url: 'http://u:***@h:x' is not an http:// or https:// URL",
        ),
        # a range check names the key and the source, as the config spells them
        (
            "[[source]]\nname = 'x'\nregion = 'us-east-1'\nuntil = '2999-01-01'",
            "source 'x': until is in the future",
        ),
        (
            "[[source]]\nname = 'x'\nregion = 'us-east-1'\nsince = '20d'\nwindow = '1s'",
            "source 'x': window 1s cuts the range into more than 10,000 windows; use a "
            "larger one, or cut the backfill into runs with since/until",
        ),
        (  # an organization's too, before its accounts are listed
            "[[organization]]\nrole_name = 'R'\nregions = ['us-east-1']\nsince = '2999-01-01'",
            "[[organization]] 1: since is in the future",
        ),
        # an empty role was no role: the base credentials' account, archived as 'x'
        ("[[source]]\nname = 'x'\nregion = 'us-east-1'\nrole_arn = ''", "role_arn is empty"),
    ],
    ids=[
        "not toml",
        "no source",
        "one [source]",
        "top key",
        "source key",
        "duplicate",
        "no region",
        "empty db",
        "no name",
        "defaults name",
        "bad span",
        "full no",
        "workers four",
        "workers 1000",
        "attempts -1",
        "workers huge",
        "typo",
        "name a number",
        "dashed key",
        "endpoint port",
        "until future",
        "window tiny",
        "organization since future",
        "empty role",
    ],
)
def test_a_bad_config_is_one_line_and_exit_2_before_any_call(runner, db, tmp_path, monkeypatch,
                                                             text, says) -> None:  # fmt: skip
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    config = _config(tmp_path, text)
    result = invoke(runner, "--db", db, "--config", config, "sync", "--all")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert says in result.stderr
    if "://" not in db:
        assert not Path(db).exists()  # nothing was written, and no call was made: the
        # config names no endpoint that could answer, and the check runs before any


def test_a_source_named_twice_is_refused_before_an_organization_is_listed(runner, db, tmp_path,
                                                                          monkeypatch) -> None:  # fmt: skip
    """Two [[source]]s of one name beside an [[organization]] were refused only after
    Organizations' ListAccounts: a call, and its failure told first, for a config error."""
    from tests.misbehaving import Misbehaving

    with Misbehaving(lambda _op, _req: b"{}") as organizations:
        monkeypatch.setenv("AWS_ENDPOINT_URL_ORGANIZATIONS", organizations.url)
        config = _config(tmp_path, "[[source]]\nname = 'x'\nregion = 'us-east-1'\n" * 2
                         + "[[organization]]\nrole_name = 'R'\nregions = ['us-east-1']\n")  # fmt: skip
        for command in (["sync", "--all"], ["sources", "plan"]):
            result = invoke(runner, "--db", db, "--config", config, *command)
            assert result.exit_code == 2 and "source 'x' is named twice" in result.stderr
        assert organizations.calls == []


@pytest.mark.parametrize("value", ["full = 'no'", "workers = 'four'", "workers = 1000"])
def test_a_value_the_command_line_refuses_is_refused_from_a_config_before_any_call(
    runner, db, tmp_path, value
) -> None:
    with Emulator(seed_operations=10, seed=3) as emu:
        config = _config(tmp_path, f"[[source]]\nname = 'x'\nregion = 'us-east-1'\n"
                                   f"endpoint_url = '{emu.url}'\n{value}\n")  # fmt: skip
        result = invoke(runner, "--db", db, "--config", config, "sync", "--all")
        assert result.exit_code == 2, result.output
        assert result.stderr.count("\n") == 1 and value.split(" =")[0] in result.stderr
        assert sum(emu.counters.calls.values()) == 0


def test_toml_dates_are_times_as_their_text_is(runner, archive, tmp_path) -> None:
    """`since = 2026-01-01` is TOML's own date, and was refused as "datetime.date(2026,
    1, 1) is not text"; a date-time without an offset is UTC, as the text form is."""
    config = _config(tmp_path, "[[source]]\nname = 'x'\nregion = 'us-east-1'\n"
                               "since = 2026-01-01\nuntil = 2026-01-02T06:00:00\n")  # fmt: skip
    result = invoke(runner, "--db", archive, "--config", config, "sync", "--all", "--dry-run")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["windows"] == [
        {"start": "2026-01-01T00:00:00.000Z", "end": "2026-01-02T06:00:00.000Z"}]  # fmt: skip
    clock = _config(tmp_path, "[[source]]\nname = 'x'\nregion = 'us-east-1'\nsince = 06:00:00\n")
    refused = invoke(runner, "--db", archive, "--config", clock, "sync", "--all", "--dry-run")
    assert refused.exit_code == 2 and "since: " in refused.stderr  # a time of no day


def test_fleet_usage_errors(runner, db, tmp_path) -> None:
    assert "--config" in invoke(runner, "--db", db, "sync", "--all").stderr
    two = invoke(runner, "--db", db, "sync", "--source", "a", "--source", "b")
    assert two.exit_code == 2 and "--config" in two.stderr
    config = _config(tmp_path, "[[source]]\nname = 'x'\nregion = 'us-east-1'\n")
    typed = invoke(runner, "--db", db, "--config", config, "sync", "--all", "--lookback", "1h")
    assert typed.exit_code == 2 and "[defaults]" in typed.stderr
    unknown = invoke(runner, "--db", db, "--config", config, "sync", "--source", "y")
    assert unknown.exit_code == 2 and "no source 'y'" in unknown.stderr
    nowhere = ("--metrics-file", "/no/such/dir/archiver.prom")  # refused before any run
    metrics = invoke(runner, "--db", db, "--config", config, "sync", "--all", *nowhere)
    assert metrics.exit_code == 2 and "--metrics-file" in metrics.stderr


def test_the_exit_code_is_the_worst_and_3_only_when_every_failure_was_a_lock() -> None:
    ok = Result("a", None, None)
    held = Result("b", None, LockHeld("held"))
    failed = Result("c", None, WorkFailed("down"))
    bad = Result("d", None, UsageError("no credentials"))
    stopped = Result("e", None, Interrupted("stopped"))
    assert worst_exit([ok, ok]) == 0
    assert worst_exit([ok, held, held]) == 3
    assert worst_exit([held, failed]) == 1
    assert worst_exit([failed, bad, held]) == 2
    assert worst_exit([failed, stopped]) == 130


def test_a_config_without_all_or_source_names_its_sources(runner, db, tmp_path) -> None:
    """`--config F sync` alone synced the default profile into the fleet's archive,
    creating a stray source."""
    config = _config(tmp_path, "[[source]]\nname = 'x'\nregion = 'us-east-1'\n")
    result = invoke(runner, "--db", db, "--config", config, "sync", "--region", "us-east-1")
    assert result.exit_code == 2 and "--all" in result.stderr and result.stderr.count("\n") == 1
    if "://" not in db:
        assert not Path(db).exists()


def test_db_and_archiver_db_win_over_the_configs_db(runner, archive, tmp_path,
                                                    monkeypatch) -> None:  # fmt: skip
    """The config's db is the archive when neither --db nor ARCHIVER_DB names one: a
    one-off command against another archive takes the fleet's config as it is."""
    elsewhere = tmp_path / "nowhere" / "fleet.db"
    config = _config(tmp_path, f"db = '{elsewhere}'\n[[source]]\nname = 'x'\n"
                               "region = 'us-east-1'\n")  # fmt: skip
    own = invoke(runner, "--config", config, "status", "--json")
    assert own.exit_code == 2 and str(elsewhere) in own.stderr  # no archive there yet
    assert invoke(runner, "--config", config, "--db", archive, "status", "--json").exit_code == 0
    monkeypatch.setenv("ARCHIVER_DB", archive)
    assert invoke(runner, "--config", config, "status", "--json").exit_code == 0


@pytest.mark.slow
def test_a_relative_db_in_a_config_is_the_configs_own(runner, tmp_path, monkeypatch) -> None:
    """cron runs in $HOME: `db = "archive.db"` in /etc/archiver/fleet.toml meant
    ~/archive.db. It means the file beside the config."""
    home, etc = tmp_path / "home", tmp_path / "etc"
    home.mkdir()
    etc.mkdir()
    monkeypatch.chdir(home)
    with Emulator(seed_operations=10, seed=74) as emu:
        config = etc / "fleet.toml"
        config.write_text(f"db = 'archive.db'\n[[source]]\nname = 'x'\nregion = 'us-east-1'\n"
                          f"endpoint_url = '{emu.url}'\n")  # fmt: skip
        result = invoke(runner, "--config", str(config), "sync", "--all")
    assert result.exit_code == 0, result.output
    assert (etc / "archive.db").exists() and not (home / "archive.db").exists()


@pytest.mark.slow
def test_a_source_with_regions_is_one_source_per_region(runner, db, tmp_path) -> None:
    with Emulator(seed_operations=30, seed=75) as emu:
        config = _config(tmp_path, f"[defaults]\nendpoint_url = '{emu.url}'\n[[source]]\n"
                                   "name = 'prod'\nregions = ['us-east-1', 'eu-west-1']\n")  # fmt: skip
        plan = invoke(runner, "--db", db, "--config", config, "sources", "plan", "--json")
        assert plan.exit_code == 0, plan.output
        assert [(s["name"], s["region"]) for s in json.loads(plan.stdout)] == [
            ("prod@us-east-1", "us-east-1"), ("prod@eu-west-1", "eu-west-1")]  # fmt: skip
        assert sum(emu.counters.calls.values()) == 0  # planned without a call
        done = invoke(runner, "--db", db, "--config", config, "sync", "--all")
        assert done.exit_code == 0, done.output
    listed = json.loads(invoke(runner, "--db", db, "sources", "list", "--json").stdout)
    assert sorted(s["name"] for s in listed) == ["prod@eu-west-1", "prod@us-east-1"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[[source]]\nname = 'x'\nregions = 'us-east-1'", "regions must be a list"),
        ("[[source]]\nname = 'x'\nregions = ['us-east-1', '']", "regions must be a list"),
        ("[[source]]\nname = 'x'\nregion = 'us-east-1'\nregions = ['eu-west-1']", "both region"),
    ],
)
def test_bad_regions_are_refused(runner, db, tmp_path, text, says) -> None:
    result = invoke(runner, "--db", db, "--config", _config(tmp_path, text), "sources", "plan")
    assert result.exit_code == 2 and says in result.stderr


def test_defaults_regions_are_every_sources_unless_it_names_its_own(runner, db, tmp_path) -> None:
    """[defaults] regions give each [[source]] one source per region; a source's own
    region wins over them, and is one source under its own name."""
    config = _config(tmp_path, "[defaults]\nregions = ['us-east-1', 'eu-west-1']\n[[source]]\n"
                               "name = 'a'\n[[source]]\nname = 'b'\nregion = 'ap-south-1'\n")  # fmt: skip
    plan = invoke(runner, "--db", db, "--config", config, "sources", "plan", "--json")
    assert plan.exit_code == 0, plan.output
    assert [(s["name"], s["region"]) for s in json.loads(plan.stdout)] == [
        ("a@us-east-1", "us-east-1"), ("a@eu-west-1", "eu-west-1"), ("b", "ap-south-1")]  # fmt: skip


def test_the_config_is_found_where_xdg_says(runner, db, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ARCHIVER_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "archiver").mkdir()
    (tmp_path / "archiver" / "config.toml").write_text("[[source]]\nname = 'found'\n"
                                                       "region = 'us-east-1'\n")  # fmt: skip
    result = invoke(runner, "--db", db, "sources", "plan")
    assert result.exit_code == 0 and result.stdout.startswith("found  region us-east-1")
    # --config "$FLEET" with FLEET unset is neither that file nor the working directory
    # (it was "config . is a directory"), as an empty --db is no archive
    empty = invoke(runner, "--db", db, "--config", "", "sources", "plan")
    assert (empty.exit_code, empty.stderr) == (
        2, "error: the config's name is empty (--config or ARCHIVER_CONFIG)\n")  # fmt: skip


def test_an_organization_without_role_name_or_regions_is_exit_2_before_any_call(
    runner, tmp_path
) -> None:
    config = tmp_path / "org.toml"
    for table in ('role_name = "R"', 'regions = ["us-east-1"]',
                  'role_name = "R"\nregions = ["us-east-1"]\ninclude = "123"'):  # fmt: skip
        config.write_text(f"[[organization]]\n{table}\n")
        result = invoke(runner, "--config", str(config), "sources", "plan")
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        assert "[[organization]] 1" in result.stderr


def test_reading_a_config_lists_no_organization_until_a_plan_needs_it(
    runner, archive, tmp_path, monkeypatch
) -> None:
    """Every command reads the config (for its db); only sync and `sources plan` need
    an organization's accounts. Organizations is unreachable here: status still runs."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_ORGANIZATIONS", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    config = tmp_path / "org.toml"
    config.write_text('[[organization]]\nrole_name = "R"\nregions = ["us-east-1"]\n')
    status = invoke(runner, "--config", str(config), "--db", archive, "status")
    assert status.exit_code == 0, status.output
    planned = invoke(runner, "--config", str(config), "sources", "plan")
    assert planned.exit_code == 1 and "ListAccounts" in planned.stderr, planned.output


@pytest.mark.slow
def test_a_dry_run_names_a_role_and_assumes_none(runner, tmp_path, monkeypatch) -> None:
    """--dry-run makes no call: a source's role_arn is named in the plan, not assumed.
    STS is unreachable here, as it may be where a plan is checked; it answered exit 1
    ("AssumeRole failed") when the dry run assumed the role."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    role = "arn:aws:iam::210987654321:role/ArchiverRead"
    with Emulator(seed_operations=5) as emu:
        config = _config(tmp_path, f'db = "a.db"\n[[source]]\nname = "prod"\n'
                         f'region = "us-east-1"\nendpoint_url = "{emu.url}"\nrole_arn = "{role}"\n')  # fmt: skip
        result = invoke(runner, "--config", config, "sync", "--all", "--dry-run")
        assert sum(emu.counters.calls.values()) == 0
    assert result.exit_code == 0, result.output
    [plan] = json.loads(result.stdout)
    assert plan["credentials"] == f"env, then assume-role {role}"
    assert not (tmp_path / "a.db").exists()


def test_sources_plan_masks_an_endpoints_password(runner, tmp_path) -> None:
    """Every secret shown goes through the one masker: the plan printed a config's
    endpoint_url with its password, in text and in JSON."""
    url = "http://archiver:Sh0uldNeverShow@127.0.0.1:9/?password=Sh0uldNeverShow"
    config = _config(tmp_path, f'[[source]]\nname = "a"\nregion = "us-east-1"\n'
                               f'endpoint_url = "{url}"\n')  # fmt: skip
    for extra in ([], ["--json"]):
        result = invoke(runner, "--config", config, "sources", "plan", *extra)
        assert result.exit_code == 0, result.output
        assert "http://archiver:***@127.0.0.1:9/?password=***" in result.stdout
        assert "Sh0uldNeverShow" not in result.output


@pytest.mark.slow
@pytest.mark.engine_free  # its archive is the config's SQLite file
def test_an_organization_that_cannot_be_listed_stops_only_its_own_accounts(
    runner, tmp_path, monkeypatch
) -> None:
    """Organizations' ListAccounts failing (here: no one answers) stopped the whole
    fleet before any run, so the config's own [[source]]s went unarchived that night
    too. The organization fails alone now, told in one line and counted in the exit;
    a plan, which must show everything, still fails as a whole. Syncing a [[source]]
    by name does not list the organizations at all."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_ORGANIZATIONS", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    config = tmp_path / "fleet.toml"
    with Emulator(seed_operations=30, seed=7) as emu:
        config.write_text(f'db = "archive.db"\n[[source]]\nname = "mine"\nregion = "us-east-1"\n'
                          f'endpoint_url = "{emu.url}"\n[[organization]]\nrole_name = "R"\n'
                          'regions = ["us-east-1"]\n')  # fmt: skip
        done = invoke(runner, "--config", str(config), "sync", "--all", "--json")
        mine = invoke(runner, "--config", str(config), "sync", "--source", "mine")
    assert (mine.exit_code, mine.stderr) == (0, "")  # a [[source]] alone lists no organization
    assert done.exit_code == 1, done.output
    assert done.stderr.startswith("error: source [[organization]] 1: ListAccounts failed: "), (
        done.stderr)  # fmt: skip
    assert done.stderr.count("\n") == 1, done.stderr
    lines = {r["source"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert lines["mine"]["outcome"] == "succeeded" and lines["mine"]["inserted"] == 30
    assert lines["[[organization]] 1"]["outcome"] == "failed"
    check = invoke(runner, "--db", str(tmp_path / "archive.db"), "status", "--check")
    assert check.exit_code == 0, check.output  # the source that could sync did
    planned = invoke(runner, "--config", str(config), "sources", "plan")
    assert planned.exit_code == 1 and planned.stderr.startswith("error: ListAccounts failed")
    one = invoke(runner, "--config", str(config), "sync", "--source", "111122223333@us-east-1")
    assert one.exit_code == 1 and "ListAccounts failed" in one.stderr, one.output
