from django.apps import AppConfig


class BuildKitConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "buildkit"
    verbose_name = "Build kit"
