"""The Celery application: agent runs and lifecycle hooks execute on its workers.

Start workers with ``celery -A syndarix worker`` and the periodic jobs with ``celery -A syndarix beat``;
any number of workers on any number of machines share one PostgreSQL and one broker (Redis). The
configuration is the ``CELERY_*`` settings of ``syndarix.settings``. An app's tasks are registered by the app:
a top-level ``tasks.py`` is found by ``autodiscover_tasks``; the agents app keeps its tasks in
``agents/runtime/tasks.py`` and imports them when it is ready.

With ``METRICS_PORT`` a worker serves its per-process Prometheus series on that port (``syndarix.metrics``).
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init, worker_process_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndarix.settings")

app = Celery("syndarix")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def serve_metrics(**kwargs) -> None:
    """When a worker starts: empty its multiprocess metrics directory and, with ``METRICS_PORT``, serve its
    per-process series there (``syndarix.metrics``)."""
    from django.conf import settings

    from syndarix import metrics

    metrics.wipe_multiprocess_dir()
    if settings.METRICS_PORT:
        metrics.serve_worker_metrics(settings.METRICS_PORT)


@worker_process_shutdown.connect
def forget_process_metrics(pid=None, **kwargs) -> None:
    """A pool process exits: its live gauges leave the machine's totals."""
    from syndarix import metrics

    metrics.process_dead(pid or os.getpid())
