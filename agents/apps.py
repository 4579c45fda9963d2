from django.apps import AppConfig


class AgentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "agents"
    verbose_name = "Agents"

    def ready(self) -> None:
        """Load the agent classes (the built-ins and ``AGENT_REGISTRY_MODULES``) and connect their hooks,
        which run after each committed lifecycle change.

        Raises ``agents.registry.AgentModulesUnusable`` (``ImproperlyConfigured``) naming each module
        that cannot be loaded, so no process (runserver, gunicorn, a command) starts without it.
        """
        from . import checks, hooks  # noqa: F401 - importing checks registers the system check
        from . import registry as agent_registry
        from .models import AgentInstance
        from .signals import agent_spawned, agent_transitioned

        agent_registry.load_agent_modules(agent_registry.registry)
        agent_spawned.connect(hooks.on_agent_spawned, sender=AgentInstance, dispatch_uid="agents.hooks.spawned")
        agent_transitioned.connect(
            hooks.on_agent_transitioned, sender=AgentInstance, dispatch_uid="agents.hooks.transitioned"
        )
