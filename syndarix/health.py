"""Liveness and readiness probes for load balancers and orchestrators.

- ``GET /healthz`` (liveness): the process is up and serving. No I/O at all, so a lost database or
  cache never makes an orchestrator restart healthy processes. ``200 {"status": "ok"}``.
- ``GET /readyz`` (readiness): the database (``SELECT 1``), the cache (a write and a read) and the
  Celery broker (a connection) answer. ``200 {"status": "ok", "checks": {...}}``, else ``503``
  in the error envelope, one ``service_unavailable`` error per failed ``dependency``, with the full
  ``checks`` report and ``Retry-After``. The checks run concurrently, each bounded by its client
  timeouts and by a wall-clock budget (django-health-check), so the probe answers within about 2 s
  whatever is down.

Both are plain Django views: no authentication, no rate limit, exempt from the HTTPS redirect
(``SECURE_REDIRECT_EXEMPT``), never cached.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from health_check.base import HealthCheck
from health_check.checks import Cache, Database
from health_check.exceptions import ServiceUnavailable

from syndarix.api.exceptions import error_body
from syndarix.celery import app as celery_app

logger = logging.getLogger(__name__)

#: Seconds a readiness probe waits for the broker to connect and answer.
BROKER_TIMEOUT_SECONDS = 1.0
#: ``Retry-After`` of a 503 readiness answer (seconds).
RETRY_AFTER_SECONDS = 5


@dataclasses.dataclass
class CeleryBroker(HealthCheck):
    """The Celery broker accepts a connection (Redis in production; the folder broker of ``make run``).

    A connection, not a worker ping: readiness is about what this process needs to queue runs.
    """

    timeout = datetime.timedelta(seconds=BROKER_TIMEOUT_SECONDS)

    def run(self) -> None:
        seconds = self.timeout.total_seconds()
        options = {"socket_timeout": seconds, "socket_connect_timeout": seconds}
        try:
            with celery_app.connection_for_write(connect_timeout=seconds, transport_options=options) as connection:
                connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=seconds)
        except Exception as exc:  # noqa: BLE001 - kombu raises its transports' errors; any means "not ready"
            raise ServiceUnavailable(f"{type(exc).__name__}: {exc}") from exc


def readiness_checks() -> dict[str, HealthCheck]:
    """The dependencies ``/readyz`` checks, by the name it reports them under."""
    return {"database": Database(), "cache": Cache(), "broker": CeleryBroker()}


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: ``200 {"status": "ok"}`` while the process serves requests; touches nothing else."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when the database, the cache and the broker answer, else 503 naming each that failed."""
    checks = readiness_checks()
    results = dict(zip(checks, asyncio.run(_run(list(checks.values()))), strict=True))
    report = {name: "ok" if result.error is None else str(result.error) for name, result in results.items()}
    failed = [name for name, result in results.items() if result.error is not None]
    if not failed:
        return JsonResponse({"status": "ok", "checks": report})
    logger.warning("Not ready: %s", ", ".join(f"{name} ({report[name]})" for name in failed))
    errors = [
        {"code": "service_unavailable", "message": f"The {name} is unavailable: {report[name]}.", "field": None,
         "dependency": name}
        for name in failed
    ]
    response = JsonResponse({**error_body(errors), "status": "unavailable", "checks": report}, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


async def _run(checks: list[HealthCheck]):
    return await asyncio.gather(*(check.get_result() for check in checks))

