"""Access rules shared by every API view (design.md §4).

Superusers see everything; a project's owner and its workspace's members see the project;
workspace viewers only read. Anything outside the caller's reach is 404, never 403, so ids cannot
be probed; a visible object the caller may not change is 403.
"""

from __future__ import annotations

from functools import cached_property

from django.shortcuts import get_object_or_404
from rest_framework.permissions import SAFE_METHODS, BasePermission

from projects.models import Project


class ProjectScopedMixin:
    """For views nested under ``/projects/{project_id}/``: resolves ``self.project``.

    ``self.project`` is the URL's project if the caller can see it, else ``Http404``; serializers
    find it as ``context["project"]``.
    """

    @cached_property
    def project(self) -> Project:
        visible = Project.objects.visible_to(self.request.user).select_related("workspace", "owner")
        return get_object_or_404(visible, pk=self.kwargs["project_id"])

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
