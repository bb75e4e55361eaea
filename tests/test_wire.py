"""The sync against endpoints that misbehave on the wire: junk answers fail the run
without moving the watermark, and neither a trickling server nor a hanging call can
hold a run or keep it from stopping."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from archiver.emulator import Emulator
from archiver.store.models import Operation, SyncRun, SyncState
from archiver.sync.options import ClientSettings
from archiver.sync.run import SyncOptions
from archiver.sync.wire import JunkAnswer
from tests.clients import protocol_session
from tests.conftest import invoke
from tests.helpers import archived, assert_archive_equals, cli_sync, read_rows, run_library_sync
from tests.misbehaving import Misbehaving

pytestmark = [pytest.mark.slow, pytest.mark.engine_free]  # over HTTP or in subprocesses; no engine

JUNK = {
    "text": b"hello",
    "truncated": b'{"Operations": [{"Id": "op-1", "Status": "SUC',
    "ten megabytes": b"\x00junk" * (2 * 1024 * 1024),
    "a list": b"[]",
    "a string": b'"ok"',
    "empty": b"",
}


def _watermark(db: str):  # type: ignore[no-untyped-def]
    rows = read_rows(db, select(SyncState.watermark))
    return rows[0].watermark if rows else None


def test_a_junk_200_fails_the_run_and_the_next_run_converges(runner, archive) -> None:
    for name, body in JUNK.items():
        with Misbehaving(lambda _op, _req, body=body: body) as junk:
            result = cli_sync(runner, archive, junk.url, "--source", "acct")
        assert result.exit_code == 1, (name, result.output)
        assert result.stderr.count("\n") == 1, name
        assert junk.url in result.stderr and "HTTP 200" in result.stderr, result.stderr
        assert _watermark(archive) is None, name  # the watermark never moved
        assert read_rows(archive, select(SyncRun.outcome))[-1].outcome == "failed"
    with Emulator(seed_operations=2000, seed=4) as emu:
        assert cli_sync(runner, archive, emu.url, "--source", "acct").exit_code == 0
        assert_archive_equals(archive, emu.account)
    count = invoke(runner, "--db", archive, "query", "-o", "count")
    assert count.stdout == "2000\n"


def test_a_proxys_error_page_is_one_short_line_and_the_run_keeps_its_words(runner, archive,
                                                                           monkeypatch) -> None:  # fmt: skip
    """A proxy in front of the endpoint that refuses with its own HTML page: botocore
    takes the whole body for the error's message, so the error line was the page (100 kB
    of one line in cron's mail), and the run's stored error its first line, "<html>"."""
    page = (b"<html>\r\n<head><title>403 Forbidden: blocked by the proxy</title></head>\r\n"
            b"<body>\r\n" + b"<p>policy</p>\r\n" * 6000 + b"</body>\r\n</html>\r\n")  # fmt: skip
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with Misbehaving(lambda _op, _req: page, status=403) as proxy:
        result = cli_sync(runner, archive, proxy.url, "--source", "acct")
    assert result.exit_code == 1, result.output
    line = result.stderr
    assert line.count("\n") == 1 and len(line) < 700, line[:1000]
    assert line.startswith("error: ") and "403 Forbidden: blocked by the proxy" in line, line
    (error,) = [r.error for r in read_rows(archive, select(SyncRun.error))]
    assert "403 Forbidden: blocked by the proxy" in error and error.endswith("…"), error


@pytest.mark.parametrize("body", [b'{"__type": "InvalidInput", "message": null}',
                                  b'{"__type": "InvalidInput", "message": {"a": 1}}'])  # fmt: skip
def test_an_error_whose_message_is_no_text_is_still_the_services_error(runner, archive,
                                                                        monkeypatch, body) -> None:  # fmt: skip
    """An error answer whose message is null or an object (a gateway's) reached the
    quoting of server text as it was, and the run failed as "AttributeError: 'NoneType'
    object has no attribute 'split'" instead of with the service's code."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with Misbehaving(lambda _op, _req: body, status=400) as gateway:
        result = cli_sync(runner, archive, gateway.url, "--source", "acct")
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ListOperations failed: InvalidInput: "), result.stderr
    assert result.stderr.count("\n") == 1 and "Error" not in result.stderr, result.stderr


@pytest.mark.parametrize("body", [b'{"__type": {"a": 1}, "message": "no"}', b"[1, 2]",
                                  b'{"__type": null}', b'"denied"'])  # fmt: skip
def test_an_error_answer_botocore_cannot_read_is_junk_naming_the_endpoint(runner, archive,
                                                                         monkeypatch, body):  # fmt: skip
    """An error whose body is no object, or whose __type is no text (a gateway's),
    broke botocore's parse: the run failed as "TypeError: unhashable type: 'dict'",
    naming neither the call nor the endpoint."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with Misbehaving(lambda _op, _req: body, status=400) as gateway:
        result = cli_sync(runner, archive, gateway.url, "--source", "acct")
    assert result.exit_code == 1, result.output
    assert result.stderr == (f"error: ListOperations: {gateway.url} answered HTTP 400 with an "
                             f"error that is not one ({len(body)} bytes: {body.decode()!r})\n")  # fmt: skip
    assert read_rows(archive, select(SyncRun.outcome))[-1].outcome == "failed"


def _library_sync(archive: str, tmp_path: Path, protocol: str, url: str, **settings: Any) -> Any:
    """One run of source ``acct`` from ``url``, botocore speaking ``protocol`` to it."""
    session = protocol_session(protocol, tmp_path / "models")
    client = ClientSettings(region="us-east-1", endpoint_url=url, **settings)
    return run_library_sync(archive, SyncOptions(source="acct"), client, session=session)


@pytest.mark.parametrize(("body", "said"), [(b"<html>forbidden</html>", "22 bytes"),
                                            (b"", "empty")])  # fmt: skip
def test_an_error_that_is_not_cbor_is_junk_over_cbor(archive, tmp_path, body, said) -> None:
    """Over smithy-rpc-v2-cbor, botocore decoded a 4xx body that is not CBOR (a proxy's
    page) as an integer, or an empty one not at all, and failed: "ResponseParserError:
    Invalid CBOR integer", "AttributeError: 'bytes' object has no attribute 'get'"."""
    refused = f"answered HTTP 403 with an error that is not one \\({said}"
    proxy = Misbehaving(lambda _op, _req: body, status=403)
    with proxy, pytest.raises(JunkAnswer, match=refused):
        _library_sync(archive, tmp_path, "smithy-rpc-v2-cbor", proxy.url, max_attempts=1)


@pytest.mark.parametrize(("status", "body"), [(500, b"<html>Internal error</html>"),
                                             (503, b"")])  # fmt: skip
def test_a_server_errors_page_over_cbor_is_a_server_error_retried(archive, tmp_path, status,
                                                                  body) -> None:  # fmt: skip
    """A 5xx's page (or no body) is not CBOR, but it is what a load balancer answers
    for an overloaded service: botocore's generic error, retried as every 5xx is, and
    told as the call's failure after the last attempt, not as a junk answer."""
    from archiver.errors import WorkFailed

    with Misbehaving(lambda _op, _req: body, status=status) as balancer:
        with pytest.raises(WorkFailed, match=f"^ListOperations failed: {status}") as failed:
            _library_sync(archive, tmp_path, "smithy-rpc-v2-cbor", balancer.url, max_attempts=2)
        assert not isinstance(failed.value, JunkAnswer)
        assert balancer.calls.count("ListOperations") == 2  # retried: two attempts in all


@pytest.mark.parametrize("body", [b"", b'{"__type": "TooBusy"}'])
def test_a_bare_429_is_throttling_retried_and_counted(archive, body) -> None:
    """A 429 without a throttling code (a gateway's empty page, a code of its own) is
    throttling all the same: botocore retries it, and the sync counts it, so that its
    concurrency backs off as it does for ThrottlingException."""
    answer, refused = _one_operation({}, {"Id": "ns-1", "Name": "n"}), []

    def busy_twice(call: str, request: dict) -> bytes | tuple[int, bytes]:
        if call == "GetOperation" and len(refused) < 2:
            refused.append(call)
            return 429, body
        return answer(call, request)

    with Misbehaving(busy_twice) as gateway:
        client = ClientSettings(region="us-east-1", endpoint_url=gateway.url)
        summary = run_library_sync(archive, SyncOptions(source="acct"), client)
    assert gateway.calls.count("GetOperation") == 3  # two 429s, and the answer
    assert (summary.outcome, summary.stats.throttled) == ("succeeded", 2)
    assert set(archived(archive)) == {"op-1"}


def test_an_error_with_a_code_and_no_message_is_told_without_a_dangling_colon(runner, archive,
                                                                              monkeypatch) -> None:  # fmt: skip
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with Misbehaving(lambda _op, _req: b'{"__type": "InternalFailure"}', status=500) as bare:
        result = cli_sync(runner, archive, bare.url, "--source", "acct")
    assert (result.exit_code, result.stderr) == (1, "error: ListOperations failed: "
                                                    "InternalFailure\n")  # fmt: skip


@pytest.mark.parametrize(
    "operation", [b"{}", b'{"Operation": {"Id": "op-1"}}', b'{"Operation": 1}']
)
def test_a_getoperation_answer_without_a_record_fails_the_run(runner, archive, operation) -> None:
    def answer(call: str, _request: dict) -> bytes:
        if call == "ListOperations":
            return json.dumps({"Operations": [{"Id": "op-1", "Status": "SUCCESS"}]}).encode()
        return operation

    with Misbehaving(answer) as junk:
        result = cli_sync(runner, archive, junk.url, "--source", "acct")
    assert result.exit_code == 1, result.output
    assert "GetOperation" in result.stderr and "Operation" in result.stderr
    assert read_rows(archive, select(func.count()).select_from(Operation))[0][0] == 0
    assert _watermark(archive) is None


JUNK_DATES = {
    "a text": "yesterday",
    "true": True,  # botocore alone reads it as 1970-01-01T00:00:01Z
    "milliseconds": 1_767_225_600_000,  # year 57,962: out of range as seconds
    "too large": 1e300,
    "not a number": float("nan"),
    "a list": [1767225600],
    "missing": None,
}


@pytest.mark.parametrize("date", JUNK_DATES.values(), ids=JUNK_DATES.keys())
@pytest.mark.parametrize("member", ["CreateDate", "UpdateDate"])
def test_a_getoperation_date_that_is_not_one_fails_the_run(runner, archive, member, date) -> None:
    good = {"Id": "op-1", "Status": "SUCCESS", "Type": "UPDATE_SERVICE",
            "CreateDate": 1767225600.0, "UpdateDate": 1767225660.5,
            "Targets": {"SERVICE": "srv-1"}}  # fmt: skip

    def answer(call: str, _request: dict) -> bytes:
        if call == "ListOperations":
            return json.dumps({"Operations": [{"Id": "op-1", "Status": "SUCCESS"}]}).encode()
        operation = {k: v for k, v in good.items() if k != member or date is not None}
        if date is not None:
            operation[member] = date
        return json.dumps({"Operation": operation}).encode()

    with Misbehaving(answer) as junk:
        result = cli_sync(runner, archive, junk.url, "--source", "acct")
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    for said in ("GetOperation", junk.url, "'op-1'", member):
        assert said in result.stderr, result.stderr
    assert read_rows(archive, select(func.count()).select_from(Operation))[0][0] == 0
    assert _watermark(archive) is None
    assert read_rows(archive, select(SyncRun.outcome))[-1].outcome == "failed"


@pytest.mark.parametrize("protocol", ["json", "smithy-rpc-v2-cbor"])
def test_a_date_that_is_not_one_fails_the_run_over_either_protocol(archive, tmp_path, protocol):
    """The emulator sends the member as it would any member AWS added (untagged in
    CBOR): the same answer check stops the run, whichever protocol botocore speaks."""
    with Emulator(seed_operations=5, seed=51) as emu:
        odd = emu.account.all()[0]
        emu.account.put(replace(odd, extra=json.dumps({"CreateDate": True})))
        with pytest.raises(JunkAnswer, match=f"Operation '{odd.id}' whose CreateDate is true"):
            _library_sync(archive, tmp_path, protocol, emu.url)
    assert _watermark(archive) is None
    assert read_rows(archive, select(SyncRun.outcome))[-1].outcome == "failed"


def test_a_listoperations_object_without_operations_is_an_empty_page(runner, archive) -> None:
    with Misbehaving(lambda _op, _req: b"{}") as quiet:
        result = cli_sync(runner, archive, quiet.url, "--source", "acct")
    assert result.exit_code == 0, result.output
    assert _watermark(archive) is not None


def test_a_trickling_server_cannot_hold_a_run(runner, archive) -> None:
    """One byte every 2 s: each attempt ends at --call-timeout, and the run with them."""
    body = json.dumps({"Operations": []}).encode()
    with Misbehaving(lambda _op, _req: body, trickle=2.0) as slow:
        started = time.monotonic()
        result = cli_sync(runner, archive, slow.url, "--source", "acct",
                          "--call-timeout", "3", "--max-attempts", "2")  # fmt: skip
        elapsed = time.monotonic() - started
    assert result.exit_code == 1, result.output
    assert "call-timeout" in result.stderr and result.stderr.count("\n") == 1
    assert elapsed <= 3 * 2 + 10, elapsed  # the names' listings beside it are abandoned
    # the unit check's first page (its window in milliseconds): both attempts, and no
    # more; no pass over the window was started
    assert len(_listings(slow, from_epoch=False)) == 2
    assert _listings(slow, from_epoch=True) == []
    assert _watermark(archive) is None


def _start(db: str, url: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "archiver", "--db", db, "sync", "--endpoint-url", url,
           "--region", "us-east-1", "--source", "acct", *extra]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))  # fmt: skip


def test_sigterm_stops_within_10s_while_a_call_hangs(archive) -> None:
    with Emulator(seed_operations=1000, seed=8) as emu:
        gate = emu.hold("ListOperations", after=3)  # page 4 never comes until the end
        proc = _start(archive, emu.url)
        assert gate.reached.wait(60), proc.communicate()
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - sent < 10
        assert proc.returncode == 143, err
        run = read_rows(archive, select(SyncRun.outcome))[-1]
        assert run.outcome == "interrupted"
        gate.release()


def test_sigterm_stops_a_trickled_call_with_default_settings(archive) -> None:
    body = json.dumps({"Operations": []}).encode()
    with Misbehaving(lambda _op, _req: body, trickle=2.0) as slow:
        proc = _start(archive, slow.url)
        deadline = time.monotonic() + 30
        while not slow.calls and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slow.calls, proc.communicate()
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - sent < 10
        assert proc.returncode == 143, err


def test_a_nexttoken_that_comes_back_stops_the_run(runner, archive) -> None:
    page = json.dumps({"Operations": [], "NextToken": "same-token"}).encode()
    with Misbehaving(lambda _op, _req: page) as looping:
        started = time.monotonic()
        result = cli_sync(runner, archive, looping.url, "--source", "acct")
    assert time.monotonic() - started < 60
    assert result.exit_code == 1, result.output
    # the names' listings repeat it too: a warning each (ListNamespaces, then
    # ListServices unfiltered), since the names only help read the archive
    *warnings, error = result.stderr.splitlines()
    assert error.startswith("error: ListOperations returned a NextToken it had already")
    assert len(warnings) == 2, warnings
    assert all("ListNamespaces returned a NextToken" in w or "ListServices returned a NextToken"
               in w for w in warnings)  # fmt: skip
    # the unit check's three pages (all empty: a service that holds nothing), then the
    # first answer and the one that repeated it
    assert looping.calls.count("ListOperations") == 3 + 2
    assert _watermark(archive) is None


def _listings(server: Misbehaving, *, from_epoch: bool) -> list[dict]:
    """The ListOperations calls a run of a new archive made for its first pass
    (UPDATE_DATE from the epoch), or the rest."""

    def is_first_pass(request: dict) -> bool:
        filters = request.get("Filters") or []
        return bool(filters) and filters[0]["Values"][0] == "0"

    return [req for op, req in server.requests
            if op == "ListOperations" and is_first_pass(req) == from_epoch]  # fmt: skip


def test_an_update_date_filter_that_matches_nothing_in_either_unit_fails(runner, archive):
    held = json.dumps({"Operations": [{"Id": "op-1", "Status": "SUCCESS"}]}).encode()
    empty = json.dumps({"Operations": []}).encode()
    with Misbehaving(lambda _op, req: empty if req.get("Filters") else held) as odd:
        result = cli_sync(runner, archive, odd.url, "--source", "acct")
    assert result.exit_code == 1, result.output
    assert "unit check" in result.stderr and result.stderr.count("\n") == 1
    # milliseconds, seconds, unfiltered: and no more (the names are listed beside it);
    # the first pass is never listed when the check fails
    assert len(_listings(odd, from_epoch=False)) == 3
    assert _listings(odd, from_epoch=True) == []
    assert read_rows(archive, select(func.count()).select_from(Operation))[0][0] == 0
    assert _watermark(archive) is None
    assert read_rows(archive, select(SyncRun.outcome))[-1].outcome == "failed"


def test_a_getoperation_answer_naming_another_operation_fails_the_run(runner, archive) -> None:
    """A proxy or cache answering every GetOperation with one other Id stored that one
    operation and dropped the listed ones, exit 0 (2 of 600 stored)."""
    with Emulator(seed_operations=60, seed=52) as emu:
        ids = [op.id for op in emu.account.all()]
        other = ids[0]

        def answer(call: str, request: dict) -> bytes:
            if call == "GetOperation":  # always the same one, whichever was asked for
                request = {"OperationId": other}
            return json.dumps(emu.service.call(call, request),
                              default=lambda d: d.timestamp()).encode()  # fmt: skip

        with Misbehaving(answer) as odd:
            result = cli_sync(runner, archive, odd.url, "--source", "acct")
        assert result.exit_code == 1, result.output
        assert result.stderr.count("\n") == 1 and "GetOperation" in result.stderr
        assert "when asked for" in result.stderr and odd.url in result.stderr
        assert _watermark(archive) is None
        healthy = cli_sync(runner, archive, emu.url, "--source", "acct")
        assert healthy.exit_code == 0, healthy.output
        assert_archive_equals(archive, emu.account)


@pytest.mark.parametrize(
    ("call", "body"),
    [
        (
            "GetOperation",
            {
                "Operation": {
                    "Id": "op-1",
                    "Status": "SUCCESS",
                    "CreateDate": 1767225600.0,
                    "UpdateDate": 1767225660.0,
                }
            },
        ),
        ("ListOperations", {"Operations": [{"Id": "op-1"}]}),
    ],
    ids=["no Type", "summary without Status"],
)
def test_an_answer_without_type_or_status_is_junk_naming_the_endpoint(runner, archive, call, body):
    def answer(asked: str, _request: dict) -> bytes:
        if asked == call:
            return json.dumps(body).encode()
        return json.dumps({"Operations": [{"Id": "op-1", "Status": "SUCCESS"}]}).encode()

    with Misbehaving(answer) as junk:
        result = cli_sync(runner, archive, junk.url, "--source", "acct")
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1 and junk.url in result.stderr, result.stderr
    assert _watermark(archive) is None


def _one_operation(operation: dict, namespace: object, tokens: dict | None = None) -> Any:
    """An account of one operation (whose members the test chooses) and one namespace
    summary, as a Misbehaving server answers them; ``tokens``: by call, the NextToken
    its first page carries."""
    now = time.time()
    record = {"Id": "op-1", "Status": "SUCCESS", "Type": "UPDATE_SERVICE", "CreateDate": now - 60,
              "UpdateDate": now - 30, "Targets": {"SERVICE": "srv-1"}, **operation}  # fmt: skip
    answers = {"ListOperations": {"Operations": [{"Id": "op-1", "Status": "SUCCESS"}]},
               "GetOperation": {"Operation": record}, "ListNamespaces": {"Namespaces": [namespace]},
               "ListServices": {"Services": [{"Id": "srv-1", "Name": "checkout"}]}}  # fmt: skip

    def answer(call: str, request: dict) -> bytes:
        first = {} if request.get("NextToken") or call not in (tokens or {}) else {
            "NextToken": (tokens or {})[call]}  # fmt: skip
        return json.dumps({**answers[call], **first}).encode()

    return answer


@pytest.mark.parametrize("namespace", [{"Id": "ns-1", "Name": {"x": 1}}, {"Id": 7, "Name": "n"},
                                       {"Id": "ns-1", "Name": "n", "ResourceOwner": ["1"]},
                                       "ns-1"])  # fmt: skip
def test_a_namespace_summary_of_the_wrong_kind_is_a_warning_not_a_stop(runner, archive,
                                                                        namespace) -> None:  # fmt: skip
    """A name that is no text stopped every run with the driver's "Error binding
    parameter" (an Id: "unhashable type"; a summary that is no object: "AttributeError"):
    the names help read the archive, and a listing that fails is a warning, so the run
    stores its operations and says which listing it could not use."""
    with Misbehaving(_one_operation({}, namespace)) as junk:
        result = cli_sync(runner, archive, junk.url, "--source", "acct")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("\n") == 1 and "cannot list the namespaces" in result.stderr
    assert "ListNamespaces" in result.stderr and junk.url in result.stderr, result.stderr
    assert set(archived(archive)) == {"op-1"} and _watermark(archive) is not None


@pytest.mark.parametrize("token", [{"page": 2}, [2]])
@pytest.mark.parametrize("call", ["ListOperations", "ListNamespaces"])
def test_a_nexttoken_that_is_no_text_is_junk_and_in_a_listing_of_names_a_warning(
    runner, archive, call, token
) -> None:
    """A NextToken sent as an object or a list failed every run with "TypeError:
    unhashable type" (the pass's check for a token handed back twice), in a listing of
    names too, where a failed listing is only a warning."""
    with Misbehaving(_one_operation({}, {"Id": "ns-1", "Name": "n"}, {call: token})) as junk:
        result = cli_sync(runner, archive, junk.url, "--source", "acct")
    assert result.stderr.count("\n") == 1, result.stderr
    if call == "ListOperations":
        assert result.exit_code == 1, result.output
        assert f"error: ListOperations: {junk.url} answered HTTP 200 with" in result.stderr
        assert _watermark(archive) is None
    else:
        assert result.exit_code == 0, result.output
        assert "cannot list the namespaces (ListNamespaces" in result.stderr, result.stderr
        assert set(archived(archive)) == {"op-1"} and _watermark(archive) is not None


def test_an_operation_a_pass_lists_twice_is_fetched_once(runner, archive) -> None:
    """Pages shift as operations change, so a pass may list one on two pages: it is
    asked of GetOperation once, whether or not the first page is stored yet."""
    pages = _one_operation({}, {"Id": "ns-1", "Name": "n"}, {"ListOperations": "page-2"})
    with Misbehaving(pages) as twice:
        result = cli_sync(runner, archive, twice.url, "--source", "acct", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["listed"] == 2  # the pass did list it twice
    assert [c for c, _ in twice.requests].count("GetOperation") == 1
    assert set(archived(archive)) == {"op-1"}


def test_a_pass_that_lists_one_operation_for_ever_fetches_it_once_and_stops(runner, archive,
                                                                            monkeypatch) -> None:  # fmt: skip
    """A run forgets what it listed once that is stored (a first sync's memory stays
    flat): the archive answers a later listing of it. A service repeating one operation
    with a new NextToken on every page is still asked for it once, and is still stopped
    as paging for ever, its bound being the operations the pass found, not its pages."""
    from archiver.sync import run

    monkeypatch.setattr(run, "PAGING_FLOOR", 20)
    tokens = iter(range(10**6))
    one = _one_operation({}, {"Id": "ns-1", "Name": "n"})

    def answer(call: str, request: dict) -> bytes:
        body = json.loads(one(call, request))
        if call == "ListOperations" and request.get("Filters"):
            body["NextToken"] = f"t{next(tokens)}"
        return json.dumps(body).encode()

    with Misbehaving(answer) as looping:
        result = cli_sync(runner, archive, looping.url, "--source", "acct")
    assert result.exit_code == 1 and "would page for ever" in result.stderr, result.output
    assert [c for c, _ in looping.requests].count("GetOperation") == 1
    assert set(archived(archive)) == {"op-1"} and _watermark(archive) is None


def test_a_long_pass_of_one_new_operation_a_page_is_no_runaway(runner, archive,
                                                               monkeypatch) -> None:  # fmt: skip
    """The paging guard counts what a run has listed, now that the run forgets what it
    has stored: the operations stored as new count, not only the few in flight. A pass
    of 600 pages of one new operation each, over a floor of 3 pages, is read whole
    (counting only those in flight, with the archive counted once early on, it stopped
    at page 234)."""
    from archiver.sync import run

    monkeypatch.setattr(run, "PAGING_FLOOR", 3)
    one = _one_operation({}, {"Id": "ns-1", "Name": "n"})

    def answer(call: str, request: dict) -> bytes:
        body = json.loads(one(call, request))
        if call == "ListOperations" and request.get("Filters"):
            n = int(request.get("NextToken") or 0)
            body = {"Operations": [{"Id": f"op-{n}", "Status": "SUCCESS"}],
                    **({"NextToken": str(n + 1)} if n < 599 else {})}  # fmt: skip
        elif call == "GetOperation":
            body["Operation"]["Id"] = request["OperationId"]
        return json.dumps(body).encode()

    with Misbehaving(answer) as pages:
        result = cli_sync(runner, archive, pages.url, "--source", "acct", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["inserted"] == 600 and len(archived(archive)) == 600


@pytest.mark.parametrize("member", [{"ErrorMessage": {"text": "x"}}, {"OwnerAccount": [1]},
                                    {"Targets": {"SERVICE": {"id": "srv-1"}}}])  # fmt: skip
def test_an_operation_member_of_the_wrong_kind_is_a_junk_answer(runner, archive, member) -> None:
    """GetOperation's ErrorMessage as an object failed the run as the driver's
    "ProgrammingError: Error binding parameter", which says nothing of the service."""
    with Misbehaving(_one_operation(member, {"Id": "ns-1", "Name": "n"})) as junk:
        result = cli_sync(runner, archive, junk.url, "--source", "acct")
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"GetOperation: {junk.url} answered HTTP 200 with Operation" in result.stderr
    assert _watermark(archive) is None and not archived(archive)


def test_a_service_that_pages_for_ever_is_stopped_with_one_line(runner, archive, monkeypatch):
    """A new NextToken on every page would be paged for ever: a pass of a source that
    holds nothing may read PAGING_FLOOR pages (1,000 here, for the test's time), then
    the run stops (exit 1, watermark unmoved)."""
    from archiver.sync import run

    monkeypatch.setattr(run, "PAGING_FLOOR", 1000)
    counter = iter(range(10**9))

    def answer(call: str, request: dict) -> bytes:
        if call == "ListOperations" and request.get("Filters") and request.get("NextToken"):
            return json.dumps({"Operations": [], "NextToken": f"t{next(counter)}"}).encode()
        if call == "ListOperations" and request.get("Filters"):
            return json.dumps({"Operations": [], "NextToken": "t-first"}).encode()
        return json.dumps({"Operations": []}).encode()

    with Misbehaving(answer) as endless:
        result = cli_sync(runner, archive, endless.url, "--source", "acct")
        pages = endless.calls.count("ListOperations")
    assert result.exit_code == 1, result.output
    assert "would page for ever" in result.stderr and result.stderr.count("\n") == 1
    assert 1000 < pages < 1100
    assert _watermark(archive) is None


def test_a_first_sync_longer_than_the_paging_floor_is_no_runaway(runner, archive, monkeypatch):
    """The runaway guard allowed a pass PAGING_FLOOR pages (1,000) and ten per operation
    the source held: a first sync of over 100,000 operations stopped at page 1,001, "as
    it would page for ever". What a pass lists raises the bound too (scaled down here:
    1,000 operations are 11 pages)."""
    from archiver.sync import run

    monkeypatch.setattr(run, "PAGING_FLOOR", 3)
    with Emulator(seed_operations=1000, seed=7) as emu:
        result = cli_sync(runner, archive, emu.url, "--source", "acct")
        assert result.exit_code == 0, result.output
        assert emu.counters.list_pages > 10 and emu.counters.get_calls == 1000


def test_an_operation_listed_on_two_pages_is_fetched_and_counted_once(runner, archive) -> None:
    """Pages shift while operations change: one id on two pages inflated `inserted`
    (650 reported for 350 rows)."""
    with Emulator(seed_operations=3, seed=53) as emu:
        (first, *_) = emu.account.all()
        summaries = [{"Id": o.id, "Status": o.status} for o in emu.account.all()]

        def answer(call: str, request: dict) -> bytes:
            if call == "ListOperations" and request.get("Filters"):
                if request.get("NextToken"):
                    return json.dumps({"Operations": summaries}).encode()
                return json.dumps({"Operations": summaries[:1], "NextToken": "2"}).encode()
            return json.dumps(emu.service.call(call, request),
                              default=lambda d: d.timestamp()).encode()  # fmt: skip

        with Misbehaving(answer) as shifting:
            result = cli_sync(runner, archive, shifting.url, "--source", "acct", "--json")
            gets = shifting.calls.count("GetOperation")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["inserted"] == 3 and gets == 3
    assert first.id in {r.id for r in read_rows(archive, select(Operation.id))}
