"""Concurrent dispatchers against PostgreSQL never post one event twice to an endpoint, never post to one endpoint
two requests at once, and keep each endpoint's order — also while a receiver fails and retries."""

from __future__ import annotations

import threading

import pytest

from agents.webhooks.choices import DeliveryStatus
from agents.webhooks.dispatch import dispatch
from agents.webhooks.models import WebhookDelivery
from tests.threads import failures, run_concurrently

from .conftest import emit_events
from .receiver import Receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_nudge")]


class CountingReceiver(Receiver):
    """Records the most requests it was handling at once."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self._flight = threading.Lock()
        super().__init__()

    def handle(self, handler, body):
        with self._flight:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            super().handle(handler, body)
        finally:
            with self._flight:
                self.in_flight -= 1


def test_concurrent_dispatchers_deliver_each_event_once_in_order(project, make_endpoint):
    receivers = [CountingReceiver() for _ in range(3)]
    try:
        for receiver in receivers:
            receiver.delay = 0.002  # widen the window in which a second dispatcher could post
            make_endpoint(receiver)
        receivers[0].answers.extend([500, 502, 503])  # one receiver fails a few times: retries keep the order
        ids = emit_events(project, 40)

        def dispatcher(index: int) -> int:
            while True:
                dispatch(budget_seconds=20)
                if not WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).exists() and all(
                    len(r.succeeded()) == len(ids) for r in receivers
                ):
                    return index

        results = run_concurrently(6, dispatcher, timeout=90)
        assert not failures(results), failures(results)
        for receiver in receivers:
            assert receiver.ids() == ids, "an event was posted twice, or out of order"
            assert receiver.max_in_flight == 1
            assert not receiver.rejected
        attempts = WebhookDelivery.objects.values_list("attempts", flat=True)
        assert sum(attempts) == 3 * len(ids) + 3  # every attempt recorded once: 120 successes and 3 failures
        assert WebhookDelivery.objects.count() == 3 * len(ids)
    finally:
        for receiver in receivers:
            receiver.down()
