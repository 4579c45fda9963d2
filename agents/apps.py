from django.apps import AppConfig


class AgentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "agents"
    verbose_name = "Agents"

    def ready(self) -> None:
        """Register the platform and client tools (the platform tools with the MCP server too), load the agent
        classes (the built-ins and ``AGENT_REGISTRY_MODULES``), add the fleet's series to ``/metrics``, and connect
        the receivers of committed lifecycle changes: the agent classes' hooks (sent to a worker) and the runtime
        (dispatch the next run, park, cancel), and the webhook dispatcher's nudge (an event written).

        Raises ``agents.registry.AgentModulesUnusable`` (``ImproperlyConfigured``) naming each module
        that cannot be loaded, so no process (runserver, gunicorn, a command) starts without it.
        """
        from django.db.models.signals import post_delete, post_save

        from aiservices.mcp.providers import register_provider
        from syndarix.metrics import register_source

        from . import checks  # noqa: F401 - importing checks registers the system check
        from . import registry as agent_registry
        from .events import tasks as event_tasks  # noqa: F401 - registers the prune job
        from .metrics import fleet_series
        from .models import AgentInstance
        from .registry import hooks
        from .runtime import services as runtime
        from .runtime import tasks  # noqa: F401 - importing the module registers the Celery tasks
        from .runtime.tools.client import register_client_tools
        from .runtime.tools.mcp import PlatformToolProvider
        from .runtime.tools.platform import register_platform_tools
        from .runtime.tools.registry import tool_registry
        from .signals import agent_spawned, agent_transitioned, event_written
        from .webhooks import tasks as webhook_tasks
        from .webhooks.models import WebhookEndpoint

        register_source("database", fleet_series)
        register_platform_tools(tool_registry)
        register_client_tools(tool_registry)
        register_provider(PlatformToolProvider(tool_registry))
        agent_registry.load_agent_modules(agent_registry.registry)
        agent_spawned.connect(hooks.on_agent_spawned, sender=AgentInstance, dispatch_uid="agents.hooks.spawned")
        agent_transitioned.connect(
            hooks.on_agent_transitioned, sender=AgentInstance, dispatch_uid="agents.hooks.transitioned"
        )
        agent_transitioned.connect(
            runtime.on_agent_transitioned, sender=AgentInstance, dispatch_uid="agents.runtime.transitioned"
        )
        event_written.connect(webhook_tasks.nudge_on_commit, dispatch_uid="agents.webhooks.nudge")
        for signal in (post_save, post_delete):
            signal.connect(webhook_tasks.active_workspaces.forget, sender=WebhookEndpoint,
                           dispatch_uid="agents.webhooks.active_workspaces")
