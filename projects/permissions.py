"""Access rules for workspaces and projects (the tenancy rules are in docs/api/authentication.md).

Superusers see everything; a project's owner and its workspace's members see the project;
workspace viewers only read. Views nested under ``/projects/{project_id}/`` (the apps' issues,
agents, runs, contexts) resolve their project with ``ProjectScopedMixin`` and guard writes with
``CanWriteProject``.
"""

from __future__ import annotations

from functools import cached_property

from django.http import Http404
from rest_framework.permissions import SAFE_METHODS, BasePermission

from .choices import WorkspaceRole
from .models import Project
from .selectors import access_cache_keys, visible_project


class WorkspacePermission(BasePermission):
    """Read: anyone who can see the workspace. Create and delete: superusers. Update: superusers
    and the workspace's admins (others who can see it get 403)."""

    message = "Only superusers and workspace admins may change a workspace; only superusers create or delete one."

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return True
        if getattr(view, "action", None) == "create":
            return request.user.is_superuser
        return True  # decided per object, after the 404 check

    def has_object_permission(self, request, view, obj) -> bool:
        if request.method in SAFE_METHODS or request.user.is_superuser:
            return True
        if getattr(view, "action", None) == "destroy":
            return False
        return getattr(obj, "role", None) == WorkspaceRole.ADMIN


class ProjectPermission(BasePermission):
    """Read: anyone who can see the project. Change or delete: its owner, the workspace's admins and
    operators, superusers (viewers get 403). Create is checked against the body's workspace."""

    message = "Your role in this workspace is read-only."

    def has_object_permission(self, request, view, obj) -> bool:
        return request.method in SAFE_METHODS or obj.can_write(request.user)


class ProjectScopedMixin:
    """For views nested under ``/projects/{project_id}/``: resolves ``self.project``.

    ``self.project`` is the URL's project if the caller can see it, else ``Http404``; serializers
    find it as ``context["project"]``.
    """

    def token_cache_keys(self, token_digest: str) -> tuple[str, ...]:
        """The cache entries ``self.project`` reads, looked up in the token's own round trip to the cache
        (``syndarix.api.authentication.TokenAuthentication``, which leaves them in ``self.cache_entries``)."""
        return access_cache_keys(self.kwargs["project_id"], token_digest)

    @cached_property
    def project(self) -> Project:
        """The project with the caller's role (``projects.selectors.visible_project``: from the shared cache for a
        token, else one indexed query), once per request; the write check needs no query of its own."""
        project = visible_project(
            self.kwargs["project_id"], self.request.user, token_digest=getattr(self.request.auth, "digest", None),
            entries=getattr(self, "cache_entries", None),
        )
        if project is None:
            raise Http404("No Project matches the given query.")
        return project

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False):
            context["project"] = self.project
        return context


class CanWriteProject(BasePermission):
    """Safe methods for anyone who can see the project; writes for owner, admin or operator."""

    message = "Your role in this workspace is read-only."

    def has_permission(self, request, view) -> bool:
        project = view.project  # 404 first: an unseen project is never 403
        return request.method in SAFE_METHODS or project.can_write(request.user)
