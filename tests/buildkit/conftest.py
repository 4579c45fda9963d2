"""Fixtures of the build-kit tests: a committing staff user, templates and embeds."""

from __future__ import annotations

import copy

import pytest
from django.contrib.auth.models import Permission

from buildkit import services
from tests import factories
from tests.conftest import client_for

TEMPLATE = {
    "instructions": {"agents_md": "You triage new issues."},
    "llm": {"model": "gpt-4.1-mini", "provider": "openai"},
    "tools": [{"type": "platform", "op": "query_agents"}],
    "skills": [],
    "sandbox": {"kind": "local", "permissions": {"write_files": "deny"}},
}


def embed(slug, version=None, path=None) -> dict:
    """An ``@ag.embed`` object referencing workflow ``slug`` (at ``version``, picking ``path``)."""
    workflow = {"slug": slug}
    if version is not None:
        workflow["version"] = version
    body = {"@ag.references": {"workflow": workflow}}
    if path is not None:
        body["@ag.selector"] = {"path": path}
    return {"@ag.embed": body}


@pytest.fixture
def template() -> dict:
    """A valid template (a fresh copy per test)."""
    return copy.deepcopy(TEMPLATE)


@pytest.fixture
def staff(db):
    """Staff with the permission to change agent types (so: to commit templates)."""
    user = factories.UserFactory(username="editor", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="change_agenttype", content_type__app_label="agents"))
    return user


@pytest.fixture
def staff_client(staff):
    return client_for(staff)


@pytest.fixture
def commit(staff):
    """``commit(agent_type, template, message="")`` → a new revision, through the service."""

    def make(agent_type, template, message=""):
        return services.template_commit(agent_type=agent_type, template=template, message=message, author=staff)

    return make
