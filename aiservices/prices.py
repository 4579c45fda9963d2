"""The price table, cached per process: an LLM step reads no price from the database once its model was seen.

Each process keeps the ``ModelPrice`` rows it has looked up (and the models it found none for). Saving or deleting
a price anywhere stamps a new version in the shared cache (Redis in production); every lookup compares that
version with the one its process cached under (one cache read, no SQL) and starts over when they differ, so a
price edited in the admin counts from the next call on, in every worker.
"""

from __future__ import annotations

import logging
import threading
import uuid

from django.core.cache import cache

from .models import ModelPrice

logger = logging.getLogger(__name__)

#: The shared cache key holding the price table's version (a new random value at every change).
VERSION_KEY = "aiservices:model-prices:version"

_lock = threading.Lock()
_rows: dict[str, ModelPrice | None] = {}
_version: list[str | None] = [None]


def _current_version() -> str | None:
    try:
        return cache.get(VERSION_KEY)
    except Exception:  # a lost cache must not stop metering: read the database instead
        logger.warning("The price table's version could not be read from the cache; reading prices afresh.")
        return uuid.uuid4().hex


def price_for(model: str) -> ModelPrice | None:
    """The ``ModelPrice`` row of ``model`` (matched exactly), or ``None`` when the table has none."""
    version = _current_version()
    with _lock:
        if version != _version[0]:
            _rows.clear()
            _version[0] = version
        if model in _rows:
            return _rows[model]
    row = ModelPrice.objects.filter(model=model).first()
    with _lock:
        if _version[0] == version:
            _rows[model] = row
    return row


def has_price(model: str) -> bool:
    """Whether ``model`` has a price. A price this process holds answers at once (no cache read, no SQL: a price
    deleted since is noticed by the next ``price_for``); otherwise ``price_for`` looks, so a price added a moment
    ago counts at once."""
    with _lock:
        if _rows.get(model) is not None:
            return True
    return price_for(model) is not None


def prices_changed(**kwargs) -> None:
    """Receiver of ``ModelPrice``'s ``post_save`` and ``post_delete``: every process reads prices afresh."""
    with _lock:
        _rows.clear()
        _version[0] = None
    try:
        cache.set(VERSION_KEY, uuid.uuid4().hex, None)
    except Exception:
        logger.exception("The price table's version could not be stamped in the cache: other processes keep the "
                         "prices they cached until their cache is readable again.")
