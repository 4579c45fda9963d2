"""App configs of the project package."""

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class SyndarixAdminConfig(AdminConfig):
    """``django.contrib.admin`` with ``syndarix.admin_site.SyndarixAdminSite`` as ``admin.site``."""

    default_site = "syndarix.admin_site.SyndarixAdminSite"

    def ready(self) -> None:
        """The admin's autodiscovery, psycopg's integer parameters sent whole (``syndarix.db.send_integers_whole``),
        then the process's OpenTelemetry traces when the environment asks for them
        (``syndarix.telemetry.setup``; this app is the first loaded, so Django's middleware is instrumented before
        any handler loads it)."""
        super().ready()
        from syndarix import db, telemetry

        db.send_integers_whole()
        telemetry.setup()


class ApiTokensConfig(AppConfig):
    """django-rest-knox (API tokens), under a name staff recognise in the admin ("API tokens", not "Knox")."""

    name = "knox"
    label = "knox"
    verbose_name = "API tokens"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        """Keep the token cache of ``syndarix.api.authentication`` in step with tokens and users."""
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save

        from syndarix.api.authentication import invalidate_token_entries

        token = self.get_model("AuthToken")
        post_save.connect(invalidate_token_entries, sender=token, dispatch_uid="syndarix.token_cache.token_saved")
        post_delete.connect(invalidate_token_entries, sender=token, dispatch_uid="syndarix.token_cache.token_deleted")
        post_save.connect(invalidate_token_entries, sender=get_user_model(), dispatch_uid="syndarix.token_cache.user")
