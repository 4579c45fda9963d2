"""The workspace concurrency limit on live (non-terminated) agents, including under concurrent spawns."""

from __future__ import annotations

import pytest
from django.test import override_settings

from agents import services
from agents.choices import AgentStatus as S
from agents.exceptions import ConcurrencyLimitExceeded
from agents.models import AgentInstance, AgentTransition
from syndarix.api.exceptions import exception_handler
from tests.factories import AgentFactory, AgentTypeFactory, ProjectFactory, WorkspaceFactory, agent_in_status
from tests.threads import run_concurrently


@pytest.mark.django_db
def test_spawning_past_the_workspace_limit_is_a_409_with_limit_and_current():
    workspace = WorkspaceFactory(max_concurrent_agents=2)
    project = ProjectFactory(workspace=workspace)
    AgentFactory(project=project)
    AgentFactory(project=ProjectFactory(workspace=workspace))  # the limit spans the workspace's projects
    with pytest.raises(ConcurrencyLimitExceeded) as info:
        AgentFactory(project=project)
    error = info.value
    assert (error.status_code, error.code, error.extra) == (409, "concurrency_limit", {"limit": 2, "current": 2})
    response = exception_handler(error, {})
    assert response.status_code == 409
    assert response.data["errors"][0] == {
        "code": "concurrency_limit",
        "message": "The workspace already has 2 live agents; its limit is 2.",
        "field": None,
        "limit": 2,
        "current": 2,
    }
    assert AgentInstance.objects.filter(project__workspace=workspace).count() == 2


@pytest.mark.django_db
def test_terminated_agents_free_their_slot_and_other_workspaces_do_not_count():
    workspace = WorkspaceFactory(max_concurrent_agents=1)
    project = ProjectFactory(workspace=workspace)
    AgentFactory()  # another workspace
    first = agent_in_status(S.PAUSED, project=project)  # paused still counts
    with pytest.raises(ConcurrencyLimitExceeded):
        AgentFactory(project=project)
    services.agent_terminate(first)
    assert AgentFactory(project=project).status == S.IDLE


@pytest.mark.django_db
def test_the_setting_applies_when_the_workspace_sets_no_limit():
    project = ProjectFactory(workspace=WorkspaceFactory(max_concurrent_agents=None))
    with override_settings(AGENT_MAX_CONCURRENCY=1):
        AgentFactory(project=project)
        with pytest.raises(ConcurrencyLimitExceeded) as info:
            AgentFactory(project=project)
    assert info.value.extra == {"limit": 1, "current": 1}
    with override_settings(AGENT_MAX_CONCURRENCY=2):
        AgentFactory(project=project)


@pytest.mark.django_db
def test_a_workspace_limit_overrides_the_setting_both_ways():
    strict = ProjectFactory(workspace=WorkspaceFactory(max_concurrent_agents=0))
    roomy = ProjectFactory(workspace=WorkspaceFactory(max_concurrent_agents=3))
    with override_settings(AGENT_MAX_CONCURRENCY=1):
        with pytest.raises(ConcurrencyLimitExceeded):
            AgentFactory(project=strict)
        for _ in range(3):
            AgentFactory(project=roomy)


@pytest.mark.django_db
def test_an_idempotent_replay_at_the_limit_returns_the_original_agent():
    project = ProjectFactory(workspace=WorkspaceFactory(max_concurrent_agents=1))
    agent_type = AgentTypeFactory()
    first = services.agent_spawn(project=project, agent_type=agent_type, name="a", request_id="key-1")
    again = services.agent_spawn(project=project, agent_type=agent_type, name="a", request_id="key-1")
    assert again.pk == first.pk


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_spawns_into_a_workspace_limited_to_five_create_exactly_five():
    threads_count, limit = 20, 5
    workspace = WorkspaceFactory(max_concurrent_agents=limit)
    project = ProjectFactory(workspace=workspace)
    agent_type = AgentTypeFactory()

    def spawn(n: int):
        return services.agent_spawn(project=project, agent_type=agent_type, name=f"racer-{n}")

    results = run_concurrently(threads_count, spawn)
    created = [r.pk for r in results if isinstance(r, AgentInstance)]
    refused = [r.extra for r in results if isinstance(r, ConcurrencyLimitExceeded)]
    unexpected = [r for r in results if not isinstance(r, AgentInstance | ConcurrencyLimitExceeded)]

    assert unexpected == []
    assert len(created) == limit
    assert refused == [{"limit": limit, "current": limit}] * (threads_count - limit)
    assert AgentInstance.objects.filter(project__workspace=workspace).count() == limit
    assert AgentTransition.objects.filter(agent__project=project, reason="spawned").count() == limit
