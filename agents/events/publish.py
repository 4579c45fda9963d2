"""Publishing committed events to live consumers: Redis pub/sub, one channel per project and one per run.

Pub/sub is only a wake-up: a message names the event and consumers read
the event itself from the outbox (``agents.events.events_after``), which is the source of truth; a lost message
delays a consumer until its next poll, never loses an event. A wake-up is ``{"id", "type", "workspace_id",
"project_id", "run_id"}``. ``llm.delta`` messages are the exception: they carry
their text, go to the run's channel only, and are never stored. Without ``REDIS_URL`` (``make run``) nothing is
published and consumers poll the outbox.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

_clients: dict[str, Any] = {}
_lock = threading.Lock()


def project_channel(project_id) -> str:
    """The pub/sub channel of a project's events."""
    return f"{settings.EVENTS_CHANNEL_PREFIX}:project:{project_id}"


def run_channel(run_id) -> str:
    """The pub/sub channel of a run's ``llm.delta`` messages."""
    return f"{settings.EVENTS_CHANNEL_PREFIX}:run:{run_id}"


def redis_client():
    """This process's Redis client for publishing (``None`` without ``REDIS_URL``)."""
    url = settings.REDIS_URL
    if not url:
        return None
    client = _clients.get(url)
    if client is None:
        import redis

        with _lock:
            client = _clients.get(url) or redis.Redis.from_url(
                url, socket_timeout=settings.REDIS_SOCKET_TIMEOUT, socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT)
            _clients[url] = client
    return client


def publish_event(event) -> None:
    """Publish the wake-up of committed ``event`` on its project's channel; a Redis failure is logged, never raised
    (the outbox has the event; consumers find it on their next poll)."""
    client = redis_client()
    if client is None:
        return
    message = json.dumps({"id": event.id, "type": event.type, "workspace_id": str(event.workspace_id),
                          "project_id": str(event.project_id), "run_id": str(event.run_id) if event.run_id else None})
    try:
        client.publish(project_channel(event.project_id), message)
    except Exception as exc:  # noqa: BLE001 - any Redis failure: consumers poll the outbox
        logger.warning("Event %s not published (consumers will poll for it): %s", event.id, exc)


def publish_delta(*, run_id, project_id, data: dict[str, Any]) -> None:
    """Publish an ``llm.delta`` (never stored) on the run's channel: ``data`` is ``{"run_id", "agent_id", "index",
    "text"}``. Nothing happens without ``REDIS_URL``; a Redis failure is logged at debug level."""
    client = redis_client()
    if client is None:
        return
    try:
        client.publish(run_channel(run_id), json.dumps({"type": "llm.delta", "project_id": str(project_id),
                                                         "data": data}))
    except Exception as exc:  # noqa: BLE001
        logger.debug("llm.delta of run %s not published: %s", run_id, exc)
