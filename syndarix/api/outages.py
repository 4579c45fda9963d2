"""Lost dependencies become 503, never a hang, a 500 or an HTML page.

The database and the cache are given short timeouts in the settings (``DATABASE_CONNECT_TIMEOUT``,
``DATABASE_STATEMENT_TIMEOUT``, ``REDIS_SOCKET_CONNECT_TIMEOUT``, ``REDIS_SOCKET_TIMEOUT``), so a lost or
silent one raises its driver's error within about two seconds. ``lost_dependency`` recognises those
errors; the API's exception handler and ``syndarix.api.middleware.DependencyOutageMiddleware`` (every
other view) answer them with 503 ``service_unavailable`` and ``Retry-After``.
"""

from __future__ import annotations

import logging

import redis.exceptions
from django import db
from django.http import HttpRequest

from syndarix.exceptions import DependencyUnavailable

logger = logging.getLogger(__name__)

#: Driver errors that mean "the database is unreachable or did not answer in time" (connection refused, connect
#: timeout, connection lost, statement timeout); Django wraps psycopg's errors in these.
DATABASE_ERRORS = (db.OperationalError, db.InterfaceError)
#: redis-py errors that mean "the cache is unreachable or did not answer in time" (a read-only replica included).
CACHE_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ReadOnlyError)


def lost_dependency(exc: BaseException) -> DependencyUnavailable | None:
    """``exc`` as a ``DependencyUnavailable`` when it is a lost database or cache, else ``None``.

    A ``DependencyUnavailable`` is returned as it is; a database error becomes ``dependency="database"``, a Redis
    error ``dependency="cache"``.
    """
    if isinstance(exc, DependencyUnavailable):
        return exc
    if isinstance(exc, DATABASE_ERRORS):
        return DependencyUnavailable("database")
    if isinstance(exc, CACHE_ERRORS):
        return DependencyUnavailable("cache")
    return None


def log_outage(outage: DependencyUnavailable, exc: BaseException, request: HttpRequest | None) -> None:
    """One warning line per refused request: the dependency, the path and the driver's error (no traceback)."""
    path = getattr(request, "path", "?")
    logger.warning("%s unavailable, answering 503 for %s: %s: %s", outage.dependency, path, type(exc).__name__, exc)
