"""Two requests racing for the same slug: one 201, one 400 ``unique`` — never a 500.

Both requests are held at a barrier after their serializer validated the body (each saw the slug
free), so they reach the database together and its unique constraint decides.
"""

from __future__ import annotations

import threading

import pytest

from agents.models import AgentType
from agents.serializers import AgentTypeSerializer
from projects.models import Project, Workspace
from projects.serializers import ProjectSerializer, WorkspaceSerializer
from tests import factories
from tests.conftest import client_for
from tests.threads import run_concurrently

pytestmark = pytest.mark.django_db(transaction=True)


def race(monkeypatch, serializer_class, send, count: int = 2) -> list:
    """Run ``send()`` in ``count`` threads, all released together once each body has validated."""
    barrier = threading.Barrier(count, timeout=10)
    validate = serializer_class.validate

    def validate_then_wait(self, attrs):
        attrs = validate(self, attrs)
        barrier.wait()
        return attrs

    monkeypatch.setattr(serializer_class, "validate", validate_then_wait)
    return run_concurrently(count, lambda index: send(), timeout=30)


def outcome(responses) -> list[tuple[int, dict | None]]:
    result = []
    for response in sorted(responses, key=lambda r: r.status_code):
        error = response.json()["errors"][0] if response.status_code >= 400 else None
        result.append((response.status_code, error and {k: error[k] for k in ("code", "field")}))
    return result


@pytest.fixture
def superuser_api(superuser):
    client = client_for(superuser)
    client.raise_request_exception = False  # a 500 is an answer to assert on, not an exception in the thread
    return client


def test_racing_project_creates_with_one_slug(monkeypatch, superuser_api):
    workspace = factories.WorkspaceFactory()
    body = {"workspace_id": str(workspace.pk), "name": "Race", "slug": "race"}
    responses = race(
        monkeypatch, ProjectSerializer, lambda: superuser_api.post("/api/v1/projects", body, format="json")
    )
    assert outcome(responses) == [(201, None), (400, {"code": "unique", "field": "slug"})]
    assert Project.objects.filter(workspace=workspace, slug="race").count() == 1


def test_racing_project_renames_to_one_slug(monkeypatch, superuser_api):
    workspace = factories.WorkspaceFactory()
    first, second = (factories.ProjectFactory(workspace=workspace) for _ in range(2))
    urls = iter([f"/api/v1/projects/{first.pk}", f"/api/v1/projects/{second.pk}"])
    lock = threading.Lock()

    def send():
        with lock:
            url = next(urls)
        return superuser_api.patch(url, {"slug": "same"}, format="json")

    responses = race(monkeypatch, ProjectSerializer, send)
    assert outcome(responses) == [(200, None), (400, {"code": "unique", "field": "slug"})]
    assert Project.objects.filter(workspace=workspace, slug="same").count() == 1


def test_racing_workspace_creates_with_one_slug(monkeypatch, superuser_api):
    body = {"name": "Race", "slug": "race"}
    responses = race(
        monkeypatch, WorkspaceSerializer, lambda: superuser_api.post("/api/v1/workspaces", body, format="json")
    )
    assert outcome(responses) == [(201, None), (400, {"code": "unique", "field": "slug"})]
    assert Workspace.objects.filter(slug="race").count() == 1


def test_racing_agent_type_creates_with_one_slug(monkeypatch, superuser_api):
    body = {"name": "Race", "slug": "race"}
    responses = race(
        monkeypatch, AgentTypeSerializer, lambda: superuser_api.post("/api/v1/agent-types", body, format="json")
    )
    assert outcome(responses) == [(201, None), (400, {"code": "unique", "field": "slug"})]
    assert AgentType.objects.filter(slug="race").count() == 1
