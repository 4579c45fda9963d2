"""Suite-wide fixtures. The suite runs on PostgreSQL and Redis, and refuses to run without them."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient

from projects.choices import WorkspaceRole
from syndarix.celery import app as celery_app

from . import factories


def pytest_configure(config) -> None:
    engine = settings.DATABASES["default"]["ENGINE"]
    backend = settings.CACHES["default"]["BACKEND"]
    problems = []
    if "postgresql" not in engine:
        problems.append(f"DATABASE_URL must point at PostgreSQL (got {engine}).")
    if "redis" not in backend.lower():
        problems.append(f"REDIS_URL must point at Redis (got {backend}).")
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        problems.append(f"CELERY_BROKER_URL must point at Redis (got {settings.CELERY_BROKER_URL}).")
    if problems:
        pytest.exit("The suite needs PostgreSQL and Redis: " + " ".join(problems) + " Run `make test`.", returncode=2)
    # Unit tests run Celery tasks in the calling thread (eager); the runtime's integration tests switch this off
    # and use real worker processes (tests/runtime/conftest.py).
    celery_app.conf.task_always_eager = True
    # Factories set real passwords; the production hasher (PBKDF2, a million rounds) would dominate the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session", autouse=True)
def _redis_reachable() -> None:
    """Fail loudly (never skip) when Redis is down."""
    try:
        cache.set("syndarix:ping", "1", 5)
        assert cache.get("syndarix:ping") == "1"
    except Exception as exc:  # noqa: BLE001
        pytest.exit(f"Redis is not reachable at {settings.REDIS_URL}: {exc}", returncode=2)


@pytest.fixture(autouse=True)
def _ai_services_as_in_production(settings) -> None:
    """The suite runs with DJANGO_DEBUG=true, where settings pick the AI services' offline stand-in; tests run with
    production's default instead (no upstream: disabled) and configure a provider when they use one."""
    settings.AI_SERVICES_PROVIDER = "agenta"


@pytest.fixture(autouse=True)
def _webhook_endpoints_known(monkeypatch) -> None:
    """Each test starts with no webhook endpoint, and this process knows it: the set of workspaces with active
    endpoints (``agents.webhooks.tasks.active_workspaces``) is read again only after an endpoint is saved or deleted,
    never because time passed, so a test counting queries never counts that read."""
    from agents.webhooks.tasks import active_workspaces

    monkeypatch.setattr(active_workspaces, "max_age", float("inf"))
    monkeypatch.setattr(active_workspaces, "_ids", frozenset())
    monkeypatch.setattr(active_workspaces, "_read_at", time.monotonic())


@pytest.fixture(autouse=True)
def _clean_cache() -> None:
    """Rate-limit counters live in Redis: start every test from zero."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def user(db):
    return factories.UserFactory()


@pytest.fixture
def superuser(db):
    return factories.UserFactory(username="root", is_superuser=True, is_staff=True)


@pytest.fixture
def workspace(db):
    return factories.WorkspaceFactory()


@pytest.fixture
def project(workspace, user):
    """A project owned by ``user``."""
    return factories.ProjectFactory(workspace=workspace, owner=user)


@pytest.fixture
def agent_type(db):
    return factories.AgentTypeFactory()


@pytest.fixture
def agent(project, agent_type):
    return factories.AgentFactory(project=project, agent_type=agent_type)


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def owner_client(user) -> APIClient:
    """An API client authenticated by token as the project owner."""
    return client_for(user)


def client_for(user) -> APIClient:
    """An API client authenticated by token as ``user``."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {factories.token_for(user)}")
    return client


@pytest.fixture
def member_client(workspace):
    """Factory fixture: ``member_client(role)`` → API client of a new member of ``workspace``."""

    def make(role: str = WorkspaceRole.OPERATOR) -> APIClient:
        membership = factories.MembershipFactory(workspace=workspace, role=role)
        return client_for(membership.user)

    return make


@pytest.fixture
def stranger_client(db) -> APIClient:
    """An authenticated user of another workspace: sees none of ``workspace``."""
    other = factories.ProjectFactory()
    return client_for(other.owner)


@pytest.fixture
def compiles(monkeypatch) -> list[str]:
    """The SQL of every SELECT Django compiles from now on; the compiled queries kept per process
    (``syndarix.db.evaluate_compiled_once``, ``fetch_compiled``) start empty."""
    from django.db.models.sql.compiler import SQLCompiler

    from syndarix import db

    compiled, as_sql = [], SQLCompiler.as_sql

    def counting(self, *args, **kwargs):
        result = as_sql(self, *args, **kwargs)
        compiled.append(result[0])
        return result

    monkeypatch.setattr(SQLCompiler, "as_sql", counting)
    monkeypatch.setattr(db, "_compiled", type(db._compiled)())
    return compiled
