"""Template context of the agents app."""

from __future__ import annotations

from django.conf import settings


def agents(request) -> dict[str, bool]:
    """``agents_enabled``: the ``AGENTS_ENABLED`` setting (the admin shows a banner when it is false)."""
    return {"agents_enabled": bool(settings.AGENTS_ENABLED)}
