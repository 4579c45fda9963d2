"""The Celery application: agent runs and lifecycle hooks execute on its workers.

Start workers with ``celery -A syndarix worker`` and the periodic jobs with ``celery -A syndarix beat``;
any number of workers on any number of machines share one PostgreSQL and one broker (Redis). The
configuration is the ``CELERY_*`` settings of ``syndarix.settings``. An app's tasks are registered by the app:
a top-level ``tasks.py`` is found by ``autodiscover_tasks``; the agents app keeps its tasks in
``agents/runtime/tasks.py`` and imports them when it is ready.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndarix.settings")

app = Celery("syndarix")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
