"""The shared cache of API tokens and project access (``syndarix.cache``): what it saves, and that every change
that could alter an answer invalidates it — a revoked or expired token, logout, a password change, a deactivated
user, a membership added, changed or removed, a project deleted, a superuser demoted. Each test warms the cache
first (a request that fills it), so a missing invalidation would let the next request through."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis.exceptions
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from knox.crypto import hash_token
from knox.models import AuthToken
from rest_framework.test import APIClient

from agents.choices import AgentStatus
from projects import services as project_services
from projects.choices import WorkspaceRole
from syndarix import cache as access_cache
from syndarix.api.authentication import token_cache_key
from tests import factories
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def agents_url(project) -> str:
    return f"/api/v1/projects/{project.pk}/agents"


def queries(client, url: str, method: str = "get") -> tuple[int, list[str]]:
    """``(status, SQL of each query)`` of one request."""
    with CaptureQueriesContext(connection) as captured:
        response = getattr(client, method)(url, {}, format="json")
    return response.status_code, [query["sql"] for query in captured.captured_queries]


def test_a_client_in_steady_use_reads_neither_its_token_nor_the_project_from_the_database(owner_client, project,
                                                                                          agent):
    status, cold = queries(owner_client, agents_url(project))
    assert status == 200
    assert [sql for sql in cold if "knox_authtoken" in sql or 'FROM "projects_project"' in sql] == cold[:2]
    status, warm = queries(owner_client, agents_url(project))
    assert (status, len(warm), len(cold)) == (200, len(cold) - 2, 3)  # the page (with the total) remains
    assert not any("knox_authtoken" in sql or 'FROM "projects_project"' in sql for sql in warm)


def test_the_cached_user_is_the_tokens_user_without_its_password_hash(user, project):
    token = factories.token_for(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(agents_url(project)).status_code == 200
    entry = caches["default"].get(token_cache_key(hash_token(token)))
    assert dict(zip(entry[3], entry[4], strict=True))["username"] == user.username
    assert "password" not in entry[3] and user.password not in repr(entry)


# --- Tokens ------------------------------------------------------------------------------------------------------


def test_a_revoked_token_is_refused_at_once(owner_client, user, project):
    assert owner_client.get(agents_url(project)).status_code == 200
    token = AuthToken.objects.get(user=user)
    project_services.auth_token_revoke(user=user, token_key=token.token_key)
    assert owner_client.get(agents_url(project)).status_code == 401


def test_logout_and_logout_everywhere_refuse_the_cached_tokens(user, project):
    first, second, third = client_for(user), client_for(user), client_for(user)
    for client in (first, second, third):
        assert client.get(agents_url(project)).status_code == 200
    assert first.post("/api/v1/auth/logout").status_code == 200
    assert first.get(agents_url(project)).status_code == 401
    assert second.get(agents_url(project)).status_code == 200
    assert second.post("/api/v1/auth/logout-all").status_code == 200
    assert [client.get(agents_url(project)).status_code for client in (second, third)] == [401, 401]


def test_an_expired_token_is_refused_although_cached(owner_client, project, monkeypatch):
    assert owner_client.get(agents_url(project)).status_code == 200
    later = timezone.now() + timedelta(hours=24 * 30 + 1)  # past AUTH_TOKEN_TTL_HOURS
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert owner_client.get(agents_url(project)).status_code == 401
    assert not AuthToken.objects.exists()  # swept on use, as without the cache


def test_a_password_change_refuses_the_cached_token(owner_client, user, project):
    assert owner_client.get(agents_url(project)).status_code == 200
    user.set_password("a-new-Passw0rd")
    user.save()
    assert owner_client.get(agents_url(project)).status_code == 401


def test_a_deactivated_user_is_refused_and_a_changed_user_is_read_again(owner_client, user, project):
    assert owner_client.get("/api/v1/agent-types").status_code == 200
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert owner_client.get("/api/v1/agent-types").status_code == 401
    user.is_active = True
    user.save(update_fields=["is_active"])
    assert owner_client.get("/api/v1/agent-types").status_code == 200


def test_a_login_stamp_keeps_the_entry(owner_client, user, project):
    owner_client.get(agents_url(project))
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])
    status, sql = queries(owner_client, agents_url(project))
    assert status == 200 and not any("knox_authtoken" in query for query in sql)


# --- Project access ----------------------------------------------------------------------------------------------


def test_a_role_change_is_seen_at_once(workspace, project, agent):
    membership = factories.MembershipFactory(workspace=workspace, role=WorkspaceRole.VIEWER)
    client = client_for(membership.user)
    pause = f"{agents_url(project)}/{agent.pk}/pause"
    assert client.post(pause, {}, format="json").status_code == 403  # the viewer's role is now cached
    membership.role = WorkspaceRole.OPERATOR
    membership.save(update_fields=["role"])
    response = client.post(pause, {}, format="json")
    assert (response.status_code, response.json()["status"]) == (200, AgentStatus.PAUSED)
    membership.role = WorkspaceRole.VIEWER
    membership.save(update_fields=["role"])
    assert client.post(f"{agents_url(project)}/{agent.pk}/resume", {}, format="json").status_code == 403


def test_a_new_membership_opens_the_project_and_a_removed_one_closes_it(workspace, project):
    stranger = factories.UserFactory()
    client = client_for(stranger)
    assert client.get(agents_url(project)).status_code == 404  # "not a member" is cached
    membership = factories.MembershipFactory(workspace=workspace, user=stranger, role=WorkspaceRole.VIEWER)
    assert client.get(agents_url(project)).status_code == 200
    membership.delete()
    assert client.get(agents_url(project)).status_code == 404


def test_a_membership_moved_to_another_workspace_closes_the_old_one(workspace, project):
    membership = factories.MembershipFactory(workspace=workspace, role=WorkspaceRole.OPERATOR)
    client = client_for(membership.user)
    assert client.get(agents_url(project)).status_code == 200
    membership.workspace = factories.WorkspaceFactory()
    membership.save()
    assert client.get(agents_url(project)).status_code == 404


def test_a_deleted_project_is_404_at_once(owner_client, project):
    assert owner_client.get(agents_url(project)).status_code == 200
    project_services.project_delete(project=project)
    assert owner_client.get(agents_url(project)).status_code == 404


def test_a_deleted_workspace_closes_its_projects(owner_client, workspace, project):
    member = factories.MembershipFactory(workspace=workspace, role=WorkspaceRole.ADMIN)
    client = client_for(member.user)
    assert client.get(agents_url(project)).status_code == 200
    project_services.project_delete(project=project)
    project_services.workspace_delete(workspace=workspace)
    assert client.get(agents_url(project)).status_code == 404


def test_a_renamed_project_is_shown_renamed(owner_client, project, agent):
    assert owner_client.get(f"{agents_url(project)}/{agent.pk}").json()["project_name"] == project.name
    project_services.project_update(project, data={"name": "Renamed"})
    assert owner_client.get(f"{agents_url(project)}/{agent.pk}").json()["project_name"] == "Renamed"


def test_a_demoted_superuser_loses_the_projects_they_are_no_member_of(project):
    admin = factories.UserFactory(is_superuser=True, is_staff=True)
    client = client_for(admin)
    assert client.get(agents_url(project)).status_code == 200
    admin.is_superuser = False
    admin.save(update_fields=["is_superuser"])
    assert client.get(agents_url(project)).status_code == 404


# --- A lost cache ------------------------------------------------------------------------------------------------


def _broken(*args, **kwargs):
    raise redis.exceptions.ConnectionError("Connection refused.")


@pytest.fixture
def lost_cache(monkeypatch):
    """The cache refuses every call this module makes (the rate limits are off here)."""
    cache = caches["default"]
    for name in ("get_many", "add", "delete_many", "set_many"):
        monkeypatch.setattr(cache, name, _broken)
    monkeypatch.setattr(access_cache, "_paused_until", 0.0)
    yield
    access_cache._paused_until = 0.0


def test_reads_go_to_the_database_while_the_cache_is_lost(owner_client, project, agent, lost_cache, settings):
    settings.RATELIMIT_ENABLE = False
    status, sql = queries(owner_client, agents_url(project))
    assert status == 200 and len(sql) == 3
    assert owner_client.get(agents_url(project)).status_code == 200  # the cache is left alone meanwhile


@pytest.mark.django_db(transaction=True)  # the refused delete rolls back its own transaction
def test_a_revocation_that_cannot_invalidate_is_refused_and_changes_nothing(owner_client, user, lost_cache, settings):
    settings.RATELIMIT_ENABLE = False
    response = owner_client.post("/api/v1/auth/logout")
    assert (response.status_code, response.json()["errors"][0]["dependency"]) == (503, "cache")
    assert AuthToken.objects.filter(user=user).count() == 1
