"""Webhooks delivered by a real Celery worker (with beat, on the maintenance queue, as the Procfile's ``beat`` line
runs it) from the outbox in PostgreSQL to real receivers: every delivery verifies with ``standardwebhooks``; a
receiver that is down for a while gets every event once it is back, in order."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from django.conf import settings

from agents.webhooks.choices import DeliveryStatus
from agents.webhooks.models import WebhookDelivery, WebhookEndpoint
from syndarix.celery import app as celery_app
from tests.runtime.harness import ROOT, maintenance_queue, new_queue_name, purge_queue, wait_for, worker_env

from .conftest import emit_events

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def webhook_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """One worker process with beat, consuming a maintenance queue of its own, on the test database."""
    queue = new_queue_name()
    env = worker_env(database=settings.DATABASES["default"], broker_url=settings.CELERY_BROKER_URL, queue=queue,
                     llm_url="http://127.0.0.1:9/", extra={
                         "REDIS_URL": settings.REDIS_URL,
                         "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
                         "WEBHOOK_RETRY_BACKOFF_SECONDS": "0.1",
                         "WEBHOOK_RETRY_BACKOFF_MAX_SECONDS": "0.3",
                         "WEBHOOK_DISPATCH_INTERVAL_SECONDS": "0.25",
                         "WEBHOOK_TIMEOUT_SECONDS": "2",
                         "AGENT_HEARTBEAT_SECONDS": "5",
                     })
    log_dir = tmp_path_factory.mktemp("webhook-worker")
    log = (log_dir / "worker.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "syndarix", "worker", "--beat", "--schedule",
         str(log_dir / "beat-schedule"), "--pool=threads", "--concurrency=4", "-Q", maintenance_queue(queue),
         "-n", f"webhooks-{queue[-6:]}@%h", "--without-gossip", "--without-mingle", "-l", "info"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    previous = celery_app.conf.maintenance_queue
    celery_app.conf.maintenance_queue = maintenance_queue(queue)
    try:
        deadline = time.monotonic() + 30
        while not celery_app.control.ping(destination=[f"webhooks-{queue[-6:]}@{_host()}"], timeout=0.5):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("The webhook worker did not start:\n" + (log_dir / "worker.log").read_text()[-3000:])
        yield process
    finally:
        celery_app.conf.maintenance_queue = previous
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        purge_queue(settings.CELERY_BROKER_URL, maintenance_queue(queue))


def _host() -> str:
    import socket

    return socket.gethostname()


@pytest.fixture(autouse=True)
def _not_eager(webhook_worker):
    """Eager mode off for the test; afterwards the worker is left nothing to deliver before the tables are flushed
    (a dispatcher step holding the endpoint's lock while the flush locks every table would deadlock it)."""
    celery_app.conf.task_always_eager = False
    yield
    celery_app.conf.task_always_eager = True
    WebhookEndpoint.objects.update(is_active=False)
    time.sleep(0.5)  # a step in flight ends; the next ones find no active endpoint


def test_the_worker_delivers_every_event_signed_and_in_order(project, receiver, make_endpoint):
    make_endpoint(receiver)
    ids = emit_events(project, 20)
    got = receiver.wait_for(len(ids))
    assert [int(r.webhook_id) for r in got] == ids and not receiver.rejected
    assert all(r.payload["type"] == "run.succeeded" for r in got)


def test_a_receiver_down_for_a_while_gets_every_event_in_order_once_back(project, receiver, make_endpoint):
    endpoint = make_endpoint(receiver)
    receiver.down()
    ids = emit_events(project, 8)
    wait_for(lambda: WebhookDelivery.objects.filter(endpoint=endpoint, attempts__gte=3).exists(), timeout=20)
    assert receiver.received == []
    receiver.up()
    got = receiver.wait_for(len(ids))
    time.sleep(0.5)  # nothing more arrives: each event once
    assert receiver.ids() == ids and len(receiver.received) == len(ids)
    first = WebhookDelivery.objects.get(endpoint=endpoint, event_id=ids[0])
    assert first.status == DeliveryStatus.SUCCEEDED and first.attempts >= 3
    assert all(r.payload["data"]["project_id"] == str(project.pk) for r in got)
