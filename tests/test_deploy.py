"""The deployment kit in docs/deploy/: the systemd unit and timer, and the IAM policy.

The unit's ExecStart is run as written against the emulator (only the executable's
path and the archive's place are put in), and the policy's actions are held to the
API operations a sync actually calls.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from archiver.emulator import Emulator
from tests.conftest import invoke

pytestmark = pytest.mark.engine_free  # files and calls; the archive's engine plays no part

DEPLOY = Path(__file__).resolve().parents[1] / "docs" / "deploy"


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections, each key with its values in order (systemd repeats keys
    such as Environment=, which configparser refuses)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in (DEPLOY / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_timer_catches_up_and_the_service_has_a_time_limit() -> None:
    timer, service = unit("archiver-sync.timer"), unit("archiver-sync.service")
    assert timer["Timer"]["Persistent"] == ["true"]
    assert timer["Timer"]["OnCalendar"] and timer["Install"]["WantedBy"] == ["timers.target"]
    assert service["Service"]["Type"] == ["oneshot"]
    assert service["Service"]["TimeoutStartSec"]
    assert service["Service"]["SuccessExitStatus"] == ["3"]  # another run at work: no failure
    text = (DEPLOY / "archiver-sync.service").read_text()
    for code in ("0 ", "1 ", "2 ", "3 ", "143 "):  # the exit codes, documented in the unit
        assert "# Exit codes" in text and code in text


@pytest.mark.slow
def test_the_services_execstart_runs_as_written(tmp_path: Path) -> None:
    service = unit("archiver-sync.service")["Service"]
    (exec_start,) = service["ExecStart"]
    words = shlex.split(exec_start)
    assert words[0].endswith("/archiver")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ARCHIVER_"))}
    for line in service.get("Environment", []):
        key, _, value = line.partition("=")
        env[key] = value
    env["ARCHIVER_DB"] = str(tmp_path / "archive.db")  # /var/lib/archiver's place here
    env["HOME"] = str(tmp_path)
    (tmp_path / "config").write_text("[profile prod]\nregion = eu-west-1\n")
    (tmp_path / "credentials").write_text(
        "[prod]\naws_access_key_id = k\naws_secret_access_key = s\n"
    )
    with Emulator(seed_operations=200, seed=12) as emu:
        env.update(AWS_CONFIG_FILE=str(tmp_path / "config"),
                   AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
                   AWS_ENDPOINT_URL_SERVICEDISCOVERY=emu.url)  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "archiver", *words[1:]], env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert (done.stdout, done.stderr) == ("", "")  # a good night mails nothing
        assert emu.counters.calls["GetOperation"] == 200


@pytest.mark.slow
def test_the_iam_policy_allows_exactly_what_a_sync_calls(runner, tmp_path: Path) -> None:
    policy = json.loads((DEPLOY / "iam-policy.json").read_text())
    (statement,) = policy["Statement"]
    allowed = {a.removeprefix("servicediscovery:") for a in statement["Action"]}
    assert all(a.startswith("servicediscovery:") for a in statement["Action"])
    with Emulator(seed_operations=300, seed=13, shared=0.3) as emu:  # shared: owners too
        done = invoke(runner, "--db", str(tmp_path / "a.db"), "sync", "--endpoint-url",
                      emu.url, "--region", "us-east-1")  # fmt: skip
        assert done.exit_code == 0, done.output
        called = {name for name, n in emu.counters.calls.items() if n}
    assert called == allowed
