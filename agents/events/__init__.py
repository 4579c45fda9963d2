"""A minimal events outbox (stand-in until the events outbox lands; replaced by it)."""

from __future__ import annotations


def emit(type, *, project, data):  # noqa: A002
    """Write an event in the current transaction."""
    from .models import Event

    return Event.objects.create(type=type, project=project, workspace_id=project.workspace_id, data=data)


def events_after(after_id, *, workspace_id=None, project_id=None, run_id=None, types=None, limit=500):
    """Events after ``after_id`` in id order (committed ones only)."""
    from .models import Event

    queryset = Event.objects.filter(id__gt=after_id or 0).order_by("id")
    if workspace_id:
        queryset = queryset.filter(workspace_id=workspace_id)
    if project_id:
        queryset = queryset.filter(project_id=project_id)
    if types is not None:
        queryset = queryset.filter(type__in=list(types))
    return list(queryset[:limit])
