"""A lost database or cache, against a live gunicorn: 503 in the error envelope within 2 s, never a hang, a 500
or an HTML page; rate limits fail open (or refuse with 503); ``/healthz`` and ``/readyz``.

Each test starts gunicorn (``tests/live.py``) with one dependency pointed at a dead port (connections
refused) or at a silent one (a socket that accepts and never answers), the others at the test's own
PostgreSQL and Redis. Bounds are the issue's: an answer within 2 s; with the database silent, libpq's
connect timeout cannot be set below 2 s, so that case gets 2 s plus a margin for the request itself.
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from tests import factories
from tests.live import Gunicorn, SilentServer, dead_port
from tests.runtime.harness import database_url

BOUND = 2.0
#: libpq's minimum connect_timeout is 2 s (a value of 1 is read as 2): the silent database's floor.
DATABASE_SILENT_BOUND = 2.0 + 0.5
PROJECTS = "/api/v1/projects"
PASSWORD = "pw-Syndarix-1"


def live_env(**overrides: str) -> dict[str, str]:
    """The test's database, cache and broker, with ``overrides``."""
    return {
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        **overrides,
    }


@pytest.fixture
def serve(tmp_path):
    """``serve(**env)`` → a started ``Gunicorn``; all are stopped after the test."""
    servers: list[Gunicorn] = []

    def start(workers: int = 1, **env: str) -> Gunicorn:
        server = Gunicorn(live_env(**env), workers=workers, log_dir=tmp_path)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def silent():
    with SilentServer() as server:
        yield server


def assert_unavailable(answer, dependency: str, bound: float = BOUND) -> None:
    assert answer.status == 503, (answer.status, answer.body)
    assert answer.headers["content-type"] == "application/json"
    assert answer.body["success"] is False
    assert [(e["code"], e["dependency"]) for e in answer.body["errors"]] == [("service_unavailable", dependency)]
    assert int(answer.headers["retry-after"]) >= 1
    assert answer.seconds < bound, f"503 after {answer.seconds:.2f} s"


def assert_not_ready(answer, failed: set[str], bound: float = BOUND) -> None:
    assert answer.status == 503, (answer.status, answer.body)
    assert {e["dependency"] for e in answer.body["errors"]} == failed
    assert {name for name, state in answer.body["checks"].items() if state != "ok"} == failed
    assert set(answer.body["checks"]) == {"database", "cache", "broker"}
    assert answer.seconds < bound, f"/readyz after {answer.seconds:.2f} s"


# --- The database ---


@pytest.mark.parametrize("mode", ["dead", "silent"])
def test_a_lost_database_is_503_in_the_envelope(serve, silent, mode):
    port = dead_port() if mode == "dead" else silent.port
    bound = BOUND if mode == "dead" else DATABASE_SILENT_BOUND
    server = serve(DATABASE_URL=f"postgres://postgres@127.0.0.1:{port}/syndarix")
    assert_unavailable(server.get(PROJECTS, headers={"Authorization": "Token abc"}), "database", bound)
    assert_unavailable(server.post("/api/v1/auth/token", {"username": "u", "password": "p"}), "database", bound)
    assert_not_ready(server.get("/readyz"), {"database"}, bound)
    health = server.get("/healthz")
    assert (health.status, health.body) == (200, {"status": "ok"})
    assert health.seconds < 0.5


# --- The cache ---


@pytest.fixture
def token(transactional_db):
    """A committed user (password hashed as the live server's settings hash it) and token."""
    user = factories.UserFactory(username="live-user")
    hasher = PBKDF2PasswordHasher()  # the suite hashes with MD5 for speed; the server knows only the defaults
    type(user).objects.filter(pk=user.pk).update(password=hasher.encode(PASSWORD, hasher.salt()))
    return factories.token_for(user)


@pytest.mark.parametrize("mode", ["dead", "silent"])
def test_a_lost_cache_fails_rate_limits_open_by_default(serve, silent, token, mode):
    port = dead_port() if mode == "dead" else silent.port
    server = serve(REDIS_URL=f"redis://127.0.0.1:{port}/0")
    answer = server.get(PROJECTS, headers={"Authorization": f"Token {token}"})
    assert answer.status == 200, answer.body
    assert "x-ratelimit-limit" not in answer.headers  # not counted: the cache is gone
    assert answer.seconds < BOUND
    login = server.post("/api/v1/auth/token", {"username": "live-user", "password": PASSWORD})
    assert login.status == 200, login.body  # (its time is mostly the password hasher's)
    assert_not_ready(server.get("/readyz"), {"cache"})
    assert "not checked, the cache is unavailable" in server.log_tail(200)


@pytest.mark.parametrize("mode", ["dead", "silent"])
def test_a_lost_cache_refuses_with_503_when_failing_closed(serve, silent, token, mode):
    port = dead_port() if mode == "dead" else silent.port
    server = serve(REDIS_URL=f"redis://127.0.0.1:{port}/0", RATELIMIT_FAIL_OPEN="false")
    assert_unavailable(server.get(PROJECTS, headers={"Authorization": f"Token {token}"}), "cache")
    assert_unavailable(server.post("/api/v1/auth/token", {"username": "live-user", "password": "x"}), "cache")


def test_a_lost_broker_makes_the_process_not_ready(serve, silent, transactional_db):
    server = serve(CELERY_BROKER_URL=f"redis://127.0.0.1:{silent.port}/0")
    assert_not_ready(server.get("/readyz"), {"broker"})


#: What a run request may take with the broker silent (README, "Outages and health checks": 2.1 s), plus a margin
#: for the request itself.
BROKER_SILENT_BOUND = 2.1 + 0.4


class GoingSilentProxy:
    """A TCP proxy to the test's Redis that forwards until ``silence()``, then holds every connection, old and new,
    without a byte more: a broker that stops answering while the app holds connections to it."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream, self.live = upstream, threading.Event()
        self.live.set()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    def silence(self) -> None:
        self.live.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            self._held.append(client)
            if self.live.is_set():
                server = socket.create_connection(self.upstream)
                self._held.append(server)
                for source, target in ((client, server), (server, client)):
                    threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            while not self.live.is_set():
                time.sleep(3600)  # silent: hold the bytes and the connection
            target.sendall(data)

    def close(self) -> None:
        for sock in [self._sock, *self._held]:
            sock.close()


def test_a_broker_gone_silent_holds_a_run_request_only_the_documented_time(serve, token):
    """The run is recorded (202, queued) and its publish given up within the bound (one attempt, no retry on a
    connection that went silent): the reaper sends it later, as documented."""
    from knox.models import AuthToken

    from agents import services
    from agents.models import AgentRun

    owner = AuthToken.objects.get().user
    project = factories.ProjectFactory(owner=owner)
    agent_type = factories.AgentTypeFactory()
    services.agent_type_commit_revision(agent_type, template={"llm": {"model": "test-model"}, "tools": []},
                                        author=owner)
    first, second = (services.agent_spawn(project=project, agent_type=agent_type, name=name) for name in "ab")
    redis_url = urlsplit(settings.REDIS_URL)
    proxy = GoingSilentProxy((redis_url.hostname, redis_url.port or 6379))
    try:
        # The cache's own database: the test clears it, so no message outlives the test.
        server = serve(CELERY_BROKER_URL=f"redis://127.0.0.1:{proxy.port}{redis_url.path}")
        headers = {"Authorization": f"Token {token}"}
        healthy = server.post(f"/api/v1/projects/{project.pk}/agents/{first.pk}/runs", {"instruction": "go"},
                              headers=headers)
        assert healthy.status == 202, healthy.body
        proxy.silence()
        answer = server.post(f"/api/v1/projects/{project.pk}/agents/{second.pk}/runs", {"instruction": "go"},
                             headers=headers)
    finally:
        proxy.close()
    assert answer.status == 202, answer.body
    assert answer.seconds < BROKER_SILENT_BOUND, f"202 after {answer.seconds:.2f} s"
    assert AgentRun.objects.get(pk=answer.body["id"]).status == "queued"


def test_ready_when_everything_answers(serve, transactional_db):
    server = serve()
    answer = server.get("/readyz")
    assert (answer.status, answer.body) == (
        200, {"status": "ok", "checks": {"database": "ok", "cache": "ok", "broker": "ok"}}
    )


# --- The login throttle across workers ---


def test_the_per_account_login_throttle_holds_across_two_workers(serve, transactional_db):
    factories.UserFactory(username="target")
    server = serve(workers=2, TRUSTED_PROXY_HOPS="1")
    body = {"username": "target", "password": "wrong"}

    def attempt(n: int):
        # A new connection and client IP each time: only the per-account limit can refuse.
        return server.post("/api/v1/auth/token", body, headers={"X-Forwarded-For": f"198.51.100.{n}",
                                                                "X-Probe": str(n)})

    def hold_a_worker() -> socket.socket:
        """Occupy one idle sync worker with a request whose headers never end (it waits on the socket)."""
        held = socket.create_connection(("127.0.0.1", server.port))
        held.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        time.sleep(0.5)  # accepted by a worker
        return held

    assert [attempt(n).status for n in range(5)] == [400] * 5
    # Which worker takes a connection is up to the kernel; hold one worker, then the other, so each must answer.
    first = hold_a_worker()
    refused_by_one = [attempt(n) for n in range(5, 8)]
    second = hold_a_worker()  # the only idle worker: the one that answered above
    first.close()  # the first worker is free again, and the only one
    refused_by_other = [attempt(n) for n in range(8, 11)]
    second.close()
    assert [a.status for a in refused_by_one + refused_by_other] == [429] * 6
    workers = server.worker_of([str(n) for n in range(5, 11)])
    assert len({workers[str(n)] for n in range(5, 8)}) == 1
    assert len({workers[str(n)] for n in range(5, 11)}) == 2, "one worker answered every refused attempt"
