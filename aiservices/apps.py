from django.apps import AppConfig


class AIServicesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "aiservices"
    verbose_name = "AI services"

    def ready(self) -> None:
        """Register the system checks, and the AI tools with the MCP server."""
        from . import checks  # noqa: F401  (registers the system checks)
        from .mcp.providers import AIToolProvider, register_provider

        register_provider(AIToolProvider())
