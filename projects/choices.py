"""Choices for the projects app (wire values are lowercase)."""

from django.db import models


class WorkspaceRole(models.TextChoices):
    """A member's role in a workspace: admins and operators write, viewers only read."""

    ADMIN = "admin", "Admin"
    OPERATOR = "operator", "Operator"
    VIEWER = "viewer", "Viewer"


WRITE_ROLES = frozenset({WorkspaceRole.ADMIN, WorkspaceRole.OPERATOR})


class IssueStatus(models.TextChoices):
    OPEN = "open", "Open"
    IN_PROGRESS = "in_progress", "In progress"
    DONE = "done", "Done"
    CLOSED = "closed", "Closed"
