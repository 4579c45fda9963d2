"""Database helpers shared by the apps' services."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.db import IntegrityError, transaction

from syndarix.exceptions import InvalidInput

T = TypeVar("T")


def save_unique(write: Callable[[], T], *, taken: Callable[[], bool], field: str, message: str) -> T:
    """Run ``write()`` (an insert or update) so that losing a race for a unique value is a 400, not a 500.

    Serializers and forms check uniqueness before saving, but two concurrent requests can both pass
    the check; the database's unique constraint then refuses the second write. ``write`` runs in a
    savepoint; when it raises ``IntegrityError`` and ``taken()`` (a query for the clashing row) is now
    true, the error becomes ``InvalidInput`` — the same answer the pre-check gives. Any other
    integrity error propagates unchanged.

    Returns what ``write`` returns.

    Raises:
        InvalidInput: 400 with code ``unique`` on ``field`` and ``message``.
    """
    try:
        with transaction.atomic():
            return write()
    except IntegrityError as exc:
        if taken():
            raise InvalidInput(message, code="unique", field=field) from exc
        raise
