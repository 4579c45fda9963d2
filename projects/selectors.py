"""Read queries for workspaces and projects that are more than a plain queryset."""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.db.models.signals import pre_save
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.exceptions import AuthenticationFailed

from syndarix.api.authentication import TokenAuthentication
from syndarix.cache import cache_fill, cache_get_many, cache_invalidate

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


def visible_project(project_id, user) -> Project | None:
    """The project ``project_id`` when ``user`` may see it (a superuser, its owner, a member of its workspace: the
    rule of ``ProjectQuerySet.visible_to``), else ``None`` (no such project, or out of reach).

    The project comes with ``caller_role`` (``user``'s role in its workspace, ``None`` without a membership) and
    ``caller_role_of``, so ``Project.can_write`` needs no query. Its row and the role are read from the shared cache
    (``syndarix.cache``) when it holds them: no query then; otherwise one (the project with the role, both then
    cached). The entries are invalidated when the project or the membership is saved or deleted
    (``invalidate_access_entries``); ``workspace`` and ``owner`` are loaded when first used.
    """
    if not user or not user.is_authenticated:
        return None
    project_key = _project_key(project_id)
    entry = cache_get_many([project_key]).get(project_key)
    project = _project_from_entry(entry) if entry is not None else None
    if project is None:
        project = Project.objects.with_role(user).filter(pk=project_id).first()
        if project is None:
            return None
        cache_fill(project_key, _project_entry(project))
        cache_fill(_role_key(project.workspace_id, user.pk), project.caller_role or "")
    else:
        role_key = _role_key(project.workspace_id, user.pk)
        role = cache_get_many([role_key]).get(role_key)
        if role is None:
            role = member_role(project.workspace_id, user)
            cache_fill(role_key, role or "")
        project.caller_role = role or None
    project.caller_role_of = user.pk
    if user.is_superuser or project.owner_id == user.pk or project.caller_role is not None:
        return project
    return None


def member_role(workspace_id, user) -> str | None:
    """``user``'s role in workspace ``workspace_id`` (a ``WorkspaceRole`` value), or ``None`` (not a member)."""
    memberships = WorkspaceMembership.objects.filter(workspace_id=workspace_id, user=user)
    return memberships.values_list("role", flat=True).first()


def _project_key(project_id) -> str:
    return f"tenancy.project:{project_id}"


def _role_key(workspace_id, user_id) -> str:
    return f"tenancy.role:{workspace_id}:{user_id}"


def _project_entry(project: Project) -> tuple:
    names = tuple(field.attname for field in Project._meta.concrete_fields)
    return names, tuple(getattr(project, name) for name in names)


def _project_from_entry(entry: tuple) -> Project | None:
    names, values = entry
    if names != tuple(field.attname for field in Project._meta.concrete_fields):
        return None  # stored by a version of the model with other fields
    return Project.from_db(DEFAULT_DB_ALIAS, list(names), list(values))


def invalidate_access_entries(sender, instance, **kwargs) -> None:
    """Signal receiver: drop the cached project (``Project`` saved or deleted) or the cached role (a
    ``WorkspaceMembership`` saved or deleted, including one moved to another workspace or user) that
    ``visible_project`` reads. Connected in ``projects.apps.ProjectsConfig``.

    Raises:
        syndarix.exceptions.DependencyUnavailable: the cache is unreachable (the change is refused, 503).
    """
    if isinstance(instance, Project):
        if not kwargs.get("created"):  # a new project has no entry, and nobody could read it before the commit
            cache_invalidate([_project_key(instance.pk)])
        return
    keys = {_role_key(instance.workspace_id, instance.user_id)}
    if kwargs.get("signal") is pre_save:
        if instance._state.adding:
            return
        old = WorkspaceMembership.objects.filter(pk=instance.pk).values_list("workspace_id", "user_id").first()
        keys = {_role_key(*old)} if old else set()
    cache_invalidate(sorted(keys))


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
