"""Input checks of ``agents.services.agent_record_usage``: bad increments are 400s, never 500s."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agents import services
from agents.models import AgentInstance
from syndarix.exceptions import InvalidInput

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "cost", ["NaN", "sNaN", "Infinity", "-Infinity", "1e400", "100000000000000", Decimal("Infinity")]
)
def test_non_finite_or_oversized_cost_is_invalid_input(agent, cost):
    with pytest.raises(InvalidInput) as info:
        services.agent_record_usage(agent, cost=cost)
    assert info.value.field == "cost"
    assert AgentInstance.objects.get(pk=agent.pk).cost_incurred == 0


@pytest.mark.parametrize(("field", "value"), [("tokens", "5"), ("tokens", 1.5), ("tasks_completed", True)])
def test_non_integer_counts_are_invalid_input(agent, field, value):
    with pytest.raises(InvalidInput) as info:
        services.agent_record_usage(agent, **{field: value})
    assert info.value.field == field
    assert AgentInstance.objects.get(pk=agent.pk).tokens_used == 0


def test_largest_cost_increment_is_accepted(agent):
    agent = services.agent_record_usage(agent, cost="99999999.999999", tokens=1, tasks_completed=1)
    assert agent.cost_incurred == Decimal("99999999.999999")
