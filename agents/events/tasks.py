"""The events' periodic job (on the maintenance queue, ``CELERY_BEAT_SCHEDULE["prune-events"]``: hourly)."""

from celery import shared_task


@shared_task(name="agents.events.tasks.prune_events", ignore_result=True)
def prune_events() -> int:
    """Delete the events older than ``EVENTS_RETENTION_DAYS`` (``agents.events.events_prune``); returns how many."""
    from .outbox import events_prune

    return events_prune()
