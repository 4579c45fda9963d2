"""Tenancy and work items: workspaces, their members, projects and issues."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import OuterRef, Q, Subquery

from .choices import WRITE_ROLES, IssueStatus, WorkspaceRole


class TimeStampedModel(models.Model):
    """Abstract base: UUID4 primary key plus ``created_at`` / ``updated_at`` (UTC)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Workspace(TimeStampedModel):
    """The tenant. Every project, agent and context belongs to exactly one workspace.

    ``max_concurrent_agents`` caps the workspace's non-terminated agents; ``None`` means the
    ``AGENT_MAX_CONCURRENCY`` setting applies.
    """

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    max_concurrent_agents = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most non-terminated agents at once; empty = AGENT_MAX_CONCURRENCY."
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="WorkspaceMembership", related_name="workspaces", blank=True
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def agent_limit(self) -> int:
        """The effective concurrency limit (agents), falling back to the setting."""
        if self.max_concurrent_agents is not None:
            return self.max_concurrent_agents
        return settings.AGENT_MAX_CONCURRENCY


class WorkspaceMembership(TimeStampedModel):
    """A user's role in a workspace (admin | operator | viewer)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=WorkspaceRole.choices, default=WorkspaceRole.VIEWER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "user"], name="unique_workspace_member")]
        ordering = ["workspace__name", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} @ {self.workspace} ({self.role})"


class ProjectQuerySet(models.QuerySet):
    def visible_to(self, user) -> ProjectQuerySet:
        """Projects ``user`` may read: all for superusers; owned or in a workspace they belong to.

        The membership test is a subquery on the (workspace, user) index, not a join: no row can come twice, so
        no DISTINCT is needed.
        """
        if not user or not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self
        member_of = WorkspaceMembership.objects.filter(user=user).values("workspace_id")
        return self.filter(Q(owner=user) | Q(workspace_id__in=member_of))

    def writable_by(self, user) -> ProjectQuerySet:
        """Projects ``user`` may change: superuser, owner, or workspace admin/operator (a subquery, like
        ``visible_to``)."""
        if not user or not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self
        writer_of = WorkspaceMembership.objects.filter(user=user, role__in=WRITE_ROLES).values("workspace_id")
        return self.filter(Q(owner=user) | Q(workspace_id__in=writer_of))

    def with_role(self, user) -> ProjectQuerySet:
        """Annotate ``caller_role``: ``user``'s role in each project's workspace (``None`` without a membership), so
        ``Project.can_write`` needs no query of its own."""
        if not user or not user.is_authenticated:
            return self
        role = WorkspaceMembership.objects.filter(workspace_id=OuterRef("workspace_id"), user=user).values("role")
        return self.annotate(caller_role=Subquery(role[:1]))


class Project(TimeStampedModel):
    """A unit of work inside a workspace, owned by one user; agents are spawned into projects."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="projects")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_projects")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100)
    description = models.TextField(blank=True)

    objects = ProjectQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "slug"], name="unique_project_slug_per_workspace")]
        ordering = ["workspace__name", "name"]

    def __str__(self) -> str:
        return self.name

    def can_write(self, user) -> bool:
        """True when ``user`` is a superuser, the owner, or a workspace admin/operator (read from ``caller_role``
        when the project was loaded ``with_role(user)``)."""
        if not user or not user.is_authenticated:
            return False
        if user.is_superuser or self.owner_id == user.pk:
            return True
        if getattr(self, "caller_role_of", None) == user.pk:
            return self.caller_role in WRITE_ROLES
        return self.workspace.memberships.filter(user=user, role__in=WRITE_ROLES).exists()


class Issue(TimeStampedModel):
    """A work item in a project; at most one agent of the same project is assigned to it."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="issues")
    title = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=IssueStatus.choices, default=IssueStatus.OPEN, db_index=True)
    assigned_agent = models.ForeignKey(
        "agents.AgentInstance", null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_issues"
    )

    class Meta:
        ordering = ["-created_at"]
        # The issue list's order (newest first), so a page is an index range however many issues a project has.
        indexes = [models.Index("project", models.F("created_at").desc(), models.F("id").desc(), name="issue_list_idx")]

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.assigned_agent_id and self.assigned_agent.project_id != self.project_id:
            raise ValidationError({"assigned_agent": "The agent must belong to the issue's project."})
