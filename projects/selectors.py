"""Read queries for workspaces and projects that are more than a plain queryset."""

from __future__ import annotations

from typing import Any

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


def visible_project(project_id, user, *, token_digest: str | None = None,
                    entries: dict[str, Any] | None = None) -> Project | None:
    """The project ``project_id`` when ``user`` may see it (a superuser, its owner, a member of its workspace: the
    rule of ``ProjectQuerySet.visible_to``), else ``None`` (no such project, or out of reach).

    The project comes with ``caller_role`` (``user``'s role in its workspace, ``None`` without a membership) and
    ``caller_role_of``, so ``Project.can_write`` needs no query; ``workspace`` and ``owner`` load when first used.

    Args:
        token_digest: the digest of the API token the request is authenticated with. With it, the project's row and
            the token's access to it (the role) are read from the shared cache (``syndarix.cache``): no query when
            both are there, else one (the project with the role, then both cached). Without it (a session), one query.
        entries: what the token authentication already read for ``access_cache_keys`` (same round trip as the
            token); the keys are looked up here when not given.

    The entries are invalidated when the project is saved or deleted, or the membership saved, moved or deleted
    (``invalidate_access_entries``); the superuser flag is the request user's own (its token entry is invalidated
    when the user is saved).
    """
    if not user or not user.is_authenticated:
        return None
    if token_digest is None:
        project = Project.objects.with_role(user).filter(pk=project_id).first()
    else:
        project_key, access_key = access_cache_keys(project_id, token_digest)
        if entries is None:
            entries = cache_get_many([project_key, access_key])
        project = _project_from_entry(entries.get(project_key))
        access = entries.get(access_key)
        if project is not None and access is not None and access[0] == project.workspace_id:
            project.caller_role = access[1] or None
        else:
            project = Project.objects.with_role(user).filter(pk=project_id).first()
            if project is not None:
                cache_fill(project_key, _project_entry(project))
                cache_fill(access_key, (project.workspace_id, project.caller_role or ""))
    if project is None:
        return None
    project.caller_role_of = user.pk
    if user.is_superuser or project.owner_id == user.pk or project.caller_role is not None:
        return project
    return None


def access_cache_keys(project_id, token_digest: str) -> tuple[str, str]:
    """The cache keys ``visible_project`` reads for a request with the token ``token_digest`` to ``project_id``: the
    project's row, and the token's access to it (its user's role in the project's workspace)."""
    return f"tenancy.project:{project_id}", f"tenancy.access:{token_digest}:{project_id}"


def _project_entry(project: Project) -> tuple:
    names = tuple(field.attname for field in Project._meta.concrete_fields)
    return names, tuple(getattr(project, name) for name in names)


def _project_from_entry(entry: tuple | None) -> Project | None:
    if entry is None:
        return None
    names, values = entry
    if names != tuple(field.attname for field in Project._meta.concrete_fields):
        return None  # stored by a version of the model with other fields
    return Project.from_db(DEFAULT_DB_ALIAS, list(names), list(values))


def invalidate_access_entries(sender, instance, **kwargs) -> None:
    """Signal receiver: drop what ``visible_project`` cached that a change makes wrong. A ``Project`` saved or
    deleted: its row. A ``WorkspaceMembership`` saved or deleted (before it is saved too, when it may be moved to
    another workspace or user): the access of each of the user's tokens to each project of the workspace.
    Connected in ``projects.apps.ProjectsConfig``.

    Raises:
        syndarix.exceptions.DependencyUnavailable: the cache is unreachable (the change is refused, 503).
    """
    if isinstance(instance, Project):
        if not kwargs.get("created"):  # a new project has no entry, and nobody could read it before the commit
            cache_invalidate([access_cache_keys(instance.pk, "")[0]])
        return
    workspace_id, user_id = instance.workspace_id, instance.user_id
    if kwargs.get("signal") is pre_save:
        old = None if instance._state.adding else (
            WorkspaceMembership.objects.filter(pk=instance.pk).values_list("workspace_id", "user_id").first())
        if old is None or old == (workspace_id, user_id):
            return  # post_save covers a membership that stays where it is
        workspace_id, user_id = old
    projects = Project.objects.filter(workspace_id=workspace_id).values_list("pk", flat=True)
    digests = AuthToken.objects.filter(user_id=user_id).values_list("digest", flat=True)
    cache_invalidate([access_cache_keys(project, digest)[1] for digest in digests for project in projects])


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
