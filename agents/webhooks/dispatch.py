"""The dispatcher: turns the events outbox into webhook deliveries and sends them, at least once and in order per
endpoint.

One *step* for one endpoint, in one transaction that holds the endpoint's row lock
(``select_for_update(skip_locked=True)``: a concurrent dispatcher skips the endpoint rather than waits):

1. the endpoint's oldest pending delivery is its head; without one, the next outbox events after the endpoint's
   cursor (``agents.events.events_after``, settled events only, in delivery order) of a subscribed type are posted
   one after the other (up to ``BATCH_EVENTS``, stopping at the first failure), become deliveries, and the cursor
   moves past them;
2. a head that is not due yet (``next_attempt_at`` in the future: a retry's backoff) makes the endpoint wait —
   nothing behind it goes first;
3. the head is posted (``attempt``); a 2xx answer makes it ``succeeded``, anything else schedules the next attempt
   with exponential backoff, until ``WEBHOOK_RETRY_MAX_AGE_SECONDS`` after the first attempt, when it is
   ``failed`` and the endpoint's next event goes; ``WEBHOOK_MAX_CONSECUTIVE_FAILURES`` failed deliveries in a row
   disable the endpoint.

The lock is held across the HTTP request (at most ``WEBHOOK_TIMEOUT_SECONDS``), so two dispatchers can never post
to one endpoint at once, nor out of order. A dispatcher that dies mid-step rolls the step back: the event is posted
again by the next step (at least once; receivers deduplicate on ``webhook-id``, the event id).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook

from .choices import DeliveryStatus
from .models import WebhookDelivery, WebhookEndpoint
from .targets import webhook_session

logger = logging.getLogger(__name__)

USER_AGENT = "Syndarix-Webhooks/1"
#: Bytes of a receiver's answer read (and kept in ``last_error`` on a failure); the rest is dropped.
RESPONSE_PREVIEW_BYTES = 1024

_local = threading.local()


def _session() -> requests.Session:
    """The calling thread's delivery session (connections to a receiver are kept alive between deliveries)."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = webhook_session()
    return session


def event_payload(event) -> dict:
    """The body of an event's delivery (Standard Webhooks): ``{"type", "timestamp", "data"}``; ``timestamp`` is the
    event's ``created_at`` (ISO 8601, UTC), ``data`` the event's data with ``workspace_id`` and ``project_id``."""
    data = {"workspace_id": str(event.workspace_id), "project_id": str(event.project_id) if event.project_id else None}
    data.update(event.data or {})
    created = event.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {"type": event.type, "timestamp": created, "data": data}


def signed_request(secret: str, event, *, now: datetime | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one attempt to post ``event``: ``webhook-id`` (the event id, the same for every
    attempt and redelivery), ``webhook-timestamp`` (this attempt, Unix seconds) and ``webhook-signature``
    (``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body`` with the secret, by ``standardwebhooks.Webhook.sign``)."""
    now = now or datetime.now(UTC)
    body = orjson.dumps(event_payload(event))
    message_id = str(event.pk)
    signature = Webhook(secret).sign(message_id, now, body.decode())
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
    return body, headers


@dataclass
class AttemptResult:
    """What one HTTP attempt gave: ``ok`` (a 2xx answer), ``status_code`` (``None`` without an answer), the
    duration in milliseconds, and the error (empty when ``ok``)."""

    ok: bool
    status_code: int | None
    duration_ms: int
    error: str = ""


def attempt(endpoint: WebhookEndpoint, event) -> AttemptResult:
    """Post ``event`` to ``endpoint`` once: ``requests`` through the SSRF-checked session, ``WEBHOOK_TIMEOUT_SECONDS``
    to connect and for each read, redirects not followed (a 3xx is a failure). Never raises for the receiver's
    failures: they are in the result."""
    body, headers = signed_request(endpoint.secret, event)
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    started = time.perf_counter()
    try:
        response = _session().post(
            endpoint.url, data=body, headers=headers, timeout=(timeout, timeout), allow_redirects=False, stream=True
        )
        try:
            preview = response.raw.read(RESPONSE_PREVIEW_BYTES, decode_content=True) or b""
        finally:
            response.close()
    except requests.Timeout:
        return AttemptResult(False, None, _ms(started), f"Timed out after {timeout:g} s.")
    except requests.RequestException as exc:
        return AttemptResult(False, None, _ms(started), f"{type(exc).__name__}: {_root_cause(exc)}"[:1000])
    duration = _ms(started)
    if 200 <= response.status_code < 300:
        return AttemptResult(True, response.status_code, duration)
    text = preview.decode("utf-8", "replace").strip()
    return AttemptResult(False, response.status_code, duration, f"HTTP {response.status_code}: {text}"[:1000])


def _ms(started: float) -> int:
    return max(0, round((time.perf_counter() - started) * 1000))


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or (exc.args and isinstance(exc.args[0], BaseException)):
        exc = exc.__cause__ or exc.args[0]
    return str(exc)


def retry_delay(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: ``WEBHOOK_RETRY_BACKOFF_SECONDS`` doubled per
    attempt, at most ``WEBHOOK_RETRY_BACKOFF_MAX_SECONDS``."""
    base, cap = settings.WEBHOOK_RETRY_BACKOFF_SECONDS, settings.WEBHOOK_RETRY_BACKOFF_MAX_SECONDS
    return min(cap, base * 2 ** max(0, min(attempts - 1, 40)))


class Step:
    """What one ``dispatch_step`` did (the values are for logs and tests)."""

    IDLE = "idle"  # nothing to send
    WAITING = "waiting"  # the head delivery is not due yet
    BUSY = "busy"  # another dispatcher holds the endpoint (or it is gone or inactive)
    SUCCEEDED = "succeeded"
    RETRY = "retry"  # failed, another attempt is scheduled
    FAILED = "failed"  # failed for good


#: Most new events one step posts (one after the other) before it commits, and the most seconds it keeps posting.
BATCH_EVENTS = 50
BATCH_SECONDS = 1.0


def _next_events(endpoint: WebhookEndpoint, limit: int) -> list:
    from ..events import events_after

    return events_after(None, cursor=(endpoint.last_event_xid, endpoint.last_event_id),
                        workspace_id=endpoint.workspace_id, types=endpoint.event_types, limit=limit)


def dispatch_step(endpoint_id) -> str:
    """One step for one endpoint (see the module's docstring); returns a ``Step`` value.

    Without a pending delivery, one step posts up to ``BATCH_EVENTS`` new events one after the other (for at most
    ``BATCH_SECONDS``, stopping at the first failure) and writes their deliveries in one statement: a dispatcher
    lost mid-step posts them again (at least once), and the cost per delivery stays one HTTP request plus a row.
    """
    with transaction.atomic():
        endpoint = (
            WebhookEndpoint.objects.select_for_update(skip_locked=True).filter(pk=endpoint_id, is_active=True).first()
        )
        if endpoint is None:
            return Step.BUSY
        now = timezone.now()
        head = endpoint.deliveries.filter(status=DeliveryStatus.PENDING).select_related("event").order_by("id").first()
        endpoint_fields: list[str] = []
        if head is None:
            outcome = _post_new_events(endpoint, endpoint_fields)
            if outcome is None:
                return Step.IDLE
        elif head.next_attempt_at is not None and head.next_attempt_at > now:
            return Step.WAITING
        else:
            if head.event is None:  # pruned (EVENTS_RETENTION_DAYS) before it could be delivered
                result = AttemptResult(False, None, 0, "The event is no longer kept (EVENTS_RETENTION_DAYS).")
                head.first_attempt_at = head.first_attempt_at or now - timedelta(days=365)  # no retry: fail it now
            else:
                result = attempt(endpoint, head.event)
            outcome = _record(endpoint, head, result, endpoint_fields)
            head.save(update_fields=DELIVERY_RESULT_FIELDS)
        if endpoint_fields:
            endpoint.save(update_fields=[*dict.fromkeys(endpoint_fields)])
    if outcome == Step.FAILED and not endpoint.is_active:
        logger.warning("Webhook endpoint %s disabled: %s", endpoint.pk, endpoint.disabled_reason)
    return outcome


#: The delivery fields ``_record`` sets.
DELIVERY_RESULT_FIELDS = ["attempts", "first_attempt_at", "last_attempt_at", "response_status_code", "duration_ms",
                          "last_error", "status", "next_attempt_at", "delivered_at"]


def _record(endpoint: WebhookEndpoint, delivery: WebhookDelivery, result: AttemptResult, endpoint_fields: list[str]):
    """Set the delivery's fields (``DELIVERY_RESULT_FIELDS``) and the endpoint's (named in ``endpoint_fields``) for
    the attempt ``result``; saves nothing. Returns the ``Step``."""
    now = timezone.now()
    delivery.attempts += 1
    delivery.first_attempt_at = delivery.first_attempt_at or now
    delivery.last_attempt_at = now
    delivery.response_status_code, delivery.duration_ms, delivery.last_error = (
        result.status_code, result.duration_ms, result.error,
    )
    if result.ok:
        delivery.status, delivery.next_attempt_at, delivery.delivered_at = DeliveryStatus.SUCCEEDED, None, now
        outcome = Step.SUCCEEDED
        if endpoint.consecutive_failures:
            endpoint.consecutive_failures = 0
            endpoint_fields.append("consecutive_failures")
    else:
        retry_at = now + timedelta(seconds=retry_delay(delivery.attempts))
        deadline = delivery.first_attempt_at + timedelta(seconds=settings.WEBHOOK_RETRY_MAX_AGE_SECONDS)
        if retry_at <= deadline:
            delivery.next_attempt_at = retry_at
            outcome = Step.RETRY
        else:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
            outcome = Step.FAILED
            endpoint.consecutive_failures += 1
            endpoint_fields.append("consecutive_failures")
            limit = settings.WEBHOOK_MAX_CONSECUTIVE_FAILURES
            if endpoint.consecutive_failures >= limit:
                endpoint.is_active, endpoint.disabled_at = False, now
                endpoint.disabled_reason = f"{endpoint.consecutive_failures} deliveries in a row failed (last: " \
                    f"{result.error[:100]})"[:200]
                endpoint_fields += ["is_active", "disabled_at", "disabled_reason"]
    return outcome


def _post_new_events(endpoint: WebhookEndpoint, endpoint_fields: list[str]) -> str | None:
    """Post the endpoint's next events (``BATCH_EVENTS``, ``BATCH_SECONDS``) until one fails; write their
    deliveries (one ``INSERT``) and move the cursor past them. Returns the last one's ``Step`` (``None``: no event)."""
    events = _next_events(endpoint, BATCH_EVENTS)
    if not events:
        return None
    deadline = time.monotonic() + BATCH_SECONDS
    deliveries: list[WebhookDelivery] = []
    outcome = Step.SUCCEEDED
    for event in events:
        delivery = WebhookDelivery(endpoint=endpoint, event=event, created_at=timezone.now())
        outcome = _record(endpoint, delivery, attempt(endpoint, event), endpoint_fields)
        deliveries.append(delivery)
        endpoint.last_event_xid, endpoint.last_event_id = event.cursor
        if outcome != Step.SUCCEEDED or not endpoint.is_active or time.monotonic() > deadline:
            break
    WebhookDelivery.objects.bulk_create(deliveries)
    endpoint_fields += ["last_event_xid", "last_event_id"]
    return outcome


@dataclass
class DispatchReport:
    """What ``dispatch`` did: the steps per outcome (``Step`` values) and its wall time in seconds."""

    outcomes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def attempts(self) -> int:
        return sum(self.outcomes.get(key, 0) for key in (Step.SUCCEEDED, Step.RETRY, Step.FAILED))


def dispatch(*, budget_seconds: float | None = None) -> DispatchReport:
    """Deliver what is due to every active endpoint, one step per endpoint in turn (so one slow receiver does not
    starve the others), until no endpoint has a due delivery or ``budget_seconds`` (``WEBHOOK_DISPATCH_BUDGET_SECONDS``)
    passed. Endpoints another dispatcher holds are skipped. Returns a ``DispatchReport``."""
    budget = settings.WEBHOOK_DISPATCH_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    started = time.monotonic()
    report = DispatchReport()
    endpoint_ids = list(WebhookEndpoint.objects.filter(is_active=True).order_by("pk").values_list("pk", flat=True))
    while endpoint_ids and time.monotonic() - started < budget:
        busy = []
        for endpoint_id in endpoint_ids:
            outcome = dispatch_step(endpoint_id)
            report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
            if outcome in (Step.SUCCEEDED, Step.FAILED):
                busy.append(endpoint_id)  # maybe more to send
            if time.monotonic() - started >= budget:
                break
        endpoint_ids = busy
    report.seconds = time.monotonic() - started
    return report
