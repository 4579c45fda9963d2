"""Runs that outlive an LLM upstream outage, on real workers: they wait without a worker (``retry_at``) and continue;
pause, cancel and terminate act at once during the wait; past ``AGENT_LLM_OUTAGE_SECONDS`` (4 s for the test
workers) the run fails with ``upstream_unavailable``; a lost retry message is sent again by the reaper."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from agents import services
from agents.choices import AgentStatus, RunStatus, StepKind
from agents.models import AgentInstance, AgentRun
from agents.runtime import services as runtime

from .harness import reply, status, wait_for
from .support import agent_in, calls_agent, fresh, ledger, run_in

pytestmark = pytest.mark.django_db(transaction=True)

S = AgentStatus
R = RunStatus


def _retrying(run, timeout: float = 10.0) -> AgentRun:
    """Wait until ``run`` waits out an outage (``retry_at`` set); returns it re-read."""
    return wait_for(lambda: (current := fresh(run)).retry_at is not None and current, timeout=timeout,
                    message=lambda: f"run never retried: {fresh(run).status} {fresh(run).error_code}")


def test_a_run_waits_out_an_outage_without_a_worker_and_succeeds(project, stub, user):
    agent = calls_agent(project, calls=2)
    # Each attempt is the client's call and its one quick retry: two failed attempts, then the upstream is back.
    stub.script(status(503), status(503), status(429, Retry_After="0"), status(502), reply("one"), reply("two"))

    run, _ = runtime.run_create(agent=agent, instruction="Outlive")

    waiting = _retrying(run)
    assert waiting.status == R.RUNNING and waiting.worker == "" and waiting.retry_count >= 1
    assert waiting.retry_error and waiting.retry_since is not None and waiting.retry_at > waiting.retry_since
    assert fresh(agent).status == S.WORKING
    client = APIClient()
    client.force_authenticate(user)
    shown = client.get(f"/api/v1/projects/{project.pk}/agents/{agent.pk}/runs/{run.pk}").json()
    assert shown["status"] == "running"
    if shown["retry"] is not None:  # (the next attempt may have started meanwhile)
        assert set(shown["retry"]) == {"next_attempt_at", "attempts", "last_error", "since"}

    done = run_in(run, R.SUCCEEDED)
    assert done.result["message"] == "one | two"
    assert (done.retry_at, done.retry_since, done.retry_count, done.retry_error) == (None, None, 0, "")
    steps = list(done.steps.order_by("index"))
    failed = [s for s in steps if s.error]
    assert [s.error["attempt"] for s in failed] == [1, 2]
    assert all(s.kind == StepKind.LLM_CALL and s.error["code"] == "upstream_unavailable" and s.error["retry_at"]
               for s in failed)
    assert [s.output["message"]["content"] for s in steps if not s.error] == ["one", "two"]
    assert done.attempts == 1 and len(stub.requests) == 6
    assert agent_in(agent, S.IDLE).tasks_completed == 1
    assert [target for _, target, _, _ in ledger(fresh(agent))[1:]] == [S.WORKING, S.IDLE]
    assert client.get(f"/api/v1/projects/{project.pk}/agents/{agent.pk}/runs/{run.pk}").json()["retry"] is None


def test_past_the_outage_window_the_run_fails_with_upstream_unavailable(project, stub):
    agent = calls_agent(project, calls=1)
    stub.default = status(500)

    run, _ = runtime.run_create(agent=agent, instruction="Give up")

    failed = run_in(run, R.FAILED, timeout=20)
    assert failed.error_code == "upstream_unavailable" and "AGENT_LLM_OUTAGE_SECONDS" in failed.error_message
    assert failed.retry_at is None
    steps = list(failed.steps.order_by("index"))
    assert len(steps) >= 2 and steps[-1].error["retry_at"] is None
    assert [s.error["attempt"] for s in steps] == list(range(1, len(steps) + 1))
    assert (steps[-1].created_at - steps[0].created_at).total_seconds() >= 3
    agent = agent_in(agent, S.IDLE)
    assert agent.last_error.startswith(f"run {run.pk} failed: upstream_unavailable: ")


def test_pause_during_the_wait_parks_the_run_at_once_and_resume_continues_it(project, stub, workers):
    agent = calls_agent(project, calls=1)
    stub.default = status(503)
    run, _ = runtime.run_create(agent=agent, instruction="Hold")
    _retrying(run)

    services.agent_pause(fresh(agent), reason="not now")

    parked = fresh(run)  # at once: not at the next attempt
    assert parked.status == R.PAUSED and parked.retry_at is None and parked.retry_count == 0
    calls = len(stub.requests)
    time.sleep(1.5)  # past any next attempt that was due
    assert len(stub.requests) <= calls + 2, "no attempt after the pause (but the one already in flight)"
    assert fresh(run).status == R.PAUSED
    stub.default = reply("back")

    services.agent_resume(fresh(agent))

    assert run_in(run, R.SUCCEEDED).result["message"] == "back"


@pytest.mark.parametrize("stop", ["cancel", "terminate"])
def test_cancel_or_terminate_during_the_wait_acts_at_once(project, stub, workers, stop):
    agent = calls_agent(project, calls=1)
    stub.default = status(503)
    run, _ = runtime.run_create(agent=agent, instruction="Stop")
    _retrying(run)

    if stop == "cancel":
        runtime.run_cancel(fresh(run))
    else:
        services.agent_terminate(fresh(agent))

    stopped = fresh(run)
    assert stopped.status == R.CANCELLED and stopped.retry_at is None and stopped.finished_at is not None
    assert fresh(agent).status == (S.IDLE if stop == "cancel" else S.TERMINATED)
    calls = len(stub.requests)
    time.sleep(1.5)
    assert len(stub.requests) <= calls + 2 and fresh(run).status == R.CANCELLED


def test_the_reaper_leaves_a_waiting_run_alone_and_sends_a_lost_retry_again(project, stub, workers, monkeypatch):
    agent = calls_agent(project, calls=1)
    with monkeypatch.context() as patch:
        patch.setattr(runtime, "_send", lambda *args: None)  # the broker loses every message, the retry's too
        run, _ = runtime.run_create(agent=agent, instruction="Lost")
        claimed = runtime.run_claim(run.pk, worker="gone@nowhere")
        now = timezone.now()
        runtime.run_retry_later(claimed, retry_at=now + timedelta(seconds=30), since=now, failures=1,
                                error="HTTP 503")
    AgentInstance.objects.filter(pk=agent.pk).update(last_heartbeat_at=now - timedelta(minutes=5))

    with override_settings(AGENT_HEARTBEAT_TIMEOUT_SECONDS=1):
        report = runtime.runs_reap_stale()
    assert str(run.pk) not in report.requeued + report.failed + report.retried, "a waiting run holds no worker"
    assert fresh(run).status == R.RUNNING and fresh(run).retry_at is not None

    AgentRun.objects.filter(pk=run.pk).update(retry_at=now - timedelta(seconds=2))  # its next attempt is overdue
    stub.script(reply("found"))
    with override_settings(AGENT_HEARTBEAT_TIMEOUT_SECONDS=1):
        report = runtime.runs_reap_stale()

    assert report.retried == [str(run.pk)] and report.requeued == []
    done = run_in(run, R.SUCCEEDED)
    assert done.result["message"] == "found" and done.attempts == 1 and done.worker in workers.names
