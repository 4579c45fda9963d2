"""Database helpers shared by the apps' services."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from django.db import IntegrityError, models, transaction

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


M = TypeVar("M", bound=models.Model)


def update_unique(
    instance: M, data: Mapping[str, Any], names: Iterable[str], *, taken: Callable[[], bool], field: str, message: str
) -> M:
    """Set the ``names`` present in ``data`` on ``instance`` and save just those (and ``updated_at``).

    Anything else in ``data`` is ignored; with nothing to change nothing is written. The save goes
    through ``save_unique`` with ``taken``, ``field`` and ``message``.

    Returns ``instance``.
    """
    changed = [name for name in names if name in data]
    for name in changed:
        setattr(instance, name, data[name])
    if changed:
        save_unique(
            lambda: instance.save(update_fields=[*changed, "updated_at"]), taken=taken, field=field, message=message
        )
    return instance
