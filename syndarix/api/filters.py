"""Filter building blocks shared by the apps' filtersets."""

from __future__ import annotations

import uuid

import django_filters
from django_filters.rest_framework import DjangoFilterBackend


class IdOrSlugFilter(django_filters.CharFilter):
    """Filter a foreign key by the related object's UUID or by its slug.

    ``IdOrSlugFilter(field_name="agent_type")`` matches ``agent_type_id=<uuid>`` when the value parses
    as a UUID, else ``agent_type__slug=<value>``.
    """

    def filter(self, qs, value):
        if value in django_filters.constants.EMPTY_VALUES:
            return qs
        value = value.strip()
        try:
            lookup = {f"{self.field_name}_id": uuid.UUID(value)}
        except ValueError:
            lookup = {f"{self.field_name}__slug": value}
        return qs.filter(**lookup)


class FilterSetBackend(DjangoFilterBackend):
    """``DjangoFilterBackend`` that leaves the filterset it built on the view (``view.filterset``), so the view can
    read the validated filters (``view.filterset.form.cleaned_data``) without building and validating another."""

    def get_filterset(self, request, queryset, view):
        filterset = super().get_filterset(request, queryset, view)
        view.filterset = filterset
        return filterset
