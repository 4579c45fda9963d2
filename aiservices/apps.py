from django.apps import AppConfig


class AIServicesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "aiservices"
    verbose_name = "AI services"
