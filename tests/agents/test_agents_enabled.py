"""``AGENTS_ENABLED=false``: spawning and transitions are refused with 503; reads still work."""

from __future__ import annotations

import pytest
from django.test import override_settings

from agents import services
from agents.choices import AgentStatus as S
from agents.exceptions import AgentsDisabled
from agents.models import AgentInstance, AgentTransition
from agents.selectors import agent_metrics, agent_queryset
from syndarix.api.exceptions import exception_handler
from tests.factories import agent_in_status

pytestmark = pytest.mark.django_db

disabled = override_settings(AGENTS_ENABLED=False)


def test_spawn_is_refused_and_writes_nothing(project, agent_type):
    with disabled, pytest.raises(AgentsDisabled) as info:
        services.agent_spawn(project=project, agent_type=agent_type, name="nope")
    assert (info.value.status_code, info.value.code) == (503, "agents_disabled")
    assert AgentInstance.objects.count() == 0 and AgentTransition.objects.count() == 0


@pytest.mark.parametrize(
    ("source", "call"),
    [
        (S.IDLE, lambda agent: services.agent_transition(agent, S.WORKING)),
        (S.WORKING, lambda agent: services.agent_pause(agent)),
        (S.PAUSED, lambda agent: services.agent_resume(agent)),
        (S.WAITING, lambda agent: services.agent_terminate(agent)),
        (S.IDLE, lambda agent: services.agent_update(agent, data={"name": "renamed", "status": S.PAUSED})),
    ],
    ids=["transition", "pause", "resume", "terminate", "update-with-status"],
)
def test_transitions_are_refused_and_change_nothing(source, call):
    agent = agent_in_status(source)
    ledger = AgentTransition.objects.filter(agent=agent).count()
    with disabled, pytest.raises(AgentsDisabled):
        call(agent)
    fresh = AgentInstance.objects.get(pk=agent.pk)
    assert (fresh.status, fresh.name) == (source, agent.name)
    assert AgentTransition.objects.filter(agent=agent).count() == ledger


def test_reads_still_work():
    agent = agent_in_status(S.WORKING)
    agent_in_status(S.TERMINATED, project=agent.project)
    with disabled:
        assert agent_queryset().get(pk=agent.pk).status == S.WORKING
        metrics = agent_metrics(AgentInstance.objects.filter(project=agent.project))
    assert (metrics["total_instances"], metrics["active_instances"], metrics["terminated_instances"]) == (2, 1, 1)


def test_the_api_answers_503_agents_disabled_with_retry_after():
    response = exception_handler(AgentsDisabled(), {})
    assert response.status_code == 503
    assert response["Retry-After"] == "60"
    assert response.data == {
        "success": False,
        "errors": [{
            "code": "agents_disabled",
            "message": "Agents are disabled on this deployment (AGENTS_ENABLED=false).",
            "field": None,
        }],
    }


def test_switching_back_on_restores_the_lifecycle(project, agent_type):
    with disabled, pytest.raises(AgentsDisabled):
        services.agent_spawn(project=project, agent_type=agent_type, name="later")
    agent = services.agent_spawn(project=project, agent_type=agent_type, name="later")
    assert services.agent_transition(agent, S.WORKING).status == S.WORKING
