"""A local Cloud Map operations API that real boto3 clients talk to.

Use it in-process::

    with Emulator(seed_operations=500) as emu:
        client = boto3.client("servicediscovery", endpoint_url=emu.url, ...)
        emu.account.add_operations(10)       # a live account moves on
        emu.counters.get_calls               # how many GetOperation calls were made

or from the shell with ``archiver emulator serve``.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cbor2

from archiver.emulator.service import Account, ApiError, Clock, CloudMapApi
from archiver.errors import UsageError
from archiver.records import jsonable

__all__ = ["Account", "Clock", "Emulator", "Faults", "Gate", "serve"]

OPERATIONS = ("ListOperations", "GetOperation", "ListNamespaces", "ListServices")


class Emulator:
    """The server, its account and its fault settings; a context manager yielding itself."""

    def __init__(self, *, seed_operations: int = 0, days: float = 90, seed: int = 0,
                 host: str = "127.0.0.1", port: int = 0, latency_ms: float = 0.0,
                 throttle_rate: float = 0.0, error_rate: float = 0.0,
                 start: datetime | None = None, update_date_unit: str = "ms",
                 account_id: str = "111122223333", shared: float = 0.0,
                 rate_limit: float | None = None, burst: int | None = None) -> None:  # fmt: skip
        self.account = Account(Clock(start), seed=seed, caller=account_id, shared=shared)
        if seed_operations:
            # A given start makes the data a pure function of (seed, count, days, start).
            self.account.seed(seed_operations, days=days, end=start)
        self.service = CloudMapApi(self.account, update_date_unit=update_date_unit)
        self.counters = Counters()
        self.faults = {op: Faults(latency_ms, throttle_rate, error_rate) for op in OPERATIONS}
        self.roll = random.Random(seed).random  # C code under the GIL: safe across threads
        #: --rate-limit/--burst: one token bucket per operation, as AWS throttles per API.
        size = burst or max(1, round(rate_limit or 1))  # a second's worth by default
        self.buckets = {op: TokenBucket(rate_limit, size) for op in OPERATIONS if rate_limit}
        self.gates: dict[str, Gate] = {}
        self._server = EmulatorHTTPServer((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://[{host!s}]:{port}" if ":" in str(host) else f"http://{host!s}:{port}"

    def set_faults(self, operation: str | None = None, **values: float) -> None:
        """Change latency_ms / throttle_rate / error_rate / denied for one operation or all."""
        for op in [operation] if operation else list(OPERATIONS):
            for name, value in values.items():
                setattr(self.faults[op], name, value)

    def hold(self, operation: str, *, after: int) -> Gate:
        """Answer the next ``after`` calls of ``operation``, then hold each later one
        until the returned gate is released (or its timeout passes)."""
        gate = self.gates[operation] = Gate(after)
        return gate

    def start(self) -> Emulator:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="archiver-emulator", daemon=True)  # fmt: skip
        self._thread.start()
        return self

    def close(self) -> None:
        for gate in self.gates.values():
            gate.release()  # a held call must not keep the server from stopping
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def shutdown(self) -> None:
        """Stop ``serve_forever`` from another thread (a signal handler)."""
        threading.Thread(target=self._server.shutdown, daemon=True).start()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()


def serve(*, host: str, port: int, **settings: Any) -> None:
    """`archiver emulator serve`: print the URL, serve until SIGINT/SIGTERM, then close."""
    try:
        emu = Emulator(host=host, port=port, **settings)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: emu.shutdown())
    sys.stdout.write(emu.url + "\n")
    sys.stdout.flush()
    logging.getLogger("archiver").info("serving %d operations at %s", len(emu.account), emu.url)
    try:
        emu._server.serve_forever()
    finally:
        emu.close()


TARGET_PREFIX = "Route53AutoNaming_v20170314"
CBOR_PATH = f"/service/{TARGET_PREFIX}/operation/"
SHAPE_NAMESPACE = "com.amazonaws.servicediscovery#"


@dataclass
class Faults:
    """What goes wrong with one operation's calls."""

    latency_ms: float = 0.0
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    denied: bool = False  # every call answered AccessDeniedException, as IAM would


class TokenBucket:
    """AWS's throttling as it documents it for Cloud Map's DiscoverInstances: a bucket
    of ``burst`` tokens refilled at ``rate`` per second; a call takes one token, and a
    call that finds the bucket empty is throttled."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


@dataclass
class Counters:
    """Calls as the server saw them, by operation and by outcome."""

    calls: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, counter: Counter[str], operation: str) -> None:
        with self.lock:
            counter[operation] += 1

    @property
    def list_pages(self) -> int:
        """ListOperations pages served (successful answers)."""
        return self.answered["ListOperations"]

    @property
    def get_calls(self) -> int:
        """GetOperation calls answered (found or not found), injected faults excluded."""
        return self.answered["GetOperation"] + self.rejected["GetOperation"]

    def reset(self) -> None:
        with self.lock:
            for c in (self.calls, self.throttled, self.errors, self.answered, self.rejected):
                c.clear()


def _cbor_timestamps(value: Any) -> Any:
    if isinstance(value, datetime):
        return cbor2.CBORTag(1, value.timestamp())
    if isinstance(value, dict):
        return {k: _cbor_timestamps(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cbor_timestamps(v) for v in value]
    return value


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    # Headers and body go out in two writes; with Nagle on, the body waits for the
    # client's delayed ACK on keep-alive connections.
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and `emulator serve` report through counters, not logs

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        cbor = self.path.startswith(CBOR_PATH)
        if cbor:
            operation = self.path[len(CBOR_PATH) :]
        else:
            target = self.headers.get("X-Amz-Target", "")
            prefix, _, operation = target.partition(".")
            if prefix != TARGET_PREFIX or not operation:
                return self._error(cbor, ApiError("UnknownOperationException",
                                                  f"unknown target {target!r}"))  # fmt: skip
        if not self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 "):
            return self._error(cbor, ApiError("MissingAuthenticationTokenException",
                                              "Missing Authentication Token", 403))  # fmt: skip
        emu = self.server.emulator
        emu.counters.add(emu.counters.calls, operation)
        gate = emu.gates.get(operation)
        if gate is not None:
            gate.wait_turn()
        try:
            self._faults(emu, operation)
            result = emu.service.call(operation, self._decode(cbor, body))
        except ApiError as exc:
            emu.counters.add(getattr(emu.counters, exc.counted), operation)
            return self._error(cbor, exc)
        emu.counters.add(emu.counters.answered, operation)
        self._send(cbor, 200, result)

    def _faults(self, emu: Emulator, operation: str) -> None:
        """The injected failure of this call, if any, as the error to answer."""
        faults = emu.faults.get(operation, Faults())
        if faults.denied:
            raise ApiError("AccessDeniedException", f"not authorized to perform {operation}")
        bucket = emu.buckets.get(operation)
        throttled = ApiError("ThrottlingException", "Rate exceeded", counted="throttled")
        if bucket is not None and not bucket.take():
            raise throttled
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        roll = emu.roll()
        if roll < faults.throttle_rate:
            raise throttled
        if roll < faults.throttle_rate + faults.error_rate:
            raise ApiError("InternalFailure", "injected failure", 500, counted="errors")

    def _decode(self, cbor: bool, body: bytes) -> dict[str, Any]:
        if not body:
            return {}
        try:
            data = cbor2.loads(body) if cbor else json.loads(body)
        except Exception:
            raise ApiError("SerializationException", "request body is not valid") from None
        if not isinstance(data, dict):
            raise ApiError("SerializationException", "request body must be an object")
        return data

    def _send(self, cbor: bool, status: int, payload: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:  # fmt: skip
        if cbor:
            data = cbor2.dumps(_cbor_timestamps(payload))
            ctype = "application/cbor"
        else:
            data = json.dumps(payload, default=jsonable).encode()
            ctype = "application/x-amz-json-1.1"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if cbor:
            self.send_header("smithy-protocol", "rpc-v2-cbor")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, cbor: bool, exc: ApiError) -> None:
        code = SHAPE_NAMESPACE + exc.code if cbor else exc.code
        self._send(cbor, exc.status, {"__type": code, "message": exc.message},
                   headers={"x-amzn-ErrorType": exc.code})  # fmt: skip


class Gate:
    """Lets the first ``after`` calls through, then holds the rest until ``release()``.

    Tests use it to make an overlap happen instead of hoping a sleep is long enough:
    ``reached`` is set once a call is being held, so the test knows exactly where the
    client stands (``after`` calls answered, the next one in flight).
    """

    def __init__(self, after: int, timeout: float = 120.0) -> None:
        self.after = after
        self.timeout = timeout
        self.passed = 0
        self.reached = threading.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()

    def wait_turn(self) -> None:
        with self._lock:
            self.passed += 1
            held = self.passed > self.after
        if held:
            self.reached.set()
            self._released.wait(self.timeout)

    def release(self) -> None:
        self._released.set()


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: Any) -> None:
        self.emulator = emulator
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET  # ::1
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (killed, or a call it abandoned) is not an error."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)
