"""API permission of the AI tools."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from .services import user_can_call_tools


class CanCallTools(BasePermission):
    """Holds ``aiservices.edit_workflows`` ("Can edit agent workflows and templates"); else 403."""

    message = "You need the 'Can edit agent workflows and templates' permission to call AI tools."

    def has_permission(self, request, view) -> bool:
        return user_can_call_tools(request.user)
