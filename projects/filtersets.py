"""Query-string filters for the workspace, project and issue lists."""

from __future__ import annotations

import django_filters
from django.db.models import Q

from syndarix.api.filters import IdOrSlugFilter, StrictBooleanFilter

from .choices import IssueStatus
from .models import Issue, Project, Workspace


class WorkspaceFilterSet(django_filters.FilterSet):
    """``q`` (name or slug contains), ``ordering`` (name, created_at; default name)."""

    q = django_filters.CharFilter(method="search", label="Name or slug contains")
    ordering = django_filters.OrderingFilter(fields=("name", "created_at"))

    class Meta:
        model = Workspace
        fields: list[str] = []

    def search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(slug__icontains=value))


class ProjectFilterSet(django_filters.FilterSet):
    """``workspace`` (id or slug), ``q`` (name contains), ``ordering`` (name, created_at)."""

    workspace = IdOrSlugFilter(field_name="workspace", label="Workspace id or slug")
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")
    ordering = django_filters.OrderingFilter(fields=("name", "created_at"))

    class Meta:
        model = Project
        fields: list[str] = []


class IssueFilterSet(django_filters.FilterSet):
    """``status`` (repeatable), ``assigned_agent`` (agent id), ``unassigned``, ``q`` (title contains),
    ``ordering`` (created_at, title, status; default newest first)."""

    status = django_filters.MultipleChoiceFilter(choices=IssueStatus.choices, distinct=False)  # no join: no duplicates
    assigned_agent = django_filters.UUIDFilter(field_name="assigned_agent_id", label="Assigned agent id")
    unassigned = StrictBooleanFilter(field_name="assigned_agent", lookup_expr="isnull", label="Unassigned")
    q = django_filters.CharFilter(field_name="title", lookup_expr="icontains", label="Title contains")
    ordering = django_filters.OrderingFilter(fields=("created_at", "title", "status"))

    class Meta:
        model = Issue
        fields: list[str] = []
