"""Stop requests (SIGTERM, Ctrl-C) reach the sync only where a stop is safe.

A signal raised as an exception inside a database call left psycopg's connection
mid-command, and the interrupted run could not be recorded (exit 1 instead of 130).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future

import pytest

from archiver import stopping
from archiver.errors import Stopped

pytestmark = pytest.mark.engine_free  # the archive's engine plays no part


@pytest.fixture
def installed():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    stopping.install()
    yield
    stopping.install()  # forgets this test's request: a later test of this worker has none
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_signal_outside_a_wait_is_held_until_the_next_wait(installed) -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # lands "inside a database call": nothing raised
    time.sleep(0.01)
    with pytest.raises(Stopped, match=r"^stopped by signal SIGTERM$"), stopping.waiting():
        pytest.fail("the wait must not start once a stop is requested")


def test_a_signal_the_kernel_hands_another_thread_stops_the_syncs_wait(installed) -> None:
    """The main thread blocks SIGTERM, so the kernel must hand the signal to another
    thread, as it may in any run; the sync's wait sees it within a poll. A wait that
    did not poll would sleep until the future's result came, 10 s later."""
    never: Future[None] = Future()
    in_wait = threading.Event()

    def signal_once_waiting() -> None:
        in_wait.wait(10)  # only once the main thread is inside the wait
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=signal_once_waiting, daemon=True).start()
    came = threading.Event()
    late = threading.Timer(10, lambda: (came.set(), never.set_result(None)))
    late.start()
    unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        with pytest.raises(Stopped, match=r"^stopped by signal SIGTERM$"):
            in_wait.set()
            stopping.wait_for(never)
        assert not came.is_set(), "the stop was taken only once the work was done"
    finally:
        late.cancel()
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)


def test_ctrl_c_reads_as_interrupted_and_a_second_request_stops_at_once(installed) -> None:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.01)  # held: not waiting
    with pytest.raises(KeyboardInterrupt) as second:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
    assert isinstance(second.value, Stopped) and str(second.value) == ""


def test_install_forgets_an_earlier_request(installed) -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.01)
    stopping.install()
    with stopping.waiting():
        pass


@pytest.mark.parametrize(("signame", "code", "line"), [
    ("SIGINT", 130, "error: interrupted"),
    ("SIGTERM", 143, "error: stopped by signal SIGTERM"),
])  # fmt: skip
def test_a_signal_while_the_command_line_is_imported_is_one_line(
    signame: str, code: int, line: str
) -> None:
    """The entry point installs the stop handler before it imports the command line
    (a tenth of a second): a signal that lands in that import, delivered here exactly
    then by an import hook, is one line and 130 or 143, never a traceback or a silent
    exit."""
    import subprocess
    import sys

    script = f"""
import os, signal, sys
class Signal:
    def find_spec(self, name, path, target=None):
        if name == "archiver.cli":
            os.kill(os.getpid(), signal.{signame})
        return None
sys.meta_path.insert(0, Signal())
sys.argv = ["archiver", "--help"]
from archiver.__main__ import run
run()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert (done.returncode, done.stderr, done.stdout) == (code, line + "\n", "")


def _stopped_query(tmp_path, log_format: str, deliver: str) -> subprocess.CompletedProcess[str]:
    """`archiver query -o count` in a subprocess whose code ``deliver`` (run first) sends
    SIGTERM from inside a library: it ends 143 with the stop's one line, as the entry
    point's handler says it, in ``log_format``."""
    from archiver.store.archive import Archive

    db = str(tmp_path / "archive.db")
    Archive(db).upgrade()
    argv = ["archiver", "--db", db, "query", "-o", "count", "--log-format", log_format]
    script = f"{deliver}\nsys.argv = {argv!r}\nfrom archiver.__main__ import run\nrun()\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert (done.returncode, done.stderr.count("\n")) == (143, 1), done.stderr
    line = json.loads(done.stderr)["message"] if log_format == "json" else done.stderr
    assert "stopped by signal SIGTERM" in line
    return done


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_signal_inside_the_connection_pool_is_one_line(tmp_path, log_format: str) -> None:
    """A read takes a stop wherever it lands. Landing in SQLAlchemy's pool as it hands a
    connection back (delivered here exactly then), it was also logged by the pool as
    "Exception during reset or similar" with a traceback, 13 lines before ours."""
    done = _stopped_query(tmp_path, log_format, """
import os, signal, sys
from sqlalchemy.pool.base import _ConnectionFairy
reset = _ConnectionFairy._reset
def _reset(self, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    return reset(self, *args, **kwargs)
_ConnectionFairy._reset = _reset
""")  # fmt: skip
    assert done.stdout == ""


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_signal_inside_a_finalizer_still_stops_a_read(tmp_path, log_format: str) -> None:
    """A read takes a stop wherever it lands. Landing in a finalizer (a weakref callback
    run as the archive is opened, here), Python printed it with a traceback and swallowed
    it: the query ran on and exited 0, as if the stop had not been asked for."""
    _stopped_query(tmp_path, log_format, """
import os, signal, sys, weakref
import archiver.store.db as db
class Thing: pass
def finalizer():
    os.kill(os.getpid(), signal.SIGTERM)
    sum(range(3))  # Python code: the handler runs here, inside the finalizer
box = [Thing()]
weakref.finalize(box[0], finalizer)
create_engine = db.create_engine
def create(*args, **kwargs):
    box.clear()
    return create_engine(*args, **kwargs)
db.create_engine = create
""")  # fmt: skip


@pytest.mark.slow  # a command in a subprocess
@pytest.mark.parametrize("command", [["query", "-o", "json"], ["export"]])
def test_sigterm_stops_a_command_that_reads_at_once(archive: str, command: list[str]) -> None:
    """Only the sync waits for a safe moment. `query` (no wait of a sync's) recorded a
    SIGTERM for a wait that never came: blocked on a slow reader, then drained, it ran
    to its end and exited 0, as if `timeout` or systemd had not asked."""
    import subprocess
    import sys

    from tests.helpers import fill, op

    fill(archive, [op(i, minutes=i, error_message="x" * 200) for i in range(2_000)])  # > a pipe
    proc = subprocess.Popen([sys.executable, "-m", "archiver", "--db", archive, *command],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    proc.stdout.read(1)  # it writes; nothing more is read, so the pipe fills and it blocks
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)  # drained: a command that ignored it now ends
    assert (proc.returncode, err.decode()) == (143, "error: stopped by signal SIGTERM\n")


def test_a_stop_cuts_short_a_pause_of_max_rps(installed) -> None:
    """At `--max-rps 0.1` a call waits ten seconds for its turn, and calls queued behind
    it longer: a stopped run waited for each pause to end before it could exit."""
    from archiver.sync.client import RateLimit

    limit = RateLimit(0.1)
    limit.wait()  # the first call goes at once; the next waits ten seconds
    threading.Timer(0.3, os.kill, [os.getpid(), signal.SIGTERM]).start()
    began = time.monotonic()
    limit.wait()
    assert time.monotonic() - began < 2
    assert stopping.requested()


@pytest.mark.slow  # a local socket
def test_a_stop_ends_a_call_waiting_on_a_stalled_sts(installed, monkeypatch) -> None:
    """A source's role is assumed at its first call: an STS that took the request and
    never answered held a stopped run for minutes, as only Cloud Map's calls heard a
    stop (systemd's stop timeout killed it first)."""
    import socket

    from archiver.errors import Interrupted
    from archiver.sync.client import make_client
    from archiver.sync.options import ClientSettings

    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # unfixed, the test fails in a minute, not five
    with socket.socket() as sts:  # takes connections (the kernel's backlog), never answers
        sts.bind(("127.0.0.1", 0))
        sts.listen()
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{sts.getsockname()[1]}")
        client = make_client(ClientSettings(region="us-east-1", endpoint_url="http://127.0.0.1:9",
                                            role_arn="arn:aws:iam::123456789012:role/R"))  # fmt: skip
        threading.Timer(0.5, os.kill, [os.getpid(), signal.SIGTERM]).start()
        began = time.monotonic()
        with pytest.raises(Interrupted, match="SIGTERM"):
            client.list_operations()
    assert time.monotonic() - began < 5


@pytest.mark.slow  # a local socket
def test_a_stop_ends_the_wait_for_a_profiles_role_on_a_stalled_sts(installed, monkeypatch,
                                                                  tmp_path) -> None:  # fmt: skip
    """A profile's own role_arn is assumed by botocore's STS client, not ours, when the
    client is made: an STS that took the request and never answered held a stop for
    as long as botocore waited (a minute a read, each attempt)."""
    import socket

    from archiver.errors import Interrupted
    from archiver.sync.client import make_client
    from archiver.sync.options import ClientSettings

    (tmp_path / "config").write_text("[profile base]\naws_access_key_id = k\n"
                                     "aws_secret_access_key = s\n[profile roled]\n"
                                     "role_arn = arn:aws:iam::123456789012:role/R\n"
                                     "source_profile = base\n")  # fmt: skip
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # unfixed, the test fails in a minute
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as sts:  # takes connections (the kernel's backlog), never answers
        sts.bind(("127.0.0.1", 0))
        sts.listen()
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{sts.getsockname()[1]}")
        threading.Timer(0.5, os.kill, [os.getpid(), signal.SIGTERM]).start()
        began = time.monotonic()
        with pytest.raises(Interrupted, match="SIGTERM while AWS credentials were fetched"):
            make_client(ClientSettings(region="us-east-1", endpoint_url="http://127.0.0.1:9",
                                       profile="roled"))  # fmt: skip
    assert time.monotonic() - began < 5
