"""The agent counters move with every spawn, transition and usage, in the same transaction, and the recompute
command rebuilds them from the agents; after a random workload of concurrent changes both agree."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection

from agents import counters, services
from agents.choices import AgentStatus as S
from agents.exceptions import AgentTerminated, AlreadyTerminated, ConcurrencyLimitExceeded, InvalidTransition
from agents.models import AgentCounter, AgentInstance, UsageDay, WorkspaceAgentCounter
from agents.runtime.trace import step_record
from agents.selectors import agent_metrics
from tests import factories
from tests.threads import failures, run_concurrently


def from_rows(project, *, include_playground=False):
    agents = AgentInstance.objects.filter(project=project)
    return agent_metrics(agents if include_playground else agents.filter(is_playground=False))


def live_rows(workspace):
    return AgentInstance.objects.filter(project__workspace=workspace).live().count()


@pytest.mark.django_db
def test_counters_follow_spawn_transitions_and_usage(project, agent_type):
    first = factories.AgentFactory(project=project, agent_type=agent_type)
    second = factories.AgentFactory(project=project, agent_type=agent_type)
    playground = services.agent_spawn(project=project, agent_type=agent_type, name="draft", is_playground=True)
    services.agent_pause(first)
    services.agent_transition(second, S.WORKING)
    services.agent_record_usage(second, tokens=1200, cost="0.25", tasks_completed=2)
    services.agent_record_usage(playground, tokens=7, cost="0.01")
    services.agent_terminate(first)

    metrics = counters.project_metrics(project)
    assert metrics == from_rows(project)
    assert metrics == {
        "total_instances": 2, "active_instances": 1, "idle_instances": 0, "waiting_instances": 0,
        "paused_instances": 0, "terminated_instances": 1, "total_tasks_completed": 2, "total_tokens_used": 1200,
        "total_cost_incurred": Decimal("0.25"), "total_unpriced_tokens": 0,
    }
    assert counters.project_metrics(project, include_playground=True) == from_rows(project, include_playground=True)
    assert counters.workspace_live(project.workspace) == live_rows(project.workspace) == 2
    assert counters.agent_count(project, statuses=["working", "terminated"]) == 2
    assert counters.agent_count(project, include_playground=True) == 3


@pytest.mark.django_db
def test_refused_changes_move_nothing(project, agent_type):
    agent = factories.agent_in_status(S.TERMINATED, project=project, agent_type=agent_type)
    before = counters.project_metrics(project)
    with pytest.raises(AlreadyTerminated):
        services.agent_terminate(agent)
    with pytest.raises(InvalidTransition):
        services.agent_resume(agent)
    with pytest.raises(AgentTerminated):
        services.agent_record_usage(agent, tokens=5)
    services.agent_pause(factories.agent_in_status(S.PAUSED, project=project, agent_type=agent_type))  # a no-op
    after = counters.project_metrics(project)
    assert after == from_rows(project)
    assert (after["terminated_instances"], after["paused_instances"]) == (1, 1)
    assert before["total_tokens_used"] == after["total_tokens_used"] == 0


@pytest.mark.django_db
def test_the_runtime_usage_and_completed_tasks_are_counted(project, agent_type):
    agent = factories.AgentFactory(project=project, agent_type=agent_type)
    run = agent.runs.create(instruction="count")
    step_record(run.pk, kind="llm_call", name="m", prompt_tokens=30, completion_tokens=12, cost=Decimal("0.002"),
                agent_id=agent.pk)
    assert counters.project_metrics(project) == from_rows(project)
    assert counters.project_metrics(project)["total_tokens_used"] == 42


@pytest.mark.django_db
def test_the_spawn_limit_reads_the_workspace_counter(agent_type):
    workspace = factories.WorkspaceFactory(max_concurrent_agents=1)
    project = factories.ProjectFactory(workspace=workspace)
    agent = factories.AgentFactory(project=project, agent_type=agent_type)
    WorkspaceAgentCounter.objects.filter(workspace=workspace).update(live=0)  # the counter, not the rows, decides
    factories.AgentFactory(project=project, agent_type=agent_type)
    with pytest.raises(ConcurrencyLimitExceeded):
        factories.AgentFactory(project=project, agent_type=agent_type)
    services.agent_terminate(agent)
    assert counters.workspace_live(workspace) == 0  # one termination frees one slot


@pytest.mark.django_db
def test_deleting_a_project_takes_its_counters(project, agent_type):
    from projects.services import project_delete

    factories.agent_in_status(S.TERMINATED, project=project, agent_type=agent_type)
    project_delete(project=project)
    assert not AgentCounter.objects.filter(project_id=project.pk).exists()
    assert counters.workspace_live(project.workspace) == 0


@pytest.mark.django_db
def test_recompute_command_rebuilds_wrong_counters(project, agent_type, capsys):
    agent = factories.AgentFactory(project=project, agent_type=agent_type)
    services.agent_record_usage(agent, tokens=10, cost="1.5", tasks_completed=1)
    other = factories.AgentFactory(agent_type=agent_type)  # another workspace, untouched
    AgentCounter.objects.filter(project=project).update(idle=5)
    UsageDay.objects.filter(project=project).update(tokens_used=3)
    WorkspaceAgentCounter.objects.filter(workspace=project.workspace).update(live=9)
    AgentCounter.objects.filter(project=other.project).delete()

    call_command("recompute_agent_counters", "--dry-run", verbosity=2)
    out = capsys.readouterr().out
    assert "idle 5 → 1" in out and "tokens_used 3 → 10" in out and "live 9 → 1" in out
    assert "4 counter value(s) would be corrected." in out
    assert AgentCounter.objects.get(project=project, is_playground=False).idle == 5  # dry run: unchanged

    call_command("recompute_agent_counters", verbosity=1)
    assert "4 counter value(s) corrected." in capsys.readouterr().out
    assert counters.project_metrics(project) == from_rows(project)
    assert counters.project_metrics(other.project) == from_rows(other.project)
    assert counters.workspace_live(project.workspace) == 1
    call_command("recompute_agent_counters")
    assert "Every counter matches the agents." in capsys.readouterr().out


@pytest.mark.django_db
def test_recompute_command_refuses_an_unknown_workspace():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No workspace 'nope'"):
        call_command("recompute_agent_counters", "--workspace", "nope")


@pytest.mark.django_db(transaction=True)
def test_counters_equal_a_recompute_after_a_random_concurrent_workload(agent_type):
    """Threads spawn, move and charge agents of two projects of one workspace at once; afterwards the counters
    equal what a recompute from the rows finds, value for value."""
    assert connection.vendor == "postgresql"
    workspace = factories.WorkspaceFactory(max_concurrent_agents=10_000)
    projects = [factories.ProjectFactory(workspace=workspace) for _ in range(2)]
    agents = [factories.AgentFactory(project=projects[i % 2], agent_type=agent_type) for i in range(8)]
    targets = [S.IDLE, S.WORKING, S.WAITING, S.PAUSED, S.TERMINATED]
    expected = (InvalidTransition, AlreadyTerminated, AgentTerminated)

    def workload(index: int) -> int:
        rng = random.Random(index)
        done = 0
        for n in range(25):
            choice = rng.random()
            try:
                if choice < 0.15:
                    services.agent_spawn(project=rng.choice(projects), agent_type=agent_type, name=f"w{index}-{n}",
                                         is_playground=rng.random() < 0.2)
                elif choice < 0.75:
                    services.agent_transition(rng.choice(agents), rng.choice(targets[:4] if rng.random() < 0.9
                                                                             else targets))
                else:
                    services.agent_record_usage(rng.choice(agents), tokens=rng.randint(0, 500),
                                                cost=Decimal(rng.randint(0, 10_000)) / 10_000,
                                                tasks_completed=rng.randint(0, 2))
                done += 1
            except expected:
                pass
        return done

    results = run_concurrently(6, workload)
    assert not failures(results), failures(results)
    assert sum(results) > 50  # most changes went through
    assert counters.counters_recompute(dry_run=True) == []
    for project in projects:
        assert counters.project_metrics(project, include_playground=True) == from_rows(project, include_playground=True)
    assert counters.workspace_live(workspace) == live_rows(workspace)


@pytest.mark.django_db
def test_a_projects_agents_spread_over_shard_rows_whose_sums_are_the_counts(project, agent_type):
    agents = [factories.AgentFactory(project=project, agent_type=agent_type) for _ in range(12)]
    for agent in agents[:5]:
        services.agent_pause(agent)
    services.agent_record_usage(agents[0], tokens=7, cost="0.5", tasks_completed=2)

    rows = AgentCounter.objects.filter(project=project, is_playground=False)
    assert rows.count() == len({counters.shard_of(agent.pk) for agent in agents}) > 1
    assert {row.shard for row in rows} <= set(range(counters.COUNTER_SHARDS))
    assert counters.project_metrics(project) == from_rows(project)
    assert counters.agent_count(project, statuses=["paused"]) == 5
