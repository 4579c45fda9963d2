"""Who may do what with agent templates."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

#: Committing a template changes the agent type, so it takes the agent type's change permission.
COMMIT_PERMISSION = "agents.change_agenttype"


def can_commit_templates(user) -> bool:
    """Staff with ``agents.change_agenttype`` (superusers have every permission)."""
    return bool(user and user.is_authenticated and user.is_staff and user.has_perm(COMMIT_PERMISSION))


class CanCommitTemplates(BasePermission):
    """Reads for any authenticated user; writes for staff with the agent type's change permission."""

    message = "Committing a template needs staff status and the permission to change agent types."

    def has_permission(self, request, view) -> bool:
        return request.method in SAFE_METHODS or can_commit_templates(request.user)
