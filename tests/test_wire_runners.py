"""The threads that carry each HTTP send (``wire``): reused from call to call, and a
call abandoned at its deadline never holds up the calls after it."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

import pytest

from archiver.sync import wire

pytestmark = pytest.mark.engine_free


class _Request:
    def __init__(self, name: str) -> None:
        self.name, self.url = name, "http://127.0.0.1:1/"


class _Session:
    """A stand-in for botocore's HTTP session: answers at once, or hangs when told,
    and records which thread ran each send."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.threads: list[threading.Thread] = []

    def send(self, request: _Request) -> str:
        self.threads.append(threading.current_thread())
        if request.name == "hang":
            self.release.wait(30)
        return f"answer to {request.name}"


def _sender(session: _Session, call_timeout: float):  # type: ignore[no-untyped-def]
    """A send as ``wire.install`` registers it, with its own stop event and counts."""
    return wire._send_by(session, call_timeout, threading.Event(), Counter())


def test_calls_in_turn_reuse_one_thread() -> None:
    """Starting a thread for every call cost a tenth of a CPU-bound sync's time."""
    session = _Session()
    send = _sender(session, 5)
    before = set(threading.enumerate())  # runners left idle by earlier tests may serve too
    assert [send(_Request(str(i))) for i in range(200)] == [f"answer to {i}" for i in range(200)]
    assert len(set(session.threads) - before) <= 1  # at most one runner was started
    assert threading.current_thread() not in session.threads  # still off the caller's


def test_an_abandoned_call_does_not_hold_up_the_next() -> None:
    session = _Session()
    send = _sender(session, 0.3)
    try:
        with pytest.raises(Exception, match="call-timeout"):
            send(_Request("hang"))
        started = time.monotonic()
        assert send(_Request("next")) == "answer to next"
        assert time.monotonic() - started < 0.3  # another runner took it at once
        assert session.threads[0] is not session.threads[1]
    finally:
        session.release.set()


def test_a_forked_child_starts_its_own_runners() -> None:
    """Threads do not survive fork(): a child that counted its parent's idle runners
    as its own would hand its calls to no one and hang until each call's deadline."""
    session = _Session()
    send = _sender(session, 5)
    assert send(_Request("parent")) == "answer to parent"  # the parent has an idle runner
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            child = _sender(_Session(), 2)
            code = 0 if child(_Request("child")) == "answer to child" else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
