"""Every list answers with the same number of queries for one row as for many: joins and counts are part
of the list query, never a query per row (the house rule; NetBox and djangoproject.com pin it the same way).

Each test builds one row, counts the queries of the list request, builds many more rows — each with
its own related objects, so a missing join would show — and counts again. The figures are pinned, for a client in
steady use: its API token and its access to the project are read from the cache (``tests/api/test_access_cache.py``
pins the one query each costs when they are not).
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents import services
from agents.contexts import services as contexts
from agents.models import AgentTransition
from projects.choices import WorkspaceRole
from tests import factories
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

MANY = 25


def list_queries(client, url: str, expected_rows: int) -> int:
    """Queries of one ``GET url?limit=100`` after one before it (the token and the project access cached), after
    checking it listed ``expected_rows`` rows."""
    client.get(url, {"limit": 100})
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, {"limit": 100})
    assert response.status_code == 200, response.content
    assert len(response.json()["data"]) == expected_rows
    return len(captured.captured_queries)


def test_workspace_list(user):
    client = client_for(user)
    factories.MembershipFactory(user=user, role=WorkspaceRole.ADMIN)
    one = list_queries(client, "/api/v1/workspaces", 1)
    for n in range(MANY):
        if n % 2:
            factories.MembershipFactory(user=user, role=WorkspaceRole.VIEWER)
        else:
            factories.ProjectFactory(owner=user)  # seen as a project owner, without a membership
    assert list_queries(client, "/api/v1/workspaces", MANY + 1) == one == 2  # count, page (+ role subquery)


def test_project_list(user):
    client = client_for(user)
    workspace = factories.MembershipFactory(user=user, role=WorkspaceRole.OPERATOR).workspace
    factories.ProjectFactory(workspace=workspace)
    one = list_queries(client, "/api/v1/projects", 1)
    for _ in range(MANY):
        factories.ProjectFactory(workspace=workspace, owner=factories.UserFactory())
    assert list_queries(client, "/api/v1/projects", MANY + 1) == one == 2  # count, page (+ workspace, owner)


def test_issue_list(owner_client, project, agent_type):
    url = f"/api/v1/projects/{project.pk}/issues"
    factories.IssueFactory(project=project, assigned_agent=factories.AgentFactory(project=project,
                                                                                  agent_type=agent_type))
    one = list_queries(owner_client, url, 1)
    for n in range(MANY):
        agent = factories.AgentFactory(project=project, agent_type=agent_type) if n % 2 else None
        factories.IssueFactory(project=project, assigned_agent=agent)
    assert list_queries(owner_client, url, MANY + 1) == one == 2  # count, page (+ agent)


def test_agent_type_list(owner_client):
    factories.AgentTypeFactory()
    one = list_queries(owner_client, "/api/v1/agent-types", 1)
    for _ in range(MANY):
        factories.AgentTypeFactory()
    assert list_queries(owner_client, "/api/v1/agent-types", MANY + 1) == one == 2  # count, page


def test_agent_transition_list(owner_client, project, agent):
    url = f"/api/v1/projects/{project.pk}/agents/{agent.pk}/transitions"
    one = list_queries(owner_client, url, 1)
    for n in range(MANY // 2):
        actor = factories.UserFactory()
        services.agent_pause(agent, actor=actor, reason=f"break {n}")
        services.agent_resume(agent, actor=factories.UserFactory())
    rows = AgentTransition.objects.filter(agent=agent).count()
    assert rows == 1 + 2 * (MANY // 2)
    # the agent (with its joins and issue count), count, page (+ actor)
    assert list_queries(owner_client, url, rows) == one == 3


def test_context_list_and_version_list(owner_client, project, user):
    context = contexts.context_create(project=project, name="c0", data={"n": 0}, actor=user)
    base = f"/api/v1/projects/{project.pk}/contexts"
    one_list = list_queries(owner_client, base, 1)
    one_versions = list_queries(owner_client, f"{base}/{context.pk}/versions", 1)
    for n in range(1, MANY):
        contexts.context_create(project=project, name=f"c{n}", actor=factories.UserFactory())
        contexts.context_write(context, {"n": n}, actor=factories.AgentFactory(project=project) if n % 2 else None)
    assert list_queries(owner_client, base, MANY) == one_list == 2  # count, page
    # context, count, page (+ user and agent authors)
    assert list_queries(owner_client, f"{base}/{context.pk}/versions", MANY) == one_versions == 3
