"""Real concurrency against PostgreSQL: threads on a barrier, each with its own connection."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from agents import services
from agents.choices import AgentStatus as S
from agents.models import TRANSITIONS, AgentInstance, AgentTransition
from syndarix.exceptions import DomainError
from tests.factories import AgentFactory, AgentTypeFactory, ProjectFactory
from tests.threads import failures, run_concurrently

pytestmark = pytest.mark.django_db(transaction=True)


def replay(agent: AgentInstance) -> str:
    """Replay the ledger from the spawn row and return the status it ends in, checking every step."""
    rows = list(AgentTransition.objects.filter(agent=agent).order_by("created_at", "id"))
    assert rows[0].from_status == "" and rows[0].to_status == S.IDLE
    status = rows[0].to_status
    for row in rows[1:]:
        assert row.from_status == status, f"ledger gap: {row}"
        assert row.to_status in TRANSITIONS[status], f"illegal step in ledger: {row}"
        status = row.to_status
    return status


@pytest.fixture
def live_agent():
    return AgentFactory(project=ProjectFactory(), agent_type=AgentTypeFactory())


def test_sixteen_racing_threads_end_in_a_legal_state_the_ledger_replays(live_agent):
    actions = [services.agent_pause, services.agent_resume, services.agent_terminate]
    refused: list[DomainError] = []

    def work(index: int) -> None:
        rng = random.Random(index)
        for _ in range(5):
            try:
                rng.choice(actions)(AgentInstance.objects.get(pk=live_agent.pk))
            except DomainError as exc:  # illegal or already-terminated: the guard refusing is fine
                refused.append(exc)

    assert failures(run_concurrently(16, work)) == []
    final = AgentInstance.objects.get(pk=live_agent.pk)
    assert replay(final) == final.status
    assert AgentTransition.objects.filter(agent=final).count() > 1  # the race moved the agent
    assert {e.code for e in refused} <= {"invalid_transition", "already_terminated"}


def test_usage_increments_from_eight_threads_are_exact(live_agent):
    def work(index: int) -> None:
        for _ in range(100):
            services.agent_record_usage(live_agent, tokens=7, cost=Decimal("0.001"), tasks_completed=1)

    assert failures(run_concurrently(8, work)) == []
    agent = AgentInstance.objects.get(pk=live_agent.pk)
    assert (agent.tokens_used, agent.tasks_completed, agent.cost_incurred) == (5600, 800, Decimal("0.800000"))


def test_terminate_racing_resume_always_ends_terminated():
    project, agent_type = ProjectFactory(), AgentTypeFactory()
    for _ in range(10):
        agent = services.agent_pause(AgentFactory(project=project, agent_type=agent_type))

        def work(index: int, agent=agent) -> None:
            try:
                if index == 0:
                    services.agent_terminate(agent)
                else:
                    services.agent_resume(agent)
            except DomainError:
                pass  # resume after terminate is refused by the guard

        assert failures(run_concurrently(2, work)) == []
        final = AgentInstance.objects.get(pk=agent.pk)
        assert final.status == S.TERMINATED
        assert replay(final) == S.TERMINATED
