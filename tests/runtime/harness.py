"""The runtime's test harness: a local OpenAI-compatible stub server and real Celery worker processes.

Used by the integration tests (``tests/runtime/conftest.py``) and the benchmark
(``benchmarks/bench_runtime.py``); it imports nothing of Django at module level, so the benchmark can
import it before ``django.setup()``.

- ``StubLLM``: ``POST /v1/chat/completions`` on ``127.0.0.1`` (a free port), served by a
  ``ThreadingHTTPServer`` in a thread of the calling process. It is strict: a request that one of the real
  servers refuses (``tests/conformance.py``: a ``X-Request-ID`` that is not a UUID, ``content: null``, tools
  without ``tool_choice``, untyped enums...) is answered as that server answers it and recorded in
  ``StubLLM.refused``. Each other request takes the next scripted behaviour (``reply``, ``status``, ``answer``,
  ``garbage``, ``sleep``, ``Hold``) and is recorded (``StubLLM.requests``); a request with nothing scripted is
  answered HTTP 418 and recorded in ``StubLLM.unexpected``, so a test whose agent makes a call it did not expect
  fails.
- ``Workers``: ``celery -A syndarix worker`` processes (prefork, concurrency 1, a run queue and its maintenance
  queue), each in a session of its own so a test can SIGKILL its whole process group; logs go to files.
- ``wait_for``: poll a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.conformance import refusal

ROOT = Path(__file__).resolve().parents[2]

#: Prefix of the Celery queues the harness creates (one per test session or benchmark).
QUEUE_PREFIX = "syndarix-rt-"
#: Queues of the harness older than this (seconds) belong to a session that is over.
STALE_QUEUE_SECONDS = 3600


class HarnessError(RuntimeError):
    """The harness could not do what it was asked (a worker did not start, a condition never held)."""


def wait_for(condition: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.05,
             message: str | Callable[[], str] = "") -> Any:
    """Call ``condition`` until it returns something truthy and return that; raise ``AssertionError`` after
    ``timeout`` seconds (with ``message``, or a callable building it, and the last value seen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"condition not met within {timeout:g} s: {text or condition} (last value: {value!r})")
        time.sleep(interval)


# --- The OpenAI-compatible stub ------------------------------------------------------------------------


def tool_call(name: str, arguments: Any, *, call_id: str | None = None) -> dict[str, Any]:
    """An OpenAI ``tool_calls`` entry; ``arguments`` is JSON-encoded unless it is text already."""
    return {
        "id": call_id or f"call_{uuid.uuid4().hex[:10]}", "type": "function",
        "function": {"name": name, "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)},
    }


class Behaviour:
    """What the stub does with one request."""

    def respond(self, handler: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError


def _send(handler: BaseHTTPRequestHandler, code: int, body: bytes, *, content_type: str = "application/json",
          headers: dict[str, str] | None = None) -> None:
    """Write one response; a client that went away (timed out, killed) is no error of the stub's."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
        handler.send_response(code)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()


@dataclass
class Reply(Behaviour):
    """A chat completion: an assistant message with ``content`` and/or ``tool_calls``, and a ``usage`` block."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    usage: tuple[int, int] = (10, 5)
    model: str | None = None

    def body(self, asked_model: str | None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        prompt, completion = self.usage
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model or asked_model or "stub",
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if self.tool_calls else "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }

    def respond(self, handler) -> None:
        asked = handler.stub_body.get("model") if isinstance(handler.stub_body, dict) else None
        _send(handler, 200, json.dumps(self.body(asked)).encode())


@dataclass
class StreamReply(Reply):
    """A chat completion streamed as a real server streams it when asked (``stream: true``): ``text/event-stream``
    chunks, one per piece of ``pieces`` (the content), a final chunk with ``finish_reason``, a usage chunk when
    ``stream_options.include_usage``, then ``data: [DONE]``; the whole answer as JSON when not asked to stream."""

    pieces: list[str] = field(default_factory=list)
    pause: float = 0.0

    def respond(self, handler) -> None:
        body = handler.stub_body if isinstance(handler.stub_body, dict) else {}
        if body.get("stream") is not True:
            return super().respond(handler)
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        model = self.model or body.get("model") or "stub"
        base = {"id": "chatcmpl-stream", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

        def send(payload: str) -> None:
            data = f"data: {payload}\n\n".encode()
            handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            handler.wfile.flush()

        for piece in self.pieces:
            send(json.dumps({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}))
            time.sleep(self.pause)
        send(json.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        if (body.get("stream_options") or {}).get("include_usage"):
            prompt, completion = self.usage
            send(json.dumps({**base, "choices": [], "usage": {
                "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}))
        send("[DONE]")
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()


def stream_reply(*pieces: str, usage: tuple[int, int] = (10, 5), pause: float = 0.0) -> StreamReply:
    """Stream ``pieces`` as the answer's text when asked to stream (``StreamReply``)."""
    return StreamReply(content="".join(pieces), usage=usage, pieces=list(pieces), pause=pause)


class BadStream(Behaviour):
    """Answers a streamed request with ``text/event-stream`` whose chunks are not JSON (a server that streams
    badly)."""

    def respond(self, handler) -> None:
        _send(handler, 200, b"data: this is not JSON\n\n", content_type="text/event-stream")


def reply(content: str | None = None, *, tool_calls: list[dict[str, Any]] | None = None,
          usage: tuple[int, int] = (10, 5), model: str | None = None) -> Reply:
    """Answer a chat completion (``usage`` is ``(prompt_tokens, completion_tokens)``; ``model`` defaults to the
    one asked for)."""
    return Reply(content=content, tool_calls=tool_calls, usage=usage, model=model)


@dataclass
class Status(Behaviour):
    """An HTTP status with a JSON body (default: a small error body)."""

    code: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None

    def respond(self, handler) -> None:
        body = self.body if self.body is not None else {"error": {"message": f"stub: HTTP {self.code}", "type": "stub"}}
        _send(handler, self.code, json.dumps(body).encode(), headers=self.headers)


def status(code: int, body: Any = None, **headers: str) -> Status:
    """Answer HTTP ``code`` (500, 429, 400...) with ``body`` (JSON; default a small error body), with optional
    headers (``Retry_After="0"`` → ``Retry-After``)."""
    return Status(code, {key.replace("_", "-"): value for key, value in headers.items()}, body)


def answer(body: Any) -> Status:
    """Answer HTTP 200 with ``body`` as it is (an empty choice, a malformed message, usage without a message...)."""
    return Status(200, body=body)


class Garbage(Behaviour):
    """HTTP 200 with a body that is not JSON."""

    def respond(self, handler) -> None:
        _send(handler, 200, b"<html>this is not JSON{", content_type="application/json")


def garbage() -> Garbage:
    return Garbage()


@dataclass
class Sleep(Behaviour):
    """Wait ``seconds`` (longer than the client's read timeout, say), then do ``then`` (default: a reply)."""

    seconds: float
    then: Behaviour | None = None

    def respond(self, handler) -> None:
        time.sleep(self.seconds)
        (self.then or reply("late")).respond(handler)


def sleep(seconds: float, then: Behaviour | None = None) -> Sleep:
    return Sleep(seconds, then)


class Hold(Behaviour):
    """Keep the request open until the test calls ``release()``, then do ``then`` (default: a reply).

    ``arrived`` is set when the request comes in, so a test knows the call is in flight (to pause,
    terminate or kill the worker making it).
    """

    def __init__(self, then: Behaviour | None = None, *, max_seconds: float = 60.0) -> None:
        self.then = then or reply("held")
        self.arrived = threading.Event()
        self.released = threading.Event()
        self.max_seconds = max_seconds

    def wait_arrived(self, timeout: float = 15.0) -> None:
        if not self.arrived.wait(timeout):
            raise AssertionError(f"the held call did not arrive within {timeout:g} s")

    def release(self) -> None:
        self.released.set()

    def respond(self, handler) -> None:
        self.arrived.set()
        self.released.wait(self.max_seconds)
        self.then.respond(handler)


@dataclass
class Received:
    """One request the stub received: its JSON ``body`` (or the raw text), headers, and the ``time.monotonic()``
    of its arrival (``at``) and of the end of its answer (``answered_at``, ``None`` until then)."""

    body: Any
    headers: dict[str, str]
    at: float
    answered_at: float | None = None

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", []) if isinstance(self.body, dict) else []

    @property
    def last_message(self) -> dict[str, Any]:
        return self.messages[-1] if self.messages else {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client's pooled connection is reused
    # One send per answer, without Nagle's delay: headers and body written apart would wait for the client's
    # delayed ACK (40 ms on Linux) and the stub would look 100 times slower than it is.
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        models = self.server.stub.models
        if self.path.rstrip("/") != "/v1/models" or models is None:
            _send(self, 404, b'{"error": {"message": "stub: no such endpoint"}}')
            return
        body = {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "stub"} for model in models]}
        _send(self, 200, json.dumps(body).encode())

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            self.stub_body = json.loads(raw)
        except ValueError:
            self.stub_body = raw.decode("utf-8", errors="replace")
        if self.path.rstrip("/") != "/v1/chat/completions":
            _send(self, 404, b'{"error": {"message": "stub: no such endpoint"}}')
            return
        self.server.stub.handle(self)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stub: StubLLM


class StubLLM:
    """A scripted OpenAI-compatible chat-completions server on ``127.0.0.1`` (see the module docstring).

    ``script(*behaviours)`` appends to the queue; ``requests`` lists what was received, in order;
    ``unexpected`` the requests that found the queue empty (answered HTTP 418).
    """

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.stub = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="stub-llm", daemon=True)
        self._lock = threading.Lock()
        self._queue: deque[Behaviour] = deque()
        self._holds: list[Hold] = []
        self.requests: list[Received] = []
        self.unexpected: list[Received] = []
        #: Requests a real server refuses (``tests.conformance.refusal``), answered as it answers them.
        self.refused: list[tuple[Received, int, bytes]] = []
        self.in_flight = 0
        #: When set, a request with nothing scripted gets this instead of the 418 (the benchmark answers forever).
        self.default: Behaviour | None = None
        #: What ``GET /v1/models`` lists (``None``: 404).
        self.models: list[str] | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """The ``AGENT_LLM_API_URL`` to configure: ``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> StubLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release_all()
        self._server.shutdown()
        self._server.server_close()

    def script(self, *behaviours: Behaviour) -> None:
        """Queue ``behaviours``, answered in order, one per request."""
        with self._lock:
            for behaviour in behaviours:
                if isinstance(behaviour, Hold):
                    self._holds.append(behaviour)
                self._queue.append(behaviour)

    def reset(self) -> None:
        """Forget the script and the record, and let every held request go."""
        self.release_all()
        with self._lock:
            self._queue.clear()
            self._holds.clear()
            self.requests = []
            self.unexpected = []
            self.refused = []
            self.default = None
            self.models = None

    def release_all(self) -> None:
        with self._lock:
            holds = list(self._holds)
        for hold in holds:
            hold.release()

    @property
    def pending(self) -> int:
        """Behaviours scripted and not used yet."""
        with self._lock:
            return len(self._queue)

    def wait_requests(self, count: int, timeout: float = 15.0) -> list[Received]:
        """Wait until at least ``count`` requests arrived; returns them all."""
        wait_for(lambda: len(self.requests) >= count, timeout=timeout,
                 message=lambda: f"{count} request(s) expected, {len(self.requests)} received")
        return list(self.requests)

    def handle(self, handler: _Handler) -> None:
        received = Received(body=handler.stub_body, headers=dict(handler.headers.items()), at=time.monotonic())
        refused = refusal(received.body, received.headers)
        if refused is not None:
            with self._lock:
                self.refused.append((received, *refused))
            _send(handler, refused[0], refused[1])
            received.answered_at = time.monotonic()
            return
        with self._lock:
            self.requests.append(received)
            behaviour = self._queue.popleft() if self._queue else self.default
            if behaviour is None:
                self.unexpected.append(received)
            self.in_flight += 1
        try:
            if behaviour is None:
                body = json.dumps({"error": {"message": "stub: unexpected call, nothing was scripted for it"}})
                _send(handler, 418, body.encode())
            else:
                behaviour.respond(handler)
        finally:
            received.answered_at = time.monotonic()
            with self._lock:
                self.in_flight -= 1


# --- Worker processes ---------------------------------------------------------------------------------


def database_url(database: dict[str, Any]) -> str:
    """A ``DATABASE_URL`` for a Django ``DATABASES`` entry (PostgreSQL)."""
    user = quote(database.get("USER") or "", safe="")
    password = quote(str(database.get("PASSWORD") or ""), safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = database.get("HOST") or "127.0.0.1"
    port = f":{database['PORT']}" if database.get("PORT") else ""
    return f"postgres://{credentials}{host}{port}/{database['NAME']}"


def new_queue_name() -> str:
    """A Celery queue of its own for one session: ``syndarix-rt-<unix time>-<random>``."""
    return f"{QUEUE_PREFIX}{int(time.time())}-{uuid.uuid4().hex[:6]}"


def maintenance_queue(queue: str) -> str:
    """The maintenance queue (``CELERY_MAINTENANCE_QUEUE``) that goes with the run queue ``queue``."""
    return f"{queue}-maintenance"


def worker_env(*, database: dict[str, Any], broker_url: str, queue: str, llm_url: str,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker process: this process's, pointed at ``database``, the broker, the queue and
    the stub, with small timeouts so that failures show quickly."""
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "syndarix.settings",
        "DATABASE_URL": database_url(database),
        "CELERY_BROKER_URL": broker_url,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "CELERY_MAINTENANCE_QUEUE": maintenance_queue(queue),
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "AGENT_LLM_PROVIDER": "openai",
        "AGENT_LLM_API_URL": llm_url,
        "AGENT_LLM_API_KEY": "stub-key",
        "AGENT_LLM_CONNECT_TIMEOUT": "2",
        "AGENT_LLM_READ_TIMEOUT": "3",
        "AGENT_LLM_MAX_RETRIES": "1",
        "AGENT_LLM_RETRY_BACKOFF_SECONDS": "0.01",
        # An upstream outage: the run waits 0.2-0.5 s between attempts, and fails after 4 s of it.
        "AGENT_LLM_OUTAGE_SECONDS": "4",
        "AGENT_LLM_OUTAGE_BACKOFF_SECONDS": "0.4",
        "AGENT_LLM_OUTAGE_BACKOFF_MAX_SECONDS": "1",
        "AGENT_HEARTBEAT_SECONDS": "0.5",
        "DJANGO_DEBUG": "true",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env


@dataclass
class Worker:
    """One worker process: its node name (``w1-<queue suffix>@<host>``), process and log file."""

    name: str
    log_path: Path
    process: subprocess.Popen | None = None
    #: Variables of this worker's own (its ``METRICS_PORT``...), over the pool's environment.
    env: dict[str, str] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class Workers:
    """``count`` Celery worker processes on ``queue`` and its maintenance queue (prefork, concurrency 1 each).

    Args:
        app: the Celery app of this process (to ping and inspect the workers).
        env: the workers' environment (``worker_env``).
        log_dir: where each worker's log goes (``w1.log``, ``w2.log``...; appended across restarts).
    """

    def __init__(self, *, app, env: dict[str, str], queue: str, log_dir: Path, count: int = 2,
                 loglevel: str = "info") -> None:
        self.app = app
        self.env = env
        self.queue = queue
        self.broker_url = env["CELERY_BROKER_URL"]
        self.loglevel = loglevel
        log_dir.mkdir(parents=True, exist_ok=True)
        host = socket.gethostname()
        suffix = queue.rsplit("-", 1)[-1]
        self.workers = [
            Worker(name=f"w{i}-{suffix}@{host}", log_path=log_dir / f"w{i}.log") for i in range(1, count + 1)
        ]

    @property
    def names(self) -> list[str]:
        return [w.name for w in self.workers]

    def get(self, name: str) -> Worker:
        """The worker named ``name`` (as ``AgentRun.worker`` records it)."""
        for worker in self.workers:
            if worker.name == name:
                return worker
        raise KeyError(f"no worker named {name!r} (workers: {', '.join(self.names)})")

    def other_than(self, name: str) -> Worker:
        return next(w for w in self.workers if w.name != name)

    def start(self, worker: Worker) -> None:
        """Start ``worker``'s process (returns at once; ``wait_ready`` waits for it to answer)."""
        command = [
            sys.executable, "-m", "celery", "-A", "syndarix", "worker", "--pool=prefork", "--concurrency=1",
            "-n", worker.name, "-Q", f"{self.queue},{maintenance_queue(self.queue)}", "--without-gossip",
            "--without-mingle", "-l", self.loglevel,
        ]
        log = worker.log_path.open("ab")
        try:
            worker.process = subprocess.Popen(
                command, cwd=ROOT, env={**self.env, **worker.env}, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            log.close()

    def start_all(self, timeout: float = 30.0) -> None:
        """Start every worker and wait until all answer a ping.

        Raises ``HarnessError`` (with the tail of each failing worker's log) when they do not within ``timeout``.
        """
        for worker in self.workers:
            if not worker.alive:
                self.start(worker)
        self.wait_ready(self.workers, timeout=timeout)

    def ensure_running(self, timeout: float = 30.0) -> None:
        """Restart any worker that is not running (a test killed it) and wait until all answer."""
        dead = [w for w in self.workers if not w.alive]
        for worker in dead:
            self.start(worker)
        if dead:
            self.wait_ready(self.workers, timeout=timeout)

    def wait_ready(self, workers: Iterable[Worker], timeout: float = 30.0) -> None:
        workers = list(workers)
        missing = {w.name for w in workers}
        deadline = time.monotonic() + timeout
        while missing:
            for worker in workers:
                if worker.name in missing and not worker.alive:
                    raise HarnessError(self._report(f"worker {worker.name} exited with code "
                                                    f"{worker.process.returncode} while starting", [worker]))
            replies = self.app.control.ping(destination=sorted(missing), timeout=0.5) or []
            for answer in replies:
                missing -= set(answer)
            if missing and time.monotonic() > deadline:
                late = [w for w in workers if w.name in missing]
                raise HarnessError(self._report(f"worker(s) {', '.join(sorted(missing))} did not answer a ping "
                                                f"within {timeout:g} s", late))

    def kill(self, worker: Worker) -> None:
        """SIGKILL ``worker``'s whole process group (the main process and its pool child) and reap it."""
        if worker.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=10)

    def freeze(self, worker: Worker) -> None:
        """SIGSTOP ``worker``'s process group: it stops beating and answering, as in a long VM or GC pause."""
        os.killpg(worker.process.pid, signal.SIGSTOP)

    def thaw(self, worker: Worker) -> None:
        """SIGCONT ``worker``'s process group (a no-op for a running or dead worker)."""
        if worker.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.process.pid, signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every worker: a warm shutdown (SIGTERM), then SIGKILL for whatever is left after ``timeout``."""
        running = [w for w in self.workers if w.alive]
        for worker in running:
            self.thaw(worker)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for worker in running:
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(worker)

    def busy(self) -> int | None:
        """Messages waiting in the queue plus tasks the running workers hold (executing or reserved), or ``None``
        when a worker did not answer."""
        import redis

        client = redis.Redis.from_url(self.broker_url)
        waiting = client.llen(self.queue) + client.llen(maintenance_queue(self.queue))
        names = [w.name for w in self.workers if w.alive]
        if not names:
            return waiting
        inspect = self.app.control.inspect(destination=names, timeout=1.0)
        held = 0
        for replies in (inspect.active() or {}, inspect.reserved() or {}):
            if set(replies) != set(names):
                return None
            held += sum(len(tasks) for tasks in replies.values())
        return waiting + held

    def wait_idle(self, timeout: float = 20.0) -> None:
        """Wait until the queue is empty and no worker holds a task (``AssertionError`` after ``timeout``)."""
        wait_for(lambda: self.busy() == 0, timeout=timeout, interval=0.05,
                 message=lambda: "the workers are still busy\n" + self._report("", self.workers, lines=20))

    def _report(self, headline: str, workers: Iterable[Worker], lines: int = 60) -> str:
        parts = [headline] if headline else []
        for worker in workers:
            parts.append(f"--- last {lines} lines of {worker.log_path} ({worker.name}) ---\n{worker.log_tail(lines)}")
        return "\n".join(parts)


# --- Broker housekeeping ------------------------------------------------------------------------------


#: Prefixes of the keys kombu's Redis transport keeps per queue, besides the queue's own lists.
_BINDING_PREFIXES = ("_kombu.binding.", "_kombu.binding_permanent.")


def _queue_keys(client, queue: str) -> list:
    keys = list(client.scan_iter(match=f"{queue}*", count=500))
    for prefix in _BINDING_PREFIXES:
        keys += list(client.scan_iter(match=f"{prefix}{queue}", count=500))
    return keys


def purge_queue(broker_url: str, queue: str) -> None:
    """Delete ``queue`` and its maintenance queue from the Redis broker: their messages (every priority), their
    bindings and the unacknowledged messages that were delivered from them (a killed worker's)."""
    queues = [queue, maintenance_queue(queue)]
    _purge(broker_url, lambda name: name in queues, queues)


def purge_stale_queues(broker_url: str, *, older_than: float = STALE_QUEUE_SECONDS) -> None:
    """Delete what sessions that ended long ago left in the broker: the harness's queues created more than
    ``older_than`` seconds ago (their name holds the time), and their unacknowledged messages. Queues of a
    session still running (another test run on this machine) are left alone."""
    cutoff = time.time() - older_than

    def stale(name: str) -> bool:
        if not name.startswith(QUEUE_PREFIX):
            return False
        try:
            return int(name[len(QUEUE_PREFIX):].split("-", 1)[0]) < cutoff
        except ValueError:
            return False

    import redis

    client = redis.Redis.from_url(broker_url)
    names = set()
    for prefix in ("", *_BINDING_PREFIXES):
        for key in client.scan_iter(match=f"{prefix}{QUEUE_PREFIX}*", count=500):
            names.add(key.decode(errors="replace").removeprefix(prefix).split("\x06\x16", 1)[0])
    _purge(broker_url, stale, [name for name in names if stale(name)])


def _purge(broker_url: str, matches: Callable[[str], bool], queues: Iterable[str]) -> None:
    import redis

    client = redis.Redis.from_url(broker_url)
    for queue in queues:
        keys = _queue_keys(client, queue)
        if keys:
            client.delete(*keys)
    for tag, raw in client.hscan_iter("unacked", count=500):
        try:
            routing_key = json.loads(raw)[2]
        except (ValueError, IndexError, TypeError):
            continue
        if isinstance(routing_key, str) and matches(routing_key):
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)


# --- The Procfile's processes ------------------------------------------------------------------------------


def procfile_lines() -> dict[str, str]:
    """The root ``Procfile``'s process lines, ``{name: command}``."""
    lines = (line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines()
             if ":" in line and not line.lstrip().startswith("#"))
    return {name.strip(): command.strip() for name, command in lines}


class ProcfileProcess:
    """One ``Procfile`` line (``worker``, ``beat``) run as the shell runs it, in a session of its own, with ``env``
    (and this interpreter's ``bin`` first on ``PATH``, as in an activated virtualenv); its output goes to
    ``log_path``."""

    def __init__(self, name: str, *, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.command = procfile_lines()[name]
        self.env = {**env, "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])}
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> ProcfileProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["/bin/sh", "-c", f"exec {self.command}"], cwd=ROOT, env=self.env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_logged(self, text: str, timeout: float = 30.0) -> None:
        """Wait until the log shows ``text`` (``ready.``: the worker consumes), or raise ``HarnessError``."""
        deadline = time.monotonic() + timeout
        while text not in self.log_path.read_text(errors="replace"):
            if not self.alive or time.monotonic() > deadline:
                raise HarnessError(f"{self.name} never logged {text!r}:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
