"""The dispatcher, in this process, against real receivers on 127.0.0.1 and PostgreSQL: every delivery verifies
with ``standardwebhooks``, in order per endpoint, retried with backoff, failed after the retry window, the endpoint
disabled after ``WEBHOOK_MAX_CONSECUTIVE_FAILURES``; redelivery; the statements of one step."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents import events
from agents.webhooks import services
from agents.webhooks.choices import DeliveryStatus
from agents.webhooks.dispatch import Step, dispatch, dispatch_step, retry_delay
from agents.webhooks.models import WebhookDelivery, WebhookEndpoint

from .conftest import emit_events

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_nudge")]


def drain(endpoint, *, until=lambda: False, timeout: float = 10.0) -> None:
    """Run dispatch steps until the endpoint is idle (or ``until()``), waiting out retry backoffs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outcome = dispatch_step(endpoint.pk)
        if until() or outcome in (Step.IDLE, Step.BUSY):
            return
        if outcome == Step.WAITING:
            time.sleep(0.02)
    raise AssertionError("the endpoint did not drain")


def test_every_delivery_is_signed_per_standard_webhooks(project, receiver, make_endpoint):
    endpoint = make_endpoint(receiver)
    ids = emit_events(project, 3)
    drain(endpoint)
    got = receiver.succeeded()
    assert [int(r.webhook_id) for r in got] == ids and not receiver.rejected
    first = got[0]
    assert set(first.payload) == {"type", "timestamp", "data"}
    assert first.payload["type"] == "run.succeeded"
    assert first.payload["data"] == {"workspace_id": str(project.workspace_id), "project_id": str(project.pk),
                                     "run_id": "run-0", "n": 0}
    assert first.headers["webhook-signature"].startswith("v1,")
    assert abs(int(first.headers["webhook-timestamp"]) - time.time()) < 5
    assert WebhookDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.SUCCEEDED).count() == 3
    delivery = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("id").first()
    assert delivery.attempts == 1 and delivery.response_status_code == 204 and delivery.duration_ms is not None
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).last_event_id == ids[-1]


def test_a_wrong_secret_fails_verification(project, receiver, make_endpoint):
    endpoint = make_endpoint(receiver)
    services.webhook_endpoint_rotate_secret(endpoint)  # the receiver still holds the old secret
    emit_events(project, 1)
    dispatch_step(endpoint.pk)
    assert receiver.rejected and not receiver.succeeded()
    assert WebhookDelivery.objects.get(endpoint=endpoint).status == DeliveryStatus.PENDING


def test_an_endpoint_receives_only_its_types_and_events_after_it_was_made(project, receiver, make_endpoint):
    emit_events(project, 2)  # before the endpoint: not sent
    endpoint = make_endpoint(receiver, event_types=["run.failed"])
    events.emit("run.succeeded", project=project, data={})
    wanted = events.emit("run.failed", project=project, data={}).pk
    drain(endpoint)
    assert receiver.ids() == [wanted]


def test_another_workspaces_events_are_not_sent(project, receiver, make_endpoint):
    from tests import factories

    endpoint = make_endpoint(receiver)
    emit_events(factories.ProjectFactory(), 2)
    drain(endpoint)
    assert receiver.received == []


def test_a_failing_delivery_is_retried_with_backoff_and_holds_back_the_next(project, receiver, make_endpoint):
    endpoint = make_endpoint(receiver)
    receiver.answers.extend([500, 503])
    ids = emit_events(project, 3)
    assert dispatch_step(endpoint.pk) == Step.RETRY
    assert dispatch_step(endpoint.pk) == Step.WAITING  # backoff: nothing behind it goes first
    head = WebhookDelivery.objects.get(endpoint=endpoint)
    assert head.attempts == 1 and head.response_status_code == 500 and "HTTP 500" in head.last_error
    assert head.next_attempt_at is not None
    drain(endpoint)
    assert receiver.ids() == ids
    assert [int(r.webhook_id) for r in receiver.received] == [ids[0], ids[0], ids[0], ids[1], ids[2]]
    assert WebhookDelivery.objects.get(endpoint=endpoint, event_id=ids[0]).attempts == 3


def test_backoff_doubles_up_to_its_cap(settings):
    settings.WEBHOOK_RETRY_BACKOFF_SECONDS, settings.WEBHOOK_RETRY_BACKOFF_MAX_SECONDS = 5, 60
    assert [retry_delay(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_a_refused_connection_and_a_timeout_are_failures(project, receiver, make_endpoint, settings):
    endpoint = make_endpoint(receiver)
    emit_events(project, 1)
    receiver.down()
    assert dispatch_step(endpoint.pk) == Step.RETRY
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.response_status_code is None and "ConnectionError" in delivery.last_error
    receiver.up()
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.2
    receiver.delay = 0.5
    time.sleep(0.1)
    assert dispatch_step(endpoint.pk) == Step.RETRY
    assert "Timed out" in WebhookDelivery.objects.get(endpoint=endpoint).last_error
    receiver.delay = 0


def test_retries_end_and_the_endpoint_is_disabled_after_n_failed_deliveries(project, receiver, make_endpoint,
                                                                            settings):
    settings.WEBHOOK_RETRY_MAX_AGE_SECONDS = 0.1
    settings.WEBHOOK_MAX_CONSECUTIVE_FAILURES = 2
    endpoint = make_endpoint(receiver)
    receiver.answers.extend([500] * 50)
    ids = emit_events(project, 3)
    drain(endpoint, until=lambda: not WebhookEndpoint.objects.get(pk=endpoint.pk).is_active)
    endpoint.refresh_from_db()
    assert not endpoint.is_active and endpoint.consecutive_failures == 2 and endpoint.disabled_at is not None
    assert "2 deliveries in a row failed" in endpoint.disabled_reason
    statuses = dict(WebhookDelivery.objects.filter(endpoint=endpoint).values_list("event_id", "status"))
    assert statuses == {ids[0]: DeliveryStatus.FAILED, ids[1]: DeliveryStatus.FAILED}
    assert dispatch_step(endpoint.pk) == Step.BUSY  # disabled: nothing is sent
    # Enabled again, it resumes after its cursor: the third event goes.
    receiver.answers.clear()
    services.webhook_endpoint_enable(endpoint)
    endpoint.refresh_from_db()
    assert endpoint.is_active and endpoint.consecutive_failures == 0 and endpoint.disabled_reason == ""
    drain(endpoint)
    assert receiver.ids() == [ids[2]]


def test_a_success_resets_the_failure_count(project, receiver, make_endpoint, settings):
    settings.WEBHOOK_RETRY_MAX_AGE_SECONDS = 0
    endpoint = make_endpoint(receiver)
    receiver.answers.extend([500])
    emit_events(project, 2)
    assert dispatch_step(endpoint.pk) == Step.FAILED
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).consecutive_failures == 1
    assert dispatch_step(endpoint.pk) == Step.SUCCEEDED
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).consecutive_failures == 0


def test_redeliver_sends_the_event_again_with_the_same_id(project, receiver, make_endpoint):
    endpoint = make_endpoint(receiver)
    ids = emit_events(project, 2)
    drain(endpoint)
    first = WebhookDelivery.objects.get(endpoint=endpoint, event_id=ids[0])
    copy = services.webhook_delivery_redeliver(first)
    assert copy.is_redelivery and copy.status == DeliveryStatus.PENDING
    with pytest.raises(services.DomainError) as refused:
        services.webhook_delivery_redeliver(first)
    assert refused.value.code == "delivery_pending"
    drain(endpoint)
    assert receiver.ids() == [ids[0], ids[1], ids[0]]
    assert WebhookDelivery.objects.get(pk=copy.pk).status == DeliveryStatus.SUCCEEDED


def test_dispatch_serves_every_endpoint_in_turn(project, make_endpoint):
    from .receiver import Receiver

    receivers = [Receiver() for _ in range(3)]
    try:
        for r in receivers:
            make_endpoint(r)
        ids = emit_events(project, 4)
        report = dispatch(budget_seconds=10)
        assert report.outcomes[Step.SUCCEEDED] == 3  # one step each: its four events in one batch
        assert all(r.ids() == ids for r in receivers)
        assert WebhookDelivery.objects.filter(status=DeliveryStatus.SUCCEEDED).count() == 12
    finally:
        for r in receivers:
            r.down()


def test_one_step_takes_the_same_statements_whatever_the_backlog(project, receiver, make_endpoint):
    endpoint = make_endpoint(receiver)
    emit_events(project, 1)
    with CaptureQueriesContext(connection) as one:
        assert dispatch_step(endpoint.pk) == Step.SUCCEEDED
    emit_events(project, 50)
    with CaptureQueriesContext(connection) as many:
        assert dispatch_step(endpoint.pk) == Step.SUCCEEDED
    assert len(receiver.succeeded()) == 51  # the backlog in one step (BATCH_EVENTS), its deliveries in one INSERT
    assert len(many) == len(one) <= 8, [q["sql"] for q in many]
    with CaptureQueriesContext(connection) as idle_wait:
        WebhookDelivery.objects.update(status=DeliveryStatus.PENDING)
        dispatch_step(endpoint.pk)
    assert len(idle_wait) <= 8
