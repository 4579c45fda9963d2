"""The Procfile's processes on real Redis and PostgreSQL: the ``worker`` line (the threads pool) holds many runs in one
process on a bounded connection pool; the ``beat`` line serves the maintenance queue while the run queue is full;
a worker that starts again re-queues the runs it held at once; tool arguments the database cannot hold are an
error the model reads in the loop (over MCP: ``tests/aiservices/test_mcp.py``)."""

from __future__ import annotations

import json
import socket
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from agents.choices import AgentStatus, RunStatus, StepKind
from agents.models import AgentInstance
from agents.runtime import services as runtime
from syndarix.celery import app as celery_app

from .harness import (
    HarnessError,
    Hold,
    ProcfileProcess,
    maintenance_queue,
    new_queue_name,
    purge_queue,
    reply,
    tool_call,
    wait_for,
    worker_env,
)
from .support import agent_in, calls_agent, fresh, loop_agent, platform_tool, run_in

pytestmark = pytest.mark.django_db(transaction=True)

S = AgentStatus
R = RunStatus

#: Threads of the box's worker, and the connections its pool may open.
BOX_CONCURRENCY = 6
BOX_POOL_MAX = 2
#: Runs of the box's worker that execute at once (``AGENT_WORKER_ACTIVE_RUNS``, waiting for a slot as long as it
#: takes): one, so runs can all wait on their LLM at once only by giving their slot back meanwhile.
BOX_SLOTS = 1
BOX_APP = "syndarix-test-box"


@pytest.fixture(scope="module")
def box(django_db_setup, stub, tmp_path_factory):
    """The Procfile's ``worker`` (``BOX_CONCURRENCY`` threads, ``BOX_SLOTS`` slot, at most ``BOX_POOL_MAX``
    connections) and
    ``beat`` (the maintenance queue and the periodic reaper) lines, on a queue pair of their own."""
    queue = new_queue_name()
    env = worker_env(
        database=settings.DATABASES["default"], broker_url=settings.CELERY_BROKER_URL, queue=queue,
        llm_url=stub.base_url,
        extra={"AGENT_REGISTRY_MODULES": "tests.runtime.agent_classes", "REDIS_URL": settings.REDIS_URL,
               "WORKER_CONCURRENCY": str(BOX_CONCURRENCY), "DATABASE_POOL_MAX_SIZE": str(BOX_POOL_MAX),
               "PORT": "7", "AGENT_LLM_READ_TIMEOUT": "60", "AGENT_WORKER_ACTIVE_RUNS": str(BOX_SLOTS),
               "AGENT_WORKER_ACTIVE_RUNS_WAIT_SECONDS": "600",
               "CELERY_BEAT_SCHEDULE_FILE": str(tmp_path_factory.mktemp("beat") / "schedule")},
    )
    log_dir = tmp_path_factory.mktemp("box")
    processes = {name: ProcfileProcess(name, env={**env, "PGAPPNAME": f"{BOX_APP}-{name}"},
                                       log_path=log_dir / f"{name}.log") for name in ("worker", "beat")}
    try:
        for process in processes.values():
            process.start()
        for process in processes.values():
            process.wait_logged("ready.")
    except HarnessError as exc:
        for process in processes.values():
            process.stop()
        pytest.fail(str(exc), pytrace=False)
    processes["queue"] = queue
    yield processes
    for name in ("worker", "beat"):
        processes[name].stop()
    purge_queue(settings.CELERY_BROKER_URL, queue)


@pytest.fixture
def on_box(box):
    """Runs created in the test go to the box's queues."""
    previous = celery_app.conf.task_default_queue, celery_app.conf.maintenance_queue
    celery_app.conf.task_default_queue = box["queue"]
    celery_app.conf.maintenance_queue = maintenance_queue(box["queue"])
    yield box
    celery_app.conf.task_default_queue, celery_app.conf.maintenance_queue = previous


def worker_connections() -> int:
    """The box worker's open PostgreSQL connections."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [f"{BOX_APP}-worker"])
        return cursor.fetchone()[0]


def test_one_worker_process_holds_many_runs_at_once_on_a_bounded_pool(project, stub, on_box):
    agents = [calls_agent(project, calls=2, name=f"fleet {n}") for n in range(BOX_CONCURRENCY)]
    holds = [Hold(reply(f"first {n}")) for n in range(BOX_CONCURRENCY)]
    stub.script(*holds)

    runs = [runtime.run_create(agent=agent, instruction=f"Go {n}")[0] for n, agent in enumerate(agents)]
    for hold in holds:
        hold.wait_arrived()  # every run waits on its LLM at once, in one process, with one slot

    assert stub.in_flight == BOX_CONCURRENCY
    workers = {fresh(run).worker for run in runs}
    assert workers == {f"worker-7@{socket.gethostname()}"}
    # Waiting on their LLM, the runs hold no connection; the process's pool never passes its bound.
    assert worker_connections() <= BOX_POOL_MAX
    beats = {agent.pk: fresh(agent).last_heartbeat_at for agent in agents}
    wait_for(lambda: all(fresh(agent).last_heartbeat_at > beats[agent.pk] for agent in agents), timeout=5)
    stub.default = reply("second")
    for hold in holds:
        hold.release()

    done = [run_in(run, R.SUCCEEDED, timeout=30) for run in runs]
    assert sorted(run.result["message"] for run in done) == sorted(f"first {n} | second" for n in range(len(runs)))
    assert 1 <= worker_connections() <= BOX_POOL_MAX


def test_the_maintenance_queue_is_served_while_the_run_queue_is_full(project, stub, on_box, monkeypatch):
    holds = [Hold(reply("busy")) for _ in range(BOX_CONCURRENCY)]
    stub.script(*holds)
    busy = [runtime.run_create(agent=calls_agent(project, calls=1, name=f"busy {n}"), instruction="Hold")[0]
            for n in range(BOX_CONCURRENCY + 4)]  # every thread held, four more runs queued behind them
    for hold in holds:
        hold.wait_arrived()
    # A run whose worker died: claimed by a worker that is gone, its heartbeat five minutes old.
    orphan_agent = calls_agent(project, calls=1, name="orphan")
    with monkeypatch.context() as patch:
        patch.setattr(runtime, "_send", lambda *args: None)
        orphan, _ = runtime.run_create(agent=orphan_agent, instruction="Orphan")
        runtime.run_claim(orphan.pk, worker="gone@nowhere")
    AgentInstance.objects.filter(pk=orphan_agent.pk).update(last_heartbeat_at=timezone.now() - timedelta(minutes=5))

    # The beat process's reaper (every AGENT_HEARTBEAT_SECONDS, on the maintenance queue) recovers it meanwhile.
    requeued = wait_for(lambda: (r := fresh(orphan)).status == R.QUEUED and r, timeout=15)
    assert "heartbeat lost (worker gone@nowhere)" in requeued.error_message
    assert agent_in(orphan_agent, S.IDLE)
    assert all(fresh(run).status in (R.RUNNING, R.QUEUED) for run in busy)
    stub.default = reply("done")
    for hold in holds:
        hold.release()
    assert run_in(orphan, R.SUCCEEDED, timeout=30).attempts == 2


def test_a_worker_that_starts_again_requeues_the_runs_it_held_at_once(project, stub, workers):
    agent = calls_agent(project, calls=2)
    first = Hold(reply("lost"))
    stub.script(first)
    run, _ = runtime.run_create(agent=agent, instruction="Restart")
    first.wait_arrived()
    holder = workers.get(fresh(run).worker)
    workers.kill(holder)
    first.release()
    assert fresh(run).status == R.RUNNING
    stub.script(reply("one"), reply("two"))

    workers.ensure_running()  # the same node name starts again: worker_ready re-queues its run, no reaper involved

    done = run_in(run, R.SUCCEEDED, timeout=20)
    assert done.attempts == 2 and done.result["message"] == "one | two"
    reasons = list(agent.transitions.values_list("reason", flat=True))
    assert f"run {run.pk}: worker {holder.name} restarted; queued again" in reasons


def test_tool_arguments_the_database_cannot_hold_are_an_error_the_model_reads(project, stub):
    agent = loop_agent(project, [platform_tool("read_context", "allow"), platform_tool("query_agents", "allow")])
    stub.script(
        reply(tool_calls=[tool_call("read_context", '{"name": "no\\u0000tes"}')]),
        reply(tool_calls=[tool_call("query_agents", {"limit": 10**30})]),
        reply(tool_calls=[tool_call("read_context", {"name": "x" * 100_000})]),
        reply("I give up."),
    )

    run, _ = runtime.run_create(agent=agent, instruction="Break the database")

    done = run_in(run, R.SUCCEEDED)
    tools = list(done.steps.filter(kind=StepKind.TOOL_CALL).order_by("index"))
    assert [step.error["code"] for step in tools[:2]] == ["invalid_arguments", "invalid_arguments"]
    assert "NUL" in tools[0].error["message"] and "range" in tools[1].error["message"]
    assert tools[2].error is not None  # too long for a name: refused, never a failed run
    shown = [json.loads(r.last_message["content"]) for r in stub.requests[1:3]]
    assert [s["error"]["code"] for s in shown[:2]] == ["invalid_arguments", "invalid_arguments"]
    assert agent_in(agent, S.IDLE).last_error == ""
