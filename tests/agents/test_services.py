"""Agent services: spawn, update, usage, idempotency, signals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from agents import services
from agents.choices import AgentStatus as S
from agents.exceptions import AgentTerminated, ConcurrencyLimitExceeded, InvalidTransition
from agents.models import AgentInstance, AgentTransition
from agents.signals import agent_spawned, agent_transitioned
from syndarix.exceptions import InvalidInput
from tests.factories import AgentFactory, AgentTypeFactory, agent_in_status

pytestmark = pytest.mark.django_db


def test_spawn_starts_idle_with_a_ledger_row(project, agent_type, user):
    agent = services.agent_spawn(project=project, agent_type=agent_type, name="a1", actor=user, config={"retries": 2})
    assert agent.status == S.IDLE
    row = AgentTransition.objects.get(agent=agent)
    assert (row.from_status, row.to_status, row.actor) == ("", S.IDLE, user)


def test_spawn_validates_config_per_field(project, agent_type):
    with pytest.raises(ValidationError) as info:
        services.agent_spawn(project=project, agent_type=agent_type, name="a", config={"retries": -1, "x": 1})
    assert "config.retries" in info.value.message_dict
    assert "config" in info.value.message_dict  # additionalProperties
    assert not AgentInstance.objects.exists()


def test_spawn_refuses_inactive_type(project):
    with pytest.raises(InvalidInput) as info:
        services.agent_spawn(project=project, agent_type=AgentTypeFactory(is_active=False), name="a")
    assert info.value.field == "agent_type_id"


def test_spawn_replay_with_same_key_returns_the_same_agent(project, agent_type):
    first = services.agent_spawn(project=project, agent_type=agent_type, name="a", request_id="k1")
    again = services.agent_spawn(project=project, agent_type=agent_type, name="a", request_id="k1")
    assert first.pk == again.pk
    assert AgentInstance.objects.count() == 1


def test_spawn_respects_the_workspace_limit(project, agent_type):
    project.workspace.max_concurrent_agents = 1
    project.workspace.save(update_fields=["max_concurrent_agents"])
    agent = AgentFactory(project=project, agent_type=agent_type)
    with pytest.raises(ConcurrencyLimitExceeded) as info:
        AgentFactory(project=project, agent_type=agent_type)
    assert info.value.extra == {"limit": 1, "current": 1}
    services.agent_terminate(agent)
    AgentFactory(project=project, agent_type=agent_type)  # terminated agents do not count


def test_transition_replay_with_same_key_acts_once():
    agent = agent_in_status(S.IDLE)
    services.agent_pause(agent, request_id="k")
    services.agent_resume(agent)
    replayed = services.agent_pause(agent, request_id="k")
    assert replayed.status == S.IDLE  # the replay did not pause again
    assert AgentTransition.objects.filter(agent=agent, to_status=S.PAUSED).count() == 1


def test_a_transition_writes_the_fields_given_with_it_in_its_own_update(django_assert_num_queries):
    agent = agent_in_status(S.IDLE)
    moved = services.agent_transition(agent, S.PAUSED, also={"current_task": "first"})
    assert AgentInstance.objects.values_list("status", "current_task").get(pk=agent.pk) == (S.PAUSED, "first")
    assert moved.current_task == "first"
    with django_assert_num_queries(4):  # a savepoint and its release, the lock, one UPDATE: no transition to write
        same = services.agent_transition(moved, S.PAUSED, also={"current_task": "second"})
    assert same.current_task == "second" == AgentInstance.objects.get(pk=agent.pk).current_task
    assert AgentTransition.objects.filter(agent=agent, to_status=S.PAUSED).count() == 1


def test_update_replay_of_a_field_only_update_applies_nothing(user):
    agent = agent_in_status(S.IDLE)
    updated = services.agent_update(agent, actor=user, data={"name": "first"}, request_id="k")
    assert updated.name == "first"
    note = AgentTransition.objects.get(agent=agent, request_id="k")
    assert (note.from_status, note.to_status, note.reason, note.actor) == (S.IDLE, S.IDLE, "updated", user)
    services.agent_update(agent, data={"name": "changed meanwhile"})
    replayed = services.agent_update(agent, data={"name": "first"}, request_id="k")
    assert replayed.name == "changed meanwhile"
    assert AgentInstance.objects.get(pk=agent.pk).name == "changed meanwhile"
    assert AgentTransition.objects.filter(agent=agent, request_id="k").count() == 1


def test_update_replay_with_a_status_applies_neither_fields_nor_status():
    agent = agent_in_status(S.IDLE)
    services.agent_update(agent, data={"name": "first", "status": S.WORKING}, request_id="k")
    assert AgentTransition.objects.get(agent=agent, request_id="k").to_status == S.WORKING
    services.agent_pause(agent)
    services.agent_update(agent, data={"name": "changed meanwhile"})
    replayed = services.agent_update(agent, data={"name": "first", "status": S.WORKING}, request_id="k")
    assert (replayed.status, replayed.name) == (S.PAUSED, "changed meanwhile")
    assert AgentTransition.objects.filter(agent=agent, request_id="k").count() == 1


def test_update_to_the_current_status_records_its_key_once():
    agent = agent_in_status(S.WORKING)
    services.agent_update(agent, data={"status": S.WORKING, "current_task": "t1"}, request_id="k")
    note = AgentTransition.objects.get(agent=agent, request_id="k")
    assert (note.from_status, note.to_status, note.reason) == (S.WORKING, S.WORKING, "updated")
    services.agent_update(agent, data={"current_task": "t2"})
    services.agent_update(agent, data={"status": S.WORKING, "current_task": "t1"}, request_id="k")
    assert AgentInstance.objects.get(pk=agent.pk).current_task == "t2"


def test_a_key_used_by_an_update_is_used_up_for_the_lifecycle_verbs_too():
    agent = agent_in_status(S.IDLE)
    services.agent_update(agent, data={"name": "x"}, request_id="k")
    assert services.agent_pause(agent, request_id="k").status == S.IDLE


def test_an_update_without_a_key_writes_no_ledger_row():
    agent = agent_in_status(S.IDLE)
    before = AgentTransition.objects.filter(agent=agent).count()
    services.agent_update(agent, data={"name": "x"})
    assert AgentTransition.objects.filter(agent=agent).count() == before


def test_resume_only_leaves_paused():
    with pytest.raises(InvalidTransition):
        services.agent_resume(agent_in_status(S.WORKING))
    assert services.agent_resume(agent_in_status(S.IDLE)).status == S.IDLE  # no-op


def test_update_changes_fields_and_status_in_one_transaction():
    agent = agent_in_status(S.IDLE)
    agent = services.agent_update(agent, data={"name": "renamed", "status": S.WORKING, "tokens_used": 99})
    agent.refresh_from_db()
    assert (agent.name, agent.status, agent.tokens_used) == ("renamed", S.WORKING, 0)


def test_update_with_refused_transition_changes_nothing():
    agent = agent_in_status(S.PAUSED)
    with pytest.raises(InvalidTransition):
        services.agent_update(agent, data={"name": "renamed", "status": S.WORKING})
    agent.refresh_from_db()
    assert agent.name != "renamed"


def test_update_of_terminated_agent_is_refused():
    with pytest.raises(AgentTerminated):
        services.agent_update(agent_in_status(S.TERMINATED), data={"name": "x"})


def test_record_usage_adds_and_refuses_negative_or_terminated():
    agent = agent_in_status(S.WORKING)
    agent = services.agent_record_usage(agent, tokens=10, cost="0.25", tasks_completed=1)
    agent = services.agent_record_usage(agent, tokens=5, cost=Decimal("0.5"))
    assert (agent.tokens_used, agent.cost_incurred, agent.tasks_completed) == (15, Decimal("0.75"), 1)
    with pytest.raises(InvalidInput):
        services.agent_record_usage(agent, tokens=-1)
    services.agent_terminate(agent)
    with pytest.raises(AgentTerminated):
        services.agent_record_usage(agent, tokens=1)
    assert AgentInstance.objects.get(pk=agent.pk).tokens_used == 15


def test_signals_fire_only_after_commit(project, agent_type, django_capture_on_commit_callbacks):
    seen = []
    on_spawn = lambda sender, agent, **kw: seen.append(("spawned", agent.status))  # noqa: E731
    on_move = lambda sender, agent, source, target, **kw: seen.append((source, target))  # noqa: E731
    agent_spawned.connect(on_spawn)
    agent_transitioned.connect(on_move)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            agent = services.agent_spawn(project=project, agent_type=agent_type, name="a")
            services.agent_pause(agent)
        assert seen == []
        for callback in callbacks:
            callback()
        assert seen == [("spawned", S.IDLE), (S.IDLE, S.PAUSED)]
    finally:
        agent_spawned.disconnect(on_spawn)
        agent_transitioned.disconnect(on_move)


def test_agents_disabled_refuses_writes(settings, project, agent_type):
    agent = AgentFactory(project=project, agent_type=agent_type)
    settings.AGENTS_ENABLED = False
    from agents.exceptions import AgentsDisabled

    with pytest.raises(AgentsDisabled):
        services.agent_spawn(project=project, agent_type=agent_type, name="b")
    with pytest.raises(AgentsDisabled):
        services.agent_pause(agent)
    assert AgentInstance.objects.get(pk=agent.pk).status == S.IDLE


def test_resume_of_a_working_agent_says_why():
    with pytest.raises(InvalidTransition) as info:
        services.agent_resume(agent_in_status(S.WORKING))
    assert info.value.message == "Only an agent in 'paused' can do this; the agent is 'working'."


def test_spawn_replay_survives_the_type_being_deactivated(project, agent_type):
    first = services.agent_spawn(project=project, agent_type=agent_type, name="a", request_id="k2")
    agent_type.is_active = False
    agent_type.save(update_fields=["is_active"])
    assert services.agent_spawn(project=project, agent_type=agent_type, name="a", request_id="k2").pk == first.pk


# --- JSON PostgreSQL cannot store (NUL, NaN/Infinity, deep nesting) is refused before any write. ---

def _nested(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


UNSTORABLE = [
    ({"model": "a\x00b"}, "nul_character"),
    ({"a\x00b": 1}, "nul_character"),
    ({"retries": float("inf")}, "invalid_data"),
    ({"retries": float("nan")}, "invalid_data"),
    (_nested(70), "nesting_too_deep"),
]
UNSTORABLE_IDS = ["nul-in-string", "nul-in-key", "inf", "nan", "too-deep"]


@pytest.mark.parametrize(("value", "code"), UNSTORABLE, ids=UNSTORABLE_IDS)
def test_spawn_refuses_config_that_cannot_be_stored(project, agent_type, value, code):
    with pytest.raises(InvalidInput) as info:
        services.agent_spawn(project=project, agent_type=agent_type, name="a", config=value)
    assert (info.value.field, info.value.code) == ("config", code)
    assert not AgentInstance.objects.exists()


@pytest.mark.parametrize(("value", "code"), UNSTORABLE, ids=UNSTORABLE_IDS)
def test_spawn_refuses_a_template_that_cannot_be_stored(project, agent_type, value, code):
    with pytest.raises(InvalidInput) as info:
        services.agent_spawn(project=project, agent_type=agent_type, name="a", template=value)
    assert (info.value.field, info.value.code) == ("template", code)
    assert not AgentInstance.objects.exists()


@pytest.mark.parametrize("field", ["config", "short_term_memory"])
@pytest.mark.parametrize(("value", "code"), UNSTORABLE, ids=UNSTORABLE_IDS)
def test_update_refuses_json_that_cannot_be_stored(agent, field, value, code):
    with pytest.raises(InvalidInput) as info:
        services.agent_update(agent, data={field: value, "name": "renamed"})
    assert (info.value.field, info.value.code) == (field, code)
    unchanged = AgentInstance.objects.get(pk=agent.pk)
    assert (unchanged.name, unchanged.config, unchanged.short_term_memory) == (agent.name, {}, {})


def test_update_refuses_memory_that_is_not_an_object(agent):
    with pytest.raises(InvalidInput) as info:
        services.agent_update(agent, data={"short_term_memory": ["a", "list"]})
    assert info.value.field == "short_term_memory"


@pytest.mark.parametrize(("value", "code"), UNSTORABLE, ids=UNSTORABLE_IDS)
def test_save_memory_refuses_json_that_cannot_be_stored(agent, value, code):
    with pytest.raises(InvalidInput) as info:
        services.agent_save_memory(agent, short_term_memory=value)
    assert (info.value.field, info.value.code) == ("short_term_memory", code)
    assert AgentInstance.objects.get(pk=agent.pk).short_term_memory == {}


@pytest.mark.parametrize(
    ("values", "field", "code"),
    [
        ({"config_schema": {"description": "a\x00b"}}, "config_schema", "nul_character"),
        ({"config_schema": {"type": "number", "maximum": float("inf")}}, "config_schema", "invalid_data"),
        ({"capabilities": ["a\x00b"]}, "capabilities", "nul_character"),
        ({"capabilities": [float("nan")]}, "capabilities", "invalid_data"),
    ],
)
def test_agent_type_clean_refuses_json_that_cannot_be_stored(values, field, code):
    agent_type = AgentTypeFactory.build(**values)
    with pytest.raises(ValidationError) as info:
        agent_type.full_clean()
    assert [error.code for error in info.value.error_dict[field]] == [code]


# --- Saving a change to memory relative to the memory it started from. ---


@pytest.mark.parametrize(
    ("base", "target", "current", "merged"),
    [
        ({}, {"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
        ({"n": 1}, {"n": 2}, {"n": 1, "other": True}, {"n": 2, "other": True}),
        ({"gone": 1, "keep": 1}, {"keep": 1}, {"gone": 1, "keep": 1, "new": 1}, {"keep": 1, "new": 1}),
        ({"log": ["a"]}, {"log": ["a", "b"]}, {"log": ["a"], "x": 1}, {"log": ["a", "b"], "x": 1}),
        ({"a": {"deep": 1}}, {"a": {"deep": 1, "more": 2}}, {"a": {"deep": 1, "side": 3}},
         {"a": {"deep": 1, "more": 2, "side": 3}}),
        ({}, {"same": 1}, {"same": 1}, {"same": 1}),  # both added the same value: no conflict
        ({"x": 1}, {"x": 1}, {"y": 2}, {"y": 2}),  # no change: the current memory stays as it is
    ],
)
def test_rebase_applies_only_the_change(base, target, current, merged):
    assert services.rebase_json_change(current, base=base, target=target) == merged


@pytest.mark.parametrize(
    ("base", "target", "current", "path"),
    [
        ({"n": 1}, {"n": 2}, {"n": 5}, "/n"),  # both changed the same value
        ({"n": 1}, {}, {"n": 5}, "/n"),  # removing a value someone changed
        ({"n": 1}, {"n": 2}, {}, "/n"),  # changing a value someone removed
        ({}, {"k": "mine"}, {"k": "theirs"}, "/k"),  # both added the key, differently
        ({"log": ["a"]}, {"log": ["a", "b"]}, {}, "/log/1"),  # appending to a list someone removed
    ],
)
def test_rebase_refuses_a_colliding_change(base, target, current, path):
    with pytest.raises(services.MemoryConflict) as info:
        services.rebase_json_change(current, base=base, target=target)
    assert (info.value.code, info.value.extra["path"]) == ("memory_conflict", path)


def test_save_memory_with_a_base_keeps_keys_written_meanwhile(agent):
    services.agent_update(agent, data={"short_term_memory": {"operator": "note"}})
    saved = services.agent_save_memory(agent, short_term_memory={"hook": True}, base={})
    assert saved.short_term_memory == AgentInstance.objects.get(pk=agent.pk).short_term_memory
    assert saved.short_term_memory == {"operator": "note", "hook": True}


def test_save_memory_with_a_colliding_base_saves_nothing(agent):
    services.agent_update(agent, data={"short_term_memory": {"mode": "operator"}})
    with pytest.raises(services.MemoryConflict):
        services.agent_save_memory(agent, short_term_memory={"mode": "hook"}, base={"mode": "start"})
    assert AgentInstance.objects.get(pk=agent.pk).short_term_memory == {"mode": "operator"}
