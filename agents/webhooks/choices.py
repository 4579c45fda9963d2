"""Choices of the webhooks sub-system."""

from django.db import models

from ..events.models import EventType


class DeliveryStatus(models.TextChoices):
    """Where a ``WebhookDelivery`` stands: ``pending`` until an attempt succeeded (``succeeded``) or its retries ran
    out (``failed``)."""

    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


#: The event types an endpoint may subscribe to (``agents.events.EventType``), in the order the API documents them.
EVENT_TYPES = tuple(EventType.values)

#: What a new endpoint receives when it names no event types: all but the chatty ``run.step`` (``llm.delta`` is
#: never stored, so never delivered).
DEFAULT_EVENT_TYPES = tuple(t for t in EVENT_TYPES if t != "run.step")


def default_event_types() -> list[str]:
    """``WebhookEndpoint.event_types``' default (a new list each time)."""
    return list(DEFAULT_EVENT_TYPES)
