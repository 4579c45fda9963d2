"""System checks of the AI services configuration."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Warning, register

from .providers import PROVIDERS, get_provider


@register()
def check_provider(app_configs, **kwargs) -> list[Warning]:
    """Warn when ``AI_SERVICES_PROVIDER`` names no known provider (AI services then stay disabled)."""
    if get_provider() is not None:
        return []
    return [
        Warning(
            f"AI_SERVICES_PROVIDER={settings.AI_SERVICES_PROVIDER!r} is not a known provider; AI services are off.",
            hint=f"Use one of: {', '.join(PROVIDERS)}.",
            id="aiservices.W001",
        )
    ]
