"""Query-string filters of the run list."""

from __future__ import annotations

import django_filters

from ..choices import RunStatus
from ..models import AgentRun


class AgentRunFilterSet(django_filters.FilterSet):
    """``status``: repeatable (``?status=running&status=waiting``)."""

    status = django_filters.MultipleChoiceFilter(choices=RunStatus.choices, distinct=False)  # no join: no duplicates

    class Meta:
        model = AgentRun
        fields: list[str] = []
