"""Per-user rate limits (per IP for the token login), counted in Redis: each family hits its limit once.

The requests are the cheapest ones that still count (404 for an unknown agent, 400 for an empty
body): a limit counts every request that got past authentication and permissions.
"""

from __future__ import annotations

import uuid

import pytest

from agents.views import AgentViewSet
from tests import factories
from tests.conftest import client_for

from .conftest import agents_url, codes

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_rate_window")]


#: The seed's limits (requests per minute), per user.
SEED_LIMITS = {
    "create": "20/m",
    "list": "60/m",
    "retrieve": "60/m",
    "project_metrics": "60/m",
    "agent_metrics": "60/m",
    "partial_update": "30/m",
    "pause": "20/m",
    "resume": "20/m",
    "destroy": "10/m",
}


def test_agent_limits_are_the_seeds():
    assert {k: v for k, v in AgentViewSet.rate_limits.items() if k in SEED_LIMITS} == SEED_LIMITS


def _agent_request(project, name):
    missing = uuid.uuid4()
    return {
        "spawn": ("post", agents_url(project), {}),
        "list": ("get", agents_url(project), None),
        "get": ("get", agents_url(project, missing), None),
        "project_metrics": ("get", agents_url(project, suffix="metrics"), None),
        "agent_metrics": ("get", agents_url(project, missing, "metrics"), None),
        "update": ("patch", agents_url(project, missing), {}),
        "pause": ("post", agents_url(project, missing, "pause"), {}),
        "resume": ("post", agents_url(project, missing, "resume"), {}),
        "terminate": ("delete", agents_url(project, missing), None),
        "usage": ("post", agents_url(project, missing, "usage"), {}),
        "transitions": ("get", agents_url(project, missing, "transitions"), None),
    }[name]


def _send(client, method, url, body):
    if body is None:
        return getattr(client, method)(url)
    return getattr(client, method)(url, body, format="json")


@pytest.mark.parametrize(
    ("name", "limit"),
    [
        ("spawn", 20),
        ("list", 60),
        ("get", 60),
        ("project_metrics", 60),
        ("agent_metrics", 60),
        ("update", 30),
        ("pause", 20),
        ("resume", 20),
        ("terminate", 10),
        ("usage", 120),
        ("transitions", 60),
    ],
)
def test_agent_endpoints_answer_429_over_their_limit(owner_client, project, user, name, limit):
    method, url, body = _agent_request(project, name)
    for i in range(limit):
        response = _send(owner_client, method, url, body)
        assert response.status_code != 429, f"request {i + 1} of {limit} was limited"
    assert response["X-RateLimit-Limit"] == str(limit) and response["X-RateLimit-Remaining"] == "0"
    response = _send(owner_client, method, url, body)
    assert response.status_code == 429
    assert codes(response) == ["rate_limited"]
    assert 1 <= int(response["Retry-After"]) <= 60
    # Per user: a colleague in the same project is not limited, and other endpoints still answer.
    colleague = factories.MembershipFactory(workspace=project.workspace).user
    assert _send(client_for(colleague), method, url, body).status_code != 429
    other = "get" if name != "get" else "list"
    assert _send(owner_client, *_agent_request(project, other)).status_code != 429


@pytest.mark.parametrize(
    ("family", "url", "limit"),
    [
        ("workspaces", "/api/v1/workspaces", 10),
        ("projects", "/api/v1/projects", 20),
        ("issues", "ISSUES", 30),
        ("agent-types", "/api/v1/agent-types", 10),
    ],
)
def test_other_families_answer_429_on_create(superuser_client, project, family, url, limit):
    url = f"/api/v1/projects/{project.pk}/issues" if url == "ISSUES" else url
    for _ in range(limit):
        assert superuser_client.post(url, {}, format="json").status_code == 400
    response = superuser_client.post(url, {}, format="json")
    assert response.status_code == 429
    assert codes(response) == ["rate_limited"]


def test_token_login_is_limited_per_ip(api_client, user):
    for n in range(10):  # a different account each time: only the per-IP limit counts them all
        body = {"username": f"nobody-{n}", "password": "wrong"}
        assert api_client.post("/api/v1/auth/token", body, format="json").status_code == 400
    body = {"username": user.username, "password": "wrong"}
    response = api_client.post("/api/v1/auth/token", body, format="json")
    assert response.status_code == 429 and response["Retry-After"]
    assert (response["X-RateLimit-Limit"], response["X-RateLimit-Remaining"]) == ("10", "0")
    other_ip = api_client.post("/api/v1/auth/token", body, format="json", REMOTE_ADDR="10.0.0.9")
    assert other_ip.status_code == 400


def test_rate_limits_can_be_switched_off(owner_client, project, settings):
    settings.RATELIMIT_ENABLE = False
    url = agents_url(project, uuid.uuid4())
    for _ in range(11):
        assert owner_client.delete(url).status_code == 404
