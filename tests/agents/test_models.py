"""The lifecycle guard on the model: the table, protection of `status`, stale writers."""

from __future__ import annotations

import itertools

import pytest
from django.db import transaction
from django_fsm import ConcurrentTransition

from agents import services
from agents.choices import AgentStatus as S
from agents.exceptions import AlreadyTerminated, InvalidTransition
from agents.models import TRANSITIONS, AgentInstance, AgentTransition
from tests.factories import agent_in_status

EXPECTED = {
    S.IDLE: {S.WORKING, S.PAUSED, S.TERMINATED},
    S.WORKING: {S.IDLE, S.WAITING, S.PAUSED, S.TERMINATED},
    S.WAITING: {S.IDLE, S.WORKING, S.PAUSED, S.TERMINATED},
    S.PAUSED: {S.IDLE, S.TERMINATED},
    S.TERMINATED: set(),
}

pytestmark = pytest.mark.django_db


def test_table_matches_the_seed():
    assert {k: set(v) for k, v in TRANSITIONS.items()} == EXPECTED


@pytest.mark.parametrize(("source", "target"), [(s, t) for s, ts in EXPECTED.items() for t in ts])
def test_every_allowed_transition_succeeds_and_writes_one_ledger_row(source, target):
    agent = agent_in_status(source)
    before = AgentTransition.objects.filter(agent=agent).count()
    agent = services.agent_transition(agent, target, reason="test")
    assert agent.status == target
    assert AgentInstance.objects.get(pk=agent.pk).status == target
    rows = AgentTransition.objects.filter(agent=agent)
    assert rows.count() == before + 1
    latest = rows.order_by("-created_at").first()
    assert (latest.from_status, latest.to_status, latest.reason) == (source, target, "test")


@pytest.mark.parametrize(
    ("source", "target"),
    [(s, t) for s, t in itertools.product(S.values, S.values) if s != t and t not in EXPECTED[S(s)]],
)
def test_every_disallowed_pair_raises_and_changes_nothing(source, target):
    agent = agent_in_status(source)
    before = AgentTransition.objects.filter(agent=agent).count()
    with pytest.raises(InvalidTransition) as info:
        services.agent_transition(agent, target)
    assert info.value.extra["allowed_transitions"] == TRANSITIONS[source]
    assert AgentInstance.objects.get(pk=agent.pk).status == source
    assert AgentTransition.objects.filter(agent=agent).count() == before


def test_transition_to_current_status_is_a_noop():
    agent = agent_in_status(S.PAUSED)
    before = AgentTransition.objects.filter(agent=agent).count()
    assert services.agent_pause(agent).status == S.PAUSED
    assert AgentTransition.objects.filter(agent=agent).count() == before


def test_terminating_twice_is_already_terminated():
    agent = agent_in_status(S.TERMINATED)
    with pytest.raises(AlreadyTerminated):
        services.agent_terminate(agent)


def test_status_cannot_be_assigned():
    agent = agent_in_status(S.IDLE)
    with pytest.raises(AttributeError):
        agent.status = S.WORKING


def test_status_cannot_be_bulk_updated():
    agent = agent_in_status(S.IDLE)
    with pytest.raises(TypeError):
        AgentInstance.objects.filter(pk=agent.pk).update(status=S.TERMINATED)
    assert AgentInstance.objects.get(pk=agent.pk).status == S.IDLE


def test_agents_are_born_idle():
    agent = agent_in_status(S.IDLE)
    with pytest.raises(ValueError):
        AgentInstance(project=agent.project, agent_type=agent.agent_type, name="x", status=S.WORKING).save()


def test_stale_instance_loses_with_a_conflict():
    agent = agent_in_status(S.IDLE)
    stale = AgentInstance.objects.get(pk=agent.pk)
    services.agent_terminate(agent)
    stale.pause()
    with pytest.raises(ConcurrentTransition), transaction.atomic():
        stale.save(update_fields=["status"])
    assert AgentInstance.objects.get(pk=agent.pk).status == S.TERMINATED


#: (transition method, status a stale copy was loaded in, what another writer did meanwhile, where it left the row)
STALE_WRITERS = [
    ("start_work", S.IDLE, services.agent_pause, S.PAUSED),
    ("wait", S.WORKING, lambda agent: services.agent_transition(agent, S.IDLE), S.IDLE),
    ("finish", S.WORKING, services.agent_pause, S.PAUSED),
    ("pause", S.IDLE, services.agent_terminate, S.TERMINATED),
    ("resume", S.PAUSED, services.agent_terminate, S.TERMINATED),
    ("terminate", S.WORKING, lambda agent: services.agent_transition(agent, S.WAITING), S.WAITING),
]


@pytest.mark.parametrize(
    ("method", "loaded", "other_writer", "after_other"), STALE_WRITERS, ids=[row[0] for row in STALE_WRITERS]
)
def test_a_stale_writer_loses_every_transition_with_a_conflict(method, loaded, other_writer, after_other):
    agent = agent_in_status(loaded)
    stale = AgentInstance.objects.get(pk=agent.pk)
    other_writer(agent)
    ledger_before = AgentTransition.objects.filter(agent=agent).count()
    transition = getattr(stale, method)
    spec = transition._django_fsm.get_transition(loaded)
    transition()  # legal from the status the stale copy still believes in
    with pytest.raises(ConcurrentTransition), transaction.atomic():
        stale.save(update_fields=["status", "updated_at", *spec.custom["fields"]])
    fresh = AgentInstance.objects.get(pk=agent.pk)
    assert fresh.status == after_other
    assert AgentTransition.objects.filter(agent=agent).count() == ledger_before
    if after_other != S.TERMINATED:
        assert fresh.terminated_at is None


def test_terminate_records_reason_and_clears_session():
    agent = agent_in_status(S.WORKING)
    services.agent_update(agent, data={"session_id": "s-1", "current_task": "build"})
    agent = services.agent_terminate(agent, termination_reason="budget", reason="over budget")
    agent.refresh_from_db()
    assert agent.terminated_at is not None
    assert (agent.session_id, agent.current_task, agent.termination_reason) == ("", "", "budget")
