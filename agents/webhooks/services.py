"""Writes of the webhooks sub-system: one function per action, called by the API, the admin and the dispatcher.

Every function locks the endpoint row (``select_for_update``) before it changes the endpoint or queues a delivery,
so it never races the dispatcher (``agents.webhooks.dispatch``), which holds the same lock while it sends.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from projects.models import Workspace
from syndarix.exceptions import DomainError, InvalidInput

from .choices import DEFAULT_EVENT_TYPES, EVENT_TYPES, DeliveryStatus
from .models import WebhookDelivery, WebhookEndpoint, new_secret
from .targets import validate_target_url

#: Endpoint fields ``webhook_endpoint_update`` changes.
UPDATABLE_FIELDS = ("url", "description", "event_types", "is_active")


def check_event_types(value: Any, *, field: str = "event_types") -> list[str]:
    """The event types an endpoint subscribes to, checked: a non-empty list of known types (``EVENT_TYPES``),
    returned without duplicates in the documented order. ``None`` gives the default (all but ``run.step``).

    Raises:
        InvalidInput: 400 on ``field``: not a list of strings, empty (``empty_event_types``), or an unknown type
            (``unknown_event_type``; ``llm.delta`` is never delivered).
    """
    if value is None:
        return list(DEFAULT_EVENT_TYPES)
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise InvalidInput("event_types is a list of event type names.", field=field)
    if not value:
        raise InvalidInput("Subscribe to at least one event type.", code="empty_event_types", field=field)
    unknown = [item for item in value if item not in EVENT_TYPES]
    if unknown:
        hint = ""
        if "llm.delta" in unknown:
            hint = " llm.delta is streamed to runs' event streams only, never to webhooks."
        raise InvalidInput(
            f"Unknown event type(s): {', '.join(sorted(set(unknown)))}. Known: {', '.join(EVENT_TYPES)}.{hint}",
            code="unknown_event_type", field=field,
        )
    wanted = set(value)
    return [item for item in EVENT_TYPES if item in wanted]


def latest_event_cursor(workspace_id) -> tuple[int, int]:
    """The outbox position ``(xid, id)`` of the workspace's last event in delivery order (``(0, 0)`` when it has
    none): where a new endpoint's cursor starts, so that it receives the events that come after it was created."""
    from ..events.models import Event

    last = Event.objects.filter(workspace_id=workspace_id).order_by("-xid", "-id").values_list("xid", "id").first()
    return tuple(last) if last else (0, 0)


def webhook_endpoint_create(
    *, workspace: Workspace, url: str, event_types: Iterable[str] | None = None, description: str = "",
    is_active: bool = True, request_id: str | None = None,
) -> tuple[WebhookEndpoint, bool]:
    """Create a webhook endpoint in ``workspace`` with a new signing secret (``endpoint.secret``).

    Args:
        url: the target (``targets.validate_target_url``: http(s), and a public address unless
            ``WEBHOOK_ALLOW_PRIVATE_TARGETS``).
        event_types: the types it receives (``check_event_types``; ``None``: all but ``run.step``).
        request_id: an ``Idempotency-Key``: repeating it in the workspace returns the endpoint the first request
            created (secret included) instead of creating another.

    Returns:
        ``(endpoint, created)``; ``created`` is false for an idempotent replay.

    Raises:
        InvalidInput: a refused URL or unknown event types (400).
    """
    if request_id:
        replay = WebhookEndpoint.objects.filter(workspace=workspace, request_id=request_id).first()
        if replay is not None:
            return replay, False
    validate_target_url(url)
    types = check_event_types(list(event_types) if event_types is not None else None)
    with transaction.atomic():
        Workspace.objects.select_for_update().filter(pk=workspace.pk).first()  # serializes replays of one key
        if request_id:
            replay = WebhookEndpoint.objects.filter(workspace=workspace, request_id=request_id).first()
            if replay is not None:
                return replay, False
        last_xid, last_id = latest_event_cursor(workspace.pk)
        endpoint = WebhookEndpoint.objects.create(
            workspace=workspace, url=url, description=description, event_types=types, is_active=is_active,
            last_event_id=last_id, last_event_xid=last_xid, request_id=request_id,
        )
    return endpoint, True


def webhook_endpoint_update(endpoint: WebhookEndpoint, *, data: dict[str, Any]) -> WebhookEndpoint:
    """Change ``url``, ``description``, ``event_types`` or ``is_active`` (keys of ``data``; others are ignored).

    Turning ``is_active`` on enables a disabled endpoint (``webhook_endpoint_enable``): delivery resumes after its
    cursor. Turning it off pauses delivery; its pending deliveries wait.

    Raises:
        InvalidInput: a refused URL or unknown event types (400).
    """
    changes = {key: data[key] for key in UPDATABLE_FIELDS if key in data}
    if "url" in changes:
        validate_target_url(changes["url"])
    if "event_types" in changes:
        changes["event_types"] = check_event_types(changes["event_types"])
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        fields = [key for key, value in changes.items() if getattr(locked, key) != value]
        for key in fields:
            setattr(locked, key, changes[key])
        if changes.get("is_active") and "is_active" in fields:
            _clear_disabled(locked, fields)
        if fields:
            locked.save(update_fields=[*fields, "updated_at"])
    return locked


def webhook_endpoint_enable(endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Enable an endpoint (a no-op when it is active): its failure count and disabled reason are cleared, and
    delivery resumes after its cursor (a pending delivery is attempted at once)."""
    return webhook_endpoint_update(endpoint, data={"is_active": True})


def _clear_disabled(endpoint: WebhookEndpoint, fields: list[str]) -> None:
    endpoint.consecutive_failures, endpoint.disabled_at, endpoint.disabled_reason = 0, None, ""
    fields += ["consecutive_failures", "disabled_at", "disabled_reason"]
    endpoint.deliveries.filter(status=DeliveryStatus.PENDING).update(next_attempt_at=timezone.now())


def webhook_endpoint_rotate_secret(endpoint: WebhookEndpoint, *, request_id: str | None = None) -> WebhookEndpoint:
    """Give the endpoint a new signing secret (the old one stops signing at once); returns it with ``secret``.

    ``request_id`` (an ``Idempotency-Key``): repeating the key of the last rotation returns the endpoint with the
    secret that rotation made, without rotating again.
    """
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if request_id and locked.request_id == request_id:
            return locked
        locked.secret, locked.request_id = new_secret(), request_id
        locked.save(update_fields=["secret", "request_id", "updated_at"])
    return locked


def webhook_endpoint_delete(endpoint: WebhookEndpoint) -> None:
    """Delete the endpoint with its deliveries (a delivery in flight finishes; nothing more is sent)."""
    with transaction.atomic():
        WebhookEndpoint.objects.select_for_update().filter(pk=endpoint.pk).delete()


def webhook_delivery_redeliver(delivery: WebhookDelivery, *, request_id: str | None = None) -> WebhookDelivery:
    """Queue the delivery's event again to its endpoint, as a new delivery (``is_redelivery``) behind the
    endpoint's pending ones; it carries the same ``webhook-id`` (the event id), so a receiver that keeps the ids it
    processed can tell it is the same message. Returns the new delivery.

    ``request_id`` (an ``Idempotency-Key``): repeating it for the endpoint returns the delivery it queued.

    Raises:
        DomainError: 409 ``delivery_pending`` while the event is still pending to that endpoint.
    """
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=delivery.endpoint_id)
        if request_id:
            replay = endpoint.deliveries.filter(request_id=request_id).first()
            if replay is not None:
                return replay
        if endpoint.deliveries.filter(event_id=delivery.event_id, status=DeliveryStatus.PENDING).exists():
            raise DomainError(
                "This event is still pending to this endpoint; it is attempted again at its next attempt.",
                code="delivery_pending",
            )
        return WebhookDelivery.objects.create(
            endpoint=endpoint, event_id=delivery.event_id, is_redelivery=True, next_attempt_at=timezone.now(),
            request_id=request_id,
        )
