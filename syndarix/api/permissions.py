"""Access rules shared by every API view that know no app.

Anything outside the caller's reach is 404, never 403, so ids cannot be probed; a visible object
the caller may not change is 403. The tenancy rules (projects, workspaces) live in
``projects.permissions``.
"""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission


class IsStaffWithModelPermission(BasePermission):
    """Safe methods for any authenticated user; writes for staff holding the model permission.

    ``POST`` needs ``<app>.add_<model>``, ``PUT``/``PATCH`` ``change``, ``DELETE`` ``delete``
    (superusers hold every permission). Anyone else gets 403.
    """

    message = "Only staff with the model permission may change this."
    _ACTIONS = {"POST": "add", "PUT": "change", "PATCH": "change", "DELETE": "delete"}

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return True
        user = request.user
        if not (user.is_staff or user.is_superuser):
            return False
        meta = view.get_queryset().model._meta
        return user.has_perm(f"{meta.app_label}.{self._ACTIONS.get(request.method, 'change')}_{meta.model_name}")
