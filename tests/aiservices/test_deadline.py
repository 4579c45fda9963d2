"""Every upstream call has a wall-clock deadline: a real local server that drips its answer a byte at a time,
each byte well within the read timeout, cannot hold the caller past ``<prefix>_TOTAL_TIMEOUT`` — neither the
AI tools' client nor the runtime's LLM client. The bounds asserted are the deadline plus a generous margin."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from django.test import override_settings

from aiservices import client, llm
from aiservices.exceptions import UpstreamTimeout

ANSWER = {"model": "m", "choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}
#: Seconds the caller may take beyond its deadline (thread wake-up, closing the socket) on a busy machine.
MARGIN = 1.0


class DrippingServer:
    """Answers each request on 127.0.0.1 with ``answer`` bytes, one every ``interval`` seconds from byte ``start``
    on (the bytes before it are sent at once). Records when the client hung up (a send failed)."""

    def __init__(self, answer: bytes, *, interval: float, start: int = 0) -> None:
        self.answer, self.interval, self.start = answer, interval, start
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.hung_up = threading.Event()
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            head, _, body = request.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length")), 0)
            while len(body) < length:
                body += conn.recv(65536)
            try:
                conn.sendall(self.answer[: self.start])
                for byte in self.answer[self.start:]:
                    if self.stopped.wait(self.interval):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                self.hung_up.set()

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


def http_answer(body: dict) -> bytes:
    payload = json.dumps(body).encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)


@pytest.fixture
def drip():
    servers = []

    def start(answer: bytes, **kwargs) -> DrippingServer:
        server = DrippingServer(answer, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
    client.reset_session()


def call(server: DrippingServer, *, total: float) -> float:
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as failed:
        client.post_json(f"{server.url}/chat/completions", payload={"x": 1}, headers={}, request_id="r",
                         total_timeout=total)
    elapsed = time.monotonic() - started
    assert failed.value.message == f"The AI service did not answer within {total:g} s."
    return elapsed


@override_settings(AI_SERVICES_READ_TIMEOUT=5)
@pytest.mark.parametrize("start", [0, 20, 90], ids=["status-line", "headers", "body"])
def test_an_answer_dripped_byte_by_byte_is_cut_off_at_the_deadline(drip, start):
    answer = http_answer(ANSWER)
    assert start < len(answer)
    server = drip(answer, interval=0.05, start=start)  # each byte in 50 ms: the 5 s read timeout never fires
    assert len(answer) * 0.05 > 3  # the whole answer would take longer than the deadline
    elapsed = call(server, total=1.0)
    assert elapsed < 1.0 + MARGIN
    assert server.hung_up.wait(5)  # the connection was dropped, not left dripping


@override_settings(AI_SERVICES_READ_TIMEOUT=5, AI_SERVICES_TOTAL_TIMEOUT=1.0)
def test_the_default_deadline_is_the_setting_and_a_fast_answer_is_untouched(drip):
    slow = drip(http_answer(ANSWER), interval=0.05)
    assert call(slow, total=1.0) < 1.0 + MARGIN
    fast = drip(http_answer(ANSWER), interval=0, start=10_000)
    answer = client.post_json(f"{fast.url}/chat/completions", payload={}, headers={}, request_id="r")
    assert answer.body == ANSWER
    time.sleep(1.2)  # past the deadline the call had: its watchdog must not touch the pooled connection
    again = client.post_json(f"{fast.url}/chat/completions", payload={}, headers={}, request_id="r")
    assert again.body == ANSWER


def test_the_runtime_llm_client_is_bound_by_its_total_timeout(drip):
    server = drip(http_answer(ANSWER), interval=0.05, start=30)
    with override_settings(AGENT_LLM_PROVIDER="openai", AGENT_LLM_API_URL=server.url, AGENT_LLM_API_KEY="",
                           AGENT_LLM_READ_TIMEOUT=5, AGENT_LLM_TOTAL_TIMEOUT=1.0, AGENT_LLM_MAX_RETRIES=2,
                           AGENT_LLM_RETRY_BACKOFF_SECONDS=0.01):
        elapsed = _complete_until_timeout()
    assert elapsed < 1.0 + MARGIN
    assert server.hung_up.wait(5)


def _complete_until_timeout() -> float:
    request = llm.ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        llm.OpenAIChatProvider().complete(request, request_id="run-1")
    return time.monotonic() - started


def test_a_deadline_closed_in_time_never_fires():
    deadline = client.Deadline(0.05)
    a, b = socket.socketpair()
    with a, b:
        deadline.watch(a)
        deadline.close()
        time.sleep(0.1)
        b.sendall(b"x")
        assert a.recv(1) == b"x"  # still open
        assert not deadline.expired
