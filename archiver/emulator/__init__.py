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

from archiver.emulator.server import Counters, EmulatorHTTPServer, FaultRoller, Faults
from archiver.emulator.service import Service
from archiver.emulator.state import Account, Clock

__all__ = ["Account", "Clock", "Emulator", "Faults"]

OPERATIONS = ("ListOperations", "GetOperation")


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
    ) -> None:
        self.account = Account(Clock(start), seed=seed)
        if seed_operations:
            # A given start makes the data a pure function of (seed, count, days, start).
            self.account.seed(seed_operations, days=days, end=start)
        self.service = Service(self.account)
        self.counters = Counters()
        self.faults = {op: Faults(latency_ms, throttle_rate, error_rate) for op in OPERATIONS}
        self.roll = FaultRoller(seed)
        self._server = EmulatorHTTPServer((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def set_faults(self, operation: str | None = None, **values: float) -> None:
        """Change latency_ms / throttle_rate / error_rate for one operation or all."""
        for op in [operation] if operation else list(OPERATIONS):
            for name, value in values.items():
                setattr(self.faults[op], name, value)

    def start(self) -> Emulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="archiver-emulator", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def close(self) -> None:
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
