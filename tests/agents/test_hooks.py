"""Lifecycle hooks: which hook each change runs, in order, after commit; failures and overruns."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from agents import services
from agents.choices import AgentStatus as S
from agents.models import TRANSITIONS, AgentInstance, AgentTransition
from agents.registry import BaseAgent, builtin, registry
from agents.registry.hooks import hooks_for
from tests.factories import AgentFactory, AgentTypeFactory, ProjectFactory, agent_in_status

pytestmark = pytest.mark.django_db

#: The hook each edge of the lifecycle table runs (issue 3): anything → WORKING activates;
#: WORKING/WAITING → PAUSED or IDLE deactivates; anything → TERMINATED shuts down.
EXPECTED_HOOKS = {
    (S.IDLE, S.WORKING): ["activate"],
    (S.IDLE, S.PAUSED): [],
    (S.IDLE, S.TERMINATED): ["shutdown"],
    (S.WORKING, S.IDLE): ["deactivate"],
    (S.WORKING, S.WAITING): [],
    (S.WORKING, S.PAUSED): ["deactivate"],
    (S.WORKING, S.TERMINATED): ["shutdown"],
    (S.WAITING, S.IDLE): ["deactivate"],
    (S.WAITING, S.WORKING): ["activate"],
    (S.WAITING, S.PAUSED): ["deactivate"],
    (S.WAITING, S.TERMINATED): ["shutdown"],
    (S.PAUSED, S.IDLE): [],
    (S.PAUSED, S.TERMINATED): ["shutdown"],
}


class Recorder(BaseAgent):
    """Appends ``[hook, status seen, source of the transition]`` to memory on every hook."""

    slug = "recorder"
    name = "Recorder"

    def _record(self, hook: str) -> None:
        source = self.transition.from_status if self.transition else None
        self.memory.setdefault("calls", []).append([hook, self.agent.status, source])

    def initialize(self):
        self._record("initialize")

    def activate(self):
        self._record("activate")

    def deactivate(self):
        self._record("deactivate")

    def shutdown(self):
        self._record("shutdown")


class AsyncRecorder(Recorder):
    slug = "async-recorder"
    name = "Async recorder"

    async def initialize(self):
        await asyncio.sleep(0)
        self._record("initialize")

    async def activate(self):
        await asyncio.sleep(0)
        self._record("activate")

    async def deactivate(self):
        await asyncio.sleep(0)
        self._record("deactivate")

    async def shutdown(self):
        await asyncio.sleep(0)
        self._record("shutdown")


@pytest.fixture
def register():
    """``register(cls)`` into the application registry for one test."""
    added = []

    def _register(cls):
        registry.register(cls)
        added.append(cls.slug)
        return cls

    yield _register
    for slug in added:
        registry.unregister(slug)


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """``committed(service, *args, **kwargs)``: call a service, then run what it left for after commit."""

    def run(service, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return service(*args, **kwargs)

    return run


def hook_type(cls, **kwargs):
    return AgentTypeFactory(handler=cls.slug, config_schema=cls.config_schema, **kwargs)


def notes(agent) -> list[AgentTransition]:
    """Ledger notes (rows whose from_status equals to_status), oldest first."""
    rows = AgentTransition.objects.filter(agent=agent).order_by("created_at")
    return [row for row in rows if row.from_status == row.to_status]


def reload(agent) -> AgentInstance:
    return AgentInstance.objects.get(pk=agent.pk)


def test_the_hook_table_covers_every_edge_of_the_lifecycle():
    assert set(EXPECTED_HOOKS) == {(s, t) for s, targets in TRANSITIONS.items() for t in targets}
    assert hooks_for(None, S.IDLE) == ("initialize",)
    for (source, target), hooks in EXPECTED_HOOKS.items():
        assert list(hooks_for(source, target)) == hooks


@pytest.mark.parametrize("cls", [Recorder, AsyncRecorder], ids=["sync", "async"])
@pytest.mark.parametrize(("source", "target"), list(EXPECTED_HOOKS))
def test_each_transition_runs_its_hook(register, committed, cls, source, target):
    register(cls)
    agent = agent_in_status(source, agent_type=hook_type(cls))  # hooks of the set-up are not run
    committed(services.agent_transition, agent, target)
    calls = reload(agent).short_term_memory.get("calls", [])
    assert calls == [[hook, target, source] for hook in EXPECTED_HOOKS[(source, target)]]
    assert notes(agent) == []


@pytest.mark.parametrize("cls", [Recorder, AsyncRecorder], ids=["sync", "async"])
def test_hooks_run_in_lifecycle_order(register, committed, cls):
    register(cls)
    agent = committed(AgentFactory, agent_type=hook_type(cls))
    for target in (S.WORKING, S.WAITING, S.WORKING, S.IDLE, S.PAUSED, S.IDLE, S.WORKING, S.PAUSED, S.TERMINATED):
        committed(services.agent_transition, agent, target)
    assert reload(agent).short_term_memory["calls"] == [
        ["initialize", S.IDLE, None],
        ["activate", S.WORKING, S.IDLE],
        ["activate", S.WORKING, S.WAITING],
        ["deactivate", S.IDLE, S.WORKING],
        ["activate", S.WORKING, S.IDLE],
        ["deactivate", S.PAUSED, S.WORKING],
        ["shutdown", S.TERMINATED, S.PAUSED],
    ]


def test_pause_resume_terminate_services_run_hooks_too(register, committed):
    register(Recorder)
    agent = agent_in_status(S.WORKING, agent_type=hook_type(Recorder))
    committed(services.agent_pause, agent)
    committed(services.agent_resume, agent)
    committed(services.agent_terminate, agent)
    assert [call[0] for call in reload(agent).short_term_memory["calls"]] == ["deactivate", "shutdown"]


def test_types_without_a_handler_have_no_hooks(committed):
    agent = committed(AgentFactory)
    agent = committed(services.agent_update, agent, data={"short_term_memory": {"kept": 1}})
    for target in (S.WORKING, S.IDLE, S.TERMINATED):
        committed(services.agent_transition, agent, target)
    agent = reload(agent)
    assert agent.short_term_memory == {"kept": 1}
    assert (agent.last_error, notes(agent)) == ("", [])


def test_hooks_do_not_run_when_the_transition_rolls_back(register, committed):
    register(Recorder)
    agent = agent_in_status(S.IDLE, agent_type=hook_type(Recorder))

    def transition_then_fail():
        with transaction.atomic():
            services.agent_transition(agent, S.WORKING)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        committed(transition_then_fail)
    agent = reload(agent)
    assert agent.status == S.IDLE and agent.short_term_memory == {}


# --- The built-ins do observable work on the instance. ---


class Clock:
    def __init__(self):
        self.now = timezone.now().replace(microsecond=0)

    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(BaseAgent, "now", staticmethod(lambda: clock.now))
    return clock


def iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_reviewer_keeps_its_working_memory_through_the_lifecycle(committed, clock):
    agent_type = hook_type(builtin.ReviewerAgent, slug="reviewer-type")
    agent = committed(
        AgentFactory, agent_type=agent_type, config={"strictness": "strict", "focus": ["security", "tests"]}
    )
    started = clock.now
    memory = reload(agent).short_term_memory
    assert memory == {
        "agent_class": "reviewer",
        "config": {
            "strictness": "strict",
            "focus": ["security", "tests"],
            "max_files_per_review": 50,
            "request_changes_on": "major",
        },
        "started_at": iso(started),
        "activations": 0,
        "last_activated_at": None,
        "deactivations": 0,
        "last_deactivated_at": None,
        "working_seconds": 0.0,
        "task": "",
        "history": [],
        "review": {
            "checklist": [{"area": "security", "checked": False}, {"area": "tests", "checked": False}],
            "strictness": "strict",
            "files_budget": 50,
            "rounds": 0,
            "findings": [],
        },
    }

    committed(services.agent_update, agent, data={"current_task": "Review PR #12"})
    clock.advance(10)
    committed(services.agent_transition, agent, S.WORKING)
    memory = reload(agent).short_term_memory
    assert (memory["activations"], memory["last_activated_at"], memory["task"]) == (1, iso(clock.now), "Review PR #12")
    assert memory["history"] == [{"task": "Review PR #12", "at": iso(clock.now)}]
    assert memory["review"]["rounds"] == 1

    clock.advance(30)
    committed(services.agent_transition, agent, S.WAITING)
    assert reload(agent).short_term_memory == memory  # → WAITING has no hook

    clock.advance(15)
    committed(services.agent_transition, agent, S.IDLE)
    memory = reload(agent).short_term_memory
    assert (memory["deactivations"], memory["working_seconds"]) == (1, 45.0)

    clock.advance(100)
    committed(services.agent_transition, agent, S.WORKING)
    clock.advance(20)
    agent = committed(services.agent_terminate, agent)
    assert agent.status == S.TERMINATED
    assert reload(agent).short_term_memory == {
        "flushed_at": iso(clock.now),
        "summary": {
            "agent_class": "reviewer",
            "started_at": iso(started),
            "activations": 2,
            "deactivations": 1,
            "working_seconds": 65.0,
            "tasks": ["Review PR #12"],
            "tasks_completed": 0,
            "tokens_used": 0,
        },
    }
    assert notes(agent) == []


def test_builder_and_tester_track_attempts_and_runs(committed, clock):
    builder = committed(AgentFactory, agent_type=hook_type(builtin.BuilderAgent), config={"max_iterations": 2})
    tester = committed(AgentFactory, agent_type=hook_type(builtin.TesterAgent), config={"framework": "jest"})
    for _ in range(3):
        for agent in (builder, tester):
            committed(services.agent_transition, agent, S.WORKING)
            committed(services.agent_transition, agent, S.IDLE)
    build = reload(builder).short_term_memory["build"]
    assert build == {
        "toolchain": {"language": "python", "command": "make build"},
        "network": False,
        "attempts": 3,
        "iterations_left": 0,
        "artifacts_dir": "dist",
    }
    testing = reload(tester).short_term_memory["testing"]
    assert testing["plan"] == {
        "framework": "jest", "command": "pytest -q", "coverage_threshold": 80, "parallel": 4, "retries": 1
    }
    assert (testing["runs"], testing["last_run_at"]) == (3, iso(clock.now))


def test_builtin_initialises_lazily_when_the_handler_was_set_after_spawn(committed):
    agent = agent_in_status(S.IDLE, agent_type=hook_type(builtin.TesterAgent))  # initialize never ran
    committed(services.agent_transition, agent, S.WORKING)
    memory = reload(agent).short_term_memory
    assert (memory["agent_class"], memory["activations"], memory["testing"]["runs"]) == ("tester", 1, 1)


# --- Failures and overruns are recorded and never undo the transition. ---


class Failing(BaseAgent):
    slug = "failing"
    name = "Failing"

    def activate(self):
        self.memory["half_done"] = True
        raise ValueError("model endpoint unreachable")


class AsyncFailing(BaseAgent):
    slug = "async-failing"
    name = "Async failing"

    async def activate(self):
        await asyncio.sleep(0)
        self.memory["half_done"] = True
        raise RuntimeError("tool crashed")


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (Failing, "activate hook failed: ValueError: model endpoint unreachable"),
        (AsyncFailing, "activate hook failed: RuntimeError: tool crashed"),
    ],
    ids=["sync", "async"],
)
def test_a_raising_hook_is_recorded_without_rolling_back(register, committed, cls, message):
    register(cls)
    agent = agent_in_status(S.IDLE, agent_type=hook_type(cls))
    returned = committed(services.agent_transition, agent, S.WORKING, reason="start")
    assert returned.status == S.WORKING
    agent = reload(agent)
    assert agent.status == S.WORKING
    assert agent.last_error == message
    assert agent.short_term_memory == {}  # the failed hook's half-done work is not saved
    ledger = list(AgentTransition.objects.filter(agent=agent).order_by("created_at"))
    assert [(r.from_status, r.to_status, r.reason) for r in ledger[-2:]] == [
        (S.IDLE, S.WORKING, "start"),
        (S.WORKING, S.WORKING, message),
    ]
    assert ledger[-1].actor is None

    committed(services.agent_transition, agent, S.IDLE)  # the lifecycle carries on
    assert reload(agent).status == S.IDLE


def test_failing_initialize_and_shutdown_keep_the_agent_and_its_termination(register, committed):
    class Brittle(BaseAgent):
        slug = "brittle"
        name = "Brittle"

        def initialize(self):
            raise KeyError("api_key")

        async def shutdown(self):
            raise OSError("disk full")

    register(Brittle)
    agent = committed(AgentFactory, agent_type=hook_type(Brittle))
    assert reload(agent).status == S.IDLE
    committed(services.agent_terminate, agent)
    agent = reload(agent)
    assert agent.status == S.TERMINATED
    assert agent.last_error == "shutdown hook failed: OSError: disk full"
    assert [(n.to_status, n.reason) for n in notes(agent)] == [
        (S.IDLE, "initialize hook failed: KeyError: 'api_key'"),
        (S.TERMINATED, "shutdown hook failed: OSError: disk full"),
    ]


@override_settings(AGENT_HOOK_TIMEOUT_SECONDS=0.2)
def test_an_overrunning_sync_hook_is_recorded_and_its_late_work_discarded(register, committed):
    release, finished = threading.Event(), threading.Event()

    class Slow(BaseAgent):
        slug = "slow"
        name = "Slow"

        def activate(self):
            self.memory["late"] = True
            release.wait(10)
            finished.set()

    register(Slow)
    agent = agent_in_status(S.IDLE, agent_type=hook_type(Slow))
    try:
        returned = committed(services.agent_transition, agent, S.WORKING)
        assert not finished.is_set()  # the caller did not wait for the hook to finish
    finally:
        release.set()
    assert finished.wait(5)
    assert returned.status == S.WORKING
    agent = reload(agent)
    message = "activate hook failed: exceeded its time budget of 0.2 s (AGENT_HOOK_TIMEOUT_SECONDS)"
    assert (agent.status, agent.last_error) == (S.WORKING, message)
    assert agent.short_term_memory == {}
    assert [(n.from_status, n.reason) for n in notes(agent)] == [(S.WORKING, message)]


@override_settings(AGENT_HOOK_TIMEOUT_SECONDS=0.2)
def test_an_overrunning_async_hook_is_cancelled_and_recorded(register, committed):
    cancelled = threading.Event()

    class SlowAsync(BaseAgent):
        slug = "slow-async"
        name = "Slow async"

        async def shutdown(self):
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise

    register(SlowAsync)
    agent = agent_in_status(S.WORKING, agent_type=hook_type(SlowAsync))
    assert committed(services.agent_terminate, agent).status == S.TERMINATED
    assert cancelled.wait(5)
    agent = reload(agent)
    assert agent.status == S.TERMINATED
    assert agent.last_error == (
        "shutdown hook failed: exceeded its time budget of 0.2 s (AGENT_HOOK_TIMEOUT_SECONDS)"
    )
    assert len(notes(agent)) == 1


def test_a_handler_without_a_registered_class_is_recorded(committed):
    agent = agent_in_status(S.IDLE, agent_type=AgentTypeFactory(handler="uninstalled"))
    committed(services.agent_transition, agent, S.WORKING)
    agent = reload(agent)
    assert agent.status == S.WORKING
    assert agent.last_error == (
        "activate hook failed: agent class 'uninstalled' is not registered (AGENT_REGISTRY_MODULES)"
    )


def test_memory_that_is_not_json_is_recorded_as_a_failure(register, committed):
    class Sloppy(BaseAgent):
        slug = "sloppy"
        name = "Sloppy"

        def activate(self):
            self.memory["at"] = timezone.now()

    register(Sloppy)
    agent = agent_in_status(S.IDLE, agent_type=hook_type(Sloppy))
    committed(services.agent_transition, agent, S.WORKING)
    agent = reload(agent)
    assert agent.last_error.startswith("activate hook failed: InvalidInput: short_term_memory is not valid JSON")
    assert agent.short_term_memory == {}


def test_save_memory_and_record_hook_error_never_touch_status():
    agent = agent_in_status(S.PAUSED)
    stale = AgentInstance.objects.get(pk=agent.pk)
    services.agent_terminate(agent)
    saved = services.agent_save_memory(stale, short_term_memory={"flushed": True})  # stale copy: no conflict
    assert (saved.status, reload(agent).short_term_memory) == (S.TERMINATED, {"flushed": True})
    note = services.agent_record_hook_error(stale, hook="shutdown", message="boom")
    assert (note.from_status, note.to_status, note.reason) == (S.TERMINATED, S.TERMINATED, "shutdown hook failed: boom")
    assert reload(agent).status == S.TERMINATED


@pytest.mark.parametrize("memory", [[], "text", {"when": timezone.now()}])
def test_save_memory_refuses_anything_but_a_json_object(memory):
    agent = agent_in_status(S.IDLE)
    with pytest.raises(services.InvalidInput) as info:
        services.agent_save_memory(agent, short_term_memory=memory)
    assert info.value.field == "short_term_memory"


# --- After commit, outside the transaction, without row locks (real commits). ---


@pytest.mark.django_db(transaction=True)
def test_hooks_run_after_commit_and_hold_no_row_lock(register):
    class Inspector(BaseAgent):
        slug = "inspector"
        name = "Inspector"

        def activate(self):
            # A separate connection: sees only committed data, and NOWAIT fails on a locked row.
            with transaction.atomic():
                row = AgentInstance.objects.select_for_update(nowait=True).get(pk=self.agent.pk)
            self.memory["committed_status"] = row.status

    register(Inspector)
    agent = AgentFactory(project=ProjectFactory(), agent_type=hook_type(Inspector))
    services.agent_transition(agent, S.WORKING)  # autocommit: the hook runs as the transaction commits
    agent = reload(agent)
    assert agent.last_error == ""
    assert agent.short_term_memory == {"committed_status": S.WORKING}


# --- A hook's memory change is merged into the memory as it is when the hook returns. ---


class PausingHook(BaseAgent):
    """``activate`` changes memory as ``self.change`` says, after waiting until the test lets it go on."""

    slug = "pausing"
    name = "Pausing"
    started: threading.Event
    proceed: threading.Event
    change = staticmethod(lambda memory: None)

    def activate(self):
        type(self).started.set()
        assert type(self).proceed.wait(10), "the test never let the hook go on"
        type(self).change(self.memory)


def _race_a_patch_against_the_hook(register, change, patch: dict, *, initial: dict) -> tuple[AgentInstance, list]:
    """Start WORKING (so ``activate`` runs) in one thread; while the hook waits, ``agent_update`` the memory
    to ``patch`` in another thread; then let the hook finish. Returns the agent as saved and thread errors."""
    hook_cls = type("Pausing", (PausingHook,), {"started": threading.Event(), "proceed": threading.Event(),
                                                "change": staticmethod(change)})
    register(hook_cls)
    agent = AgentFactory(project=ProjectFactory(), agent_type=hook_type(hook_cls))
    services.agent_update(agent, data={"short_term_memory": initial})
    barrier, errors = threading.Barrier(2), []

    def transition():
        services.agent_transition(agent, S.WORKING)  # autocommit: the hook runs as it commits

    def concurrent_patch():
        assert hook_cls.started.wait(10), "the hook never started"
        try:
            services.agent_update(agent, data={"short_term_memory": patch})
        finally:
            hook_cls.proceed.set()

    def run(work):
        try:
            barrier.wait()
            work()
        except BaseException as exc:  # noqa: BLE001 - asserted by the caller
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(work,)) for work in (transition, concurrent_patch)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    return reload(agent), errors


@pytest.mark.django_db(transaction=True)
def test_a_slow_hook_keeps_a_patch_made_while_it_ran(register):
    def change(memory):
        memory["activations"] = memory.get("activations", 0) + 1
        memory.setdefault("log", []).append("activated")

    initial = {"activations": 0, "log": []}
    patch = {**initial, "operator_note": "keep me"}
    agent, errors = _race_a_patch_against_the_hook(register, change, patch, initial=initial)
    assert errors == []
    assert agent.status == S.WORKING
    assert agent.short_term_memory == {"activations": 1, "log": ["activated"], "operator_note": "keep me"}
    assert agent.last_error == ""


@pytest.mark.django_db(transaction=True)
def test_a_hook_change_that_collides_with_a_concurrent_patch_is_a_hook_error_not_an_overwrite(register):
    def change(memory):
        memory["mode"] = "hook"

    agent, errors = _race_a_patch_against_the_hook(register, change, {"mode": "operator"}, initial={"mode": "start"})
    assert errors == []
    assert agent.status == S.WORKING
    assert agent.short_term_memory == {"mode": "operator"}
    assert agent.last_error == (
        "activate hook failed: MemoryConflict: short_term_memory changed at '/mode' while the hook ran; "
        "the hook's change was not saved."
    )
    assert [note.reason for note in notes(agent)] == [agent.last_error]
