"""System checks of the agents app.

``agents.E001``-``E003``: every module named in ``AGENT_REGISTRY_MODULES`` must import, expose a
callable ``register_agents(registry)``, and register its classes without error (valid classes, no
slug another module or a built-in already holds). An error stops ``runserver``, ``migrate`` and
``check`` at start-up with the module's name.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

from .registry import AgentRegistry

_IDS = {"import": "agents.E001", "no_register_agents": "agents.E002", "register_agents": "agents.E003"}
_HINTS = {
    "import": "Fix the module or remove it from AGENT_REGISTRY_MODULES (comma-separated dotted paths).",
    "no_register_agents": "Define register_agents(registry) in the module and call registry.register(cls) there.",
    "register_agents": "Each class needs a unique slug, a name, a list of capabilities and a valid JSON Schema.",
}


@register("agents")
def check_agent_registry_modules(app_configs=None, **kwargs) -> list[Error]:
    """Load the built-ins and ``AGENT_REGISTRY_MODULES`` into a scratch registry; report each failure."""
    probe = AgentRegistry()
    failures = probe.populate(settings.AGENT_REGISTRY_MODULES, log=False)
    return [
        Error(failure.message, hint=_HINTS[failure.reason], obj=failure.module, id=_IDS[failure.reason])
        for failure in failures
    ]
