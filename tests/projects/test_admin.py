"""The projects admin: a project's workspace and an issue's project are fixed once created."""

from __future__ import annotations

import pytest
from django.urls import reverse

from projects.models import Issue, Project, Workspace
from syndarix.exceptions import InvalidInput
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


# --- Workspaces and projects are saved through their race-safe services. ---

MEMBERS = {"memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"}


def spy(monkeypatch, *names):
    """Record the calls of ``projects.services`` functions ``names`` (they still run)."""
    from projects import services

    calls = []
    for name in names:
        real = getattr(services, name)
        monkeypatch.setattr(services, name,
                            lambda *a, _real=real, _name=name, **kw: calls.append(_name) or _real(*a, **kw))
    return calls


def test_workspace_admin_saves_through_the_services(admin_client, monkeypatch):
    calls = spy(monkeypatch, "workspace_create", "workspace_update")
    data = {"name": "Acme", "slug": "acme", "max_concurrent_agents": "", **MEMBERS}
    assert admin_client.post(reverse("admin:projects_workspace_add"), data).status_code == 302
    workspace = Workspace.objects.get(slug="acme")
    url = reverse("admin:projects_workspace_change", args=[workspace.pk])
    assert admin_client.post(url, {**data, "max_concurrent_agents": "3"}).status_code == 302
    assert calls == ["workspace_create", "workspace_update"]
    assert Workspace.objects.get(pk=workspace.pk).max_concurrent_agents == 3


def test_project_admin_saves_through_the_services(admin_client, monkeypatch, workspace, user):
    calls = spy(monkeypatch, "project_create", "project_update")
    data = {"workspace": workspace.pk, "name": "New", "slug": "new", "owner": user.pk, "description": ""}
    assert admin_client.post(reverse("admin:projects_project_add"), data).status_code == 302
    project = Project.objects.get(slug="new")
    url = reverse("admin:projects_project_change", args=[project.pk])
    assert 'name="owner"' not in admin_client.get(url).content.decode()  # project_update keeps the owner
    assert admin_client.post(url, {**data, "description": "Now described"}).status_code == 302
    assert calls == ["project_create", "project_update"]
    assert Project.objects.get(pk=project.pk).description == "Now described"


@pytest.mark.parametrize("model", ["workspace", "project"])
def test_a_slug_taken_during_the_save_is_a_form_error_not_a_server_error(admin_client, monkeypatch, workspace, user,
                                                                        model):
    """The race: the form's uniqueness check passed, then a concurrent request took the slug before the write."""
    from projects import services

    message = services.WORKSPACE_SLUG_TAKEN if model == "workspace" else services.PROJECT_SLUG_TAKEN

    def lose_the_race(**fields):
        raise InvalidInput(message, code="unique", field="slug")

    monkeypatch.setattr(services, f"{model}_create", lose_the_race)
    data = {"name": "Raced", "slug": "raced", "max_concurrent_agents": "", **MEMBERS} if model == "workspace" else \
        {"workspace": workspace.pk, "name": "Raced", "slug": "raced", "owner": user.pk, "description": ""}
    response = admin_client.post(reverse(f"admin:projects_{model}_add"), data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["slug"] == [message]
    assert 'value="Raced"' in response.content.decode()
    assert not Workspace.objects.filter(slug="raced").exists() and not Project.objects.filter(slug="raced").exists()


def test_a_real_slug_clash_on_change_is_a_form_error(admin_client, workspace, user):
    ProjectFactory(workspace=workspace, slug="taken")
    project = ProjectFactory(workspace=workspace, slug="free")
    url = reverse("admin:projects_project_change", args=[project.pk])
    response = admin_client.post(url, {"name": project.name, "slug": "taken", "description": ""})
    assert response.status_code == 200 and response.context["adminform"].form.errors["slug"]
    assert Project.objects.get(pk=project.pk).slug == "free"
