"""Read-through entries in the shared cache for data read on every request (API tokens, project access).

A reader looks an entry up (``cache_get_many``); on a miss it reads the database and offers what it read
(``cache_fill``), which stores it only when the key is empty (Redis ``SET NX``). A writer that changes the data
calls ``cache_invalidate`` in its transaction: the keys are deleted at once and, after the commit, overwritten with
a tombstone. The tombstone reads as a miss and refuses every fill while it lives (``TOMBSTONE_SECONDS``), so a
reader that read the database just before the commit cannot store what it read after the change; fills that come
later read the committed data. Entries live ``API_ACCESS_CACHE_SECONDS``.

Only a Redis cache is used: with the database cache of the zero-setup default (or ``API_ACCESS_CACHE_SECONDS=0``)
every lookup misses and nothing is stored, so reads go to the database as they would without this module.

A lost cache is never a 500. Lookups and fills fail quietly (a miss; a warning is logged) and then leave the cache
alone for ``OUTAGE_PAUSE_SECONDS``, so a silent Redis costs a request one socket timeout, not one per lookup. An
invalidation that cannot reach the cache raises ``DependencyUnavailable`` (503): the write it belongs to is
refused and rolled back rather than leaving a stale entry behind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends import redis as django_redis
from django.core.cache.backends.redis import RedisCache
from django.db import transaction
from django.utils.functional import cached_property

from .api.outages import CACHE_ERRORS
from .exceptions import DependencyUnavailable

logger = logging.getLogger(__name__)

#: What an invalidated key holds after the commit, and for how long (seconds): longer than a reader takes from
#: its database read to its fill.
TOMBSTONE = "syndarix.cache.invalidated"
TOMBSTONE_SECONDS = 30
#: After a failed lookup or fill, the cache is left alone this long (seconds).
OUTAGE_PAUSE_SECONDS = 5.0

_paused_until = 0.0


class ReusingRedisCacheClient(django_redis.RedisCacheClient):
    """Django's Redis cache client, keeping one ``redis.Redis`` per connection pool instead of building one per call
    (redis-py's constructor costs more than a round trip to a local Redis)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


_clients: dict[tuple[str, ...], ReusingRedisCacheClient] = {}
_clients_lock = threading.Lock()


class ReusingRedisCache(RedisCache):
    """``django.core.cache.backends.redis.RedisCache`` with ``ReusingRedisCacheClient`` (``CACHES`` backend of a
    Redis cache), one per process for each server and options: each thread has its own backend instance (Django's
    ``caches``), and they share that client and its connection pool (redis-py's are thread-safe, and start afresh
    after a fork). A worker's hundreds of threads then use a few Redis connections, not one each, and a thread's
    first cache read costs no new connection."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = ReusingRedisCacheClient

    @cached_property
    def _cache(self) -> ReusingRedisCacheClient:
        key = (*self._servers, repr(sorted(self._options.items())))
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self._class(self._servers, **self._options)
        return client


def _redis() -> RedisCache | None:
    """The default cache when entries are kept in it: it is Redis and ``API_ACCESS_CACHE_SECONDS`` is positive."""
    cache = caches["default"]
    return cache if settings.API_ACCESS_CACHE_SECONDS > 0 and isinstance(cache, RedisCache) else None


def cache_get_many(keys: Iterable[str]) -> dict[str, Any]:
    """The live entries among ``keys`` (one round trip); tombstoned, missing and unreadable keys are left out."""
    keys = list(keys)
    cache = _redis()
    if not keys or cache is None or time.monotonic() < _paused_until:
        return {}
    try:
        found = cache.get_many(keys)
    except CACHE_ERRORS as exc:
        _pause(exc)
        return {}
    return {key: value for key, value in found.items() if value != TOMBSTONE}


def cache_fill(key: str, value: Any) -> None:
    """Store ``value`` under ``key`` unless the key holds anything (an entry or a tombstone)."""
    cache = _redis()
    if cache is None or time.monotonic() < _paused_until:
        return
    try:
        cache.add(key, value, settings.API_ACCESS_CACHE_SECONDS)
    except CACHE_ERRORS as exc:
        _pause(exc)


def cache_invalidate(keys: Iterable[str]) -> None:
    """Delete ``keys`` now and tombstone them after the current transaction commits (at once outside one).

    Raises:
        DependencyUnavailable: the cache could not be written now (503): refuse the change that needs it.
    """
    keys = list(keys)
    cache = _redis()
    if not keys or cache is None:
        return
    try:
        cache.delete_many(keys)
    except CACHE_ERRORS as exc:
        logger.warning("Cannot invalidate %d cache entries, refusing the change: %s: %s",
                       len(keys), type(exc).__name__, exc)
        raise DependencyUnavailable("cache") from exc
    transaction.on_commit(lambda: cache.set_many(dict.fromkeys(keys, TOMBSTONE), TOMBSTONE_SECONDS), robust=True)


def _pause(exc: BaseException) -> None:
    global _paused_until
    _paused_until = time.monotonic() + OUTAGE_PAUSE_SECONDS
    logger.warning("Cache unavailable, reading from the database for %g s: %s: %s",
                   OUTAGE_PAUSE_SECONDS, type(exc).__name__, exc)
