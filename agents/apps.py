from django.apps import AppConfig


class AgentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "agents"
    verbose_name = "Agents"

    def ready(self) -> None:
        # Agent classes: the built-ins and AGENT_REGISTRY_MODULES (failures are reported by the
        # system check in agents/checks.py); their hooks run after each committed lifecycle change.
        from . import checks, hooks  # noqa: F401 - importing checks registers the system check
        from .models import AgentInstance
        from .registry import registry
        from .signals import agent_spawned, agent_transitioned

        registry.populate()
        agent_spawned.connect(hooks.on_agent_spawned, sender=AgentInstance, dispatch_uid="agents.hooks.spawned")
        agent_transitioned.connect(
            hooks.on_agent_transitioned, sender=AgentInstance, dispatch_uid="agents.hooks.transitioned"
        )
