"""Fixtures of the runtime's integration tests: real Celery workers on Redis, the test database, and a local
OpenAI-compatible stub (``tests/runtime/harness.py``).

Two worker processes (prefork, concurrency 1) start once per session on a queue of their own, pointed at
pytest-django's test database and at the stub, each serving its Prometheus series on a ``METRICS_PORT`` of its own
(multiprocess mode, a directory each). They never skip: a worker that does not answer a ping within
30 s fails the tests, with the tail of its log. Each test runs with eager mode off (the suite's unit tests keep
it on) and ends with no task left on the workers, so nothing of one test runs into the next.
"""

from __future__ import annotations

import contextlib

import pytest
from django.conf import settings

from agents.choices import RUN_FINISHED_STATUSES
from agents.models import AgentRun
from agents.registry import registry
from agents.runtime import services as runtime
from syndarix.celery import app as celery_app
from tests.live import free_port

from .agent_classes import CALLS, TICKS
from .harness import (
    HarnessError,
    StubLLM,
    Workers,
    maintenance_queue,
    new_queue_name,
    purge_queue,
    purge_stale_queues,
    worker_env,
)

AGENT_MODULE = "tests.runtime.agent_classes"


@pytest.fixture(scope="session")
def stub():
    """The OpenAI-compatible stub (session-wide: the workers know its URL); reset before each test."""
    server = StubLLM().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def workers(django_db_setup, stub, tmp_path_factory):
    """Two real worker processes on the test database, the broker and the stub, for the whole session."""
    broker = settings.CELERY_BROKER_URL
    purge_stale_queues(broker)
    queue = new_queue_name()
    env = worker_env(
        database=settings.DATABASES["default"], broker_url=broker, queue=queue, llm_url=stub.base_url,
        extra={"AGENT_REGISTRY_MODULES": AGENT_MODULE, "REDIS_URL": settings.REDIS_URL},
    )
    previous_queue = celery_app.conf.task_default_queue, celery_app.conf.maintenance_queue
    celery_app.conf.task_default_queue, celery_app.conf.maintenance_queue = queue, maintenance_queue(queue)
    log_dir = tmp_path_factory.mktemp("workers")
    pool = Workers(app=celery_app, env=env, queue=queue, log_dir=log_dir)
    for worker in pool.workers:
        worker.env = {"METRICS_PORT": str(free_port()),
                      "PROMETHEUS_MULTIPROC_DIR": str(log_dir / f"metrics-{worker.name.split('-')[0]}")}
    try:
        pool.start_all(timeout=30)
    except HarnessError as exc:
        pool.stop()
        purge_queue(broker, queue)
        celery_app.conf.task_default_queue, celery_app.conf.maintenance_queue = previous_queue
        pytest.fail(f"The runtime's integration tests need real Celery workers on {broker}:\n{exc}", pytrace=False)
    yield pool
    pool.stop()
    purge_queue(broker, queue)
    celery_app.conf.task_default_queue, celery_app.conf.maintenance_queue = previous_queue


@pytest.fixture(autouse=True)
def _live_runtime(transactional_db, workers, stub):
    """Per test: workers up (a killed one restarted), the stub's script empty, eager mode off, the test agent
    classes registered. Afterwards: unfinished runs cancelled and the workers idle before the database is
    flushed; a call the stub was not scripted for, or one a real server refuses, fails the test."""
    try:
        workers.ensure_running()
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    stub.reset()
    celery_app.conf.task_always_eager = False
    registered = CALLS not in registry
    if registered:
        registry.load_module(AGENT_MODULE)
    try:
        yield
        unexpected = [r.last_message for r in stub.unexpected]
        refused = [(code, body[:300]) for _, code, body in stub.refused]
    finally:
        try:
            _quiesce(workers, stub)
        finally:
            celery_app.conf.task_always_eager = True
            if registered:
                registry.unregister(CALLS)
                registry.unregister(TICKS)
    assert not unexpected, f"the agent made LLM calls nobody scripted; their last messages: {unexpected}"
    assert not refused, f"the runtime sent requests a real server refuses: {refused}"


def _quiesce(workers: Workers, stub: StubLLM) -> None:
    stub.release_all()
    for run in AgentRun.objects.exclude(status__in=RUN_FINISHED_STATUSES):
        with contextlib.suppress(Exception):
            runtime.run_cancel(run)
    workers.wait_idle()
