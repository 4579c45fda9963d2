"""Benchmark of the agent runtime: real Celery workers, a real broker, a local OpenAI-compatible stub.

Starts 2 worker processes (prefork, concurrency 1 each) and the stub of the integration tests
(``tests/runtime/harness.py``), answering every call at once, and prints:

- throughput: runs/s for ``--runs`` runs of 3 LLM calls each, created in one burst and spread over
  ``--agents`` agents (an agent runs one run at a time), from the first ``created_at`` to the last ``finished_at``;
- latency of a 3-call run on otherwise idle workers (``created_at`` → ``finished_at``): median and p95;
- pause latency: from ``agent_pause`` having committed to the run being ``paused`` (the worker's next step boundary);
- overhead per step, outside the LLM call: (``started_at`` → ``finished_at`` minus the time the stub spent
  answering) / LLM calls, for the agent loop (each step an LLM call and a platform tool call) and for a plain
  agent class (an LLM call and a checkpoint per step);
- for comparison, the stub's round trip from this process through the runtime's HTTP client.

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/syndarix .venv/bin/python benchmarks/bench_runtime.py
    (options: --runs M (default 60), --agents N (default 6), --samples S (default 30))

The broker is ``CELERY_BROKER_URL`` (default ``redis://127.0.0.1:6379/2``), on a queue of the benchmark's own.
It creates a throwaway database next to the one ``DATABASE_URL`` names (``bench_runtime_<pid>``), migrates
it, and drops it at the end, so it never touches existing data.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndarix.settings")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/2")
os.environ["RATELIMIT_ENABLE"] = "false"

import django  # noqa: E402

django.setup()

from _support import throwaway_database  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from tests.runtime.harness import (  # noqa: E402
    StubLLM,
    Workers,
    new_queue_name,
    purge_queue,
    purge_stale_queues,
    reply,
    tool_call,
    wait_for,
    worker_env,
)

AGENT_MODULE = "tests.runtime.agent_classes"
MODEL = "bench-model"


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _ms(delta) -> float:
    return delta.total_seconds() * 1000


def _finished(run_ids, timeout: float):
    from agents.choices import RUN_FINISHED_STATUSES
    from agents.models import AgentRun

    ids = list(run_ids)
    wait_for(lambda: AgentRun.objects.filter(pk__in=ids, status__in=RUN_FINISHED_STATUSES).count() == len(ids),
             timeout=timeout, interval=0.005)
    runs = list(AgentRun.objects.filter(pk__in=ids))
    failed = [f"{r.pk}: {r.status} {r.error_code} {r.error_message}" for r in runs if r.status != "succeeded"]
    if failed:
        raise SystemExit("runs did not succeed:\n" + "\n".join(failed))
    return runs


def _outside_llm_ms(run, received) -> float:
    """Milliseconds of ``run``'s execution (``started_at`` → ``finished_at``) not spent inside the stub's answers."""
    inside = sum(r.answered_at - r.at for r in received) * 1000
    return _ms(run.finished_at - run.started_at) - inside


def run(args, stub: StubLLM, workers: Workers) -> None:
    from django.contrib.auth import get_user_model

    from agents import services
    from agents.models import AgentInstance, AgentRun, AgentType
    from agents.runtime import services as runtime
    from aiservices.client import post_json
    from projects.models import Project, Workspace
    from tests.runtime.agent_classes import CALLS, CallsAgent

    owner = get_user_model().objects.create_user("bench", password="bench-pass-1")
    project = Project.objects.create(
        workspace=Workspace.objects.create(name="Bench", slug="bench"), owner=owner, name="Bench", slug="bench"
    )
    calls_type = AgentType.objects.create(name="Bench calls", slug="bench-calls", handler=CALLS,
                                          config_schema=CallsAgent.config_schema)
    loop_type = AgentType.objects.create(name="Bench loop", slug="bench-loop")
    services.agent_type_commit_revision(loop_type, template={
        "instructions": {"agents_md": "Look around, then answer."}, "llm": {"model": MODEL},
        "tools": [{"type": "platform", "op": "query_agents", "permission": "allow"},
                  {"type": "platform", "op": "read_context", "permission": "allow"}],
    })

    def calls_agent(name: str, calls: int = 3):
        return services.agent_spawn(project=project, agent_type=calls_type, name=name,
                                    config={"calls": calls, "model": MODEL})

    stub.default = reply("ok", usage=(100, 20))
    warm = calls_agent("warm-up")
    _finished([runtime.run_create(agent=warm, instruction="warm up")[0].pk for _ in range(4)], timeout=60)
    workers.wait_idle()

    # Latency of a 3-call run on idle workers, and the runtime's overhead per step outside the LLM call.
    solo = calls_agent("solo")
    latencies, plain_overheads = [], []
    for n in range(args.samples):
        first = len(stub.requests)
        done = _finished([runtime.run_create(agent=solo, instruction=f"sample {n}")[0].pk], timeout=30)[0]
        latencies.append(_ms(done.finished_at - done.created_at))
        plain_overheads.append(_outside_llm_ms(done, stub.requests[first:first + 3]) / 3)
        workers.wait_idle()  # the agent's hooks (activate, deactivate) are done too

    # The agent loop: per run, query_agents, then read_context (not found: an error result), then an answer.
    looper = services.agent_spawn(project=project, agent_type=loop_type, name="looper")
    loop_overheads = []
    for n in range(args.samples):
        stub.script(reply(tool_calls=[tool_call("query_agents", {"limit": 5})], usage=(300, 20)),
                    reply(tool_calls=[tool_call("read_context", {"name": "notes"})], usage=(400, 20)),
                    reply("Nothing to do.", usage=(500, 10)))
        first = len(stub.requests)
        done = _finished([runtime.run_create(agent=looper, instruction=f"loop {n}")[0].pk], timeout=30)[0]
        assert done.result == {"message": "Nothing to do."}, done.result
        loop_overheads.append(_outside_llm_ms(done, stub.requests[first:first + 3]) / 3)

    # Pause latency: a long run is paused between its calls.
    pauses = []
    for n in range(max(5, args.samples // 3)):
        agent = calls_agent(f"pausable {n}", calls=100_000)
        long_run, _ = runtime.run_create(agent=agent, instruction="long")
        wait_for(lambda r=long_run: AgentRun.objects.get(pk=r.pk).steps_completed >= 3, timeout=30, interval=0.002)
        services.agent_pause(agent)
        requested = agent.transitions.order_by("-created_at").values_list("created_at", flat=True)[0]
        parked = wait_for(lambda r=long_run: (x := AgentRun.objects.get(pk=r.pk)).status == "paused" and x,
                          timeout=30, interval=0.002)
        pauses.append(_ms(parked.updated_at - requested))
        services.agent_terminate(AgentInstance.objects.get(pk=agent.pk))
    workers.wait_idle()

    # Throughput: a burst of runs over several agents.
    agents = [calls_agent(f"fleet {n}") for n in range(args.agents)]
    started = time.perf_counter()
    ids = [runtime.run_create(agent=agents[n % len(agents)], instruction=f"burst {n}")[0].pk for n in range(args.runs)]
    created_in = time.perf_counter() - started
    runs = _finished(ids, timeout=600)
    span = max(r.finished_at for r in runs) - min(r.created_at for r in runs)
    burst_latency = [_ms(r.finished_at - r.created_at) for r in runs]

    # The stub's round trip through the runtime's HTTP client, from this process.
    body = {"model": MODEL, "messages": [{"role": "user", "content": "ping"}]}
    round_trips = []
    for n in range(200):
        begin = time.perf_counter()
        post_json(f"{stub.base_url}/chat/completions", payload=body, headers={}, request_id=f"rtt-{n}",
                  settings_prefix="AGENT_LLM")
        round_trips.append((time.perf_counter() - begin) * 1000)
    stub_ms = [(r.answered_at - r.at) * 1000 for r in stub.requests if r.answered_at]

    version = connection.cursor().connection.info.server_version
    print(f"PostgreSQL {version // 10000}.{version % 10000}; broker {settings.CELERY_BROKER_URL}; "
          f"2 workers (prefork, concurrency 1); {os.cpu_count()} CPUs")
    print(f"throughput:            {args.runs / span.total_seconds():.1f} runs/s ({args.runs} runs of 3 LLM calls over "
          f"{args.agents} agents in {span.total_seconds():.2f} s; created in {created_in:.2f} s; "
          f"latency in the burst: median {statistics.median(burst_latency):.0f} ms)")
    print(f"3-call run latency:    median {statistics.median(latencies):.1f} ms, p95 {_p95(latencies):.1f} ms "
          f"(created_at -> finished_at, idle workers, {len(latencies)} runs)")
    print(f"pause -> paused:       median {statistics.median(pauses):.1f} ms, max {max(pauses):.1f} ms "
          f"({len(pauses)} pauses of a running run)")
    print(f"agent loop overhead:   median {statistics.median(loop_overheads):.2f} ms per step outside the LLM call "
          f"(p95 {_p95(loop_overheads):.2f} ms; a step = an LLM call + a platform tool call; "
          f"{len(loop_overheads)} runs of 3 steps)")
    print(f"plain class overhead:  median {statistics.median(plain_overheads):.2f} ms per step outside the LLM call "
          f"(p95 {_p95(plain_overheads):.2f} ms; a step = an LLM call + a checkpoint)")
    print(f"stub round trip:       median {statistics.median(round_trips):.2f} ms through aiservices.client.post_json "
          f"(p95 {_p95(round_trips):.2f} ms); the stub itself answers in {statistics.median(stub_ms):.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=60, help="runs in the throughput burst (default 60)")
    parser.add_argument("--agents", type=int, default=6, help="agents the burst is spread over (default 6)")
    parser.add_argument("--samples", type=int, default=30, help="runs timed one at a time (default 30)")
    args = parser.parse_args()

    from agents.registry import registry
    from syndarix.celery import app

    registry.load_module(AGENT_MODULE)
    with throwaway_database("bench_runtime"):
        broker = settings.CELERY_BROKER_URL
        purge_stale_queues(broker)
        queue = new_queue_name()
        app.conf.task_default_queue, app.conf.maintenance_queue = queue, f"{queue}-maintenance"
        app.conf.task_always_eager = False
        stub = StubLLM().start()
        env = worker_env(database=settings.DATABASES["default"], broker_url=broker, queue=queue, llm_url=stub.base_url,
                         extra={"AGENT_REGISTRY_MODULES": AGENT_MODULE})
        workers = Workers(app=app, env=env, queue=queue, log_dir=Path(tempfile.mkdtemp(prefix="bench_runtime_")))
        try:
            workers.start_all(timeout=30)
            run(args, stub, workers)
        finally:
            workers.stop()
            stub.stop()
            purge_queue(broker, queue)


if __name__ == "__main__":
    main()
