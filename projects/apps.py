from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "projects"
    verbose_name = "Projects"

    def ready(self) -> None:
        """Keep the cached project access of ``projects.selectors.visible_project`` in step with the data."""
        from django.db.models.signals import post_delete, post_save, pre_save

        from .models import Project, WorkspaceMembership
        from .selectors import invalidate_access_entries

        receivers = [(post_save, Project), (post_delete, Project), (pre_save, WorkspaceMembership),
                     (post_save, WorkspaceMembership), (post_delete, WorkspaceMembership)]
        for number, (signal, model) in enumerate(receivers):
            signal.connect(invalidate_access_entries, sender=model, dispatch_uid=f"projects.access_cache.{number}")
