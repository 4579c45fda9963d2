"""Filter building blocks shared by the apps' filtersets."""

from __future__ import annotations

import uuid
from functools import cache

import django_filters
from django import forms
from django.http import QueryDict
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.exceptions import ValidationError


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


class StrictBooleanField(forms.NullBooleanField):
    """A query-string boolean: ``true``/``false`` (also ``True``/``False``, ``1``/``0``) or absent/empty; anything
    else is invalid. Django's ``NullBooleanField`` reads unknown values as "not given", so ``?flag=-4895``
    would pass silently."""

    widget = forms.TextInput
    _VALUES = {"true": True, "True": True, "1": True, "false": False, "False": False, "0": False}

    def to_python(self, value):
        if value in (None, ""):
            return None
        if isinstance(value, bool):
            return value
        if value in self._VALUES:
            return self._VALUES[value]
        raise forms.ValidationError("Enter true or false.", code="invalid")


class StrictBooleanFilter(django_filters.BooleanFilter):
    """``BooleanFilter`` whose unknown values are 400 ``invalid`` (``StrictBooleanField``; docs/api/filters.md)."""

    field_class = StrictBooleanField


#: Filters whose empty value means something: free text, and lists (``?ordering=`` is the empty list).
_MAY_BE_EMPTY = (django_filters.CharFilter, django_filters.filters.BaseCSVFilter, django_filters.MultipleChoiceFilter)


@cache
def _unfiltered(filterset_class):
    """A validated ``filterset_class`` for a request that sends none of its parameters (its ``filter_queryset``
    filters any queryset it is given; it keeps no state of a request)."""
    filterset = filterset_class(data=QueryDict(), queryset=filterset_class._meta.model._default_manager.none())
    filterset.is_valid()
    return filterset


class StrictFilterBackend(DjangoFilterBackend):
    """``DjangoFilterBackend`` that refuses an empty value for a filter that is not free text (400 ``invalid``), and
    leaves the filterset it built on the view (``view.filterset``).

    django-filter reads ``?agent_type=`` or ``?is_active=`` as "not given"; the published schema says such a
    parameter is a UUID, a boolean or one of a list, so an empty one is a malformed request. Free-text filters
    (``q``, slugs) and lists (``ordering``, ``status``) may still be empty. A view reads the validated filters from
    ``view.filterset.form.cleaned_data`` without building and validating another filterset. A request with none of
    the filterset's parameters (``?limit=20``) is filtered by one filterset built once per class for no parameters.
    """

    def get_filterset(self, request, queryset, view):
        filterset = super().get_filterset(request, queryset, view)
        view.filterset = filterset
        return filterset

    def filter_queryset(self, request, queryset, view):
        filterset_class = self.get_filterset_class(view, queryset)
        declared = filterset_class is not None and filterset_class is getattr(view, "filterset_class", None)
        if declared and not any(name in filterset_class.base_filters for name in request.query_params):
            # None of its parameters: the filterset built once for no parameters filters this list too (a filterset
            # copies its filters and builds a form each time it is made).
            view.filterset = _unfiltered(filterset_class)
            return view.filterset.filter_queryset(queryset)
        if filterset_class is not None:
            for name, value in request.query_params.lists():
                declared = filterset_class.base_filters.get(name)
                if declared is not None and "" in value and not isinstance(declared, _MAY_BE_EMPTY):
                    raise ValidationError({name: ["This parameter may not be empty."]}, code="invalid")
        return super().filter_queryset(request, queryset, view)
