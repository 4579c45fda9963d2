"""Playground agents stay out of the per-project summary (admin index, ``agent_metrics``) unless asked."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from agents import services
from agents.selectors import project_agent_summary
from tests.factories import AgentFactory, ProjectFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def mixed(user, workspace, agent_type):
    """A project with two regular agents (one busy) and two playground agents (one busy)."""
    project = ProjectFactory(workspace=workspace, owner=user, name="Mixed", slug="mixed")
    busy = AgentFactory(project=project, agent_type=agent_type)
    services.agent_record_usage(busy, tokens=1000, cost="1.5", tasks_completed=2)
    AgentFactory(project=project, agent_type=agent_type)
    trial = AgentFactory(project=project, agent_type=agent_type, is_playground=True)
    services.agent_record_usage(trial, tokens=50, cost="0.25", tasks_completed=1)
    services.agent_pause(AgentFactory(project=project, agent_type=agent_type, is_playground=True))
    return project


def figures(row):
    return (row.total_instances, row.idle_instances, row.paused_instances, row.total_tasks_completed,
            row.total_tokens_used, row.total_cost_incurred)


def test_the_summary_leaves_playground_agents_out_by_default(mixed, django_assert_num_queries):
    with django_assert_num_queries(1):
        (row,) = project_agent_summary()
    assert figures(row) == (2, 2, 0, 2, 1000, Decimal("1.5"))


def test_the_summary_counts_playground_agents_when_asked(mixed, django_assert_num_queries):
    with django_assert_num_queries(1):
        (row,) = project_agent_summary(include_playground=True)
    assert figures(row) == (4, 3, 1, 3, 1050, Decimal("1.75"))


def test_a_project_with_only_playground_agents_shows_zeros(user, workspace, agent_type):
    project = ProjectFactory(workspace=workspace, owner=user)
    AgentFactory(project=project, agent_type=agent_type, is_playground=True)
    (row,) = project_agent_summary()
    assert figures(row) == (0, 0, 0, 0, 0, Decimal("0"))


def metrics(*args) -> dict:
    out = StringIO()
    call_command("agent_metrics", "--json", *args, stdout=out, stderr=StringIO())
    return json.loads(out.getvalue())


def test_agent_metrics_leaves_playground_agents_out_unless_asked(mixed):
    default = metrics()["totals"]
    assert (default["total_instances"], default["total_tokens_used"], default["total_cost_incurred"]) == (
        2, 1000, "1.500000")
    included = metrics("--include-playground")["totals"]
    assert (included["total_instances"], included["paused_instances"], included["total_cost_incurred"]) == (
        4, 1, "1.750000")


def test_the_admin_index_leaves_playground_agents_out(client, superuser, mixed):
    client.force_login(superuser)
    response = client.get(reverse("admin:index"))
    (row,) = response.context["project_summary"]
    assert row.total_instances == 2
    assert response.context["project_summary_totals"]["total_tokens_used"] == 1000
    assert "Playground agents are not counted" in response.content.decode()
