"""What botocore does not check for us on the wire: a well-formed answer, dates that
are dates, an overall deadline for each call, and every call counted. Why each one:
docs/design.md, "Trusting the service".
"""

import functools
import json
import os
import queue
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import cbor2

from archiver import stopping
from archiver.errors import Interrupted, Stopped, WorkFailed
from archiver.guards import excerpt, mask_url

#: Where the raw GetOperation ``Operation`` reaches the caller, beside botocore's parse.
RAW_OPERATION = "ArchiverRawOperation"
#: Per call: where its records stand, and what each must carry as text to be one at all.
_RECORDS = {"GetOperation": ("Operation", ("Id", "Status", "Type")),
            "ListOperations": ("Operations", ("Id", "Status")),
            **{c: (c[4:], ("Id", "Name")) for c in ("ListNamespaces", "ListServices")}}  # fmt: skip
_DATES = ("CreateDate", "UpdateDate")  # GetOperation's too: date columns are never NULL
_NOT_DECODED = object()  # what ``_loads`` returns for a body it cannot decode


class JunkAnswer(WorkFailed):
    """The service answered with something that is not an answer to the call, nor an error."""


#: Error codes botocore's standard retry mode treats as throttling (and HTTP 429).
THROTTLING = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException",
    "RequestThrottled", "SlowDown", "EC2ThrottledException",
})  # fmt: skip
_local = threading.local()


def throttled_since_last_asked() -> int:
    """How many throttled answers this thread's calls got since it last asked: the
    sync's concurrency learns from it (retries happen inside botocore's call)."""
    count = getattr(_local, "throttled", 0)
    _local.throttled = 0
    return count


#: Per client: the requests sent, by API operation, attempts and retries included.
_CALLS: weakref.WeakKeyDictionary[Any, Counter[str]] = weakref.WeakKeyDictionary()
_COUNTING = threading.Lock()  # senders on many threads count, and a run reads, under it


def calls(client: Any) -> Counter[str]:
    """What ``client`` has sent so far (``install``): every call is counted where it
    leaves, so a run's figures are the service's, whichever step made the call."""
    with _COUNTING:
        return Counter(_CALLS.get(client, ()))


def _count_throttling(response: Any = None, **_: Any) -> None:
    """``needs-retry``: botocore asks whether to retry; we only take note."""
    if not response:
        return
    http, parsed = response
    code = (parsed or {}).get("Error", {}).get("Code")
    if code in THROTTLING or getattr(http, "status_code", 0) == 429:
        _local.throttled = getattr(_local, "throttled", 0) + 1


def install(client: Any, *, call_timeout: float) -> None:
    """Register the guards on ``client``'s events, for its calls only: the deadline and
    the stop on any client's (STS's too), the answer checks and throttling on Cloud Map's."""
    endpoint = mask_url(client.meta.endpoint_url)
    events = client.meta.events
    events.register("needs-retry.servicediscovery.*", _count_throttling)
    events.register("before-parse.servicediscovery.*", _check_body(endpoint))
    session = client._endpoint.http_session  # the client's own pool, proxies and TLS
    abandon = _ABANDON.setdefault(client, threading.Event())
    sent = _CALLS.setdefault(client, Counter())
    events.register("before-send", _send_by(session, call_timeout, abandon, sent))


#: Per client: set while its calls are to end at once (``abandoned``).
_ABANDON: weakref.WeakKeyDictionary[Any, threading.Event] = weakref.WeakKeyDictionary()


@contextmanager
def abandoned(client: Any) -> Iterator[None]:
    """Within the block, ``client``'s calls in flight end at once, and new ones are not
    sent (Interrupted, never retried): a run that has failed waits for no answer it
    will not use, such as a slow listing that was running beside the step that failed.
    A client without the guards (``install``) sets an event no call reads."""
    event = _ABANDON.get(client, threading.Event())
    event.set()
    try:
        yield
    finally:
        event.clear()


def _check_body(endpoint: str) -> Any:
    def check(operation_model: Any, response_dict: dict[str, Any],
              customized_response_dict: dict[str, Any], **_: Any) -> None:  # fmt: skip
        status, call = response_dict.get("status_code", 0), operation_model.name
        body = response_dict.get("body") or b""
        if not 200 <= status < 300:
            if _readable_error(status, body, operation_model):
                return  # botocore's to parse and ``client``'s to translate
            raise JunkAnswer(f"{call}: {endpoint} answered HTTP {status} with an error that is "
                             f"not one ({_preview(body)})")  # fmt: skip
        data, problem = _decode(call, body, operation_model)
        if problem:
            raise JunkAnswer(f"{call}: {endpoint} answered HTTP {status} with {problem}")
        if call == "GetOperation":
            # botocore's parser drops members its model does not know (fields AWS adds
            # later); the raw Operation rides along so that the record keeps them.
            customized_response_dict[RAW_OPERATION] = data["Operation"]

    return check


def _decode(call: str, body: bytes, operation_model: Any) -> tuple[Any, str | None]:
    """The decoded body, or why it is not a well-formed answer to ``call``."""
    if (data := _loads(body, operation_model)) is _NOT_DECODED:
        kind = "CBOR" if _is_cbor(operation_model) else "JSON"
        return None, f"a body that is not {kind} ({_preview(body)})"
    if not isinstance(data, dict):
        return None, f"a {type(data).__name__} instead of an object ({_preview(body)})"
    output = operation_model.output_shape  # its own members too: a NextToken {} stopped a run
    key, required = _RECORDS.get(call, ("", ()))
    records = [data.get(key)] if call == "GetOperation" else data.get(key, [])  # absent: none
    member = output.members.get(key)
    shape = getattr(member, "member", member)  # a list's item, or GetOperation's Operation
    if not (_typed(data, (), output) and isinstance(records, list)
            and all(_typed(r, required, shape) for r in records)):  # fmt: skip
        return None, f"{key} without {'/'.join(required)} or of another kind ({_preview(body)})"
    for name in _DATES if call == "GetOperation" else ():
        if (problem := _date_problem(records[0].get(name))) is not None:
            return None, f"Operation {records[0]['Id']!r} whose {name} is {problem}"
    return data, None


def _is_cbor(operation_model: Any) -> bool:
    return bool(operation_model.service_model.resolved_protocol == "smithy-rpc-v2-cbor")


def _loads(body: bytes, operation_model: Any) -> Any:
    """The body decoded in the protocol botocore speaks, or _NOT_DECODED."""
    try:
        return cbor2.loads(body) if _is_cbor(operation_model) else json.loads(body)
    except Exception:
        return _NOT_DECODED


def _readable_error(status: int, body: bytes, operation_model: Any) -> bool:
    """Whether botocore's parse of an error answer holds: it broke ("TypeError") on a
    body that is no object or whose __type is no text. One it cannot decode is the
    message in JSON; over CBOR only a 5xx's page (or none) is, as a generic error."""
    if (data := _loads(body, operation_model)) is _NOT_DECODED:
        generic = status >= 500 and body.strip()[:6] in (b"", b"<html>")
        return generic or not _is_cbor(operation_model)
    return isinstance(data, dict) and isinstance(data.get("__type", ""), str)


def _typed(record: Any, required: tuple[str, ...], shape: Any) -> bool:
    """An object with ``required`` as text, and text wherever the model says text (a map's
    values too: Targets): botocore takes any JSON there; a junk name stopped every run."""
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in required):
        return False
    for name, value in record.items():
        kind = shape.members[name].type_name if name in shape.members and value is not None else ""
        texts = list(value.values()) if kind == "map" and isinstance(value, dict) else [value]
        if kind in ("string", "map") and not all(isinstance(t, str) for t in texts):
            return False
    return True


def api_timestamp(value: Any) -> datetime:
    """A date of an answer as an aware UTC datetime (the client's timestamp parser):
    epoch seconds straight to UTC, a text left to botocore, and what is not a date (a
    boolean botocore would read as 1970) a junk answer."""
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(value, UTC)
        from botocore.utils import parse_timestamp

        return parse_timestamp(value)  # type: ignore[no-any-return]
    except (ValueError, TypeError, OverflowError, OSError):
        raise JunkAnswer(f"an answer carries {_shown(value)} where a date belongs") from None


def _date_problem(value: Any) -> str | None:
    """Why ``value`` is not a date an answer may carry, or None when it is one."""
    if value is None:
        return "missing"
    if isinstance(value, datetime):  # CBOR's tag 1, as cbor2 decodes it
        return None
    try:
        api_timestamp(value)
    except JunkAnswer:
        return f"{_shown(value)}, not a date"
    return None


def _shown(value: Any) -> str:
    return excerpt(json.dumps(value) if isinstance(value, (bool, int, float, str)) else repr(value))


def _preview(body: bytes) -> str:
    text = excerpt(body[:400].decode("utf-8", "replace"))  # enough to tell a page from junk
    return f"{len(body)} bytes: {text!r}" if body else "empty"


def _deadline_error() -> Any:
    """botocore's ReadTimeoutError (so its retries treat it as one), saying which limit."""
    from botocore.exceptions import ReadTimeoutError

    class CallDeadline(ReadTimeoutError):  # type: ignore[misc]
        fmt = 'no complete answer from "{endpoint_url}" within --call-timeout {seconds:g}s'

    return CallDeadline


def _run(call: Future[Any], work: Callable[[], Any]) -> None:
    """``work`` (one HTTP send), on a runner thread: its result, or its error, to ``call``."""
    try:
        call.set_result(work())
    except BaseException as exc:  # handed to the caller, which re-raises it
        call.set_exception(exc)


def waited(work: Callable[[], Any]) -> Any:
    """``work()`` on a runner thread, waited for until a stop is asked: for what botocore
    sends through clients of its own, outside ``install``'s sender (the STS call behind
    a profile's role_arn), which would otherwise hold a stop for as long as it hangs."""
    call: Future[Any] = Future()
    _RUNNERS.start(functools.partial(_run, call, work))
    try:
        return stopping.wait_for(call)
    except Stopped:
        raise Interrupted(f"{stopping.reason()} while AWS credentials were fetched") from None


class _Runners:
    """Daemon threads that run the sends, each reused from call to call, a new one only
    when none is idle (docs/design.md, "Every call has a deadline")."""

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        """No runner yet. Also in a forked child: the runners did not survive the fork
        (only the thread that forked does), so none may be counted idle, or calls would
        wait for no one."""
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()

    def start(self, call: Callable[[], None]) -> None:
        with self._lock:
            if not (spawn := self._idle == 0):
                self._idle -= 1  # an idle runner takes this call
        if spawn:
            threading.Thread(target=self._serve, name="call", daemon=True).start()
        self._tasks.put(call)

    def _serve(self) -> None:
        while True:
            self._tasks.get()()
            with self._lock:
                self._idle += 1


_RUNNERS = _Runners()
os.register_at_fork(after_in_child=_RUNNERS.forget)


def _send_by(session: Any, call_timeout: float, abandon: threading.Event,
             sent: Counter[str]) -> Any:  # fmt: skip
    deadline_error = _deadline_error()

    def send(request: Any, event_name: str = "", **_: Any) -> Any:
        if stopping.requested():
            raise Interrupted(f"{stopping.reason()} before the call was sent")
        if abandon.is_set():
            raise Interrupted("the run had failed before the call was sent")
        with _COUNTING:  # counted as it leaves: a call stopped before it is not
            sent[event_name.rsplit(".", 1)[-1]] += 1
        call: Future[Any] = Future()
        _RUNNERS.start(functools.partial(_run, call, functools.partial(session.send, request)))
        deadline = time.monotonic() + call_timeout
        while not call.done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise deadline_error(endpoint_url=mask_url(request.url), seconds=call_timeout)
            if stopping.requested():
                raise Interrupted(f"{stopping.reason()} while a call was in flight; abandoned")
            if abandon.is_set():
                raise Interrupted("the run had failed while a call was in flight; abandoned")
            wait([call], timeout=min(stopping.POLL, left))
        return call.result()  # or its error, raised

    return send
