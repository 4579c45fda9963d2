"""Page-number pagination with the design's list envelope (design.md §4)."""

from __future__ import annotations

import math
from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response


class EnvelopePagination(PageNumberPagination):
    """``?page=`` (1-based) and ``?limit=`` (default 20, at most 100).

    Response: ``{"data": [...], "pagination": {"total", "page", "page_size", "total_pages",
    "has_next", "has_prev"}}``. ``page`` and ``limit`` must be whole numbers ≥ 1 (else 400 ``invalid`` on
    the parameter; a ``limit`` above 100 counts as 100); a page past the end answers 404 ``not_found``.
    """

    page_size = 20
    page_size_query_param = "limit"
    max_page_size = 100

    def paginate_queryset(self, queryset, request, view=None):
        """Refuse a malformed ``page`` or ``limit`` with 400 before paginating (DRF would answer 404 or ignore it)."""
        for name in (self.page_query_param, self.page_size_query_param):
            value = request.query_params.get(name)
            if value is not None and not (value.isascii() and value.isdigit() and int(value) >= 1):
                raise ValidationError({name: [f"{name} must be a whole number of at least 1."]}, code="invalid")
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
        return parameters

    def get_paginated_response(self, data: list[Any]) -> Response:
        page = self.page
        total = page.paginator.count
        page_size = page.paginator.per_page
        return Response(
            {
                "data": data,
                "pagination": {
                    "total": total,
                    "page": page.number,
                    "page_size": page_size,
                    "total_pages": max(1, math.ceil(total / page_size)) if page_size else 1,
                    "has_next": page.has_next(),
                    "has_prev": page.has_previous(),
                },
            }
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["data", "pagination"],
            "properties": {
                "data": schema,
                "pagination": {
                    "type": "object",
                    "properties": {
                        "total": {"type": "integer"},
                        "page": {"type": "integer"},
                        "page_size": {"type": "integer"},
                        "total_pages": {"type": "integer"},
                        "has_next": {"type": "boolean"},
                        "has_prev": {"type": "boolean"},
                    },
                },
            },
        }
