"""Object-level access rules for workspaces and projects (the tenancy rules are in design.md §4)."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from .choices import WorkspaceRole


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
