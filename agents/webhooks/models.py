"""Webhook endpoints and their deliveries.

An endpoint belongs to a workspace and receives, as Standard Webhooks (https://www.standardwebhooks.com/), the
events of that workspace's outbox (``agents.events.Event``) whose type it subscribed to. Its ``last_event_id`` is its
cursor: the last event the dispatcher (``agents.webhooks.dispatch``) turned into a delivery. A delivery is one event
sent to one endpoint, retried until it succeeds or its retries run out; an endpoint's deliveries go out one at a time,
in the order they were made.
"""

from __future__ import annotations

import base64
import secrets

from django.db import models
from django.db.models import Q

from projects.models import TimeStampedModel

from .choices import DeliveryStatus, default_event_types

#: The Standard Webhooks secret prefix; the rest is the base64 of the key's bytes.
SECRET_PREFIX = "whsec_"
#: Random bytes in a new signing key (the spec asks for 24 to 64).
SECRET_BYTES = 32


def new_secret() -> str:
    """A new signing secret: ``whsec_`` + base64 of ``SECRET_BYTES`` random bytes (what
    ``standardwebhooks.Webhook(secret)`` takes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


class WebhookEndpoint(TimeStampedModel):
    """Where a workspace's events are posted.

    ``secret`` signs every delivery; the API shows it once, when the endpoint is created and when it is rotated.
    ``last_event_id`` is the id of the last outbox event dispatched to it (0: none yet; a new endpoint starts after
    the events that exist when it is created). ``consecutive_failures`` counts the deliveries that failed in a row
    (each after all its retries); at ``WEBHOOK_MAX_CONSECUTIVE_FAILURES`` the endpoint is disabled
    (``is_active`` false, ``disabled_at`` and ``disabled_reason`` set), and enabling it again resumes after its
    cursor.
    """

    workspace = models.ForeignKey("projects.Workspace", on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000, help_text="HTTP or HTTPS URL the events are posted to.")
    description = models.CharField(max_length=200, blank=True)
    event_types = models.JSONField(
        default=default_event_types, help_text="The event types posted to this endpoint (a list of strings)."
    )
    is_active = models.BooleanField(default=True)
    secret = models.CharField(max_length=120, default=new_secret, editable=False)
    last_event_id = models.BigIntegerField(default=0, help_text="The last outbox event dispatched here (0: none).")
    #: The outbox position ``(xid, id)`` of ``last_event_id`` (``agents.events.Event.cursor``), so reading on needs
    #: no look-up of that event.
    last_event_xid = models.BigIntegerField(default=0, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    #: The ``Idempotency-Key`` of the request that created the endpoint or last rotated its secret.
    request_id = models.CharField(max_length=200, null=True, blank=True, editable=False)

    class Meta:
        ordering = ("created_at", "id")
        indexes = [models.Index(fields=["workspace", "is_active"], name="webhook_endpoint_ws_active")]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event posted (or to be posted) to one endpoint.

    ``attempts`` counts the HTTP attempts; ``response_status_code``, ``duration_ms`` (milliseconds) and
    ``last_error`` describe the latest one. A pending delivery is attempted at ``next_attempt_at``; it ends
    ``succeeded`` (a 2xx answer, ``delivered_at`` set) or ``failed`` (retries ran out). ``is_redelivery`` marks a
    copy queued by a person (``services.webhook_delivery_redeliver``); every other delivery is the only one of its
    (endpoint, event).
    """

    id = models.BigAutoField(primary_key=True)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    #: The outbox event. No database constraint: the outbox's prune job deletes events in bulk, without cascading;
    #: a delivery whose event was pruned keeps its record with ``event_id`` (``event`` is then ``None``).
    #: (Nullable only so that joins are outer joins and such a delivery stays listed.)
    event = models.ForeignKey("agents.Event", on_delete=models.DO_NOTHING, related_name="webhook_deliveries",
                              db_constraint=False, null=True)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    is_redelivery = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    response_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    #: The ``Idempotency-Key`` of the redelivery request that queued this copy.
    request_id = models.CharField(max_length=200, null=True, blank=True, editable=False)

    class Meta:
        ordering = ("-id",)
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["endpoint", "id"], name="webhook_delivery_endpoint"),
            models.Index(
                fields=["endpoint", "id"], condition=Q(status=DeliveryStatus.PENDING), name="webhook_delivery_pending"
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event"], condition=Q(is_redelivery=False), name="webhook_delivery_once"
            ),
        ]

    def __str__(self) -> str:
        return f"event {self.event_id} → {self.endpoint_id} ({self.status})"
