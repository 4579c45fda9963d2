"""``GET /api/v1/agent-classes``: the registered agent classes and their synced agent types."""

from __future__ import annotations

import pytest
from django.test import override_settings

from agents.models import AgentType
from agents.registry import BaseAgent, builtin, registry
from agents.registry.views import AgentClassListView
from agents.services import agent_types_sync
from tests.factories import AgentTypeFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/agent-classes"


class Extra(BaseAgent):
    slug = "extra"
    name = "Extra"
    capabilities = ["x"]


def test_lists_registered_classes_sorted_with_their_definitions(owner_client):
    response = owner_client.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert body["pagination"] == {
        "total": 3, "total_exact": True, "page": 1, "page_size": 20, "total_pages": 1, "has_next": False,
        "has_prev": False, "next_cursor": None,
    }
    assert [item["slug"] for item in body["data"]] == ["builder", "reviewer", "tester"]
    reviewer = body["data"][1]
    assert reviewer == {
        "slug": "reviewer",
        "name": "Reviewer",
        "description": builtin.ReviewerAgent.description,
        "capabilities": ["code_review", "security_review", "style_check"],
        "config_schema": builtin.ReviewerAgent.config_schema,
        "agent_type_id": None,
    }
    assert response["X-RateLimit-Limit"] == "120"


def test_agent_type_id_is_the_synced_type(owner_client):
    AgentTypeFactory(slug="tester", handler="")  # same slug, not synced yet: not reported
    AgentTypeFactory(slug="strict-reviewer", handler="reviewer")  # names the class, but is not its synced type
    assert {item["agent_type_id"] for item in owner_client.get(URL).json()["data"]} == {None}
    agent_types_sync(registry)
    ids = {item["slug"]: item["agent_type_id"] for item in owner_client.get(URL).json()["data"]}
    assert ids == {slug: str(AgentType.objects.get(slug=slug).pk) for slug in ("builder", "reviewer", "tester")}


def test_a_class_from_a_registry_module_is_listed(owner_client):
    registry.register(Extra)
    try:
        data = owner_client.get(URL).json()["data"]
    finally:
        registry.unregister("extra")
    assert [item["slug"] for item in data] == ["builder", "extra", "reviewer", "tester"]


def test_paginates_with_limit_and_page(owner_client):
    body = owner_client.get(URL, {"limit": 2, "page": 2}).json()
    assert [item["slug"] for item in body["data"]] == ["tester"]
    assert (body["pagination"]["total_pages"], body["pagination"]["has_prev"]) == (2, True)
    response = owner_client.get(URL, {"page": 9})
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "not_found"


def test_any_authenticated_user_reads_it_even_with_agents_disabled(stranger_client, member_client):
    with override_settings(AGENTS_ENABLED=False):
        assert stranger_client.get(URL).status_code == 200
        assert member_client("viewer").get(URL).status_code == 200


def test_anonymous_is_401(api_client):
    response = api_client.get(URL)
    assert response.status_code == 401
    assert response.json() == {
        "success": False,
        "errors": [{"code": "not_authenticated", "message": "Authentication credentials were not provided.",
                    "field": None}],
    }
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_it_is_read_only(owner_client, method):
    response = getattr(owner_client, method)(URL, {})
    assert response.status_code == 405
    assert response.json()["errors"][0]["code"] == "method_not_allowed"


def test_rate_limited_per_user_with_retry_after(owner_client, stranger_client, monkeypatch):
    monkeypatch.setattr(AgentClassListView, "rate_limits", {"get": "2/m"})
    assert [owner_client.get(URL).status_code for _ in range(2)] == [200, 200]
    response = owner_client.get(URL)
    assert response.status_code == 429
    assert response.json()["errors"][0]["code"] == "rate_limited"
    assert int(response["Retry-After"]) >= 1
    assert stranger_client.get(URL).status_code == 200  # another user has their own budget


def test_query_count_does_not_grow_with_the_classes(owner_client, django_assert_num_queries):
    agent_types_sync(registry)
    with django_assert_num_queries(2):  # token → user, synced agent types
        assert len(owner_client.get(URL).json()["data"]) == 3
    with django_assert_num_queries(1):  # the token from the cache
        assert len(owner_client.get(URL).json()["data"]) == 3
    registry.register(Extra)
    try:
        agent_types_sync(registry)
        with django_assert_num_queries(1):
            assert len(owner_client.get(URL).json()["data"]) == 4
    finally:
        registry.unregister("extra")


def test_documented_in_the_openapi_schema(owner_client):
    schema = owner_client.get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"]["/api/v1/agent-classes"]["get"]
    # page and limit: 400, past the end: 404; a lost dependency: 503
    assert set(operation["responses"]) == {"200", "400", "401", "404", "429", "503"}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "PaginatedAgentClassList"
    )
    assert set(schema["components"]["schemas"]["AgentClass"]["properties"]) == {
        "slug", "name", "description", "capabilities", "config_schema", "agent_type_id"
    }
