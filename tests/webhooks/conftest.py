"""Fixtures of the webhook tests: real receivers on 127.0.0.1, endpoints, events in the outbox."""

from __future__ import annotations

import pytest

from agents import events
from agents.webhooks import services
from projects.choices import WorkspaceRole
from tests import factories
from tests.conftest import client_for

from .receiver import Receiver


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    """Receivers on this machine are allowed (the SSRF tests turn it off); quick retries."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_RETRY_BACKOFF_SECONDS = 0.05
    settings.WEBHOOK_RETRY_BACKOFF_MAX_SECONDS = 0.2
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.0


@pytest.fixture
def no_nudge(monkeypatch):
    """The tests that step the dispatcher themselves: a commit that wrote events queues no dispatcher (in the
    suite's eager mode it would run at once, in the committing thread)."""
    from agents.webhooks import tasks

    monkeypatch.setattr(tasks, "nudge", lambda: None)


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.down()


@pytest.fixture
def make_endpoint(workspace):
    """``make_endpoint(receiver, **fields)``: an endpoint of ``workspace`` posting to ``receiver`` (whose secret it
    sets)."""

    def make(receiver: Receiver, **fields):
        endpoint, _ = services.webhook_endpoint_create(workspace=workspace, url=receiver.url, **fields)
        receiver.secret = endpoint.secret
        return endpoint

    return make


def emit_events(project, count: int, type_: str = "run.succeeded") -> list[int]:
    """Write ``count`` events of ``project`` (each in its own transaction); returns their ids."""
    return [events.emit(type_, project=project, data={"run_id": f"run-{i}", "n": i}).pk for i in range(count)]


@pytest.fixture
def admin_client(workspace):
    membership = factories.MembershipFactory(workspace=workspace, role=WorkspaceRole.ADMIN)
    return client_for(membership.user)
