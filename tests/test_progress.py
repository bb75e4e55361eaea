"""Progress that helps: live on a terminal, a few log lines in cron, nothing otherwise."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys

import pytest

from archiver.emulator import Emulator
from tests.conftest import invoke

pytestmark = [pytest.mark.slow, pytest.mark.engine_free]  # over HTTP or in subprocesses; no engine


def test_cron_gets_a_line_per_window_every_10_pages_and_the_duration(runner, archive) -> None:
    window = ("--region", "us-east-1", "--window", "10d", "--since", "30d")
    with Emulator(seed_operations=1100, days=20, seed=81) as emu:  # 11 pages a pass
        quiet = invoke(runner, "--db", archive, "sync", "--endpoint-url", emu.url, *window,
                       "--source", "acct", "--json")  # fmt: skip
        logged = invoke(runner, "-v", "--db", archive, "sync", "--endpoint-url", emu.url,
                        *window, "--source", "acct2")  # fmt: skip
    assert quiet.exit_code == 0 and logged.exit_code == 0, logged.output
    assert quiet.stderr == ""  # cron mails nothing on success
    assert json.loads(quiet.stdout)["duration_s"] > 0
    lines = logged.stderr.splitlines()
    windows = [ln for ln in lines if re.search(r"window \d/3, \d{4}-", ln)]
    assert len(windows) == 3  # one line per window
    tens = [ln for ln in lines if re.search(r"\d+0 pages", ln)]
    assert len(tens) == 3 and all("listed" in ln for ln in tens)  # every 10 of 33 pages
    assert re.search(r"source acct2: done in \d+\.\ds", logged.stderr)


def test_json_logs_are_silent_on_success_and_carry_the_progress_lines_with_v(archive) -> None:
    with Emulator(seed_operations=300, seed=82) as emu:
        cmd = [sys.executable, "-m", "archiver", "--log-format", "json", "--db", archive, "sync",
               "--endpoint-url", emu.url, "--region", "us-east-1", "--source", "acct"]  # fmt: skip
        quiet = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        done = subprocess.run([*cmd, "--full", "-v"], capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and (quiet.stdout, quiet.stderr) == ("", "")  # cron mails nothing
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    assert all({"time", "level", "message"} <= set(e) for e in entries)
    assert {e.get("source") for e in entries} == {"acct"}  # each line names its source
    assert any(isinstance(e.get("run_id"), int) for e in entries)
    assert any("window 1/1" in e["message"] for e in entries)
    assert any("done in" in e["message"] for e in entries)


def test_a_terminal_gets_a_live_display_that_finishes_cleanly(archive) -> None:
    with Emulator(seed_operations=600, seed=83) as emu:
        master, slave = pty.openpty()
        cmd = [sys.executable, "-m", "archiver", "--db", archive, "sync", "--endpoint-url",
               emu.url, "--region", "us-east-1", "--source", "acct"]  # fmt: skip
        env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=slave, env=env)
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        assert proc.wait(timeout=120) == 0
        os.close(master)
    text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", seen).decode(errors="replace")
    assert "acct" in text and "window 1/1" in text and "fetched 600" in text
    assert re.search(r"\d:\d\d:\d\d", text)  # elapsed time
    assert text.rstrip(" ").endswith("\n")  # finished: the next output starts on a new line
