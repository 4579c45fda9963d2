"""Runs executed by real Celery workers (issue 9): the lifecycle, metering, heartbeats, pause, terminate, a
killed worker, budgets, upstream failures, one run at a time per agent, and hooks on a worker."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from agents import counters, services
from agents.choices import AgentStatus, RunStatus, StepKind
from agents.models import AgentInstance, AgentRun
from agents.registry import BaseAgent, registry
from agents.runtime import services as runtime
from agents.runtime.exceptions import RunFinished
from tests.factories import AgentTypeFactory

from .harness import Hold, garbage, reply, status, wait_for
from .support import MODEL, agent_in, calls_agent, fresh, ledger, price_model, run_in, ticks_agent

pytestmark = pytest.mark.django_db(transaction=True)

S = AgentStatus
R = RunStatus


def test_a_run_goes_queued_running_succeeded_metered_and_traced(project, stub, workers):
    price_model()  # 2.5 USD per Mtok in, 10 USD per Mtok out
    agent = calls_agent(project, calls=3)
    first = Hold(reply("one", usage=(1000, 200)))
    stub.script(first, reply("two", usage=(1500, 300)), reply("three", usage=(2000, 400)))

    run, created = runtime.run_create(agent=agent, instruction="Count to three")
    assert created and run.status == R.QUEUED

    first.wait_arrived()
    running = fresh(run)
    assert running.status == R.RUNNING and running.worker in workers.names and running.attempts == 1
    assert fresh(agent).status == S.WORKING
    beat = fresh(agent).last_heartbeat_at
    assert beat is not None
    # The call is in flight: the heartbeat thread keeps stamping (every AGENT_HEARTBEAT_SECONDS = 0.5 s).
    wait_for(lambda: fresh(agent).last_heartbeat_at > beat, timeout=5)
    first.release()

    done = run_in(run, R.SUCCEEDED)
    assert done.result == {"message": "one | two | three", "calls": 3}
    assert done.started_at is not None and done.finished_at >= done.started_at >= done.created_at
    assert done.error_code == ""

    steps = list(done.steps.order_by("index"))
    assert [(s.index, s.kind, s.name) for s in steps] == [(i, StepKind.LLM_CALL, MODEL) for i in range(3)]
    assert [(s.prompt_tokens, s.completion_tokens) for s in steps] == [(1000, 200), (1500, 300), (2000, 400)]
    # cost = prompt × 2.5 / 10⁶ + completion × 10 / 10⁶
    assert [s.cost for s in steps] == [Decimal("0.0045"), Decimal("0.00675"), Decimal("0.009")]
    assert all(s.error is None and s.output["message"]["content"] for s in steps)
    assert done.steps_completed == 3
    assert done.tokens_used == 5400 and done.cost == Decimal("0.02025")

    agent = fresh(agent)
    assert agent.status == S.IDLE
    assert agent.tokens_used == 5400 and agent.cost_incurred == Decimal("0.02025")
    assert agent.tasks_completed == 1
    assert agent.last_heartbeat_at >= done.started_at
    assert ledger(agent)[1:] == [
        (S.IDLE, S.WORKING, f"run {run.pk}: started", run.pk),
        (S.WORKING, S.IDLE, f"run {run.pk}: succeeded", run.pk),
    ]
    # What the upstream received: the model asked for, one call per step, the key as a bearer token.
    bodies = [r.body for r in stub.requests]
    assert [b["model"] for b in bodies] == [MODEL] * 3
    assert [b["messages"][-1]["content"] for b in bodies] == [f"Count to three / step {i}" for i in range(3)]
    assert stub.requests[0].headers["Authorization"] == "Bearer stub-key"
    # X-Request-ID a plain UUID per call (servers check it); the run and its step in headers of their own.
    assert len({str(uuid.UUID(r.headers["X-Request-ID"])) for r in stub.requests}) == 3
    assert [(r.headers["X-Syndarix-Run-ID"], r.headers["X-Syndarix-Step"]) for r in stub.requests] == [
        (str(run.pk), str(i)) for i in range(3)]


def test_a_model_without_a_price_costs_nothing_but_its_tokens_count(project, stub):
    agent = calls_agent(project, calls=1)
    stub.script(reply("ok", usage=(70, 30)))

    run, _ = runtime.run_create(agent=agent, instruction="Go")

    done = run_in(run, R.SUCCEEDED)
    assert (done.tokens_used, done.cost, done.unpriced_tokens) == (100, Decimal("0"), 100)
    assert (fresh(agent).tokens_used, fresh(agent).cost_incurred) == (100, Decimal("0"))
    assert done.steps.get(kind=StepKind.LLM_CALL).output["unpriced"] is True
    metrics = counters.project_metrics(project)
    assert (metrics["total_tokens_used"], metrics["total_unpriced_tokens"]) == (100, 100)


def test_pause_mid_run_parks_it_after_the_call_in_flight_and_resume_continues_without_repeating(
    project, stub, workers
):
    agent = calls_agent(project, calls=3)
    first = Hold(reply("one"))
    stub.script(first)

    run, _ = runtime.run_create(agent=agent, instruction="Work")
    first.wait_arrived()
    services.agent_pause(fresh(agent), reason="hold on")
    first.release()

    paused = run_in(run, R.PAUSED)
    assert paused.checkpoint == {"done": 1, "answers": ["one"]}
    assert paused.error_code == "" and paused.finished_at is None
    assert fresh(agent).status == S.PAUSED
    workers.wait_idle()
    assert len(stub.requests) == 1, "no upstream call after the pause"
    assert fresh(run).status == R.PAUSED

    stub.script(reply("two"), reply("three"))
    services.agent_resume(fresh(agent))

    done = run_in(run, R.SUCCEEDED)
    assert done.result["message"] == "one | two | three"
    assert [r.last_message["content"] for r in stub.requests] == [f"Work / step {i}" for i in range(3)]
    assert done.attempts == 1 and done.steps_completed == 3
    transitions = [(source, target) for source, target, _, _ in ledger(fresh(agent))[1:]]
    assert transitions == [(S.IDLE, S.WORKING), (S.WORKING, S.PAUSED), (S.PAUSED, S.IDLE), (S.IDLE, S.WORKING),
                           (S.WORKING, S.IDLE)]
    assert fresh(agent).status == S.IDLE


def test_terminate_mid_run_cancels_it_and_no_further_call_is_made(project, stub, workers):
    agent = calls_agent(project, calls=3)
    first = Hold(reply("one"))
    stub.script(first)

    run, _ = runtime.run_create(agent=agent, instruction="Work")
    queued, _ = runtime.run_create(agent=agent, instruction="Later")
    first.wait_arrived()
    services.agent_terminate(fresh(agent), reason="enough")

    cancelled = fresh(run)
    assert cancelled.status == R.CANCELLED and cancelled.finished_at is not None
    assert cancelled.error_code == "cancelled"
    assert fresh(queued).status == R.CANCELLED
    first.release()
    workers.wait_idle()  # the worker got its answer and stopped at the next step boundary
    assert len(stub.requests) == 1
    assert fresh(run).status == R.CANCELLED
    assert fresh(agent).status == S.TERMINATED
    # The call in flight completed and was metered; nothing else happened to the run.
    assert [s.kind for s in fresh(run).steps.all()] == [StepKind.LLM_CALL]


def test_cancel_mid_run_stops_that_run_only(project, stub):
    agent = calls_agent(project, calls=2)
    first = Hold(reply("one"))
    stub.script(first, reply("next: one"), reply("next: two"))

    run, _ = runtime.run_create(agent=agent, instruction="First")
    following, _ = runtime.run_create(agent=agent, instruction="Next")
    first.wait_arrived()
    runtime.run_cancel(fresh(run))
    assert fresh(run).status == R.CANCELLED
    first.release()

    done = run_in(following, R.SUCCEEDED)
    assert done.result["message"] == "next: one | next: two"
    assert [r.last_message["content"] for r in stub.requests] == ["First / step 0", "Next / step 0", "Next / step 1"]
    assert fresh(run).status == R.CANCELLED
    with pytest.raises(RunFinished):
        runtime.run_cancel(done)
    assert agent_in(agent, S.IDLE).tasks_completed == 1


def _kill_mid_call(workers, stub, project, calls: int = 2):
    """Start a run, kill the worker making its first call (SIGKILL to its process group), return
    ``(agent, run, killed worker)``."""
    agent = calls_agent(project, calls=calls)
    first = Hold(reply("lost"))
    stub.script(first)
    run, _ = runtime.run_create(agent=agent, instruction="Survive")
    first.wait_arrived()
    holder = workers.get(fresh(run).worker)
    workers.kill(holder)
    first.release()
    assert fresh(run).status == R.RUNNING and fresh(agent).status == S.WORKING
    return agent, run, holder


def _reap_until(run, outcome: str) -> None:
    """Run the reaper (heartbeat timeout 1 s) until it reports ``run`` under ``outcome``."""
    with override_settings(AGENT_HEARTBEAT_TIMEOUT_SECONDS=1):
        wait_for(lambda: str(run.pk) in getattr(runtime.runs_reap_stale(), outcome), timeout=10, interval=0.2)


def test_a_run_whose_worker_is_killed_is_retried_on_the_other_worker(workers, stub, project):
    agent, run, killed = _kill_mid_call(workers, stub, project)
    stub.script(reply("one"), reply("two"))

    _reap_until(run, "requeued")

    done = run_in(run, R.SUCCEEDED)
    assert done.attempts == 2
    assert done.worker == workers.other_than(killed.name).name
    assert done.result["message"] == "one | two"
    agent = agent_in(agent, S.IDLE)
    reasons = [(target, reason) for _, target, reason, _ in ledger(agent)]
    assert (S.IDLE, f"run {run.pk}: heartbeat lost (worker {killed.name}); queued again") in reasons
    assert (S.WORKING, f"run {run.pk}: started again (attempt 2)") in reasons
    # The call that was in flight is made again (it was never checkpointed); nothing else is repeated.
    assert [r.last_message["content"] for r in stub.requests] == ["Survive / step 0"] * 2 + ["Survive / step 1"]


def test_a_run_whose_worker_is_killed_fails_with_heartbeat_lost_when_its_attempts_are_spent(workers, stub, project):
    agent, run, killed = _kill_mid_call(workers, stub, project)

    with override_settings(AGENT_RUN_MAX_ATTEMPTS=1):
        _reap_until(run, "failed")

    failed = fresh(run)
    assert failed.status == R.FAILED and failed.error_code == "heartbeat_lost"
    assert killed.name in failed.error_message and failed.finished_at is not None
    agent = fresh(agent)
    assert agent.status == S.IDLE
    assert agent.last_error.startswith(f"run {run.pk} failed: heartbeat_lost")
    assert ledger(agent)[-1][1:3] == (S.IDLE, f"run {run.pk}: failed (heartbeat_lost)")
    assert len(stub.requests) == 1


def test_a_worker_frozen_past_the_heartbeat_timeout_leaves_the_run_to_the_worker_that_took_it_over(
    workers, stub, project
):
    """A worker that stopped beating (SIGSTOP: a long VM or GC pause) while its call was in flight loses the run
    to the reaper; when it comes back it records the call it had made, then stops at its next step boundary:
    no further upstream call, no change to the run the other worker is executing."""
    agent = calls_agent(project, calls=2)
    first = Hold(reply("stale"))
    stub.script(first)
    run, _ = runtime.run_create(agent=agent, instruction="Freeze")
    first.wait_arrived()
    frozen = workers.get(fresh(run).worker)
    workers.freeze(frozen)
    try:
        first.release()  # the answer waits in the frozen worker's socket
        second = Hold(reply("one"))
        stub.script(second)
        _reap_until(run, "requeued")
        second.wait_arrived()  # the other worker took the run over and is making its first call
        workers.thaw(frozen)
        wait_for(lambda: fresh(run).steps.filter(output__message__content="stale").exists(), timeout=10)
        time.sleep(0.5)  # time for the thawed worker to reach its next step boundary
        assert len(stub.requests) == 2, "the thawed worker made no further call"
        assert fresh(run).status == R.RUNNING and fresh(run).worker != frozen.name
        stub.script(reply("two"))
        second.release()
    finally:
        workers.thaw(frozen)

    done = run_in(run, R.SUCCEEDED)
    assert (done.attempts, done.worker) == (2, workers.other_than(frozen.name).name)
    assert done.result["message"] == "one | two"
    assert done.checkpoint == {"done": 2, "answers": ["one", "two"]}
    assert [r.last_message["content"] for r in stub.requests] == ["Freeze / step 0"] * 2 + ["Freeze / step 1"]
    assert agent_in(agent, S.IDLE).tasks_completed == 1


def test_pause_and_resume_during_one_call_lets_the_run_go_on(project, stub):
    agent = calls_agent(project, calls=2)
    first = Hold(reply("one"))
    stub.script(first, reply("two"))

    run, _ = runtime.run_create(agent=agent, instruction="Blink")
    first.wait_arrived()
    services.agent_pause(fresh(agent))
    services.agent_resume(fresh(agent))
    first.release()

    done = run_in(run, R.SUCCEEDED)
    assert done.result["message"] == "one | two"
    assert [r.last_message["content"] for r in stub.requests] == ["Blink / step 0", "Blink / step 1"]
    assert agent_in(agent, S.IDLE).tasks_completed == 1


def test_an_agent_over_budget_before_its_run_starts_pauses_without_calling_the_model(project, stub):
    agent = calls_agent(project, calls=1)
    services.agent_record_usage(agent, tokens=500)
    agent = services.agent_update(fresh(agent), data={"max_tokens": 500})

    run, _ = runtime.run_create(agent=agent, instruction="Spend")

    paused = run_in(run, R.PAUSED)
    assert paused.error_code == "budget_exceeded" and paused.started_at is None
    assert agent_in(agent, S.PAUSED)
    assert ledger(fresh(agent))[-1][2] == f"run {run.pk}: budget: tokens: 500 used of a budget of 500"
    assert stub.requests == []

    stub.script(reply("at last"))
    services.agent_update(fresh(agent), data={"max_tokens": 1000})
    services.agent_resume(fresh(agent))

    done = run_in(run, R.SUCCEEDED)
    assert done.result["message"] == "at last"
    assert done.attempts == 1 and done.started_at is not None


def test_a_small_token_budget_pauses_the_agent_and_raising_it_lets_the_run_continue(project, stub, workers):
    agent = calls_agent(project, calls=3)
    agent = services.agent_update(agent, data={"max_tokens": 150})
    stub.script(reply("one", usage=(60, 20)), reply("two", usage=(60, 20)))

    run, _ = runtime.run_create(agent=agent, instruction="Spend")

    paused = run_in(run, R.PAUSED)
    assert paused.error_code == "budget_exceeded"
    assert paused.error_message == "tokens: 160 used of a budget of 150"
    agent = fresh(agent)
    assert agent.status == S.PAUSED and agent.termination_reason == ""
    source, target, reason, run_id = ledger(agent)[-1]
    assert (source, target, run_id) == (S.WORKING, S.PAUSED, run.pk)
    assert reason.startswith(f"run {run.pk}: budget")
    workers.wait_idle()
    assert len(stub.requests) == 2, "no call after the budget ran out"

    # Resuming without raising the budget parks the run again at once, without calling the model.
    services.agent_resume(agent)
    wait_for(lambda: fresh(agent).status == S.PAUSED and fresh(run).status == R.PAUSED, timeout=10)
    assert len(stub.requests) == 2

    stub.script(reply("three", usage=(60, 20)))
    services.agent_update(fresh(agent), data={"max_tokens": 10_000})
    services.agent_resume(fresh(agent))

    done = run_in(run, R.SUCCEEDED)
    assert done.result["message"] == "one | two | three" and done.error_code == ""
    assert done.tokens_used == 240 and fresh(agent).tokens_used == 240
    assert fresh(agent).status == S.IDLE


def test_a_cost_budget_pauses_the_agent_too(project, stub):
    price_model()
    agent = calls_agent(project, calls=2, max_cost_usd=Decimal("0.001"))  # the type's default budget
    stub.script(reply("expensive", usage=(1000, 100)))  # 0.0025 + 0.001 = 0.0035 USD

    run, _ = runtime.run_create(agent=agent, instruction="Spend")

    paused = run_in(run, R.PAUSED)
    assert paused.error_code == "budget_exceeded" and paused.error_message.startswith("cost: 0.003500 USD")
    assert fresh(agent).status == S.PAUSED
    assert len(stub.requests) == 1


@pytest.mark.parametrize(
    ("script", "code", "requests"),
    [
        pytest.param([garbage()], "upstream_error", 1, id="garbage"),
        pytest.param([status(400)], "upstream_error", 1, id="400-not-retried"),
    ],
)
def test_an_upstream_refusal_fails_the_run_at_once_with_its_code_and_the_agent_idle_with_last_error(
    project, stub, script, code, requests
):
    agent = calls_agent(project, calls=2)
    stub.script(*script)

    run, _ = runtime.run_create(agent=agent, instruction="Try")

    failed = run_in(run, R.FAILED)
    assert failed.error_code == code and failed.error_message and failed.finished_at is not None
    step = failed.steps.get()
    assert step.kind == StepKind.LLM_CALL and step.error["code"] == code
    agent = agent_in(agent, S.IDLE)
    assert agent.last_error.startswith(f"run {run.pk} failed: {code}: ")
    assert agent.tasks_completed == 0
    assert ledger(agent)[-1][1:3] == (S.IDLE, f"run {run.pk}: failed ({code})")
    assert len(stub.requests) == requests


def test_a_rate_limited_call_is_retried_and_succeeds(project, stub):
    agent = calls_agent(project, calls=1)
    stub.script(status(429, Retry_After="0"), reply("fine", usage=(5, 5)))

    run, _ = runtime.run_create(agent=agent, instruction="Try")

    done = run_in(run, R.SUCCEEDED)
    assert done.result["message"] == "fine"
    assert done.steps.get().output["attempts"] == 2
    assert len(stub.requests) == 2


def test_a_run_whose_message_was_lost_is_sent_again_by_the_reaper(project, stub, workers, monkeypatch):
    agent = calls_agent(project, calls=1)
    with monkeypatch.context() as patch:
        patch.setattr(runtime, "_send", lambda run_id, task_id: None)  # the broker lost the message
        run, _ = runtime.run_create(agent=agent, instruction="Lost")
    workers.wait_idle()
    assert fresh(run).status == R.QUEUED and stub.requests == []
    stub.script(reply("found"))

    report = runtime.runs_reap_stale()

    assert report.dispatched == [str(run.pk)]
    assert run_in(run, R.SUCCEEDED).result["message"] == "found"


def test_two_runs_of_one_agent_never_run_at_once_on_two_workers(project, stub):
    agent = calls_agent(project, calls=2)
    first = Hold(reply("a1"))
    stub.script(first, reply("a2"), reply("b1"), reply("b2"))

    run_a, _ = runtime.run_create(agent=agent, instruction="A")
    run_b, _ = runtime.run_create(agent=agent, instruction="B")
    first.wait_arrived()
    time.sleep(0.5)  # the other worker is free: it must still not start B
    assert fresh(run_b).status == R.QUEUED
    assert len(stub.requests) == 1
    first.release()

    a, b = run_in(run_a, R.SUCCEEDED), run_in(run_b, R.SUCCEEDED)
    assert b.started_at >= a.finished_at
    assert [r.last_message["content"] for r in stub.requests] == ["A / step 0", "A / step 1", "B / step 0",
                                                                   "B / step 1"]
    assert [(target, run_id) for _, target, _, run_id in ledger(fresh(agent))[1:]] == [
        (S.WORKING, a.pk), (S.IDLE, a.pk), (S.WORKING, b.pk), (S.IDLE, b.pk),
    ]
    assert fresh(agent).tasks_completed == 2


def test_recording_a_step_never_deadlocks_with_a_service_that_locks_the_agent_then_the_run(project, stub):
    """Every runtime service locks the agent row, then the run (a claim, a cancel, the reaper). The worker recording
    a step must take them in the same order, else each waits for the other."""
    agent = calls_agent(project, calls=1)
    first = Hold(reply("one"))
    stub.script(first)
    run, _ = runtime.run_create(agent=agent, instruction="Race")
    first.wait_arrived()

    with transaction.atomic():
        AgentInstance.objects.select_for_update().get(pk=agent.pk)
        first.release()
        time.sleep(0.5)  # the worker has its answer and records the step meanwhile
        locked = AgentRun.objects.select_for_update().get(pk=run.pk)
        assert locked.status == R.RUNNING

    assert run_in(run, R.SUCCEEDED).result["message"] == "one"


def test_a_burst_of_runs_for_a_few_agents_all_succeed_each_agents_in_order(project, stub):
    stub.default = reply("ok")
    agents = [calls_agent(project, calls=2, name=f"burst-{n}") for n in range(3)]

    runs = [runtime.run_create(agent=agents[n % 3], instruction=f"run {n}")[0] for n in range(12)]

    done = [run_in(run, R.SUCCEEDED, timeout=30) for run in runs]
    for agent in agents:
        mine = [r for r in done if r.agent_id == agent.pk]
        assert [r.pk for r in sorted(mine, key=lambda r: r.started_at)] == [r.pk for r in mine]
        assert all(later.started_at >= earlier.finished_at for earlier, later in zip(mine, mine[1:], strict=False))
        assert fresh(agent).tasks_completed == 4
    assert len(stub.requests) == 24


def test_queued_runs_of_different_agents_run_side_by_side(project, stub):
    one, two = calls_agent(project, calls=1, name="one"), calls_agent(project, calls=1, name="two")
    holds = [Hold(reply("x")), Hold(reply("y"))]
    stub.script(*holds)

    runs = [runtime.run_create(agent=agent, instruction="Go")[0] for agent in (one, two)]
    for hold in holds:
        hold.wait_arrived()  # both calls in flight at once: one per worker
    assert len({fresh(run).worker for run in runs}) == 2
    for hold in holds:
        hold.release()
    for run in runs:
        run_in(run, R.SUCCEEDED)


def test_an_agent_class_that_raises_fails_its_run_and_the_worker_carries_on(project, stub):
    agent = calls_agent(project, calls=3, config={"fail_at": 1})
    stub.script(reply("one"))

    run, _ = runtime.run_create(agent=agent, instruction="Crash")

    failed = run_in(run, R.FAILED)
    assert (failed.error_code, failed.error_message) == ("agent_error", "RuntimeError: boom at call 1")
    assert failed.steps.count() == 1
    agent = agent_in(agent, S.IDLE)
    assert agent.last_error == f"run {run.pk} failed: agent_error: RuntimeError: boom at call 1"
    healthy = calls_agent(project, calls=1, name="healthy")
    stub.script(reply("fine"))
    assert run_in(runtime.run_create(agent=healthy, instruction="Go")[0], R.SUCCEEDED).result["message"] == "fine"


def test_a_class_the_workers_do_not_know_fails_its_run_as_not_runnable(project, stub):
    class OnlyHere(BaseAgent):  # registered in this process, not in the workers' AGENT_REGISTRY_MODULES
        slug = "rt-only-here"
        name = "Registered in the test process only"

        def run(self, ctx):
            return "never"

    registry.register(OnlyHere)
    try:
        agent = services.agent_spawn(project=project, agent_type=AgentTypeFactory(handler=OnlyHere.slug), name="x")
        run, _ = runtime.run_create(agent=agent, instruction="Go")

        failed = run_in(run, R.FAILED)
        assert failed.error_code == "not_runnable" and "rt-only-here" in failed.error_message
        assert agent_in(agent, S.IDLE)
        assert stub.requests == []
    finally:
        registry.unregister(OnlyHere.slug)


def test_a_long_loop_asking_should_stop_is_paused_resumed_and_terminated_at_a_tick(project, workers):
    agent = ticks_agent(project, ticks=400, seconds=0.02)
    run, _ = runtime.run_create(agent=agent, instruction="Tick")
    wait_for(lambda: (fresh(run).checkpoint or 0) >= 3)

    services.agent_pause(fresh(agent))

    paused = run_in(run, R.PAUSED)
    ticks = paused.checkpoint
    workers.wait_idle()
    assert fresh(run).checkpoint == ticks, "no tick after the pause"
    services.agent_resume(fresh(agent))
    wait_for(lambda: fresh(run).status == R.RUNNING and fresh(run).checkpoint > ticks)
    services.agent_terminate(fresh(agent))
    cancelled = fresh(run)
    assert cancelled.status == R.CANCELLED
    workers.wait_idle()
    assert fresh(run).checkpoint <= cancelled.checkpoint + 1  # at most the tick in progress


def test_a_short_loop_asking_should_stop_finishes(project):
    agent = ticks_agent(project, ticks=3, seconds=0.01)
    run, _ = runtime.run_create(agent=agent, instruction="Tick")
    assert run_in(run, R.SUCCEEDED).result == {"message": "3 ticks"}


def test_the_hooks_of_a_built_in_agent_run_on_a_worker(project):
    from agents.registry.builtin import BuilderAgent

    builder = AgentTypeFactory(handler="builder", config_schema=BuilderAgent.config_schema)

    agent = services.agent_spawn(project=project, agent_type=builder, name="bob", config={"language": "go"})

    memory = wait_for(lambda: fresh(agent).short_term_memory, timeout=15)
    assert memory["agent_class"] == "builder"
    assert memory["config"]["language"] == "go"
    assert memory["build"]["toolchain"] == {"language": "go", "command": "make build"}
    assert fresh(agent).hooks_ran_until is not None


def test_the_heartbeat_is_old_only_when_no_worker_is_alive(project, stub):
    """The reaper leaves a run whose worker still beats alone, however long its call takes."""
    agent = calls_agent(project, calls=1)
    first = Hold(reply("slow"))
    stub.script(first)
    run, _ = runtime.run_create(agent=agent, instruction="Slow")
    first.wait_arrived()
    time.sleep(1.2)
    with override_settings(AGENT_HEARTBEAT_TIMEOUT_SECONDS=1):
        report = runtime.runs_reap_stale()
    assert str(run.pk) not in report.requeued + report.failed
    assert fresh(agent).last_heartbeat_at > timezone.now() - timedelta(seconds=1)
    first.release()
    run_in(run, R.SUCCEEDED)
