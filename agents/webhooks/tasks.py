"""The webhooks' Celery task and the nudge a commit that wrote events sends.

``dispatch_webhooks`` runs on the maintenance queue (``CELERY_MAINTENANCE_QUEUE``), queued by beat every
``WEBHOOK_DISPATCH_INTERVAL_SECONDS`` (``CELERY_BEAT_SCHEDULE``) and, sooner, by ``nudge`` after a transaction that
wrote outbox events commits. The nudge is one cache ``add`` per transaction: only the first one after a dispatcher
started sends a task, so a burst of commits queues one dispatcher, not one each.
"""

from __future__ import annotations

import logging

from celery import shared_task
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


def nudge_on_commit(sender=None, event=None, **kwargs) -> None:
    """``agents.signals.event_written`` receiver: once per transaction, ``nudge`` after it commits."""
    connection = transaction.get_connection()
    if any(entry[1] is nudge for entry in connection.run_on_commit):
        return
    transaction.on_commit(nudge)
