"""The webhooks' Celery task and the nudge a commit that wrote events sends.

``dispatch_webhooks`` runs on the maintenance queue (``CELERY_MAINTENANCE_QUEUE``), queued by beat every
``WEBHOOK_DISPATCH_INTERVAL_SECONDS`` (``CELERY_BEAT_SCHEDULE``) and, sooner, by ``nudge`` after a transaction that
wrote outbox events commits. The nudge is one cache ``add`` per transaction: only the first one after a dispatcher
started sends a task, so a burst of commits queues one dispatcher, not one each. Only events of a workspace with an
active endpoint nudge: each process keeps the set of those workspaces for ``WEBHOOK_DISPATCH_INTERVAL_SECONDS``
(re-read sooner in the process that saves or deletes an endpoint), so a fleet without webhooks pays nothing per
commit, and an endpoint created elsewhere is served by beat's dispatcher until the set is re-read.
"""

from __future__ import annotations

import logging
import threading
import time

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

#: Set by the first nudge after a dispatcher started; a dispatcher clears it when it starts.
NUDGE_KEY = "webhooks:nudged"
NUDGE_TTL_SECONDS = 60


@shared_task(name="agents.webhooks.tasks.dispatch_webhooks", ignore_result=True)
def dispatch_webhooks() -> dict[str, int]:
    """Deliver what is due (``agents.webhooks.dispatch.dispatch``); returns the steps per outcome."""
    from .dispatch import dispatch

    try:
        cache.delete(NUDGE_KEY)
    except Exception:  # noqa: BLE001 - without the cache the nudges send every time; beat still dispatches
        logger.warning("Could not clear the webhook nudge flag", exc_info=True)
    return dispatch().outcomes


def nudge() -> None:
    """Queue a dispatcher unless one was queued since the last one started (``NUDGE_KEY``). Never raises: beat
    dispatches within ``WEBHOOK_DISPATCH_INTERVAL_SECONDS`` anyway."""
    try:
        if cache.add(NUDGE_KEY, 1, NUDGE_TTL_SECONDS):
            dispatch_webhooks.delay()
    except Exception:  # noqa: BLE001 - a lost broker or cache must not fail the commit that wrote the events
        logger.warning("Could not nudge the webhook dispatcher", exc_info=True)


class ActiveWorkspaces:
    """The ids of the workspaces that have an active webhook endpoint, as this process last read them (one query at
    most every ``max_age`` seconds, ``WEBHOOK_DISPATCH_INTERVAL_SECONDS`` unless set; ``forget()`` makes the next look
    read them again)."""

    max_age: float | None = None

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: frozenset = frozenset()
        self._read_at: float | None = None

    def __contains__(self, workspace_id) -> bool:
        with self._lock:
            max_age = settings.WEBHOOK_DISPATCH_INTERVAL_SECONDS if self.max_age is None else self.max_age
            stale = self._read_at is None or time.monotonic() - self._read_at > max_age
        if stale:
            from .models import WebhookEndpoint

            ids = frozenset(WebhookEndpoint.objects.filter(is_active=True).values_list("workspace_id", flat=True))
            with self._lock:
                self._ids, self._read_at = ids, time.monotonic()
        return workspace_id in self._ids

    def forget(self, **kwargs) -> None:
        """Read the set again at the next look (a ``post_save``/``post_delete`` receiver of ``WebhookEndpoint``)."""
        with self._lock:
            self._read_at = None


#: This process's view of the workspaces with active endpoints.
active_workspaces = ActiveWorkspaces()


def nudge_on_commit(sender=None, event=None, **kwargs) -> None:
    """``agents.signals.event_written`` receiver: once per transaction that wrote an event of a workspace with an
    active endpoint (``active_workspaces``), ``nudge`` after it commits."""
    if event is not None and event.workspace_id not in active_workspaces:
        return
    connection = transaction.get_connection()
    if any(entry[1] is nudge for entry in connection.run_on_commit):
        return
    transaction.on_commit(nudge)
