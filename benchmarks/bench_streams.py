"""Benchmark of the event streams against the real ASGI server (``gunicorn syndarix.asgi:application`` with two
uvicorn workers, ``tests/live.py``), Redis pub/sub and PostgreSQL:

- **event latency**: commit → client, for ``--events`` events committed one at a time (20 ms apart) while a client
  reads the project's stream: p50 and p99 (ms);
- **500 idle open streams**: the p50 of the rest of the API (``GET /api/v1/projects/{id}/agents`` with a token) in
  interleaved rounds without and with ``--streams`` idle streams open (ratio with / without; the issue's bound is
  1.20), and the memory the streams cost (the web workers' resident memory with them open minus without, MB; the
  bound is 100 MB).

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/syndarix .venv/bin/python benchmarks/bench_streams.py

It creates a throwaway database next to the one ``DATABASE_URL`` names (``bench_streams_<pid>``), migrates it, and
drops it at the end. ``REDIS_URL`` (default ``redis://127.0.0.1:6379/1``) is the live one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndarix.settings")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/1")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/2")

import django  # noqa: E402

django.setup()

from _support import throwaway_database  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import transaction  # noqa: E402

from agents.events import EventType, emit  # noqa: E402
from projects.choices import WorkspaceRole  # noqa: E402
from projects.models import Project, Workspace, WorkspaceMembership  # noqa: E402
from projects.services import auth_token_create  # noqa: E402
from tests.events.sse import Stream  # noqa: E402
from tests.live import Gunicorn  # noqa: E402
from tests.runtime.harness import database_url  # noqa: E402

#: Streams one user opens (the API allows 60 a minute per user).
STREAMS_PER_USER = 50


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def worker_rss_mb(server: Gunicorn) -> float:
    """Resident memory of gunicorn's workers (the master's children), MB."""
    total = 0
    for child in Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split():
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def latency(server: Gunicorn, project: Project, token: str, count: int) -> list[float]:
    """Commit → client milliseconds of ``count`` events."""
    committed: dict[str, float] = {}
    arrived: dict[str, float] = {}
    ready = threading.Event()

    def read() -> None:
        with Stream(server.port, f"/api/v1/projects/{project.pk}/events", token=token) as stream:
            if stream.status != 200:
                raise SystemExit(f"the stream was refused: {stream.status} {stream.body()}")
            ready.set()
            for frame in stream.events():
                arrived[frame.id] = frame.at
                if len(arrived) >= count:
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ready.wait(30)
    time.sleep(0.5)  # the stream's head is taken
    for n in range(count):
        with transaction.atomic():
            event = emit(EventType.RUN_QUEUED, project=project, data={"n": n})
        committed[str(event.id)] = time.monotonic()
        time.sleep(0.02)
    reader.join(60)
    return [(arrived[i] - committed[i]) * 1000 for i in committed if i in arrived]


async def _open_streams(port: int, paths_tokens: list[tuple[str, str]]) -> list[asyncio.StreamWriter]:
    writers = []
    for path, token in paths_tokens:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                     f"Authorization: Token {token}\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"a stream was refused: {head[:200]!r}")
        writers.append((reader, writer))
    return writers


class IdleStreams:
    """``count`` idle streams held open by an event loop in a thread of its own."""

    def __init__(self, port: int, paths_tokens: list[tuple[str, str]]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.conns = asyncio.run_coroutine_threadsafe(_open_streams(port, paths_tokens), self.loop).result(300)

    def close(self) -> None:
        async def shut() -> None:
            for _, writer in self.conns:
                writer.close()

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def api_p50(server: Gunicorn, path: str, token: str, samples: int) -> float:
    times = []
    for _ in range(samples):
        answer = server.get(path, headers={"Authorization": f"Token {token}"})
        assert answer.status == 200, answer.body
        times.append(answer.seconds)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--samples", type=int, default=100, help="API requests per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with throwaway_database("bench_streams") as database, tempfile.TemporaryDirectory() as logs:
        user_model = get_user_model()
        owner = user_model.objects.create_user("owner", password="x")
        workspace = Workspace.objects.create(name="Bench", slug="bench")
        project = Project.objects.create(workspace=workspace, owner=owner, name="Bench", slug="bench")
        token = auth_token_create(user=owner)[1]
        viewers = []
        for n in range((args.streams + STREAMS_PER_USER - 1) // STREAMS_PER_USER):
            viewer = user_model.objects.create_user(f"viewer{n}", password="x")
            WorkspaceMembership.objects.create(workspace=workspace, user=viewer, role=WorkspaceRole.VIEWER)
            viewers.append(auth_token_create(user=viewer)[1])
        streams = [(f"/api/v1/projects/{project.pk}/events", viewers[i // STREAMS_PER_USER])
                   for i in range(args.streams)]
        server = Gunicorn(
            {"DATABASE_URL": database_url(database), "REDIS_URL": settings.REDIS_URL,
             "CELERY_BROKER_URL": settings.CELERY_BROKER_URL, "RATELIMIT_ENABLE": "false"},
            workers=2, log_dir=Path(logs), asgi=True, timeout=120,
        ).start()
        try:
            delays = latency(server, project, token, args.events)
            print(f"event latency commit → client ({len(delays)} of {args.events} events): "
                  f"p50 {percentile(delays, 0.5):.1f} ms  p99 {percentile(delays, 0.99):.1f} ms")

            api = f"/api/v1/projects/{project.pk}/agents"
            api_p50(server, api, token, 20)  # warm up
            without, with_streams, memory = [], [], []
            for _ in range(args.rounds):
                before = worker_rss_mb(server)
                without.append(api_p50(server, api, token, args.samples))
                idle = IdleStreams(server.port, streams)
                time.sleep(1.0)
                memory.append(worker_rss_mb(server) - before)
                with_streams.append(api_p50(server, api, token, args.samples))
                idle.close()
                time.sleep(1.0)
            ratio = statistics.median(with_streams) / statistics.median(without)
            print(f"API p50 without streams {statistics.median(without):.1f} ms, with {args.streams} idle streams "
                  f"{statistics.median(with_streams):.1f} ms: ratio {ratio:.2f} (bound 1.20); rounds "
                  f"{[round(x, 1) for x in without]} / {[round(x, 1) for x in with_streams]}")
            print(f"memory of {args.streams} idle streams: {statistics.median(memory):.1f} MB (bound 100 MB); "
                  f"rounds {[round(x, 1) for x in memory]}; load average {os.getloadavg()[0]:.2f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
