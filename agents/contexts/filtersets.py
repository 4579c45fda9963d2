"""Filters of the shared-context list (``GET /api/v1/projects/{project_id}/contexts``)."""

from __future__ import annotations

import django_filters

from syndarix.api.filters import StrictBooleanFilter

from ..models import AgentContext


class AgentContextFilterSet(django_filters.FilterSet):
    """``?instance=<agent id>``, ``?shared=true|false`` (no owning agent), ``?name=<exact name>``."""

    instance = django_filters.UUIDFilter(field_name="instance_id", help_text="Contexts owned by this agent.")
    shared = StrictBooleanFilter(
        field_name="instance", lookup_expr="isnull", help_text="true: only contexts shared by all agents."
    )
    name = django_filters.CharFilter(field_name="name", help_text="Exact context name.")

    class Meta:
        model = AgentContext
        fields = ["instance", "shared", "name"]
