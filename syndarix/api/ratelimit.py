"""Per-user rate limits for DRF views, counted by django-ratelimit on the shared cache.

A view declares ``rate_limits = {"<action or method>": "<count>/<period>"}`` (django-ratelimit's
rate syntax: ``"20/m"``, ``"10/s"``, ``"1000/h"``). The counter is keyed per authenticated user, or
per client IP when anonymous, and lives in the ``default`` cache (Redis in production), so every
worker process shares it. Over the limit the view raises ``RateLimited``, which the exception
handler answers with 429 ``rate_limited`` and ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

from django_ratelimit.core import get_usage
from django_ratelimit.exceptions import Ratelimited
from rest_framework.request import Request
from rest_framework.response import Response


class RateLimited(Ratelimited):
    """Raised when a rate limit is exceeded; ``retry_after`` is in seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("Rate limit exceeded.")
        self.retry_after = retry_after


def user_or_ip(group: str, request: Request) -> str:
    """Rate-limit key: ``user:<pk>`` for an authenticated caller, else ``ip:<REMOTE_ADDR>``."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"ip:{request.META.get('REMOTE_ADDR', '')}"


def check_rate(request: Request, *, group: str, rate: str, key=user_or_ip) -> dict[str, Any] | None:
    """Count one request against ``rate`` in ``group`` and raise ``RateLimited`` when over it.

    Returns django-ratelimit's usage dict (``count``, ``limit``, ``time_left`` in seconds), or
    ``None`` when rate limiting is disabled (``RATELIMIT_ENABLE=false``).
    """
    usage = get_usage(request, group=group, key=key, rate=rate, increment=True)
    if usage and usage["should_limit"]:
        raise RateLimited(retry_after=max(1, usage["time_left"]))
    return usage


class RateLimitMixin:
    """Apply ``rate_limits[action]`` (viewsets) or ``rate_limits[method]`` (APIViews).

    Runs after authentication and permission checks, like DRF throttles, and adds
    ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` to the response.
    """

    rate_limits: dict[str, str] = {}

    def rate_limit_scope(self) -> str | None:
        return getattr(self, "action", None) or self.request.method.lower()

    def check_throttles(self, request: Request) -> None:
        super().check_throttles(request)
        scope = self.rate_limit_scope()
        rate = self.rate_limits.get(scope) if scope else None
        self._rate_usage = None
        if rate:
            group = f"{type(self).__module__}.{type(self).__name__}.{scope}"
            self._rate_usage = check_rate(request, group=group, rate=rate)

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        usage = getattr(self, "_rate_usage", None)
        if usage:
            response["X-RateLimit-Limit"] = str(usage["limit"])
            response["X-RateLimit-Remaining"] = str(max(0, usage["limit"] - usage["count"]))
        return response
