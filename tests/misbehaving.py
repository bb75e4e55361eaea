"""Real HTTP servers that misbehave the ways a broken endpoint or proxy does.

They speak just enough of JSON 1.1 (and of smithy-rpc-v2-cbor's requests) for botocore
to send them calls; what they answer is the test's choice: a junk 200, a proxy's error
page, a body trickled a byte at a time.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cbor2

#: (operation, request) → the body, with the server's status; or (status, body) for this one
Answer = Callable[[str, dict[str, Any]], bytes | tuple[int, bytes]]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # headers and body leave in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK hold every answer 40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/service/"):  # smithy-rpc-v2-cbor: the call is in the path
            request, operation = cbor2.loads(raw) if raw else {}, self.path.rpartition("/")[2]
        else:
            request = json.loads(raw or "{}")
            operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
        self.server.requests.append((operation, request))
        answer = self.server.answer(operation, request)
        status, body = answer if isinstance(answer, tuple) else (self.server.status, answer)
        self.send_response(status)
        kind = "application/x-amz-json-1.1" if status == 200 else "text/html"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.trickle is None:
            self.wfile.write(body)
            return
        try:  # one byte every `trickle` seconds, until the client goes or a minute passes
            deadline = time.monotonic() + 60
            for byte in body:
                if time.monotonic() > deadline or self.server.stopping.is_set():
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                self.server.stopping.wait(self.server.trickle)
        except OSError:
            return


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answer: Answer, trickle: float | None, status: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = answer
        self.status = status
        self.trickle = trickle
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.stopping = threading.Event()


class Misbehaving:
    """``with Misbehaving(answer) as server:`` … ``server.url``; ``server.calls``,
    ``server.requests``; ``status``: the HTTP status every answer has (a proxy's page)."""

    def __init__(self, answer: Answer, *, trickle: float | None = None, status: int = 200) -> None:
        self._server = _Server(answer, trickle, status)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def calls(self) -> list[str]:
        """Each call's operation, in the order they came."""
        return [operation for operation, _ in self._server.requests]

    @property
    def requests(self) -> list[tuple[str, dict[str, Any]]]:
        """Each call's operation and its parameters, in the order they came."""
        return self._server.requests

    def __enter__(self) -> Misbehaving:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
