from django.apps import AppConfig


class AIServicesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "aiservices"
    verbose_name = "AI services"

    def ready(self) -> None:
        """Register the system checks, the AI tools with the MCP server, and the check of the agents' model when a
        Celery worker starts (``llm.unserved_model_warning``)."""
        from celery.signals import worker_ready

        from . import checks  # noqa: F401  (registers the system checks)
        from .mcp.providers import AIToolProvider, register_provider

        register_provider(AIToolProvider())
        worker_ready.connect(_warn_unserved_model, weak=False, dispatch_uid="aiservices.unserved_model")


def _warn_unserved_model(**kwargs) -> None:
    from .llm import logger, unserved_model_warning

    warning = unserved_model_warning()
    if warning:
        logger.warning(warning)
