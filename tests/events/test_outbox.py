"""The transactional outbox (issue 21): an event per change, in the change's transaction, read back in delivery
order with no gap and no duplicate, even when transactions commit out of id order (real concurrent PostgreSQL)."""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from agents import events, services
from agents.events import Event, EventType, events_after, events_prune
from agents.runtime import executor
from agents.runtime import services as runtime
from tests.factories import ProjectFactory, UserFactory
from tests.runtime.harness import reply, tool_call
from tests.runtime.support import fresh, loop_agent, platform_tool, price_model
from tests.threads import failures, run_concurrently

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def in_process(stub, monkeypatch):
    """Runs execute here (``executor.execute_run``), their Celery messages dropped, the LLM calls going to the stub."""
    monkeypatch.setattr(runtime, "_send", lambda *args: None)
    with override_settings(AGENT_LLM_PROVIDER="openai", AGENT_LLM_API_URL=stub.base_url, AGENT_LLM_API_KEY="k"):
        yield


def _types(**filters) -> list[str]:
    return [event.type for event in events_after(None, **filters)]


def test_a_run_emits_its_events_in_order_with_their_data(project, stub, in_process):
    price_model()
    agent = loop_agent(project, [platform_tool("read_context", "allow")])
    stub.script(reply(tool_calls=[tool_call("read_context", {"name": "notes"})]), reply("done"))
    run, _ = runtime.run_create(agent=agent, instruction="go")
    assert executor.execute_run(run.pk, worker="here") == "succeeded"

    assert _types(run_id=run.pk) == [
        "run.queued", "run.started", "agent.transitioned", "run.step", "run.step", "run.step", "run.step",
        "run.succeeded", "agent.transitioned",
    ]
    by_type = {}
    for event in events_after(None, run_id=run.pk):
        by_type.setdefault(event.type, []).append(event)
        assert (event.project_id, event.workspace_id) == (project.pk, project.workspace_id)
        assert event.data["run_id"] == str(run.pk) and event.data["agent_id"] == str(agent.pk)
    steps = by_type["run.step"]
    assert [(step.data["index"], step.data["kind"]) for step in steps] == [
        (0, "message"), (1, "llm_call"), (2, "tool_call"), (3, "llm_call")]
    first = steps[1].data
    assert first["kind"] == "llm_call" and first["prompt_tokens"] == 10 and first["completion_tokens"] == 5
    assert first["cost"] == "0.000075" and isinstance(first["duration_ms"], int)
    assert first["step_id"] == str(fresh(run).steps.get(index=1).pk)
    assert "input" not in first and "output" not in first
    assert steps[2].data["name"] == "read_context"
    done = by_type["run.succeeded"][0].data
    assert done["status"] == "succeeded" and done["steps_completed"] == 4 and done["finished_at"]
    moves = [(e.data["from"], e.data["to"], e.data["reason"]) for e in by_type["agent.transitioned"]]
    assert moves == [("idle", "working", f"run {run.pk}: started"), ("working", "idle", f"run {run.pk}: succeeded")]


def test_an_approval_emits_request_created_and_decided(project, stub, in_process):
    person = UserFactory(username="ada")
    agent = loop_agent(project, [platform_tool("write_context", "ask")])
    stub.script(reply(tool_calls=[tool_call("write_context", {"name": "plan", "data": {}})]))
    run, _ = runtime.run_create(agent=agent, instruction="Plan")
    executor.execute_run(run.pk, worker="here")
    request = fresh(run).requests.get()
    stub.script(reply("Understood."))
    runtime.run_request_decide(request, decision="deny", reason="not now", actor=person)
    executor.execute_run(run.pk, worker="here")

    types = _types(run_id=run.pk)
    assert types[types.index("request.created"):] == [
        "request.created", "agent.transitioned", "run.waiting", "request.decided", "run.step", "run.started",
        "agent.transitioned", "run.step", "run.step", "run.succeeded", "agent.transitioned",
    ]
    created, decided = (events_after(None, run_id=run.pk, types=[t])[0]
                        for t in ("request.created", "request.decided"))
    assert created.data["request_id"] == str(request.pk) and created.data["status"] == "pending"
    assert created.data["kind"] == "approval" and created.data["tool_name"] == "write_context"
    assert decided.data["status"] == "denied" and decided.data["decided_by"] == "ada"
    assert decided.data["reason"] == "not now"


def test_a_cancel_decides_pending_requests_and_an_agent_transition_names_its_actor(project, agent):
    person = UserFactory(username="grace")
    services.agent_pause(agent, actor=person, reason="lunch")
    moved = events_after(None, project_id=project.pk, types=[EventType.AGENT_TRANSITIONED])[-1]
    assert moved.data == {
        "agent_id": str(agent.pk), "transition_id": moved.data["transition_id"], "from": "idle", "to": "paused",
        "actor": "grace", "actor_agent_id": None, "reason": "lunch", "run_id": None,
    }
    assert moved.run_id is None and moved.agent_id == agent.pk


def test_a_rolled_back_change_leaves_no_event(project, agent):
    before = Event.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        services.agent_pause(agent, reason="never")
        assert Event.objects.count() == before + 1
        raise RuntimeError("roll back")
    assert Event.objects.count() == before
    with pytest.raises(ValueError):
        events.emit("run.exploded", project=project, data={})


def test_filters_limit_and_resuming_after_an_event(project, agent):
    other = ProjectFactory(workspace=project.workspace)
    mine = [events.emit(EventType.RUN_QUEUED, project=project, data={"n": n}) for n in range(5)]
    theirs = events.emit(EventType.RUN_QUEUED, project=other, data={"n": 99})
    Event.objects.exclude(pk__in=[e.id for e in [*mine, theirs]]).delete()  # the agent's spawn

    assert [e.id for e in events_after(None, project_id=project.pk)] == [e.id for e in mine]
    assert [e.id for e in events_after(mine[1].id, project_id=project.pk, limit=2)] == [mine[2].id, mine[3].id]
    assert [e.id for e in events_after(None, project_id=project.pk, cursor=mine[3].cursor)] == [mine[4].id]
    assert [e.id for e in events_after(None, workspace_id=project.workspace_id)][-1] == theirs.id
    assert events_after(None, project_id=project.pk, types=["run.failed"]) == []
    assert [e.id for e in events_after(theirs.id)] == []
    # A pruned (unknown) id continues with the events of higher id.
    assert [e.id for e in events_after(mine[2].id + 10**9, project_id=project.pk)] == []
    assert events_after(None, cursor=events.head()) == []


def test_prune_deletes_only_events_past_retention(project):
    old = events.emit(EventType.RUN_QUEUED, project=project, data={})
    new = events.emit(EventType.RUN_QUEUED, project=project, data={})
    Event.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=8))
    with override_settings(EVENTS_RETENTION_DAYS=7):
        assert events_prune() == 1
    assert list(Event.objects.values_list("id", flat=True)) == [new.id]


def test_prune_runs_on_the_maintenance_queue_every_hour(settings):
    from agents.runtime.tasks import MAINTENANCE_TASKS

    assert settings.CELERY_BEAT_SCHEDULE["prune-events"]["task"] == "agents.events.tasks.prune_events"
    assert "agents.events.tasks.prune_events" in MAINTENANCE_TASKS


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_an_event_committed_before_an_older_one_waits_for_it(project):
    """Two transactions commit out of id order: the reader never delivers the later id first and moves past the
    earlier one."""
    first_inserted, second_committed, release = threading.Event(), threading.Event(), threading.Event()
    ids: dict[str, int] = {}

    def older() -> None:
        with transaction.atomic():
            ids["older"] = events.emit(EventType.RUN_QUEUED, project=project.pk, data={"who": "older"}).id
            first_inserted.set()
            assert release.wait(30)
        connection.close()

    def newer() -> None:
        assert first_inserted.wait(30)
        with transaction.atomic():
            ids["newer"] = events.emit(EventType.RUN_QUEUED, project=project.pk, data={"who": "newer"}).id
        second_committed.set()
        connection.close()

    threads = [threading.Thread(target=older), threading.Thread(target=newer)]
    for thread in threads:
        thread.start()
    try:
        assert second_committed.wait(30)
        assert ids["older"] < ids["newer"]
        # The newer event is committed and visible to a naive reader by id ...
        assert Event.objects.filter(pk=ids["newer"]).exists()
        assert not Event.objects.filter(pk=ids["older"]).exists()
        # ... but not delivered: an older transaction still runs.
        assert events_after(None, project_id=project.pk) == []
    finally:
        release.set()
        for thread in threads:
            thread.join(30)
    assert [e.id for e in events_after(None, project_id=project.pk)] == [ids["older"], ids["newer"]]


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_a_tailing_reader_never_skips_nor_repeats_an_event_under_concurrent_writers(project):
    """Eight writers commit events in transactions of random length while a reader tails the outbox with its
    cursor: it ends with every committed event exactly once, and no rolled-back one."""
    stop = threading.Event()
    delivered: list[int] = []

    def reader() -> None:
        cursor = None
        while True:
            done = stop.is_set()
            batch = events_after(None, project_id=project.pk, cursor=cursor, limit=50)
            delivered.extend(e.id for e in batch)
            if batch:
                cursor = batch[-1].cursor
            elif done:
                break
            else:
                time.sleep(0.002)
        connection.close()

    def writer(index: int) -> list[int]:
        rng = random.Random(index)
        committed = []
        for n in range(25):
            try:
                with transaction.atomic():
                    event = events.emit(EventType.RUN_STEP, project=project.pk, data={"w": index, "n": n})
                    time.sleep(rng.random() * 0.01)
                    if rng.random() < 0.1:
                        raise LookupError("rolled back")
                committed.append(event.id)
            except LookupError:
                pass
        return committed

    tail = threading.Thread(target=reader)
    tail.start()
    results = run_concurrently(8, writer)
    stop.set()
    tail.join(60)
    assert not failures(results), failures(results)
    committed = sorted(i for ids in results for i in ids)
    assert len(delivered) == len(set(delivered)), "an event was delivered twice"
    assert sorted(delivered) == committed
    assert delivered == [e.id for e in events_after(None, project_id=project.pk)]
