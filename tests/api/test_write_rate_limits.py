"""Every write endpoint of workspaces, projects, issues, agent types and contexts answers 429 over its limit.

Each test lowers the action's limit to one request a minute (``monkeypatch`` on the view's
``rate_limits``), so a real write goes through and the next one is refused — with nothing changed.
``tests/api/test_rate_limits.py`` checks the configured limits themselves.
"""

from __future__ import annotations

import pytest

from agents.contexts import services as contexts
from agents.contexts.views import AgentContextViewSet
from agents.models import AgentContext, AgentContextVersion, AgentType
from agents.views import AgentTypeViewSet
from projects.models import Issue, Project, Workspace
from projects.views import IssueViewSet, ProjectViewSet, WorkspaceViewSet
from tests import factories

from .conftest import codes

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_rate_window")]


def limit_to_one(monkeypatch, viewset, action: str) -> None:
    assert action in viewset.rate_limits, f"{viewset.__name__} has no limit for {action}"
    monkeypatch.setattr(viewset, "rate_limits", {**viewset.rate_limits, action: "1/m"})


def assert_limited(response) -> None:
    assert response.status_code == 429, response.content
    assert codes(response) == ["rate_limited"]
    assert 1 <= int(response["Retry-After"]) <= 60


def _workspaces(client, project):
    first, second = factories.WorkspaceFactory(), factories.WorkspaceFactory()
    return {
        "create": (
            lambda: client.post("/api/v1/workspaces", {"name": "A", "slug": "a"}, format="json"),
            lambda: client.post("/api/v1/workspaces", {"name": "B", "slug": "b"}, format="json"),
            lambda: not Workspace.objects.filter(slug="b").exists(),
        ),
        "partial_update": (
            lambda: client.patch(f"/api/v1/workspaces/{first.pk}", {"name": "One"}, format="json"),
            lambda: client.patch(f"/api/v1/workspaces/{second.pk}", {"name": "Two"}, format="json"),
            lambda: Workspace.objects.get(pk=second.pk).name == second.name,
        ),
        "destroy": (
            lambda: client.delete(f"/api/v1/workspaces/{first.pk}"),
            lambda: client.delete(f"/api/v1/workspaces/{second.pk}"),
            lambda: Workspace.objects.filter(pk=second.pk).exists(),
        ),
    }


def _projects(client, project):
    workspace = project.workspace
    first, second = (factories.ProjectFactory(workspace=workspace) for _ in range(2))
    return {
        "create": (
            lambda: client.post("/api/v1/projects", {"workspace_id": str(workspace.pk), "name": "A"}, format="json"),
            lambda: client.post("/api/v1/projects", {"workspace_id": str(workspace.pk), "name": "B"}, format="json"),
            lambda: not Project.objects.filter(slug="b").exists(),
        ),
        "partial_update": (
            lambda: client.patch(f"/api/v1/projects/{first.pk}", {"name": "One"}, format="json"),
            lambda: client.patch(f"/api/v1/projects/{second.pk}", {"name": "Two"}, format="json"),
            lambda: Project.objects.get(pk=second.pk).name == second.name,
        ),
        "destroy": (
            lambda: client.delete(f"/api/v1/projects/{first.pk}"),
            lambda: client.delete(f"/api/v1/projects/{second.pk}"),
            lambda: Project.objects.filter(pk=second.pk).exists(),
        ),
    }


def _issues(client, project):
    base = f"/api/v1/projects/{project.pk}/issues"
    first, second = (factories.IssueFactory(project=project) for _ in range(2))
    return {
        "create": (
            lambda: client.post(base, {"title": "A"}, format="json"),
            lambda: client.post(base, {"title": "B"}, format="json"),
            lambda: not Issue.objects.filter(title="B").exists(),
        ),
        "partial_update": (
            lambda: client.patch(f"{base}/{first.pk}", {"status": "done"}, format="json"),
            lambda: client.patch(f"{base}/{second.pk}", {"status": "done"}, format="json"),
            lambda: Issue.objects.get(pk=second.pk).status == "open",
        ),
        "destroy": (
            lambda: client.delete(f"{base}/{first.pk}"),
            lambda: client.delete(f"{base}/{second.pk}"),
            lambda: Issue.objects.filter(pk=second.pk).exists(),
        ),
    }


def _agent_types(client, project):
    first, second = factories.AgentTypeFactory(), factories.AgentTypeFactory()
    return {
        "create": (
            lambda: client.post("/api/v1/agent-types", {"name": "A", "slug": "a"}, format="json"),
            lambda: client.post("/api/v1/agent-types", {"name": "B", "slug": "b"}, format="json"),
            lambda: not AgentType.objects.filter(slug="b").exists(),
        ),
        "partial_update": (
            lambda: client.patch(f"/api/v1/agent-types/{first.pk}", {"is_active": False}, format="json"),
            lambda: client.patch(f"/api/v1/agent-types/{second.pk}", {"is_active": False}, format="json"),
            lambda: AgentType.objects.get(pk=second.pk).is_active,
        ),
        "destroy": (
            lambda: client.delete(f"/api/v1/agent-types/{first.pk}"),
            lambda: client.delete(f"/api/v1/agent-types/{second.pk}"),
            lambda: AgentType.objects.filter(pk=second.pk).exists(),
        ),
    }


def _contexts(client, project):
    base = f"/api/v1/projects/{project.pk}/contexts"
    first = contexts.context_create(project=project, name="first", data={"v": 1})
    second = contexts.context_create(project=project, name="second", data={"v": 1})
    for context in (first, second):
        contexts.context_write(context, {"v": 2})

    def versions(context) -> list[tuple[int, bool]]:
        return list(AgentContextVersion.objects.filter(context=context).order_by("version").values_list("version",
                                                                                                      "pinned"))

    return {
        "create": (
            lambda: client.post(base, {"name": "a"}, format="json"),
            lambda: client.post(base, {"name": "b"}, format="json"),
            lambda: not AgentContext.objects.filter(name="b").exists(),
        ),
        "destroy": (
            lambda: client.delete(f"{base}/{first.pk}"),
            lambda: client.delete(f"{base}/{second.pk}"),
            lambda: AgentContext.objects.filter(pk=second.pk).exists(),
        ),
        "rollback": (
            lambda: client.post(f"{base}/{first.pk}/rollback", {"target_version": 1}, format="json"),
            lambda: client.post(f"{base}/{second.pk}/rollback", {"target_version": 1}, format="json"),
            lambda: versions(second) == [(1, False), (2, False)],
        ),
        "pin": (
            lambda: client.post(f"{base}/{first.pk}/versions/1/pin"),
            lambda: client.post(f"{base}/{second.pk}/versions/1/pin"),
            lambda: versions(second) == [(1, False), (2, False)],
        ),
        "unpin": (
            lambda: client.post(f"{base}/{first.pk}/versions/1/unpin"),
            lambda: (contexts.context_pin(second, 1), client.post(f"{base}/{second.pk}/versions/1/unpin"))[1],
            lambda: versions(second) == [(1, True), (2, False)],
        ),
    }


CASES = [
    (WorkspaceViewSet, _workspaces, action) for action in ("partial_update", "destroy")
] + [
    (ProjectViewSet, _projects, action) for action in ("partial_update", "destroy")
] + [
    (IssueViewSet, _issues, action) for action in ("partial_update", "destroy")
] + [
    (AgentTypeViewSet, _agent_types, action) for action in ("partial_update", "destroy")
] + [
    (AgentContextViewSet, _contexts, action) for action in ("create", "destroy", "rollback", "pin", "unpin")
] + [
    # Create also hits its configured limit in test_rate_limits.py; here it checks that nothing is made.
    (WorkspaceViewSet, _workspaces, "create"), (ProjectViewSet, _projects, "create"),
    (IssueViewSet, _issues, "create"), (AgentTypeViewSet, _agent_types, "create"),
]


@pytest.mark.parametrize(
    ("viewset", "make", "action"), CASES, ids=[f"{viewset.__name__}.{action}" for viewset, _, action in CASES]
)
def test_a_write_over_its_limit_is_429_and_changes_nothing(monkeypatch, superuser_client, project, viewset, make,
                                                           action):
    first, second, unchanged = make(superuser_client, project)[action]
    limit_to_one(monkeypatch, viewset, action)
    response = first()
    assert response.status_code in (200, 201, 204), response.content
    assert response["X-RateLimit-Limit"] == "1" and response["X-RateLimit-Remaining"] == "0"
    assert_limited(second())
    assert unchanged()
