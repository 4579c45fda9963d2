"""Per-user rate limits for DRF views, counted on the shared cache.

Two kinds:

- ``RateLimitMixin`` / ``check_rate``: django-ratelimit's fixed windows. A view declares
  ``rate_limits = {"<action or method>": "<count>/<period>"}`` (django-ratelimit's rate syntax:
  ``"20/m"``, ``"10/s"``, ``"1000/h"``). The counter is keyed per authenticated user, or per client IP
  when anonymous. Cheap, but a fixed window lets up to twice its limit through around a window edge.
- ``check_sliding_window``: an exact sliding-window log in Redis, for limits that must hold over
  *any* span of time ("at most 10 in any 10 seconds and 30 in any minute").

Counters live in the cache named by ``RATELIMIT_USE_CACHE`` (``default``: Redis in production), so
every worker process shares them. Over a limit the code raises ``RateLimited``, which the exception
handler answers with 429 ``rate_limited``, ``Retry-After`` and ``X-RateLimit-Limit`` /
``X-RateLimit-Remaining``. Anonymous callers are keyed by ``syndarix.api.clientip.client_ip`` (which
honours ``TRUSTED_PROXY_HOPS``).

When the cache is unreachable (refused, or silent past ``REDIS_SOCKET_TIMEOUT``) a check never becomes
a 500: with ``RATELIMIT_FAIL_OPEN`` (the default) it lets the request through unlimited and logs a
warning; without, it raises ``DependencyUnavailable("cache")``, answered 503 ``service_unavailable``.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.urls import Resolver404, resolve
from django_ratelimit.core import get_usage
from django_ratelimit.exceptions import Ratelimited
from rest_framework.request import Request
from rest_framework.response import Response

from syndarix.exceptions import DependencyUnavailable

from .clientip import client_ip
from .outages import CACHE_ERRORS

logger = logging.getLogger(__name__)


class RateLimited(Ratelimited):
    """Raised when a rate limit is exceeded; ``retry_after`` is in seconds.

    ``usage`` is the ``RateUsage`` of the refused check when it came from ``check_sliding_window``.
    """

    def __init__(self, retry_after: int, usage: RateUsage | None = None, *, limit: int | None = None) -> None:
        super().__init__("Rate limit exceeded.")
        self.retry_after = retry_after
        self.usage = usage
        self.limit = limit

    def rate_limit_headers(self) -> dict[str, str]:
        """``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` (0) of the refusing limit, for the 429."""
        if self.usage is not None:
            return self.usage.headers()
        if self.limit is not None:
            return {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": "0"}
        return {}


def cache_lost(exc: BaseException, what: str) -> None:
    """Decide what a rate-limit check does when the cache failed with ``exc`` (``what`` names the check).

    Returns ``None`` (the check is skipped, a warning logged) with ``RATELIMIT_FAIL_OPEN``.

    Raises:
        DependencyUnavailable: ``RATELIMIT_FAIL_OPEN`` is false (503 ``service_unavailable``, dependency ``cache``).
    """
    if getattr(settings, "RATELIMIT_FAIL_OPEN", True):
        logger.warning("Rate limit %s not checked, the cache is unavailable (RATELIMIT_FAIL_OPEN): %s: %s",
                       what, type(exc).__name__, exc)
        return None
    raise DependencyUnavailable("cache") from exc


def user_or_ip(group: str, request: Request) -> str:
    """Rate-limit key: ``user:<pk>`` for an authenticated caller, else ``ip:<client IP>`` (``client_ip``)."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"ip:{client_ip(request)}"


def check_rate(request: Request, *, group: str, rate: str, key=user_or_ip) -> dict[str, Any] | None:
    """Count one request against ``rate`` in ``group`` and raise ``RateLimited`` when over it.

    Returns django-ratelimit's usage dict (``count``, ``limit``, ``time_left`` in seconds), or
    ``None`` when rate limiting is disabled (``RATELIMIT_ENABLE=false``) or the cache is lost and
    ``RATELIMIT_FAIL_OPEN`` is set.

    Raises:
        RateLimited: over the limit (429).
        DependencyUnavailable: the cache is lost and ``RATELIMIT_FAIL_OPEN`` is false (503).
    """
    try:
        usage = get_usage(request, group=group, key=key, rate=rate, increment=True)
    except CACHE_ERRORS as exc:
        return cache_lost(exc, group)
    if usage and usage["should_limit"]:
        if usage["limit"] == 0:  # django-ratelimit's answer when the cache stored nothing (and not failing open)
            raise DependencyUnavailable("cache")
        raise RateLimited(retry_after=max(1, usage["time_left"]), limit=usage["limit"])
    return usage


def check_user_rate(user, *, group: str, rate: str) -> dict[str, Any] | None:
    """``check_rate`` for ``user`` outside a DRF request (``user:<pk>``, the key ``user_or_ip`` gives them).

    Counted in the same ``group`` as a view's, it shares that view's counter. Returns and raises as
    ``check_rate``.
    """
    return check_rate(None, group=group, rate=rate, key=lambda group, request: f"user:{user.pk}")


def route_rate_limit(method: str, path: str) -> tuple[str, str] | None:
    """The rate limit ``RateLimitMixin`` applies to ``method path``: ``(group, rate)``, or ``None`` when none.

    ``path`` is an API path with ``{placeholders}`` (``/api/v1/projects/{project_id}/agents``); it is
    resolved through the URL configuration, so whoever acts on an endpoint's behalf (the MCP server's
    tools) counts against the endpoint's own per-user counter. Raises ``django.urls.Resolver404`` for
    a path no view serves.
    """
    match = resolve(_PLACEHOLDER.sub(str(uuid.UUID(int=0)), path))
    if match.url_name == "api-not-found":  # the catch-all that answers the JSON 404 for any other /api/ path
        raise Resolver404({"path": path})
    view = getattr(match.func, "cls", None) or getattr(match.func, "view_class", None)
    actions = getattr(match.func, "actions", None)
    scope = actions.get(method.lower()) if actions else method.lower()
    rate = getattr(view, "rate_limits", {}).get(scope) if view is not None and scope else None
    if not rate:
        return None
    return f"{view.__module__}.{view.__name__}.{scope}", rate


_PLACEHOLDER = re.compile(r"\{[^}/]+\}")


class RateLimitMixin:
    """Apply ``rate_limits[action]`` (viewsets) or ``rate_limits[method]`` (APIViews).

    Runs after authentication and permission checks, like DRF throttles, and adds
    ``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` to the response (also of a ``RateUsage`` a view
    stored in ``_rate_usage`` after checking sliding windows itself).
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
        if isinstance(usage, RateUsage):  # a view that checked sliding windows itself
            for name, value in usage.headers().items():
                response[name] = value
        elif usage:
            response["X-RateLimit-Limit"] = str(usage["limit"])
            response["X-RateLimit-Remaining"] = str(max(0, usage["limit"] - usage["count"]))
        return response


# --- Exact limits: a sliding-window log in Redis -----------------------------------------------------

#: Where "now" comes from when ``check_sliding_window`` is not given one: ``None`` means the Redis
#: server's clock (one clock for every worker, whatever the skew between hosts). Tests set it to a
#: function returning epoch seconds to drive time deterministically.
clock: Callable[[], float] | None = None

_KEY_PREFIX = "ratelimit:sliding:"

# KEYS[1]: the log, a sorted set with one member per admitted call scored by its time in ms.
# ARGV[1]: now in ms ("" = the server's clock); ARGV[2]: a unique member for this call;
# ARGV[3], ARGV[4], ...: limit and window length in ms, for each window.
# An entry counts in a window while now - window < its time. Returns {allowed, now, count1, wait1, ...}:
# the calls in each window before this one, and the ms until a refusing window admits a call again.
_SLIDING_WINDOW_LUA = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local longest = 0
for i = 3, #ARGV, 2 do
  longest = math.max(longest, tonumber(ARGV[i + 1]))
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - longest))
local allowed = 1
local out = {}
for i = 3, #ARGV, 2 do
  local limit, window = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local since = '(' .. string.format('%.0f', now - window)
  local count = redis.call('ZCOUNT', KEYS[1], since, '+inf')
  local wait = 0
  if count >= limit then
    allowed = 0
    -- The window admits a call again when its (count - limit + 1)-th oldest entry leaves it.
    local entry = redis.call('ZRANGEBYSCORE', KEYS[1], since, '+inf', 'WITHSCORES', 'LIMIT', count - limit, 1)
    wait = tonumber(entry[2]) + window - now
  end
  out[#out + 1] = count
  out[#out + 1] = wait
end
if allowed == 1 then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], longest)
end
return {allowed, now, unpack(out)}
"""


@dataclass(frozen=True)
class WindowUsage:
    """One window after a check: at most ``limit`` calls in any ``seconds``.

    ``count`` is the number of calls the window holds now (this one included when it was admitted);
    ``retry_after`` the seconds until the window admits another call, when it refused this one (else 0).
    """

    limit: int
    seconds: int
    count: int
    retry_after: int = 0

    @property
    def remaining(self) -> int:
        """Calls the window still admits right now."""
        return max(0, self.limit - self.count)


@dataclass(frozen=True)
class RateUsage:
    """The outcome of ``check_sliding_window``: ``allowed``, and every window's ``WindowUsage``.

    ``exact`` is false for the fixed-window fallback (a cache that is not Redis).
    """

    allowed: bool
    windows: tuple[WindowUsage, ...]
    exact: bool = True

    @property
    def retry_after(self) -> int:
        """Seconds until every refusing window admits a call again (0 when allowed, else >= 1)."""
        if self.allowed:
            return 0
        return max([1, *(w.retry_after for w in self.windows)])

    @property
    def tightest(self) -> WindowUsage:
        """The window with the fewest calls left (the smaller limit on a tie)."""
        return min(self.windows, key=lambda w: (w.remaining, w.limit))

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` of the tightest window."""
        window = self.tightest
        return {"X-RateLimit-Limit": str(window.limit), "X-RateLimit-Remaining": str(window.remaining)}

    def __add__(self, other: RateUsage) -> RateUsage:
        """Both checks' windows together (for headers that must report the tightest of several keys)."""
        return RateUsage(
            allowed=self.allowed and other.allowed,
            windows=self.windows + other.windows,
            exact=self.exact and other.exact,
        )


def check_sliding_window(
    key: str, limits: Sequence[tuple[int, int]], *, now: float | None = None
) -> RateUsage | None:
    """Count one call under ``key`` against every ``(calls, seconds)`` window and refuse it when any is full.

    Exact semantics (when the cache named by ``RATELIMIT_USE_CACHE``, ``default``, is Redis): a
    sliding-window log. Each admitted call is one entry, scored by its time in ms, in a Redis sorted
    set per ``key``. One Lua script (atomic, so concurrent workers cannot overshoot) drops the
    entries older than the longest window (``ZREMRANGEBYSCORE``), counts each window's entries
    (``ZCOUNT``, the last ``seconds`` up to now), and, only when every window has room, adds this
    call (``ZADD``) and sets the key to expire with the longest window (``PEXPIRE``). So over *any*
    span of ``seconds`` at most ``calls`` are admitted, and a refused call uses no budget. For
    example ``limits=[(10, 10), (30, 60)]``: 10 quick calls pass and the 11th is refused; 10 calls at
    t=9 s and 10 more at t=10 s admit only the first 10; no 60-second span ever holds more than 30.
    A log rather than a token bucket: it enforces the limits exactly as they are stated ("N in any
    span"), with no refill rate to translate them into, and ``Retry-After`` is exact (when the
    oldest call of the full window leaves it). The price, at most the longest window's ``calls``
    entries per key, is small for limits of this size.

    Fallback: when that cache is not Redis (the zero-setup database cache of ``make run``, one
    process), the windows are django-ratelimit's fixed windows, checked in order (a window that
    refuses stops the count, later windows are not charged). Near a window edge up to twice a limit
    can then pass; ``RateUsage.exact`` is false and ``now`` is ignored.

    Args:
        key: what is limited, e.g. ``"aiservices.tools_call:user:7"``; distinct keys count apart.
        limits: ``(calls, seconds)`` pairs, both positive integers.
        now: the time of this call in epoch seconds; ``None`` uses ``clock`` (the Redis server's
            clock by default). Tests pass it to drive time deterministically.

    Returns:
        The ``RateUsage`` (every window's count, for ``X-RateLimit-*`` headers), or ``None`` when
        rate limiting is off (``RATELIMIT_ENABLE=false``), or the cache is lost and
        ``RATELIMIT_FAIL_OPEN`` is set (a warning is logged).

    Raises:
        RateLimited: a window is full; ``retry_after`` is the seconds (>= 1) until the oldest entry
            of the blocking window (the latest, if several block) leaves it, ``usage`` the refusal.
        DependencyUnavailable: the cache is lost and ``RATELIMIT_FAIL_OPEN`` is false (503).
    """
    if not getattr(settings, "RATELIMIT_ENABLE", True):
        return None
    limits = [(int(calls), int(seconds)) for calls, seconds in limits]
    if not limits or any(calls < 1 or seconds < 1 for calls, seconds in limits):
        raise ValueError(f"limits must be non-empty (calls, seconds) pairs of positive integers, not {limits!r}.")
    cache = caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")]
    try:
        if isinstance(cache, RedisCache):
            if now is None and clock is not None:
                now = clock()
            usage = _sliding_window(cache, key, limits, now)
        else:
            usage = _fixed_windows(key, limits)
    except CACHE_ERRORS as exc:
        return cache_lost(exc, key)
    if usage is None:
        return None
    if not usage.allowed:
        raise RateLimited(retry_after=usage.retry_after, usage=usage)
    return usage


def _sliding_window(cache: RedisCache, key: str, limits: list[tuple[int, int]], now: float | None) -> RateUsage:
    client = cache._cache.get_client(key, write=True)
    script = client.register_script(_SLIDING_WINDOW_LUA)
    args: list[Any] = ["" if now is None else round(now * 1000), uuid.uuid4().hex]
    for calls, seconds in limits:
        args += [calls, seconds * 1000]
    allowed, _now_ms, *counts = script(keys=[cache.make_key(_KEY_PREFIX + key)], args=args)
    windows = tuple(
        WindowUsage(
            limit=calls,
            seconds=seconds,
            count=int(count) + (1 if allowed else 0),
            retry_after=math.ceil(int(wait) / 1000),  # > 0 only for a refusing window, whose wait is >= 1 ms
        )
        for (calls, seconds), count, wait in zip(limits, counts[0::2], counts[1::2], strict=True)
    )
    return RateUsage(allowed=bool(allowed), windows=windows)


def _fixed_windows(key: str, limits: list[tuple[int, int]]) -> RateUsage | None:
    windows: list[WindowUsage] = []
    for calls, seconds in limits:
        usage = get_usage(
            None, group=_KEY_PREFIX + key, key=lambda group, request: key, rate=(calls, seconds), increment=True
        )
        if usage is None:  # RATELIMIT_FAIL_OPEN and the cache failed
            continue
        if usage["should_limit"] and usage["limit"] == 0:  # the cache stored nothing (and not failing open)
            raise DependencyUnavailable("cache")
        if usage["should_limit"]:
            windows.append(WindowUsage(calls, seconds, calls, max(1, usage["time_left"])))
            return RateUsage(allowed=False, windows=tuple(windows), exact=False)
        windows.append(WindowUsage(calls, seconds, usage["count"]))
    return RateUsage(allowed=True, windows=tuple(windows), exact=False) if windows else None
