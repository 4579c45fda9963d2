"""The transactional outbox: one ``Event`` row per change a person or another system follows.

An event is written in the transaction of the change it describes (``agents.events.emit``, or the run step's own
statement in ``agents.runtime.trace``), so a rolled-back change leaves none and a committed one always has one.
"""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


class EventType(models.TextChoices):
    """What an event reports (its ``type`` on the wire, the SSE ``event:`` field and the webhook body's ``type``)."""

    RUN_QUEUED = "run.queued", "Run queued"
    RUN_STARTED = "run.started", "Run started"
    RUN_STEP = "run.step", "Run step recorded"
    RUN_WAITING = "run.waiting", "Run waiting for a person"
    RUN_PAUSED = "run.paused", "Run paused"
    RUN_SUCCEEDED = "run.succeeded", "Run succeeded"
    RUN_FAILED = "run.failed", "Run failed"
    RUN_CANCELLED = "run.cancelled", "Run cancelled"
    REQUEST_CREATED = "request.created", "Request to a person created"
    REQUEST_DECIDED = "request.decided", "Request to a person decided"
    AGENT_TRANSITIONED = "agent.transitioned", "Agent transitioned"


#: The run events after which a run changes no more (a run's stream ends with one of them).
RUN_TERMINAL_EVENTS = frozenset({EventType.RUN_SUCCEEDED, EventType.RUN_FAILED, EventType.RUN_CANCELLED})

#: What an LLM call's streamed text is published as: on the run's stream only, never stored, never sent to webhooks.
LLM_DELTA = "llm.delta"


class Event(models.Model):
    """One committed change, in delivery order.

    ``id`` is the public event id (SSE ``id:``, ``Last-Event-ID``, the webhook's ``webhook-id``). Ids come from a
    sequence and are not commit-ordered on PostgreSQL, so delivery order is ``(xid, id)``: ``xid`` is the writing
    transaction's id (``pg_current_xact_id()``), and an event is delivered only once every transaction that could
    still write a smaller ``xid`` has ended (``agents.events.events_after``). On SQLite, whose writes are serialized,
    ``xid`` is 0 and id order is commit order.
    """

    id = models.BigAutoField(primary_key=True)
    type = models.CharField(max_length=40, choices=EventType.choices)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    workspace = models.ForeignKey("projects.Workspace", on_delete=models.CASCADE, related_name="+",
                                  db_constraint=False)
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="+", db_constraint=False)
    #: The run the event is about (``None`` for an agent's transition outside any run).
    run_id = models.UUIDField(null=True, blank=True)
    #: The agent the event is about.
    agent_id = models.UUIDField(null=True, blank=True)
    xid = models.BigIntegerField(default=0, editable=False)
    data = models.JSONField(default=dict, encoder=DjangoJSONEncoder)

    class Meta:
        app_label = "agents"
        ordering = ["xid", "id"]
        indexes = [
            models.Index(fields=["project", "xid", "id"], name="event_project_order_idx"),
            models.Index(fields=["workspace", "xid", "id"], name="event_workspace_order_idx"),
            models.Index(fields=["run_id", "xid", "id"], name="event_run_order_idx"),
            models.Index(fields=["xid", "id"], name="event_order_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.id}"

    @property
    def cursor(self) -> tuple[int, int]:
        """``(xid, id)``: where this event stands in delivery order."""
        return (self.xid, self.id)

    def as_dict(self) -> dict:
        """The event on the wire: ``{"id", "type", "created_at", "workspace_id", "project_id", "data"}`` (ids as
        strings, ``created_at`` ISO 8601)."""
        created = self.created_at.isoformat() if hasattr(self.created_at, "isoformat") else self.created_at
        return {
            "id": str(self.id), "type": self.type, "created_at": created,
            "workspace_id": str(self.workspace_id), "project_id": str(self.project_id), "data": self.data,
        }
