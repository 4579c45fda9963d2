"""Workspaces, projects and issues through the API: reach, roles, validation, deletion rules."""

from __future__ import annotations

import uuid

import pytest

from agents.choices import AgentStatus as S
from agents.models import AgentInstance
from projects.choices import WorkspaceRole
from projects.models import Issue, Project, Workspace
from tests import factories
from tests.conftest import client_for
from tests.factories import agent_in_status

from .conftest import agents_url, codes, fields

pytestmark = pytest.mark.django_db

WORKSPACE_FIELDS = {"id", "name", "slug", "max_concurrent_agents", "agent_limit", "role", "created_at", "updated_at"}
PROJECT_FIELDS = {
    "id", "workspace_id", "workspace_slug", "workspace_name", "owner_id", "owner_username", "name", "slug",
    "description", "created_at", "updated_at",
}  # fmt: skip
ISSUE_FIELDS = {
    "id", "project_id", "title", "body", "status", "assigned_agent_id", "assigned_agent_name", "created_at",
    "updated_at",
}  # fmt: skip


def member(workspace, role):
    return factories.MembershipFactory(workspace=workspace, role=role).user


def issues_url(project, issue=None) -> str:
    url = f"/api/v1/projects/{project.pk}/issues"
    return f"{url}/{getattr(issue, 'pk', issue)}" if issue is not None else url


# --- workspaces ----------------------------------------------------------------------------------


def test_workspace_list_shows_memberships_and_owned_projects_only(project, user, workspace):
    joined = factories.WorkspaceFactory(name="Joined")
    factories.MembershipFactory(workspace=joined, user=user, role=WorkspaceRole.VIEWER)
    factories.WorkspaceFactory(name="Elsewhere")
    response = client_for(user).get("/api/v1/workspaces")
    assert response.status_code == 200
    data = response.json()["data"]
    assert {w["id"]: w["role"] for w in data} == {str(workspace.pk): None, str(joined.pk): "viewer"}
    assert set(data[0]) == WORKSPACE_FIELDS
    assert response.json()["pagination"]["total"] == 2


def test_superuser_sees_every_workspace(superuser_client):
    factories.WorkspaceFactory.create_batch(3)
    assert superuser_client.get("/api/v1/workspaces").json()["pagination"]["total"] == 3


def test_workspace_filters(superuser_client):
    factories.WorkspaceFactory(name="Alpha", slug="alpha")
    factories.WorkspaceFactory(name="Beta", slug="beta-team")
    names = [w["name"] for w in superuser_client.get("/api/v1/workspaces", {"q": "team"}).json()["data"]]
    assert names == ["Beta"]
    names = [w["name"] for w in superuser_client.get("/api/v1/workspaces", {"ordering": "-name"}).json()["data"]]
    assert names == ["Beta", "Alpha"]


def test_workspace_retrieve_is_404_outside_reach(stranger_client, owner_client, workspace, project):
    assert owner_client.get(f"/api/v1/workspaces/{workspace.pk}").json()["agent_limit"] == 50
    response = stranger_client.get(f"/api/v1/workspaces/{workspace.pk}")
    assert response.status_code == 404


def test_only_superusers_create_workspaces(superuser_client, owner_client):
    body = {"name": "Acme", "slug": "acme", "max_concurrent_agents": 5}
    response = owner_client.post("/api/v1/workspaces", body, format="json")
    assert response.status_code == 403
    response = superuser_client.post("/api/v1/workspaces", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["agent_limit"] == 5 and response.json()["role"] is None
    duplicate = superuser_client.post("/api/v1/workspaces", body, format="json")
    assert duplicate.status_code == 400
    assert fields(duplicate) == {"slug": "unique"}
    assert fields(superuser_client.post("/api/v1/workspaces", {"slug": "bad slug!"}, format="json")) == {
        "name": "required",
        "slug": "invalid",
    }


def test_workspace_admins_update_their_workspace_but_not_its_agent_limit(workspace):
    admin = client_for(member(workspace, WorkspaceRole.ADMIN))
    url = f"/api/v1/workspaces/{workspace.pk}"
    response = admin.patch(url, {"name": "Renamed"}, format="json")
    assert response.status_code == 200
    assert (response.json()["name"], response.json()["role"]) == ("Renamed", "admin")
    response = admin.patch(url, {"max_concurrent_agents": 500}, format="json")
    assert response.status_code == 403
    workspace.max_concurrent_agents = 5
    workspace.save(update_fields=["max_concurrent_agents"])
    assert admin.patch(url, {"max_concurrent_agents": None}, format="json").status_code == 403
    assert admin.patch(url, {"max_concurrent_agents": 5, "name": "Same limit"}, format="json").status_code == 200
    assert Workspace.objects.get(pk=workspace.pk).max_concurrent_agents == 5


@pytest.mark.parametrize("role", [WorkspaceRole.OPERATOR, WorkspaceRole.VIEWER])
def test_non_admin_members_cannot_update_a_workspace(workspace, role):
    response = client_for(member(workspace, role)).patch(
        f"/api/v1/workspaces/{workspace.pk}", {"name": "x"}, format="json"
    )
    assert response.status_code == 403
    assert codes(response) == ["permission_denied"]


def test_a_workspace_admin_cannot_probe_other_tenants_slugs(workspace):
    """Slugs are unique across tenants: a "slug already exists" answer would reveal another tenant's slug. A
    workspace admin gets the same 403 for a taken slug and a free one, and nothing changes."""
    factories.WorkspaceFactory(slug="rival-corp")
    admin = client_for(member(workspace, WorkspaceRole.ADMIN))
    url = f"/api/v1/workspaces/{workspace.pk}"
    taken, free = (admin.patch(url, {"slug": slug}, format="json") for slug in ("rival-corp", "no-such-tenant"))
    assert (taken.status_code, free.status_code) == (403, 403)
    assert taken.json() == free.json()
    assert codes(taken) == ["permission_denied"] and "exist" not in taken.json()["errors"][0]["message"]
    assert Workspace.objects.get(pk=workspace.pk).slug == workspace.slug
    assert admin.patch(url, {"slug": workspace.slug, "name": "Kept slug"}, format="json").status_code == 200


def test_a_superuser_is_told_a_slug_is_taken(superuser_client, workspace):
    factories.WorkspaceFactory(slug="rival-corp")
    response = superuser_client.patch(f"/api/v1/workspaces/{workspace.pk}", {"slug": "rival-corp"}, format="json")
    assert (response.status_code, fields(response)) == (400, {"slug": "unique"})
    response = superuser_client.patch(f"/api/v1/workspaces/{workspace.pk}", {"slug": "renamed"}, format="json")
    assert (response.status_code, response.json()["slug"]) == (200, "renamed")


def test_superuser_sets_the_agent_limit(superuser_client, workspace):
    response = superuser_client.patch(f"/api/v1/workspaces/{workspace.pk}", {"max_concurrent_agents": 3}, format="json")
    assert response.status_code == 200 and response.json()["agent_limit"] == 3


def test_workspace_delete_is_superuser_only_and_needs_it_empty(superuser_client, workspace, project):
    admin = client_for(member(workspace, WorkspaceRole.ADMIN))
    assert admin.delete(f"/api/v1/workspaces/{workspace.pk}").status_code == 403
    response = superuser_client.delete(f"/api/v1/workspaces/{workspace.pk}")
    assert response.status_code == 409
    assert codes(response) == ["workspace_not_empty"]
    empty = factories.WorkspaceFactory()
    assert superuser_client.delete(f"/api/v1/workspaces/{empty.pk}").status_code == 204
    assert not Workspace.objects.filter(pk=empty.pk).exists()


def test_workspaces_need_authentication(api_client, workspace):
    assert api_client.get("/api/v1/workspaces").status_code == 401
    assert api_client.patch(f"/api/v1/workspaces/{workspace.pk}", {}, format="json").status_code == 401


# --- projects ------------------------------------------------------------------------------------


def test_project_list_is_limited_to_reach(owner_client, project, user):
    factories.ProjectFactory(workspace=project.workspace)  # same workspace, but user is not a member
    factories.ProjectFactory()
    response = owner_client.get("/api/v1/projects")
    assert response.status_code == 200
    assert [p["id"] for p in response.json()["data"]] == [str(project.pk)]
    assert set(response.json()["data"][0]) == PROJECT_FIELDS
    assert response.json()["data"][0]["owner_username"] == user.username


def test_members_see_every_project_of_their_workspace(member_client, workspace, project):
    factories.ProjectFactory(workspace=workspace)
    factories.ProjectFactory()
    response = member_client(WorkspaceRole.VIEWER).get("/api/v1/projects", {"limit": 1})
    assert response.json()["pagination"] == {
        "total": 2,
        "total_exact": True,
        "page": 1,
        "page_size": 1,
        "total_pages": 2,
        "has_next": True,
        "has_prev": False,
        "next_cursor": None,  # ordered by workspace name (a related field): no cursor
    }


def test_project_filters(superuser_client, workspace):
    factories.ProjectFactory(workspace=workspace, name="Apollo")
    factories.ProjectFactory(workspace=workspace, name="Gemini")
    factories.ProjectFactory(name="Apollo elsewhere")

    def names(**params):
        return sorted(p["name"] for p in superuser_client.get("/api/v1/projects", params).json()["data"])

    assert names(workspace=workspace.slug) == ["Apollo", "Gemini"]
    assert names(workspace=str(workspace.pk), q="apo") == ["Apollo"]
    assert names(q="apollo") == ["Apollo", "Apollo elsewhere"]


def test_operator_creates_a_project_and_owns_it(member_client, workspace):
    client = member_client(WorkspaceRole.OPERATOR)
    response = client.post("/api/v1/projects", {"workspace_id": str(workspace.pk), "name": "Moon Shot"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["slug"] == "moon-shot"
    project = Project.objects.get(pk=body["id"])
    assert project.owner.username == body["owner_username"] and project.workspace == workspace


def test_viewer_cannot_create_a_project(member_client, workspace):
    response = member_client(WorkspaceRole.VIEWER).post(
        "/api/v1/projects", {"workspace_id": str(workspace.pk), "name": "x"}, format="json"
    )
    assert response.status_code == 403
    assert not Project.objects.exists()


def test_project_owner_without_membership_cannot_create_in_that_workspace(owner_client, workspace, project):
    response = owner_client.post("/api/v1/projects", {"workspace_id": str(workspace.pk), "name": "x"}, format="json")
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"name": "x"}, {"workspace_id": "required"}),
        ({"workspace_id": "UNSEEN", "name": "x"}, {"workspace_id": "does_not_exist"}),
        ({"workspace_id": "RANDOM", "name": "x"}, {"workspace_id": "does_not_exist"}),
        ({"workspace_id": "MINE", "name": "x", "slug": "taken"}, {"slug": "unique"}),
        ({"workspace_id": "MINE", "name": "!!!"}, {"slug": "invalid"}),
        ({"workspace_id": "MINE", "name": ""}, {"name": "blank"}),
    ],
)
def test_project_create_rejects_bad_input(member_client, workspace, body, expected):
    client = member_client(WorkspaceRole.ADMIN)
    factories.ProjectFactory(workspace=workspace, slug="taken")
    ids = {"UNSEEN": str(factories.WorkspaceFactory().pk), "RANDOM": str(uuid.uuid4()), "MINE": str(workspace.pk)}
    body = {k: ids.get(v, v) for k, v in body.items()}
    response = client.post("/api/v1/projects", body, format="json")
    assert response.status_code == 400
    assert fields(response) == expected


def test_project_update_by_owner_and_its_rules(owner_client, project, workspace):
    url = f"/api/v1/projects/{project.pk}"
    response = owner_client.patch(url, {"description": "new", "slug": "renamed"}, format="json")
    assert response.status_code == 200
    assert (response.json()["description"], response.json()["slug"]) == ("new", "renamed")
    other = factories.ProjectFactory(workspace=workspace, slug="other")
    assert fields(owner_client.patch(url, {"slug": other.slug}, format="json")) == {"slug": "unique"}
    moved = owner_client.patch(url, {"workspace_id": str(factories.WorkspaceFactory().pk)}, format="json")
    assert moved.status_code == 400
    assert (
        owner_client.patch(url, {"workspace_id": str(workspace.pk), "owner_id": 999}, format="json").status_code == 200
    )
    assert Project.objects.get(pk=project.pk).owner_id == project.owner_id


def test_project_writes_by_viewer_are_403_and_by_stranger_404(member_client, stranger_client, project):
    viewer = member_client(WorkspaceRole.VIEWER)
    url = f"/api/v1/projects/{project.pk}"
    assert viewer.get(url).status_code == 200
    assert viewer.patch(url, {"name": "x"}, format="json").status_code == 403
    assert viewer.delete(url).status_code == 403
    for method in ("get", "patch", "delete"):
        assert getattr(stranger_client, method)(url).status_code == 404
    assert Project.objects.get(pk=project.pk).name == project.name


def test_project_delete_is_refused_while_agents_live(owner_client, project, agent_type):
    agent = factories.AgentFactory(project=project, agent_type=agent_type)
    factories.IssueFactory(project=project, assigned_agent=agent)
    url = f"/api/v1/projects/{project.pk}"
    response = owner_client.delete(url)
    assert response.status_code == 409
    assert response.json()["errors"][0]["code"] == "project_has_live_agents"
    assert response.json()["errors"][0]["live_agents"] == 1
    assert owner_client.delete(agents_url(project, agent)).status_code == 200
    assert owner_client.delete(url).status_code == 204
    assert not Project.objects.filter(pk=project.pk).exists()
    assert not AgentInstance.objects.filter(pk=agent.pk).exists() and not Issue.objects.exists()


def test_projects_need_authentication(api_client, project):
    assert api_client.get("/api/v1/projects").status_code == 401
    assert api_client.post("/api/v1/projects", {}, format="json").status_code == 401


# --- issues --------------------------------------------------------------------------------------


def test_issue_crud(owner_client, project, agent):
    response = owner_client.post(
        issues_url(project), {"title": "Fix login", "body": "500 on bad password"}, format="json"
    )
    assert response.status_code == 201, response.json()
    issue = response.json()
    assert set(issue) == ISSUE_FIELDS
    assert (issue["status"], issue["assigned_agent_id"], issue["project_id"]) == ("open", None, str(project.pk))
    url = issues_url(project, issue["id"])
    response = owner_client.patch(url, {"assigned_agent_id": str(agent.pk), "status": "in_progress"}, format="json")
    assert response.status_code == 200
    assert (response.json()["assigned_agent_name"], response.json()["status"]) == (agent.name, "in_progress")
    assert owner_client.get(agents_url(project, agent)).json()["assigned_issues_count"] == 1
    assert owner_client.get(url).json()["assigned_agent_id"] == str(agent.pk)
    assert owner_client.patch(url, {"assigned_agent_id": None}, format="json").json()["assigned_agent_id"] is None
    assert owner_client.delete(url).status_code == 204
    assert not Issue.objects.exists()


def test_issue_can_only_be_assigned_to_a_live_agent_of_its_project(owner_client, project, user, agent_type):
    sibling = factories.ProjectFactory(workspace=project.workspace, owner=user)
    foreign = factories.AgentFactory(project=sibling, agent_type=agent_type)
    dead = agent_in_status(S.TERMINATED, project=project, agent_type=agent_type)
    for agent_id, code in (
        (foreign.pk, "does_not_exist"),
        (uuid.uuid4(), "does_not_exist"),
        (dead.pk, "agent_terminated"),
    ):
        response = owner_client.post(
            issues_url(project), {"title": "t", "assigned_agent_id": str(agent_id)}, format="json"
        )
        assert response.status_code == 400
        assert fields(response) == {"assigned_agent_id": code}
    assert response.json()["errors"][0]["message"]
    assert not Issue.objects.exists()


def test_issue_filters(owner_client, project, agent):
    factories.IssueFactory(project=project, title="Login bug", status="open", assigned_agent=agent)
    factories.IssueFactory(project=project, title="Docs", status="done")
    factories.IssueFactory(project=project, title="Deploy", status="closed")
    factories.IssueFactory(title="Elsewhere")

    def titles(**params):
        response = owner_client.get(issues_url(project), params)
        assert response.status_code == 200
        return sorted(i["title"] for i in response.json()["data"])

    assert titles() == ["Deploy", "Docs", "Login bug"]
    assert titles(status=["open", "done"]) == ["Docs", "Login bug"]
    assert titles(assigned_agent=str(agent.pk)) == ["Login bug"]
    assert titles(unassigned="true") == ["Deploy", "Docs"]
    assert titles(q="LOG") == ["Login bug"]
    assert owner_client.get(issues_url(project), {"status": "bogus"}).status_code == 400


def test_issue_access(member_client, stranger_client, project):
    issue = factories.IssueFactory(project=project)
    viewer = member_client(WorkspaceRole.VIEWER)
    assert viewer.get(issues_url(project, issue)).status_code == 200
    assert viewer.post(issues_url(project), {"title": "x"}, format="json").status_code == 403
    assert viewer.patch(issues_url(project, issue), {"title": "x"}, format="json").status_code == 403
    assert viewer.delete(issues_url(project, issue)).status_code == 403
    assert stranger_client.get(issues_url(project)).status_code == 404
    assert stranger_client.patch(issues_url(project, issue), {"title": "x"}, format="json").status_code == 404
    other = factories.IssueFactory()
    owner = client_for(project.owner)
    assert owner.get(issues_url(project, other)).status_code == 404  # an issue of another project
    assert Issue.objects.get(pk=issue.pk).title == issue.title


def test_issue_validation(owner_client, project):
    response = owner_client.post(issues_url(project), {"title": "", "status": "stuck"}, format="json")
    assert response.status_code == 400
    assert fields(response) == {"title": "blank", "status": "invalid_choice"}


def test_issues_need_authentication(api_client, project):
    assert api_client.get(issues_url(project)).status_code == 401
