"""A local Cloud Map operations API that real boto3 clients talk to.

Use it in-process::

    with Emulator(seed_operations=500) as emu:
        client = boto3.client("servicediscovery", endpoint_url=emu.url, ...)
        emu.account.add_operations(10)       # a live account moves on
        emu.counters.get_calls               # how many GetOperation calls were made

or from the shell with ``archiver emulator serve``.
"""

from __future__ import annotations

import threading
from datetime import datetime
from types import TracebackType
from typing import Any

from archiver.emulator.server import (
    Counters,
    EmulatorHTTPServer,
    FaultRoller,
    Faults,
    Gate,
    TokenBucket,
)
from archiver.emulator.service import CloudMapApi
from archiver.emulator.state import Account, Clock

__all__ = ["Account", "Clock", "Emulator", "Faults", "Gate", "serve"]

OPERATIONS = ("ListOperations", "GetOperation", "ListNamespaces", "ListServices")


class Emulator:
    """The server, its account and its fault settings; a context manager yielding itself."""

    def __init__(
        self,
        *,
        seed_operations: int = 0,
        days: float = 90,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0.0,
        throttle_rate: float = 0.0,
        error_rate: float = 0.0,
        start: datetime | None = None,
        update_date_unit: str = "ms",
        account_id: str = "111122223333",
        shared: float = 0.0,
        rate_limit: float | None = None,
        burst: int | None = None,
    ) -> None:
        self.account = Account(Clock(start), seed=seed, caller=account_id, shared=shared)
        if seed_operations:
            # A given start makes the data a pure function of (seed, count, days, start).
            self.account.seed(seed_operations, days=days, end=start)
        self.service = CloudMapApi(self.account, update_date_unit=update_date_unit)
        self.counters = Counters()
        self.faults = {op: Faults(latency_ms, throttle_rate, error_rate) for op in OPERATIONS}
        self.roll = FaultRoller(seed)
        #: --rate-limit/--burst: one token bucket per operation, as AWS throttles per API.
        self.buckets = (
            {op: TokenBucket(rate_limit, burst or max(1, round(rate_limit))) for op in OPERATIONS}
            if rate_limit
            else {}
        )
        self.gates: dict[str, Gate] = {}
        self._server = EmulatorHTTPServer((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def set_faults(self, operation: str | None = None, **values: float) -> None:
        """Change latency_ms / throttle_rate / error_rate for one operation or all."""
        for op in [operation] if operation else list(OPERATIONS):
            for name, value in values.items():
                setattr(self.faults[op], name, value)

    def hold(self, operation: str, *, after: int) -> Gate:
        """Answer the next ``after`` calls of ``operation``, then hold each later one
        until the returned gate is released (or its timeout passes)."""
        gate = self.gates[operation] = Gate(after)
        return gate

    def start(self) -> Emulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="archiver-emulator", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def serve(*, host: str, port: int, **settings: Any) -> None:
    """`archiver emulator serve`: print the URL, serve until SIGINT/SIGTERM, then close."""
    import logging
    import signal
    import sys

    from archiver.errors import UsageError

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
        emu.serve_forever()
    finally:
        emu.close()
