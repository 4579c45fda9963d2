"""The Celery application: agent runs and lifecycle hooks execute on its workers (design.md §7, §8).

Start workers with ``celery -A syndarix worker`` and the periodic jobs with ``celery -A syndarix beat``;
any number of workers on any number of machines share one PostgreSQL and one broker (Redis). The
configuration is the ``CELERY_*`` settings of ``syndarix.settings``; tasks live in each app's
``tasks.py`` and are found by ``autodiscover_tasks``.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndarix.settings")

app = Celery("syndarix")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
