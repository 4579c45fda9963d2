"""Writing events with the change they describe, reading them back in delivery order, and pruning old ones.

Delivery order and the settled watermark (PostgreSQL): event ids come from a sequence, taken when a row is
inserted, so a transaction holding id 100 can commit after the one holding id 101; a reader that delivered 101
and moved on would never see 100. Every event therefore stores its transaction's id (``xid``,
``pg_current_xact_id()``), readers order by ``(xid, id)`` and deliver only events below the *settled watermark*:
the smallest xid that, in the reading statement's snapshot (``pg_current_snapshot()``), still runs in this
database, else the snapshot's ``xmax``. Every transaction below it has ended and is visible to the reader, so no
event can appear behind a delivered one any more: a cursor on ``(xid, id)`` is monotonic and replays have no gap
and no duplicate. Transactions running in other databases of the same server (which cannot write this database's
events) are recognised in ``pg_stat_activity`` and do not hold the watermark back; a long-running write
transaction in this database delays delivery (never loses an event). On SQLite (``make run``) writes are
serialized, ``xid`` is 0, and id order is commit order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from projects.models import Project

from .models import Event, EventType
from .publish import publish_event

logger = logging.getLogger(__name__)

#: The current transaction's id as a ``bigint`` (PostgreSQL).
XID_SQL = "pg_current_xact_id()::text::bigint"
#: The settled watermark (PostgreSQL): the smallest xid in the statement's snapshot still running that is not known to
#: run in another database (``pg_stat_activity``, read after the snapshot was taken; its 32-bit ``backend_xid`` is
#: compared modulo 2^32), else the snapshot's ``xmax``. Events with a smaller xid are settled.
SETTLED_SQL = (
    "(SELECT LEAST(pg_snapshot_xmax(snap)::text::bigint, (SELECT min(running::text::bigint) "
    "FROM pg_snapshot_xip(snap) AS running WHERE running::text::bigint %% 4294967296 NOT IN ("
    "SELECT backend_xid::text::bigint FROM pg_stat_activity WHERE backend_xid IS NOT NULL "
    "AND datname IS DISTINCT FROM current_database()))) FROM pg_current_snapshot() AS snap)"
)

#: Larger than any event id.
MAX_ID = 2**63 - 1

#: Run status → the event its change emits.
RUN_STATUS_EVENTS = {
    "queued": EventType.RUN_QUEUED, "running": EventType.RUN_STARTED, "waiting": EventType.RUN_WAITING,
    "paused": EventType.RUN_PAUSED, "succeeded": EventType.RUN_SUCCEEDED, "failed": EventType.RUN_FAILED,
    "cancelled": EventType.RUN_CANCELLED,
}


def _insert_sql(*, by_agent: bool) -> str:
    q = connection.ops.quote_name
    table, projects = q(Event._meta.db_table), q(Project._meta.db_table)
    pg = connection.vendor == "postgresql"
    xid = XID_SQL if pg else "0"
    at, uid, doc = ("%s::timestamptz", "%s::uuid", "%s::jsonb") if pg else ("%s", "%s", "%s")
    if by_agent:  # the project is the agent's
        from ..models import AgentInstance

        source = f"{q(AgentInstance._meta.db_table)} AS a JOIN {projects} AS p ON p.id = a.project_id WHERE a.id = %s"
    else:
        source = f"{projects} AS p WHERE p.id = %s"
    return (
        f"INSERT INTO {table} (type, created_at, workspace_id, project_id, run_id, agent_id, xid, data) "
        f"SELECT %s, {at}, p.workspace_id, p.id, {uid}, {uid}, {xid}, {doc} FROM {source} "
        f"RETURNING id, workspace_id, project_id, xid"
    )


def emit(type: str, *, project=None, data: dict[str, Any], run_id=None, agent_id=None) -> Event:
    """Write one event in the current transaction and publish it after that transaction commits.

    Call it inside the transaction of the change (``transaction.atomic``): a rolled-back change leaves no event.
    One statement (``INSERT … SELECT`` from the project, which gives the workspace).

    Args:
        type: an ``EventType`` value.
        project: the ``projects.Project`` (or its id) the change belongs to; ``None``: ``agent_id``'s project.
        data: the event's JSON payload: the object's ids and the fields ``docs/events.md`` lists for ``type``
            (``Decimal``, ``UUID`` and datetimes are serialized as strings).
        run_id, agent_id: the run and agent the event is about (indexed: a run's stream reads by ``run_id``).

    Returns the saved ``Event``.

    Raises:
        ValueError: ``type`` is not an ``EventType``.
        Project.DoesNotExist: no such project.
    """
    if type not in EventType.values:
        raise ValueError(f"{type!r} is not an event type.")
    project_id = getattr(project, "pk", project)
    if project_id is None and agent_id is None:
        raise ValueError("emit needs a project or an agent_id.")
    now = timezone.now()
    payload = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    uuid_prep = Event._meta.get_field("run_id").get_db_prep_value
    params = [
        type, Event._meta.get_field("created_at").get_db_prep_value(now, connection),
        uuid_prep(run_id, connection), uuid_prep(agent_id, connection), json.dumps(payload),
        uuid_prep(project_id if project_id is not None else agent_id, connection),
    ]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(by_agent=project_id is None), params)
        row = cursor.fetchone()
    if row is None:
        raise Project.DoesNotExist(f"No project {project_id or 'of agent ' + str(agent_id)}.")
    event = Event(id=row[0], type=type, created_at=now, workspace_id=row[1], project_id=row[2], run_id=run_id,
                  agent_id=agent_id, xid=row[3], data=payload)
    published(event)
    return event


def published(event: Event) -> None:
    """Publish ``event`` (a wake-up for live consumers) once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: publish_event(event), robust=True)


def _cursor_of(after_id: int | None) -> tuple[int, int] | None:
    if after_id is None:
        return None
    row = Event.objects.filter(pk=after_id).values_list("xid", "id").first()
    return tuple(row) if row is not None else None


def events_after(
    after_id: int | None,
    *,
    workspace_id=None,
    project_id=None,
    run_id=None,
    types: Iterable[str] | None = None,
    limit: int = 500,
    cursor: tuple[int, int] | None = None,
) -> list[Event]:
    """The settled events after event ``after_id``, in delivery order (``(xid, id)``), at most ``limit``.

    Args:
        after_id: the last event the caller has (its ``Last-Event-ID``); ``None`` or 0: from the oldest event kept.
            An id that is no longer kept (pruned) continues with the events of higher id.
        workspace_id, project_id, run_id: filters (any combination).
        types: only these event types.
        limit: most events returned; call again with the last one's id (or ``cursor``) for the next page.
        cursor: ``(xid, id)`` of the last event the caller has (``Event.cursor``); when given it is used instead of
            ``after_id`` and saves the look-up.

    Returns a list of ``Event`` (empty when nothing new has settled).
    """
    queryset = Event.objects.all()
    if connection.vendor == "postgresql":
        queryset = queryset.filter(xid__lt=RawSQL(SETTLED_SQL, []))
    if workspace_id is not None:
        queryset = queryset.filter(workspace_id=workspace_id)
    if project_id is not None:
        queryset = queryset.filter(project_id=project_id)
    if run_id is not None:
        queryset = queryset.filter(run_id=run_id)
    if types is not None:
        queryset = queryset.filter(type__in=list(types))
    if cursor is None and after_id:
        cursor = _cursor_of(after_id)
        if cursor is None:
            queryset = queryset.filter(id__gt=after_id)
    if cursor is not None:
        xid, event_id = cursor
        queryset = queryset.filter(Q(xid__gt=xid) | Q(xid=xid, id__gt=event_id))
    return list(queryset.order_by("xid", "id")[: max(0, int(limit))])


def head() -> tuple[int, int]:
    """The cursor ``(xid, id)`` just after every settled event: a reader that starts from it gets every event that
    settles afterwards and none before (one query)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {SETTLED_SQL}", [])
            return (cursor.fetchone()[0] - 1, MAX_ID)
    return (0, Event.objects.order_by("-id").values_list("id", flat=True).first() or 0)


def events_prune(*, now=None, batch: int = 10_000) -> int:
    """Delete the events older than ``EVENTS_RETENTION_DAYS`` days, in batches of ``batch``; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.EVENTS_RETENTION_DAYS)
    total = 0
    while True:
        ids = list(Event.objects.filter(created_at__lt=cutoff).order_by("created_at").values_list("id", flat=True)[
            :batch])
        if not ids:
            return total
        total += Event.objects.filter(pk__in=ids)._raw_delete(Event.objects.db)
        if len(ids) < batch:
            return total


# --- What each event carries -----------------------------------------------------------------------------


def run_data(run) -> dict[str, Any]:
    """A run event's ``data``: the run's ids and state (``docs/events.md``)."""
    return {
        "run_id": str(run.pk), "agent_id": str(run.agent_id),
        "issue_id": str(run.issue_id) if run.issue_id else None, "status": run.status,
        "attempts": run.attempts, "steps_completed": run.steps_completed, "tokens_used": run.tokens_used,
        "cost": str(run.cost), "error_code": run.error_code, "error_message": run.error_message,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def run_changed(run) -> Event:
    """Emit the event of ``run``'s (just saved) status: ``run.queued``, ``run.started``, … ``run.cancelled``."""
    return emit(RUN_STATUS_EVENTS[run.status], data=run_data(run), run_id=run.pk, agent_id=run.agent_id)


def request_data(request, *, agent_id) -> dict[str, Any]:
    """A request event's ``data``: the request's ids, kind, tool and status (and its decision once decided)."""
    data = {
        "request_id": str(request.pk), "run_id": str(request.run_id), "agent_id": str(agent_id),
        "kind": request.kind, "tool_name": request.tool_name, "status": request.status,
        "message": request.message,
    }
    if request.decided_at is not None:
        data.update({
            "decided_by": getattr(request.decided_by, "username", None) if request.decided_by_id else None,
            "decided_at": request.decided_at.isoformat(), "reason": request.reason,
        })
    return data


def request_event(type: str, request, *, project_id, agent_id) -> Event:
    """Emit ``request.created`` or ``request.decided`` for ``request`` (an ``AgentRunRequest``)."""
    return emit(type, project=project_id, data=request_data(request, agent_id=agent_id), run_id=request.run_id,
                agent_id=agent_id)


def transition_event(transition, *, project_id) -> Event:
    """Emit ``agent.transitioned`` for ``transition`` (an ``AgentTransition`` ledger row)."""
    actor = transition.actor
    return emit(EventType.AGENT_TRANSITIONED, project=project_id, run_id=transition.run_id,
                agent_id=transition.agent_id, data={
                    "agent_id": str(transition.agent_id), "transition_id": str(transition.pk),
                    "from": transition.from_status, "to": transition.to_status,
                    "actor": getattr(actor, "username", None) if actor is not None else None,
                    "actor_agent_id": str(transition.actor_agent_id) if transition.actor_agent_id else None,
                    "reason": transition.reason,
                    "run_id": str(transition.run_id) if transition.run_id else None,
                })
