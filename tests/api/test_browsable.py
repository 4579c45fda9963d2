"""The browsable API renders every page for a logged-in (session) user."""

from __future__ import annotations

import pytest

from tests import factories

from .conftest import agents_url

pytestmark = pytest.mark.django_db


def test_browsable_pages_render(client, user, project, agent):
    issue = factories.IssueFactory(project=project, assigned_agent=agent)
    client.force_login(user)
    pages = [
        "/api/v1/",
        "/api/v1/auth/token",
        "/api/v1/workspaces",
        f"/api/v1/workspaces/{project.workspace_id}",
        "/api/v1/projects",
        f"/api/v1/projects/{project.pk}",
        f"/api/v1/projects/{project.pk}/issues",
        f"/api/v1/projects/{project.pk}/issues/{issue.pk}",
        "/api/v1/agent-types",
        f"/api/v1/agent-types/{agent.agent_type_id}",
        agents_url(project),
        agents_url(project, suffix="metrics"),
        agents_url(project, agent),
        agents_url(project, agent, "metrics"),
        agents_url(project, agent, "transitions"),
        agents_url(project, agent, "pause"),
        agents_url(project, agent, "usage"),
    ]
    for url in pages:
        response = client.get(url, HTTP_ACCEPT="text/html")
        assert response.status_code in (200, 405), (url, response.status_code)
        assert response["Content-Type"].startswith("text/html"), url
