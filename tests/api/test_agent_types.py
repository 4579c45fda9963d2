"""Agent types: read for any authenticated user, write for staff with the model permission."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Permission

from agents.models import AgentType
from tests import factories
from tests.conftest import client_for

from .conftest import agents_url, codes, fields

pytestmark = pytest.mark.django_db

SCHEMA = {"type": "object", "properties": {"depth": {"type": "integer", "minimum": 1}}, "required": ["depth"]}


def staff_with(*codenames):
    user = factories.UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="agents", codename__in=codenames))
    return client_for(user)


def test_any_authenticated_user_reads_agent_types(stranger_client, agent_type):
    factories.AgentTypeFactory(name="Zeta", is_active=False)
    response = stranger_client.get("/api/v1/agent-types")
    assert response.status_code == 200
    assert response.json()["pagination"]["total"] == 2
    assert set(response.json()["data"][0]) == {
        "id", "name", "slug", "description", "capabilities", "config_schema", "handler", "is_active", "created_at",
        "updated_at", "max_tokens", "max_cost_usd",
    }  # fmt: skip
    active = stranger_client.get("/api/v1/agent-types", {"is_active": "true"}).json()["data"]
    assert [t["id"] for t in active] == [str(agent_type.pk)]
    assert stranger_client.get("/api/v1/agent-types", {"q": "zet"}).json()["data"][0]["name"] == "Zeta"
    detail = stranger_client.get(f"/api/v1/agent-types/{agent_type.pk}")
    assert detail.status_code == 200 and detail.json()["config_schema"] == agent_type.config_schema
    assert stranger_client.get(f"/api/v1/agent-types/{uuid.uuid4()}").status_code == 404


def test_anonymous_is_401(api_client, agent_type):
    assert api_client.get("/api/v1/agent-types").status_code == 401
    assert api_client.post("/api/v1/agent-types", {}, format="json").status_code == 401


def test_staff_with_the_permission_creates_an_agent_type():
    client = staff_with("add_agenttype")
    body = {"name": "Architect", "slug": "architect", "capabilities": ["design", "review"], "config_schema": SCHEMA}
    response = client.post("/api/v1/agent-types", body, format="json")
    assert response.status_code == 201, response.json()
    created = AgentType.objects.get(slug="architect")
    assert (created.capabilities, created.config_schema, created.is_active) == (["design", "review"], SCHEMA, True)


@pytest.mark.parametrize("client_kind", ["member", "staff_without_permission", "permission_without_staff"])
def test_others_cannot_write_agent_types(client_kind, agent_type, owner_client):
    if client_kind == "member":
        client = owner_client
    elif client_kind == "staff_without_permission":
        client = staff_with()
    else:
        user = factories.UserFactory()
        user.user_permissions.add(*Permission.objects.filter(codename__endswith="_agenttype"))
        client = client_for(user)
    body = {"name": "X", "slug": "x"}
    assert client.post("/api/v1/agent-types", body, format="json").status_code == 403
    response = client.patch(f"/api/v1/agent-types/{agent_type.pk}", {"name": "Y"}, format="json")
    assert response.status_code == 403
    assert codes(response) == ["permission_denied"]
    assert client.delete(f"/api/v1/agent-types/{agent_type.pk}").status_code == 403
    assert AgentType.objects.filter(pk=agent_type.pk, name=agent_type.name).exists()


def test_each_write_needs_its_own_permission(agent_type):
    client = staff_with("change_agenttype")
    assert client.patch(f"/api/v1/agent-types/{agent_type.pk}", {"name": "Renamed"}, format="json").status_code == 200
    assert client.post("/api/v1/agent-types", {"name": "X", "slug": "x"}, format="json").status_code == 403
    assert client.delete(f"/api/v1/agent-types/{agent_type.pk}").status_code == 403


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"config_schema": {"type": "nonsense"}}, {"config_schema": "invalid"}),
        ({"config_schema": {"properties": {"a": {"minimum": "one"}}}}, {"config_schema": "invalid"}),
        ({"config_schema": ["not", "an", "object"]}, {"config_schema": "not_a_dict"}),
        ({"capabilities": "design"}, {"capabilities": "not_a_list"}),
        ({"capabilities": ["design", 3]}, {"capabilities": "not_strings"}),
        ({"slug": "taken"}, {"slug": "unique"}),
        ({"slug": "not a slug"}, {"slug": "invalid"}),
        ({"name": ""}, {"name": "blank"}),
    ],
)
def test_agent_type_validation(superuser_client, body, expected):
    factories.AgentTypeFactory(slug="taken")
    response = superuser_client.post("/api/v1/agent-types", {"name": "N", "slug": "n", **body}, format="json")
    assert response.status_code == 400
    assert fields(response) == expected
    assert not AgentType.objects.filter(name="N").exists()


def test_an_unknown_handler_is_400_naming_the_registered_classes(superuser_client):
    response = superuser_client.post(
        "/api/v1/agent-types", {"name": "N", "slug": "n", "handler": "no-such-class"}, format="json"
    )
    assert response.status_code == 400
    assert fields(response) == {"handler": "unknown_handler"}
    assert response.json()["errors"][0]["message"] == (
        "No agent class is registered as 'no-such-class'. Registered classes: builder, reviewer, tester."
    )
    assert not AgentType.objects.filter(slug="n").exists()


def test_a_registered_handler_or_none_is_accepted(superuser_client):
    for slug, handler in (("with-class", "reviewer"), ("without-class", "")):
        response = superuser_client.post(
            "/api/v1/agent-types", {"name": slug, "slug": slug, "handler": handler}, format="json"
        )
        assert response.status_code == 201, response.json()
        assert response.json()["handler"] == handler


def test_patching_an_unknown_handler_is_400(superuser_client, agent_type):
    url = f"/api/v1/agent-types/{agent_type.pk}"
    response = superuser_client.patch(url, {"handler": "no-such-class"}, format="json")
    assert response.status_code == 400
    assert fields(response) == {"handler": "unknown_handler"}
    assert AgentType.objects.get(pk=agent_type.pk).handler == ""


def test_a_type_whose_class_went_missing_stays_editable(superuser_client):
    orphan = factories.AgentTypeFactory(handler="uninstalled")
    url = f"/api/v1/agent-types/{orphan.pk}"
    response = superuser_client.patch(url, {"description": "still here", "handler": "uninstalled"}, format="json")
    assert response.status_code == 200, response.json()
    assert AgentType.objects.get(pk=orphan.pk).description == "still here"


def test_patching_a_bad_schema_onto_an_existing_type_is_400(superuser_client, agent_type):
    response = superuser_client.patch(
        f"/api/v1/agent-types/{agent_type.pk}", {"config_schema": {"type": 12}}, format="json"
    )
    assert response.status_code == 400
    assert "Not a valid JSON Schema" in response.json()["errors"][0]["message"]


def test_deactivated_type_can_no_longer_spawn(superuser_client, project, agent_type, owner_client):
    assert (
        superuser_client.patch(f"/api/v1/agent-types/{agent_type.pk}", {"is_active": False}, format="json").json()[
            "is_active"
        ]
        is False
    )
    response = owner_client.post(agents_url(project), {"agent_type_id": str(agent_type.pk), "name": "a"}, format="json")
    assert response.status_code == 400


def test_a_type_in_use_cannot_be_deleted(superuser_client, agent):
    url = f"/api/v1/agent-types/{agent.agent_type_id}"
    response = superuser_client.delete(url)
    assert response.status_code == 409
    assert codes(response) == ["protected"]
    assert "1 agent instances" in response.json()["errors"][0]["message"]
    unused = factories.AgentTypeFactory()
    assert superuser_client.delete(f"/api/v1/agent-types/{unused.pk}").status_code == 204
    assert not AgentType.objects.filter(pk=unused.pk).exists()
