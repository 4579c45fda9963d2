"""Query-string filters for the agent, agent-type and ledger lists."""

from __future__ import annotations

import django_filters
from django.core.exceptions import ValidationError
from django.db.models import Q
from rest_framework import exceptions

from syndarix.api.filters import IdOrSlugFilter, StrictBooleanFilter

from .choices import AgentStatus
from .models import AgentInstance, AgentType


class AgentInstanceFilterSet(django_filters.FilterSet):
    """Filters of ``GET /projects/{project_id}/agents``.

    - ``status``: repeatable (``?status=idle&status=paused``).
    - ``agent_type``: the type's id or slug.
    - ``q``: name contains (case-insensitive).
    - ``ordering``: ``created_at``, ``name``, ``last_activity_at``, ``tokens_used``, ``-`` for
      descending; default newest first.
    - ``include_playground``: playground agents (``is_playground``) are left out unless ``true``.
    """

    # ``distinct=False``: the filter joins nothing, so a row can never come twice (a DISTINCT would sort the page).
    status = django_filters.MultipleChoiceFilter(choices=AgentStatus.choices, distinct=False)
    agent_type = IdOrSlugFilter(field_name="agent_type", label="Agent type id or slug")
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")
    ordering = django_filters.OrderingFilter(fields=("created_at", "name", "last_activity_at", "tokens_used"))
    include_playground = StrictBooleanFilter(method="filter_playground", label="Include playground agents")

    class Meta:
        model = AgentInstance
        fields: list[str] = []

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("include_playground"):
            queryset = queryset.filter(is_playground=False)
        return queryset

    def filter_playground(self, queryset, name, value):
        return queryset  # applied in filter_queryset, which also covers the parameter being absent

    @classmethod
    def include_playground_in(cls, params) -> bool:
        """``include_playground`` of a query string (``QueryDict``) read as this filter reads it, without building
        a filterset (the metrics endpoint takes the parameter alone).

        Raises ``rest_framework.exceptions.ValidationError`` (400 ``invalid``) for a value that is not a boolean, or an
        empty one.
        """
        if params.get("include_playground") == "":  # as the list refuses it (``StrictFilterBackend``)
            raise exceptions.ValidationError({"include_playground": ["This parameter may not be empty."]},
                                             code="invalid")
        field = cls.base_filters["include_playground"].field
        try:
            return bool(field.clean(field.widget.value_from_datadict(params, {}, "include_playground")))
        except ValidationError as exc:
            raise exceptions.ValidationError({"include_playground": exc.messages}, code="invalid") from exc


class AgentTypeFilterSet(django_filters.FilterSet):
    """``is_active``, ``q`` (name or slug contains), ``ordering`` (name, slug, created_at; default name)."""

    is_active = StrictBooleanFilter()
    q = django_filters.CharFilter(method="search", label="Name or slug contains")
    ordering = django_filters.OrderingFilter(fields=("name", "slug", "created_at"))

    class Meta:
        model = AgentType
        fields: list[str] = []

    def search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(slug__icontains=value))
