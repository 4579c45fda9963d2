from django.apps import AppConfig


class AIServicesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "aiservices"
    verbose_name = "AI services"

    def ready(self) -> None:
        """Register the system checks, the AI tools with the MCP server, the price cache's invalidation, and the check
        of the agents' model when a Celery worker starts (``llm.unserved_model_warning``)."""
        from celery.signals import worker_ready
        from django.db.models.signals import post_delete, post_save

        from . import checks  # noqa: F401  (registers the system checks)
        from .mcp.providers import AIToolProvider, register_provider
        from .models import ModelPrice
        from .prices import prices_changed

        register_provider(AIToolProvider())
        worker_ready.connect(_warn_unserved_model, weak=False, dispatch_uid="aiservices.unserved_model")
        post_save.connect(prices_changed, sender=ModelPrice, dispatch_uid="aiservices.prices.saved")
        post_delete.connect(prices_changed, sender=ModelPrice, dispatch_uid="aiservices.prices.deleted")


def _warn_unserved_model(**kwargs) -> None:
    from .llm import logger, unserved_model_warning

    warning = unserved_model_warning()
    if warning:
        logger.warning(warning)
