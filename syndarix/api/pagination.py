"""Page-number pagination with the design's list envelope (design.md §4)."""

from __future__ import annotations

import math
from typing import Any

from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response


class EnvelopePagination(PageNumberPagination):
    """``?page=`` (1-based) and ``?limit=`` (default 20, at most 100).

    Response: ``{"data": [...], "pagination": {"total", "page", "page_size", "total_pages",
    "has_next", "has_prev"}}``. A page past the end answers 404 ``not_found``.
    """

    page_size = 20
    page_size_query_param = "limit"
    max_page_size = 100

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
