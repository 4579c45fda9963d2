"""Input PostgreSQL cannot store — a NUL character in text or JSON, NaN/Infinity in JSON — is a 400 on the
field at fault, never a 500, and nothing is written.

``1e400`` is valid JSON syntax that Python reads as ``inf``; the bodies are raw JSON text so the test
sends exactly what a client would.
"""

from __future__ import annotations

import json

import pytest

from agents.models import AgentInstance, AgentType
from projects.models import Issue, Project, Workspace
from tests import factories
from tests.conftest import client_for

from .conftest import agents_url, fields

pytestmark = pytest.mark.django_db

#: (label, raw JSON value placed inside an object, expected error code)
BAD_JSON = [
    ("nul-in-string", '{"model": "a\\u0000b"}', "nul_character"),
    ("nul-in-key", '{"a\\u0000b": 1}', "nul_character"),
    ("out-of-range-float", '{"retries": 1e400}', "invalid_data"),
    ("too-deep", '{"a": ' * 70 + "1" + "}" * 70, "nesting_too_deep"),
]


def send(client, method: str, url: str, raw: str):
    return getattr(client, method)(url, raw, content_type="application/json")


@pytest.fixture
def staff_client(superuser):
    return client_for(superuser)


@pytest.mark.parametrize(("label", "value", "code"), BAD_JSON, ids=[b[0] for b in BAD_JSON])
def test_spawn_config_that_cannot_be_stored_is_400(owner_client, project, agent_type, label, value, code):
    raw = f'{{"agent_type_id": "{agent_type.pk}", "name": "x", "config": {value}}}'
    response = send(owner_client, "post", agents_url(project), raw)
    assert response.status_code == 400, response.content
    assert fields(response) == {"config": code}
    assert not AgentInstance.objects.exists()


@pytest.mark.parametrize("field", ["config", "short_term_memory"])
@pytest.mark.parametrize(("label", "value", "code"), BAD_JSON, ids=[b[0] for b in BAD_JSON])
def test_patch_json_that_cannot_be_stored_is_400(owner_client, project, agent, field, label, value, code):
    response = send(owner_client, "patch", agents_url(project, agent), f'{{"{field}": {value}}}')
    assert response.status_code == 400, response.content
    assert fields(response) == {field: code}
    unchanged = AgentInstance.objects.get(pk=agent.pk)
    assert (unchanged.config, unchanged.short_term_memory) == ({}, {})


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ('{"config_schema": {"description": "a\\u0000b"}}', "config_schema", "nul_character"),
        ('{"config_schema": {"a\\u0000b": {}}}', "config_schema", "nul_character"),
        ('{"config_schema": {"type": "number", "maximum": 1e400}}', "config_schema", "invalid_data"),
        ('{"capabilities": ["a\\u0000b"]}', "capabilities.0", "null_characters_not_allowed"),
    ],
)
@pytest.mark.parametrize("method", ["post", "patch"])
def test_agent_type_json_that_cannot_be_stored_is_400(staff_client, agent_type, method, body, field, code):
    before = AgentType.objects.values("capabilities", "config_schema").get(pk=agent_type.pk)
    if method == "post":
        raw = json.dumps({"name": "New", "slug": "new"})[:-1] + ", " + body[1:]
        response = send(staff_client, "post", "/api/v1/agent-types", raw)
    else:
        response = send(staff_client, "patch", f"/api/v1/agent-types/{agent_type.pk}", body)
    assert response.status_code == 400, response.content
    assert fields(response) == {field: code}
    assert not AgentType.objects.filter(slug="new").exists()
    assert AgentType.objects.values("capabilities", "config_schema").get(pk=agent_type.pk) == before


#: (client fixture, method, url template, body field, extra body) for every text field a client writes.
TEXT_FIELDS = [
    ("staff", "post", "/api/v1/workspaces", "name", {"slug": "w-new"}),
    ("staff", "patch", "/api/v1/workspaces/{workspace}", "name", {}),
    ("owner", "post", "/api/v1/projects", "name", {"workspace_id": "{workspace}", "slug": "p-new"}),
    ("owner", "post", "/api/v1/projects", "description", {"workspace_id": "{workspace}", "name": "P"}),
    ("owner", "patch", "/api/v1/projects/{project}", "name", {}),
    ("owner", "patch", "/api/v1/projects/{project}", "description", {}),
    ("owner", "post", "/api/v1/projects/{project}/issues", "title", {}),
    ("owner", "post", "/api/v1/projects/{project}/issues", "body", {"title": "T"}),
    ("owner", "patch", "/api/v1/projects/{project}/issues/{issue}", "title", {}),
    ("owner", "post", "/api/v1/projects/{project}/agents", "name", {"agent_type_id": "{agent_type}"}),
    ("owner", "post", "/api/v1/projects/{project}/agents", "current_task", {"agent_type_id": "{agent_type}",
                                                                            "name": "A"}),
    ("owner", "patch", "/api/v1/projects/{project}/agents/{agent}", "name", {}),
    ("owner", "patch", "/api/v1/projects/{project}/agents/{agent}", "current_task", {}),
    ("owner", "patch", "/api/v1/projects/{project}/agents/{agent}", "long_term_memory_ref", {}),
    ("owner", "patch", "/api/v1/projects/{project}/agents/{agent}", "session_id", {}),
    ("owner", "post", "/api/v1/projects/{project}/agents/{agent}/pause", "reason", {}),
    ("owner", "post", "/api/v1/projects/{project}/contexts", "name", {}),
    ("staff", "post", "/api/v1/agent-types", "name", {"slug": "t-new"}),
    ("staff", "post", "/api/v1/agent-types", "description", {"name": "T", "slug": "t-new"}),
    ("staff", "patch", "/api/v1/agent-types/{agent_type}", "handler", {}),
]


@pytest.mark.parametrize(
    ("who", "method", "url", "field", "extra"), TEXT_FIELDS, ids=[f"{t[1]}-{t[2]}-{t[3]}" for t in TEXT_FIELDS]
)
def test_a_nul_character_in_text_is_400_on_its_field(
    request, owner_client, staff_client, workspace, project, agent, agent_type, who, method, url, field, extra
):
    issue = factories.IssueFactory(project=project, title="Original")
    ids = {"workspace": workspace.pk, "project": project.pk, "agent": agent.pk, "agent_type": agent_type.pk,
           "issue": issue.pk}
    factories.MembershipFactory(workspace=workspace, user=project.owner, role="admin")
    client = staff_client if who == "staff" else owner_client
    body = {key: value.format(**ids) if isinstance(value, str) else value for key, value in extra.items()}
    raw = json.dumps({**body, field: "a\u0000b"})
    counts = [model.objects.count() for model in (Workspace, Project, Issue, AgentInstance, AgentType)]
    response = send(client, method, url.format(**ids), raw)
    assert response.status_code == 400, response.content
    assert fields(response) == {field: "null_characters_not_allowed"}
    assert [model.objects.count() for model in (Workspace, Project, Issue, AgentInstance, AgentType)] == counts
    assert Issue.objects.get(pk=issue.pk).title == "Original"
    assert Project.objects.get(pk=project.pk).name == project.name
    assert AgentInstance.objects.get(pk=agent.pk).name == agent.name


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [("post", "", {"name": "x"}), ("patch", "AGENT", {"name": "x"}), ("post", "AGENT/pause", {}),
     ("post", "AGENT/resume", {}), ("delete", "AGENT", None)],
)
def test_a_nul_character_in_the_idempotency_key_is_400(owner_client, project, agent, method, suffix, body):
    url = agents_url(project) + ("/" + suffix.replace("AGENT", str(agent.pk)) if suffix else "")
    if method == "post" and not suffix:
        body = {**body, "agent_type_id": str(agent.agent_type_id)}
    kwargs = {"format": "json"} if body is not None else {}
    args = (body,) if body is not None else ()
    response = getattr(owner_client, method)(url, *args, HTTP_IDEMPOTENCY_KEY="a\x00b", **kwargs)
    assert response.status_code == 400
    assert fields(response) == {"Idempotency-Key": "nul_character"}
    assert AgentInstance.objects.get(pk=agent.pk).status == "idle"
    assert AgentInstance.objects.count() == 1
