"""System checks of the agents app.

``agents.E001``-``E003``: every module named in ``AGENT_REGISTRY_MODULES`` must import, expose a
callable ``register_agents(registry)``, and register its classes without error (valid classes, no
slug another module or a built-in already holds). At start-up ``AgentsConfig.ready()`` already
refuses to go on with a bad module (``agents.registry.load_agent_modules``); this check reports the
same failures, one error per module, for the setting as it is whenever checks run (``check``,
``runserver``, ``migrate``, and settings changed at run time).
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

from .registry import MODULE_ERROR_HINTS, AgentRegistry

_IDS = {"import": "agents.E001", "no_register_agents": "agents.E002", "register_agents": "agents.E003"}


@register("agents")
def check_agent_registry_modules(app_configs=None, **kwargs) -> list[Error]:
    """Load the built-ins and ``AGENT_REGISTRY_MODULES`` into a scratch registry; report each failure."""
    probe = AgentRegistry()
    failures = probe.populate(settings.AGENT_REGISTRY_MODULES, log=False)
    return [
        Error(failure.message, hint=MODULE_ERROR_HINTS[failure.reason], obj=failure.module, id=_IDS[failure.reason])
        for failure in failures
    ]
