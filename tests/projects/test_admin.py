"""The projects admin: a project's workspace and an issue's project are fixed once created."""

from __future__ import annotations

import pytest
from django.urls import reverse

from projects.models import Issue, Project
from tests.factories import AgentFactory, IssueFactory, ProjectFactory, UserFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def test_a_project_cannot_move_to_another_workspace(admin_client, project, agent):
    other = WorkspaceFactory()
    url = reverse("admin:projects_project_change", args=[project.pk])
    html = admin_client.get(url).content.decode()
    assert 'name="workspace"' not in html and project.workspace.name in html
    data = {"workspace": other.pk, "name": "Renamed", "slug": project.slug, "owner": project.owner_id,
            "description": ""}
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    saved = Project.objects.get(pk=project.pk)
    assert (saved.name, saved.workspace_id) == ("Renamed", project.workspace_id)
    assert agent.project.workspace_id == project.workspace_id


def test_a_new_project_chooses_its_workspace(admin_client):
    workspace, owner = WorkspaceFactory(), UserFactory()
    url = reverse("admin:projects_project_add")
    assert 'name="workspace"' in admin_client.get(url).content.decode()
    data = {"workspace": workspace.pk, "name": "New", "slug": "new", "owner": owner.pk, "description": ""}
    assert admin_client.post(url, data).status_code == 302
    assert Project.objects.get(slug="new").workspace == workspace


def test_an_issue_cannot_move_to_another_project(admin_client, project):
    issue = IssueFactory(project=project)
    other = ProjectFactory()
    url = reverse("admin:projects_issue_change", args=[issue.pk])
    assert 'name="project"' not in admin_client.get(url).content.decode()
    response = admin_client.post(url, {"project": other.pk, "title": "Moved?", "body": "", "status": "open"})
    assert response.status_code == 302
    saved = Issue.objects.get(pk=issue.pk)
    assert (saved.title, saved.project_id) == ("Moved?", project.pk)


def test_an_issue_is_still_assigned_within_its_project(admin_client, project):
    issue = IssueFactory(project=project)
    agent = AgentFactory(project=project)
    url = reverse("admin:projects_issue_change", args=[issue.pk])
    data = {"title": issue.title, "body": "", "status": "in_progress", "assigned_agent": agent.pk}
    assert admin_client.post(url, data).status_code == 302
    assert Issue.objects.get(pk=issue.pk).assigned_agent == agent
