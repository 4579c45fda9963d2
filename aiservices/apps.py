from django.apps import AppConfig


class AIServicesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "aiservices"
    verbose_name = "AI services"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
