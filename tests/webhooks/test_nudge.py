"""The nudge: a commit that wrote events of a workspace with an active endpoint queues the dispatcher; events of a
workspace without one queue nothing (a fleet without webhooks pays nothing per commit). Each process re-reads which
workspaces have endpoints every ``WEBHOOK_DISPATCH_INTERVAL_SECONDS``, and at once after it saves or deletes one."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.webhooks import tasks
from agents.webhooks.models import WebhookEndpoint
from tests import factories

from .conftest import emit_events

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def nudges(monkeypatch) -> list[str]:
    """The nudges sent from now on (``tasks.nudge`` recorded instead of queueing a dispatcher)."""
    sent = []
    monkeypatch.setattr(tasks, "nudge", lambda: sent.append("nudge"))
    tasks.active_workspaces.forget()
    return sent


def test_events_of_a_workspace_without_an_endpoint_send_no_nudge(project, nudges):
    emit_events(project, 1)  # reads which workspaces have endpoints: none
    with CaptureQueriesContext(connection) as queries:
        emit_events(project, 3)
    assert nudges == []
    assert not [q for q in queries.captured_queries if "webhook" in q["sql"]]  # the set is not read again


def test_an_endpoint_saved_or_deleted_in_this_process_counts_at_once(project, receiver, make_endpoint, nudges):
    emit_events(project, 1)
    endpoint = make_endpoint(receiver)
    emit_events(project, 2)
    assert nudges == ["nudge", "nudge"]  # once per committed transaction
    other = factories.ProjectFactory()  # another workspace, no endpoint
    emit_events(other, 1)
    assert len(nudges) == 2
    endpoint.delete()
    emit_events(project, 1)
    assert len(nudges) == 2


def test_an_endpoint_saved_by_another_process_counts_after_the_interval(project, receiver, make_endpoint, nudges,
                                                                        settings, monkeypatch):
    monkeypatch.setattr(tasks.active_workspaces, "max_age", None)  # WEBHOOK_DISPATCH_INTERVAL_SECONDS
    settings.WEBHOOK_DISPATCH_INTERVAL_SECONDS = 0.2
    emit_events(project, 1)
    endpoint = make_endpoint(receiver)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=False)  # as another process would: no signal
    tasks.active_workspaces.forget()
    emit_events(project, 1)
    assert nudges == []
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(is_active=True)
    emit_events(project, 1)
    assert nudges == []  # this process has not looked again yet; beat's dispatcher serves the endpoint meanwhile
    time.sleep(0.3)
    emit_events(project, 1)
    assert nudges == ["nudge"]
