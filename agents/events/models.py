"""A minimal events outbox table (stand-in until the events outbox lands; replaced by it)."""

from django.db import models


class Event(models.Model):
    """One event: id (public, ordering), type, created_at, workspace, project, data."""

    id = models.BigAutoField(primary_key=True)
    type = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    workspace = models.ForeignKey("projects.Workspace", on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, null=True, related_name="+")
    data = models.JSONField(default=dict)

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return f"{self.type} #{self.pk}"
