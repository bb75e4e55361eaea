"""Every command line of the README runs as written, against the emulator.

The lines are read from the README's ``sh`` and ``cron`` blocks, so a line that
changes is run as it now stands. Only what names this machine's surroundings is put
in place: the paths under /var/lib and /etc become files of a temporary directory,
cron's path to the executable becomes `archiver`, and the emulator stands in for
AWS (as the endpoint of the AWS config's profiles, and for the example's URL).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from archiver.emulator import Emulator

pytestmark = [pytest.mark.slow, pytest.mark.engine_free]  # subprocesses; SQLite files only

README = Path(__file__).resolve().parents[1] / "README.md"

#: What stands for this machine's surroundings in the README, and what replaces it.
PLACES = {
    "/opt/archiver/.venv/bin/archiver": "archiver",
    "/var/lib/archiver/archive.db": "archive.db",
    "/var/lib/node_exporter/textfile/archiver.prom": "archiver.prom",
    "/etc/archiver/fleet.toml": "fleet.toml",
    "/var/backups/archive.db": "backup.db",
}
CRON = re.compile(r"^(\S+\s+){5}")  # a crontab line's five time fields


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", README.read_text(), flags=re.S)


def command_lines() -> list[tuple[str, bool]]:
    """Each README command that runs archiver (or backs its archive up), in the
    README's order, and whether it is a cron line (which must print nothing on success)."""
    out = []
    text = README.read_text()
    for kind, body in re.findall(r"```(sh|cron)\n(.*?)```", text, flags=re.S):
        for line in body.splitlines():
            line = line.split("  #")[0].strip()
            if not line or line.startswith("#"):
                continue
            if kind == "cron":
                line = CRON.sub("", line)
            for old, new in PLACES.items():
                line = line.replace(old, new)
            if line.startswith(("archiver ", "sqlite3 ")):  # the backup's, with the shell
                out.append((line, kind == "cron"))
    return out


def test_the_readme_has_command_lines_to_run() -> None:
    lines = [line for line, _ in command_lines()]
    assert len(lines) >= 15
    assert any("sync --profile prod --region eu-west-1 --log-format json" in ln for ln in lines)


def test_every_readme_command_line_runs_as_written(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "archiver"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m archiver "$@"\n')
    shim.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    (work / "filters.json").write_text('[{"Name": "STATUS", "Values": ["FAIL"]}]')
    (tmp_path / "config").write_text(
        "[default]\nregion = us-east-1\n[profile prod]\nregion = eu-west-1\n"
        "[profile staging]\nregion = eu-west-1\n[profile shared]\n"
    )
    (tmp_path / "credentials").write_text(
        "".join(
            f"[{p}]\naws_access_key_id = k\naws_secret_access_key = s\n"
            for p in ("default", "prod", "staging", "shared")
        )
    )
    (fleet,) = [b for b in blocks("toml") if "fleet.toml" in b]
    (work / "fleet.toml").write_text(re.sub(r"(?m)^db = .*$", 'db = "archive.db"', fleet))
    with Emulator(seed_operations=300, seed=91) as emu:
        # the README's examples ask about a service named checkout
        emu.account.services[0] = dataclasses.replace(emu.account.services[0], name="checkout")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "ARCHIVER_"))}  # fmt: skip
        env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
                   AWS_CONFIG_FILE=str(tmp_path / "config"),
                   AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
                   AWS_ENDPOINT_URL_SERVICEDISCOVERY=emu.url)  # fmt: skip

        def run(line: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["bash", "-c", line], cwd=work, env=env, text=True,
                                  capture_output=True, timeout=300)  # fmt: skip

        # the README retires a source and removes one named by a typo: they must exist
        for name in ("111122223333@ap-southeast-2", "typo@eu-west-9"):
            assert run(f"archiver --db archive.db sync --source {name}").returncode == 0
        ran = 0
        for line, cron in command_lines():
            if "emulator serve" in line or " web " in line:
                continue  # serves until stopped (tests/test_web.py serves it); the
                # emulator here stands in for the one
            line = line.replace("http://127.0.0.1:8765", emu.url)
            if line.startswith("sqlite3 ") and shutil.which("sqlite3") is None:
                if "sqlite3" in os.environ.get("ARCHIVER_REQUIRE", "").split(","):
                    pytest.fail("needs the sqlite3 shell (the distribution's sqlite3 package)")
                # the README's other way, so that the lines after it still run
                source, command = shlex.split(line)[1:3]
                with closing(sqlite3.connect(work / source)) as db, closing(
                    sqlite3.connect(work / command.split()[1])) as copy:  # fmt: skip
                    db.backup(copy)
                continue
            done = run(line)
            assert done.returncode == 0, (line, done.stderr)
            if cron:
                assert (done.stdout, done.stderr) == ("", ""), line  # cron mails nothing
            ran += 1
    assert ran >= 15
