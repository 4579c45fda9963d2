"""What the benchmark scripts share (not a benchmark itself: ``make bench`` runs ``bench_*.py`` only)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def throwaway_database(prefix: str, *, exact: bool = False) -> Iterator[dict[str, Any]]:
    """Create and migrate ``<prefix>_<pid>`` (with ``exact``: ``<prefix>`` itself) beside the database
    ``DATABASE_URL`` names, switch the default connection to it, and drop it on the way out, so a benchmark never
    touches existing data.

    Yields the connection's settings dict (``NAME`` is the throwaway database's). Django must be set up.
    """
    from django.db import connection

    connection.settings_dict.setdefault("TEST", {})["NAME"] = prefix if exact else f"{prefix}_{os.getpid()}"
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        yield connection.settings_dict
    finally:
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)
