"""A live gunicorn server, and dependencies that fail, for the outage and multi-worker integration tests.

- ``Gunicorn``: ``gunicorn syndarix.wsgi`` in a session of its own on a free ``127.0.0.1`` port, with the
  environment given (this process's, plus overrides); its access log records each request's worker pid
  and ``X-Probe`` header, so a test can tell which worker answered what.
- ``dead_port()``: a port nothing listens on (connections are refused at once).
- ``SilentServer``: a socket that accepts connections and never answers a byte (a hung database or
  cache, the failure a timeout must catch).

Imports nothing of Django at module level, so ``benchmarks/bench_outages.py`` can use it before setup.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dead_port() -> int:
    """A port with no listener: connecting to it is refused immediately."""
    return free_port()


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers; ``close()`` drops them all."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._held.append(conn)  # held open, never read from nor written to

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        for conn in self._held:
            conn.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Answer:
    """One HTTP answer: status, headers (lower-case names), body (JSON when it parses) and seconds taken."""

    status: int
    headers: dict[str, str]
    body: object
    seconds: float


class Gunicorn:
    """``gunicorn syndarix.wsgi`` with ``workers`` sync workers on a free port, in a process group of its own; with
    ``asgi``, ``gunicorn syndarix.asgi:application`` with uvicorn workers (the Procfile's ``web``)."""

    def __init__(self, env: dict[str, str], *, workers: int = 1, log_dir: Path, timeout: int = 30,
                 asgi: bool = False) -> None:
        self.asgi = asgi
        self.port = free_port()
        self.workers = workers
        self.timeout = timeout
        self.access_log = log_dir / f"access-{self.port}.log"
        self.error_log = log_dir / f"error-{self.port}.log"  # gunicorn's log and the app's (stderr)
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "syndarix.settings",
            "DJANGO_ENV_FILE": "",
            "DJANGO_DEBUG": "true",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
            **env,
        }
        self.process: subprocess.Popen | None = None

    def start(self, *, ready_within: float = 60.0) -> Gunicorn:
        """Start it and wait until ``/healthz`` answers; raise ``RuntimeError`` with its log otherwise."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn",
             *(["syndarix.asgi:application", "--worker-class", "uvicorn_worker.UvicornWorker"] if self.asgi
               else ["syndarix.wsgi"]), "--workers", str(self.workers),
             "--bind", f"127.0.0.1:{self.port}", "--timeout", str(self.timeout), "--graceful-timeout", "3",
             "--access-logfile", str(self.access_log), "--access-logformat", '%(p)s %({x-probe}i)s %(s)s "%(r)s"',
             "--error-logfile", "-"],
            cwd=ROOT, env=self.env, start_new_session=True, stdout=subprocess.DEVNULL,
            stderr=self.error_log.open("ab"),
        )
        deadline = time.monotonic() + ready_within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.get("/healthz", timeout=2).status == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not start on port {self.port}:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.error_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def request(self, method: str, path: str, *, body: dict | None = None, headers: dict[str, str] | None = None,
                timeout: float = 35.0) -> Answer:
        """One request on a new connection (so gunicorn may give it to any worker), timed."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        payload = json.dumps(body).encode() if body is not None else None
        all_headers = {"Accept": "application/json", **(headers or {})}
        if payload is not None:
            all_headers["Content-Type"] = "application/json"
        started = time.monotonic()
        try:
            conn.request(method, path, body=payload, headers=all_headers)
            response = conn.getresponse()
            raw = response.read()
            seconds = time.monotonic() - started
        finally:
            conn.close()
        try:
            parsed: object = json.loads(raw)
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, parsed, seconds)

    def get(self, path: str, **kwargs) -> Answer:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: dict | None = None, **kwargs) -> Answer:
        return self.request("POST", path, body=body, **kwargs)

    def worker_of(self, probes: list[str] | None = None, *, wait: float = 5.0) -> dict[str, str]:
        """``{X-Probe value: pid of the worker that answered it}`` from the access log; with ``probes``, waits up
        to ``wait`` seconds for all of them (a worker logs a request just after answering it)."""
        deadline = time.monotonic() + wait
        while True:
            found = {}
            with contextlib.suppress(OSError):
                for line in self.access_log.read_text().splitlines():
                    pid, probe, *_ = line.split(" ", 3)
                    if probe != "-":
                        found[probe] = pid
            if not probes or set(probes) <= set(found) or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)

    def __enter__(self) -> Gunicorn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
