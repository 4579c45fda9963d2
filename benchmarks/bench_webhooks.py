"""Webhook throughput and latency: deliveries per second to one local receiver and to several, and the time from an
event's commit to its arrival at a receiver (p50, p99).

Every receiver is a real HTTP server on 127.0.0.1 that verifies each delivery with ``standardwebhooks``
(``tests/webhooks/receiver.py``) and answers 204 at once; the events are real outbox rows in PostgreSQL.

1. **Throughput** (the dispatcher in this process, ``agents.webhooks.dispatch.dispatch``, as a worker runs it):
   ``--events`` events are committed, then dispatchers deliver them to the endpoints; two configurations,
   interleaved round by round (alternating which goes first): ``one`` — one endpoint, one dispatcher thread;
   ``several`` — ``--receivers`` endpoints with a receiver each, as many dispatcher threads. Prints deliveries/s
   (median over ``--rounds``) and the ratio several ÷ one.
2. **Latency** (a real Celery worker with beat on the maintenance queue, as the Procfile's ``beat`` line runs it):
   events are committed one at a time, ``--gap`` seconds apart, to one endpoint; the latency is the receiver's
   arrival time minus the commit time. Two configurations, interleaved: ``nudge`` (as shipped: a commit queues the
   dispatcher) and ``beat`` (the nudge off: only beat's ticks, every ``WEBHOOK_DISPATCH_INTERVAL_SECONDS``). Prints
   p50 and p99 of each and the ratio.

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/syndarix CELERY_BROKER_URL=redis://127.0.0.1:6379/2 \\
        .venv/bin/python benchmarks/bench_webhooks.py [--rounds 3] [--events 300] [--receivers 4] [--latency-events 60]

It creates a throwaway database next to the one ``DATABASE_URL`` names (``bench_webhooks_<pid>``) and drops it at
the end; the worker consumes a queue of its own.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndarix.settings")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/2")
os.environ.setdefault("REDIS_URL", os.environ["CELERY_BROKER_URL"])
os.environ["WEBHOOK_ALLOW_PRIVATE_TARGETS"] = "true"  # the receivers are on 127.0.0.1

import django  # noqa: E402

django.setup()
logging.disable(logging.WARNING)

from _support import throwaway_database  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from agents import events  # noqa: E402
from agents.webhooks import services, tasks  # noqa: E402
from agents.webhooks.dispatch import dispatch  # noqa: E402
from agents.webhooks.models import WebhookEndpoint  # noqa: E402
from projects.models import Project, Workspace  # noqa: E402
from syndarix.celery import app as celery_app  # noqa: E402
from tests.runtime.harness import maintenance_queue, new_queue_name, purge_queue, worker_env  # noqa: E402
from tests.webhooks.receiver import Receiver  # noqa: E402


def _project() -> Project:
    from django.contrib.auth import get_user_model

    suffix = os.urandom(4).hex()
    workspace = Workspace.objects.create(name=f"bench {suffix}", slug=f"bench-{suffix}")
    owner = get_user_model().objects.create(username=f"bench-{suffix}")
    return Project.objects.create(workspace=workspace, owner=owner, name="bench", slug="bench")


def _endpoints(project: Project, count: int) -> list[Receiver]:
    receivers = []
    for _ in range(count):
        receiver = Receiver()
        endpoint, _ = services.webhook_endpoint_create(workspace=project.workspace, url=receiver.url)
        receiver.secret = endpoint.secret
        receivers.append(receiver)
    return receivers


def throughput_round(config: str, *, events_count: int, receivers_count: int) -> float:
    """One round of ``config``: deliveries per second (wall, from the dispatchers' start to the last arrival)."""
    count = 1 if config == "one" else receivers_count
    project = _project()
    receivers = _endpoints(project, count)
    with transaction.atomic():
        for i in range(events_count):
            events.emit("run.succeeded", project=project, data={"run_id": f"r{i}"})
    done = threading.Event()

    def dispatcher() -> None:
        try:
            while not done.is_set():
                dispatch(budget_seconds=5)
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher) for _ in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for receiver in receivers:
        receiver.wait_for(events_count, timeout=300)
    elapsed = time.perf_counter() - started
    done.set()
    for thread in threads:
        thread.join()
    for receiver in receivers:
        assert receiver.ids() == sorted(receiver.ids()) and not receiver.rejected
        receiver.down()
    WebhookEndpoint.objects.filter(workspace=project.workspace).update(is_active=False)
    return count * events_count / elapsed


def start_worker(log_path: Path):
    queue = new_queue_name()
    env = worker_env(database=connection.settings_dict, broker_url=settings.CELERY_BROKER_URL, queue=queue,
                     llm_url="http://127.0.0.1:9/", extra={"REDIS_URL": settings.REDIS_URL,
                                                        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
                                                        "AGENT_HEARTBEAT_SECONDS": "10"})
    name = f"bench-webhooks-{queue[-6:]}@{socket.gethostname()}"
    log = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "syndarix", "worker", "--beat", "--schedule",
         str(log_path.with_suffix(".schedule")), "--pool=threads", "--concurrency=4", "-Q", maintenance_queue(queue),
         "-n", name, "--without-gossip", "--without-mingle", "-l", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    celery_app.conf.maintenance_queue = maintenance_queue(queue)
    celery_app.conf.task_always_eager = False
    deadline = time.monotonic() + 60
    while not celery_app.control.ping(destination=[name], timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the worker did not start:\n" + log_path.read_text()[-3000:])
    return process, queue


def latency_round(config: str, *, count: int, gap: float) -> list[float]:
    """One round of ``config``: the commit-to-arrival latencies (seconds) of ``count`` events."""
    project = _project()
    (receiver,) = _endpoints(project, 1)
    real_nudge = tasks.nudge
    if config == "beat":
        tasks.nudge = lambda: None
    committed: dict[int, float] = {}
    try:
        for i in range(count):
            with transaction.atomic():
                event = events.emit("run.succeeded", project=project, data={"run_id": f"r{i}"})
            committed[event.pk] = time.time()
            time.sleep(gap)
        got = receiver.wait_for(count, timeout=120)
    finally:
        tasks.nudge = real_nudge
        receiver.down()
    WebhookEndpoint.objects.filter(workspace=project.workspace).update(is_active=False)
    return [r.at - committed[int(r.webhook_id)] for r in got]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--receivers", type=int, default=4)
    parser.add_argument("--latency-events", type=int, default=60)
    parser.add_argument("--gap", type=float, default=0.05)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with throwaway_database("bench_webhooks"):
        rates: dict[str, list[float]] = {"one": [], "several": []}
        for round_number in range(args.rounds):
            order = ("one", "several") if round_number % 2 == 0 else ("several", "one")
            for config in order:
                rates[config].append(throughput_round(config, events_count=args.events,
                                                      receivers_count=args.receivers))
        one, several = statistics.median(rates["one"]), statistics.median(rates["several"])
        print(f"Throughput ({args.events} events per endpoint, medians of {args.rounds} interleaved rounds):")
        print(f"  one receiver, 1 dispatcher:        {one:7.0f} deliveries/s  (rounds: "
              f"{', '.join(f'{r:.0f}' for r in rates['one'])})")
        print(f"  {args.receivers} receivers, {args.receivers} dispatchers:    {several:7.0f} deliveries/s  (rounds: "
              f"{', '.join(f'{r:.0f}' for r in rates['several'])})")
        print(f"  several ÷ one: {several / one:.2f}×")

        log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_webhooks_{os.getpid()}.log"
        process, queue = start_worker(log_path)
        try:
            latencies: dict[str, list[float]] = {"nudge": [], "beat": []}
            for round_number in range(args.rounds):
                order = ("nudge", "beat") if round_number % 2 == 0 else ("beat", "nudge")
                for config in order:
                    latencies[config] += latency_round(config, count=args.latency_events // args.rounds or 1,
                                                       gap=args.gap)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
            purge_queue(settings.CELERY_BROKER_URL, maintenance_queue(queue))
        print(f"Latency, commit → received (a Celery worker with beat every "
              f"{settings.WEBHOOK_DISPATCH_INTERVAL_SECONDS:g} s; {len(latencies['nudge'])} events each, "
              f"{args.gap:g} s apart, interleaved rounds):")
        for config, label in (("nudge", "as shipped (commit nudges)"), ("beat", "beat only (nudge off)")):
            values = latencies[config]
            print(f"  {label:28s} p50 {percentile(values, 0.5) * 1000:7.1f} ms   p99 "
                  f"{percentile(values, 0.99) * 1000:7.1f} ms")
        ratio = percentile(latencies["nudge"], 0.5) / percentile(latencies["beat"], 0.5)
        print(f"  p50 nudge ÷ beat only: {ratio:.2f}×")
    load_after = os.getloadavg()
    print(f"Load average {load_before[0]:.2f} before / {load_after[0]:.2f} after; {os.cpu_count()} CPUs.")


if __name__ == "__main__":
    main()
