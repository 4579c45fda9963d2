"""A real webhook receiver for the tests and the benchmark: an HTTP server on 127.0.0.1 that verifies every request
with ``standardwebhooks.Webhook(secret).verify`` and records what it received.

``answers`` scripts the status codes of the next requests (then 204); ``down()`` closes the listening socket (a
connection is refused, as with a receiver that is down) and ``up()`` listens again on the same port.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    """One verified delivery: the ``webhook-id`` (the event id), the body parsed, the headers, when it arrived
    (``time.time()``) and the status code answered."""

    webhook_id: str
    payload: dict
    headers: dict
    at: float
    status: int


class Receiver:
    """A webhook receiver verifying with ``secret`` (set it once the endpoint is created)."""

    def __init__(self, secret: str | None = None, port: int = 0) -> None:
        self.secret = secret
        self.received: list[Received] = []
        self.rejected: list[str] = []  # requests whose signature did not verify
        self.answers: deque[int] = deque()
        self.delay = 0.0
        self._lock = threading.Lock()
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self.up()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/hook"

    def up(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.handle(self, body)

        server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        server.daemon_threads = True
        self._port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {key.lower(): value for key, value in handler.headers.items()}
        if self._server is None:  # down: a kept-alive connection is dropped without an answer
            handler.close_connection = True
            return
        if self.delay:
            time.sleep(self.delay)
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError as exc:
            with self._lock:
                self.rejected.append(str(exc))
            status = 400
        else:
            with self._lock:
                status = self.answers.popleft() if self.answers else 204
                self.received.append(Received(headers["webhook-id"], payload, headers, time.time(), status))
        handler.send_response(status)
        handler.send_header("content-length", "0")
        handler.end_headers()

    def succeeded(self) -> list[Received]:
        """The verified deliveries it answered with a 2xx, in arrival order."""
        with self._lock:
            return [r for r in self.received if 200 <= r.status < 300]

    def ids(self) -> list[int]:
        return [int(r.webhook_id) for r in self.succeeded()]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """Wait until ``count`` deliveries succeeded; returns them (``AssertionError`` after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.succeeded()
            if len(done) >= count:
                return done
            time.sleep(0.02)
        raise AssertionError(f"{len(self.succeeded())} of {count} deliveries arrived in {timeout} s "
                             f"(rejected: {self.rejected[:3]})")
