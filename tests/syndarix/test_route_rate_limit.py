"""``route_rate_limit`` and ``check_user_rate``: acting on an endpoint's behalf counts on its own per-user counter."""

from __future__ import annotations

import types
import zlib

import django_ratelimit.core
import pytest
from django.urls import Resolver404

from syndarix.api.ratelimit import RateLimited, check_user_rate, route_rate_limit
from tests import factories
from tests.conftest import client_for


@pytest.mark.parametrize("method, path, expected", [
    ("GET", "/api/v1/projects/{project_id}/agents", ("agents.views.AgentViewSet.list", "60/m")),
    ("DELETE", "/api/v1/projects/{project_id}/agents/{agent_id}", ("agents.views.AgentViewSet.destroy", "10/m")),
    ("POST", "/api/v1/projects/{project_id}/agents/{agent_id}/pause", ("agents.views.AgentViewSet.pause", "20/m")),
    ("POST", "/api/v1/capabilities/find", ("buildkit.views.FindCapabilitiesView.post", "60/m")),
])
def test_a_route_resolves_to_its_views_limit(method, path, expected):
    assert route_rate_limit(method, path) == expected


def test_a_route_without_a_limit_is_none():
    assert route_rate_limit("DELETE", "/api/v1/capabilities/find") is None


def test_an_unknown_route_raises():
    with pytest.raises(Resolver404):
        route_rate_limit("GET", "/api/v1/no/such/thing")


def test_check_user_rate_shares_the_views_counter(user, project, monkeypatch):
    # Freeze time at the first second of the user's fixed window, so the test never crosses its edge.
    start = 1_800_000_000 - 1_800_000_000 % 60 + zlib.crc32(f"user:{user.pk}".encode()) % 60 + 1
    monkeypatch.setattr(django_ratelimit.core, "time", types.SimpleNamespace(time=lambda: start))
    group, rate = route_rate_limit("GET", "/api/v1/projects/{project_id}/agents")
    for _ in range(59):
        check_user_rate(user, group=group, rate=rate)
    client = client_for(user)
    assert client.get(f"/api/v1/projects/{project.pk}/agents").status_code == 200  # the 60th
    with pytest.raises(RateLimited):
        check_user_rate(user, group=group, rate=rate)
    assert client_for(factories.UserFactory()).get("/api/v1/projects").status_code == 200  # per user
