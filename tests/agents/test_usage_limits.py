"""Usage counters cannot overflow: an increment that would pass a column's range is refused whole (409
``usage_limit_exceeded``), atomically with the increment, from the API, the service and the runtime's metering."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agents import services
from agents.exceptions import UsageLimitExceeded
from agents.models import AgentInstance, AgentRun, AgentRunStep
from agents.runtime.trace import STEP_TOKENS_MAX, step_record
from agents.services import USAGE_COUNTERS
from syndarix.exceptions import InvalidInput
from tests.api.conftest import agents_url
from tests.factories import AgentFactory
from tests.threads import run_concurrently

pytestmark = pytest.mark.django_db

TOKENS_MAX = USAGE_COUNTERS["tokens"][1]
COST_MAX = USAGE_COUNTERS["cost"][1]
TASKS_MAX = USAGE_COUNTERS["tasks_completed"][1]


def totals(agent) -> tuple:
    agent.refresh_from_db()
    return agent.tokens_used, agent.cost_incurred, agent.tasks_completed


def test_the_columns_hold_a_fleet_lifetime():
    assert TOKENS_MAX == TASKS_MAX == 2**63 - 1
    assert Decimal("99999999999999.999999") == COST_MAX  # 10^14 USD


def test_counters_reach_their_limits_exactly():
    agent = AgentFactory()
    AgentInstance.objects.filter(pk=agent.pk).update(
        tokens_used=TOKENS_MAX - 5, cost_incurred=COST_MAX - 1, tasks_completed=TASKS_MAX - 1
    )
    services.agent_record_usage(agent, tokens=5, cost=1, tasks_completed=1)
    assert totals(agent) == (TOKENS_MAX, COST_MAX, TASKS_MAX)


@pytest.mark.parametrize(
    ("counter", "start", "increment", "field"),
    [
        ("tokens_used", TOKENS_MAX - 1, {"tokens": 2}, "tokens"),
        ("cost_incurred", COST_MAX - Decimal("0.5"), {"cost": Decimal("1")}, "cost"),
        ("tasks_completed", TASKS_MAX, {"tasks_completed": 1}, "tasks_completed"),
    ],
)
def test_an_overflowing_increment_is_refused_and_records_nothing(counter, start, increment, field):
    agent = AgentFactory()
    AgentInstance.objects.filter(pk=agent.pk).update(**{counter: start})
    before = totals(agent)
    with pytest.raises(UsageLimitExceeded) as caught:
        services.agent_record_usage(agent, **{"tokens": 1, "cost": Decimal("0.1"), **increment})
    error = caught.value
    assert (error.code, error.status_code, error.field, error.extra["counter"]) == (
        "usage_limit_exceeded", 409, field, counter)
    assert error.extra["current"] == str(start)
    assert totals(agent) == before  # not even the other counters moved


def test_an_increment_larger_than_a_column_is_400():
    agent = AgentFactory()
    with pytest.raises(InvalidInput) as caught:
        services.agent_record_usage(agent, tokens=2**63)
    assert (caught.value.code, caught.value.field) == ("max_value", "tokens")
    assert totals(agent) == (0, Decimal("0"), 0)


def test_the_api_answers_409_with_the_totals_unchanged(owner_client, project):
    """The issue's report: 100 posts of cost=1000000 overflowed into a 500; now the counters hold 10^14 USD and
    the post that would pass it is a 409."""
    agent = AgentFactory(project=project)
    url = agents_url(project, agent, "usage")
    for _ in range(100):
        assert owner_client.post(url, {"cost": "1000000", "tasks_completed": 10**6}, format="json").status_code == 200
    assert totals(agent) == (0, Decimal("100000000"), 10**8)
    AgentInstance.objects.filter(pk=agent.pk).update(cost_incurred=COST_MAX - Decimal("999999"))
    response = owner_client.post(url, {"tokens": 3, "cost": "1000000"}, format="json")
    assert response.status_code == 409, response.json()
    assert response.json()["errors"] == [{
        "code": "usage_limit_exceeded", "field": "cost", "counter": "cost_incurred",
        "limit": "99999999999999.999999", "current": "99999999000000.999999",
        "message": "Adding this cost would take the agent's cost_incurred past its limit of 99999999999999.999999 "
                   "(now 99999999000000.999999); nothing was recorded.",
    }]
    assert totals(agent) == (0, COST_MAX - Decimal("999999"), 10**8)
    assert owner_client.post(url, {"tokens": 3}, format="json").status_code == 200  # other counters still count


def test_runtime_metering_refuses_what_no_counter_can_hold(project):
    agent = AgentFactory(project=project)
    run = AgentRun.objects.create(agent=agent, instruction="x")
    AgentInstance.objects.filter(pk=agent.pk).update(tokens_used=TOKENS_MAX - 10)
    with pytest.raises(UsageLimitExceeded):
        step_record(run.pk, kind="llm_call", prompt_tokens=6, completion_tokens=5, agent_id=agent.pk)
    with pytest.raises(InvalidInput):
        step_record(run.pk, kind="llm_call", prompt_tokens=STEP_TOKENS_MAX + 1, agent_id=agent.pk)
    assert not AgentRunStep.objects.filter(run=run).exists()
    run.refresh_from_db()
    assert (run.steps_completed, run.tokens_used) == (0, 0)
    step_record(run.pk, kind="llm_call", prompt_tokens=6, completion_tokens=4, agent_id=agent.pk)
    assert totals(agent)[0] == TOKENS_MAX


@pytest.mark.django_db(transaction=True)
def test_concurrent_increments_never_pass_the_limit():
    """20 increments of 1 race for the last 7 tokens: exactly 7 are recorded, 13 are refused, none overflow."""
    agent = AgentFactory()
    AgentInstance.objects.filter(pk=agent.pk).update(tokens_used=TOKENS_MAX - 7)
    results = run_concurrently(20, lambda _: services.agent_record_usage(agent, tokens=1))
    refused = [r for r in results if isinstance(r, UsageLimitExceeded)]
    assert len(refused) == 13 and all(isinstance(r, AgentInstance) for r in results if r not in refused)
    assert totals(agent)[0] == TOKENS_MAX
