"""Helpers for the API tests: URLs, error codes, and clients by role."""

from __future__ import annotations

import time
from types import SimpleNamespace

import django_ratelimit.core
import pytest

from projects.choices import WorkspaceRole
from tests import factories
from tests.conftest import client_for


def agents_url(project, agent=None, suffix: str = "") -> str:
    """``/api/v1/projects/{project}/agents[/{agent}][/{suffix}]`` (``agent`` may be an id)."""
    url = f"/api/v1/projects/{project.pk}/agents"
    if agent is not None:
        url += f"/{getattr(agent, 'pk', agent)}"
    return f"{url}/{suffix}" if suffix else url


def codes(response) -> list[str]:
    """The error codes of an error-envelope response."""
    body = response.json()
    assert body["success"] is False, body
    return [error["code"] for error in body["errors"]]


def fields(response) -> dict[str, str]:
    """``{field: code}`` of an error-envelope response."""
    return {error["field"]: error["code"] for error in response.json()["errors"]}


@pytest.fixture
def viewer_client(member_client):
    return member_client(WorkspaceRole.VIEWER)


@pytest.fixture
def operator_client(member_client):
    return member_client(WorkspaceRole.OPERATOR)


@pytest.fixture
def superuser_client(superuser):
    return client_for(superuser)


@pytest.fixture
def other_agent(db):
    """An agent in another workspace, out of reach of ``user`` and the members of ``workspace``."""
    return factories.AgentFactory()


@pytest.fixture
def frozen_rate_window(monkeypatch):
    """Hold django-ratelimit's clock still, so a test never straddles the end of a rate window."""
    now = time.time()
    monkeypatch.setattr(django_ratelimit.core, "time", SimpleNamespace(time=lambda: now))
