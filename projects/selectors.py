"""Read queries for workspaces and projects that are more than a plain queryset."""

from __future__ import annotations

from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.exceptions import AuthenticationFailed

from syndarix.api.authentication import TokenAuthentication

from .choices import WRITE_ROLES
from .models import Issue, Project, Workspace, WorkspaceMembership


def workspace_queryset(user) -> QuerySet[Workspace]:
    """Workspaces ``user`` may see, each annotated with ``role`` (the caller's role, or ``None``).

    Superusers see every workspace; others the ones they are a member of or own a project in.
    One query for any number of rows (the role is a subquery, not a query per row).
    """
    if not user or not user.is_authenticated:
        return Workspace.objects.none()
    role = WorkspaceMembership.objects.filter(workspace=OuterRef("pk"), user=user).values("role")[:1]
    queryset = Workspace.objects.annotate(role=Subquery(role))
    if user.is_superuser:
        return queryset
    return queryset.filter(
        Q(pk__in=member_workspace_ids(user)) | Q(pk__in=Project.objects.filter(owner=user).values("workspace"))
    )


def workspaces_writable_by(user) -> QuerySet[Workspace]:
    """Workspaces where ``user`` may create projects: all for superusers, else admin/operator memberships."""
    if not user or not user.is_authenticated:
        return Workspace.objects.none()
    if user.is_superuser:
        return Workspace.objects.all()
    return Workspace.objects.filter(memberships__user=user, memberships__role__in=WRITE_ROLES)


def project_queryset(user) -> QuerySet[Project]:
    """Projects ``user`` may see, with their workspace and owner joined (one query per page)."""
    return Project.objects.visible_to(user).select_related("workspace", "owner")


def issue_queryset(project: Project) -> QuerySet[Issue]:
    """Issues of ``project`` with the assigned agent joined."""
    return Issue.objects.filter(project=project).select_related("assigned_agent")


def auth_token_queryset(user) -> QuerySet[AuthToken]:
    """``user``'s API tokens that are still valid (unexpired), newest first."""
    return AuthToken.objects.filter(user=user).filter(Q(expiry__isnull=True) | Q(expiry__gt=timezone.now())).order_by(
        "-created"
    )


def auth_token_owner(token: str):
    """The user ``token`` authenticates as now, or ``None`` (unknown, revoked or expired token; inactive user)."""
    try:
        user, _auth_token = TokenAuthentication().authenticate_credentials(token.encode())
    except AuthenticationFailed:
        return None
    return user


def member_workspace_ids(user, *, roles=None) -> QuerySet:
    """Ids of the workspaces ``user`` is a member of (with a role in ``roles`` when given), as a subquery to filter
    with (``workspace__in=...``): the admin's tenancy scope for staff who are not superusers."""
    memberships = WorkspaceMembership.objects.filter(user=user)
    if roles is not None:
        memberships = memberships.filter(role__in=roles)
    return memberships.values("workspace")
