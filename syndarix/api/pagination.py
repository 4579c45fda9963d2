"""Pagination with the API's list envelope: page numbers, and cursors for deep paging."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Hashable
from functools import cached_property
from typing import Any

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL
from rest_framework import exceptions
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from syndarix.db import evaluate_compiled_once
from syndarix.exceptions import InvalidInput

#: Past this many rows a list's ``total`` is no longer counted exactly (``total_exact`` false), unless the view
#: knows it from counters (the agent list): counting a million rows costs more than serving the page.
COUNT_LIMIT = 10_000

#: The most rows a count ever goes to (a SQL ``LIMIT`` is a 64-bit integer): a page past it is past the end.
MAX_COUNT = 2**62


#: The annotation that carries a list's total in the rows of its page (a total given as SQL).
TOTAL_ANNOTATION = "list_total_"


class CappedCountPaginator(Paginator):
    """A Django paginator whose ``count`` is ``known_total`` when the view has one, else counted on the stripped
    queryset (primary keys only: no joins, annotations or ordering) and capped at ``count_cap`` rows.

    ``known_total`` is the total, or a scalar SQL subquery that yields it (``RawSQL``): then the page's own query
    carries it (``rows``), and a page costs one query, not two; it is read alone only when the page has no rows.
    """

    def __init__(self, object_list, per_page, *, known_total: int | RawSQL | None = None,
                 count_cap: int = COUNT_LIMIT, query_key: Hashable | None = None):
        super().__init__(object_list, per_page)
        self.known_total, self.count_cap, self.exact, self.query_key = known_total, count_cap, True, query_key

    def rows(self, queryset: QuerySet, bottom: int, top: int) -> list:
        """``queryset[bottom:top]`` as a list; with a total given as SQL, the total comes in the same query. With a
        ``query_key`` (what the list's queryset is built from, ``EnvelopePagination``), the page's SQL is compiled
        once per key and bounds (``syndarix.db.evaluate_compiled_once``)."""
        counted = isinstance(self.known_total, RawSQL)
        if counted:
            queryset = queryset.annotate(**{TOTAL_ANNOTATION: self.known_total})
        page = queryset[bottom:top]
        rows = list(page) if self.query_key is None else evaluate_compiled_once(page, (self.query_key, bottom, top))
        if counted and rows:
            self.__dict__["count"] = getattr(rows[0], TOTAL_ANNOTATION)  # the cached ``count``
        return rows

    def page(self, number):
        """Django's ``Paginator.page`` (past the end: ``EmptyPage``, a 404), its rows read by ``rows``; with a total
        given as SQL, the rows (and the total with them) are read before the number is checked against the total."""
        if not isinstance(self.known_total, RawSQL):
            number = self.validate_number(number)
            bottom = (number - 1) * self.per_page  # no orphans
            return self._get_page(self.rows(self.object_list, bottom, min(bottom + self.per_page, self.count)),
                                  number, self)
        number = int(number)  # a whole number ≥ 1 (``EnvelopePagination`` refuses anything else)
        rows = self.rows(self.object_list, (number - 1) * self.per_page, number * self.per_page)
        return self._get_page(rows, self.validate_number(number), self)  # past the end: EmptyPage (404)

    @cached_property
    def count(self) -> int:
        if isinstance(self.known_total, RawSQL):
            with connections[self.object_list.db].cursor() as cursor:
                cursor.execute(f"SELECT ({self.known_total.sql})", self.known_total.params)
                return cursor.fetchone()[0]
        if self.known_total is not None:
            return self.known_total
        if not isinstance(self.object_list, QuerySet):
            return len(self.object_list)
        # One row past the cap: a list longer than the cap reports ``count_cap + 1`` rows ("at least"), enough for
        # ``has_next`` of the last page within the cap.
        counted = self.object_list.order_by().values("pk")[: self.count_cap + 1].count()
        self.exact = counted <= self.count_cap
        return counted


class EnvelopePagination(PageNumberPagination):
    """``?page=`` (1-based) or ``?cursor=``, and ``?limit=`` (default 20, at most 100).

    Response: ``{"data": [...], "pagination": {"total", "total_exact", "page", "page_size", "total_pages",
    "has_next", "has_prev", "next_cursor"}}``.

    - ``total``: exact when ``total_exact`` is true. The agent list knows it from its counters whatever the size (and
      reads it in the page's own query: ``view.list_total()`` may give the total as SQL); other lists count up to
      ``COUNT_LIMIT`` rows (or to the end of the requested page), and past that answer one row more than they counted
      to, with ``total_exact: false`` ("at least this many").
    - ``next_cursor``: an opaque position after the page's last row, or ``null`` on the last page (or when the list's
      ordering has a field that can be null). ``?cursor=<it>`` answers the rows after it in the same order, in time
      independent of how deep it is, and stable under inserts (new rows never shift what comes next). With a cursor,
      ``page`` is ``null``; a cursor from another ordering, or one that cannot be read, is 400 ``invalid_cursor``.
    - ``page`` and ``limit`` must be whole numbers ≥ 1 (else 400 ``invalid`` on the parameter; a ``limit`` above
      100 counts as 100); a page past the end answers 404 ``not_found``.

    A view whose list query is built from nothing but what a key names gives that key as ``view.list_query_key()``
    (``None`` for a list without one): the page's SQL is then compiled once per key, page and cursor
    (``syndarix.db.evaluate_compiled_once``), not on every request.
    """

    page_size = 20
    page_size_query_param = "limit"
    max_page_size = 100
    cursor_query_param = "cursor"  # a view whose list is not a queryset sets ``cursor_pagination = False``

    def paginate_queryset(self, queryset: QuerySet, request, view=None):
        # A malformed ``page`` or ``limit`` is 400 (DRF would answer 404 or ignore it).
        for name in (self.page_query_param, self.page_size_query_param):
            value = request.query_params.get(name)
            if value is not None and not (value.isascii() and value.isdigit() and int(value) >= 1):
                message = f"{name} must be a whole number of at least 1."
                raise exceptions.ValidationError({name: [message]}, code="invalid")
        self.request, self.view, self.cursor_page = request, view, False
        self.ordering = _ordering(queryset) if isinstance(queryset, QuerySet) else []
        if self.ordering:
            queryset = queryset.order_by(*(f"-{name}" if desc else name for name, desc in self.ordering))
        known_total = getattr(view, "list_total", lambda: None)()
        query_key = getattr(view, "list_query_key", lambda: None)()
        page_size = self.get_page_size(request)
        cursor = request.query_params.get(self.cursor_query_param)
        if cursor:
            key = None if query_key is None else (query_key, cursor)
            return self._paginate_cursor(queryset, cursor, page_size, known_total, key)
        number = int(request.query_params.get(self.page_query_param, 1))
        count_cap = max(COUNT_LIMIT, min(number * page_size, MAX_COUNT))
        self.django_paginator_class = lambda object_list, per_page: CappedCountPaginator(
            object_list, per_page, known_total=known_total, count_cap=count_cap, query_key=query_key
        )
        rows = super().paginate_queryset(queryset, request, view)
        self.rows = rows
        return rows

    def _paginate_cursor(self, queryset: QuerySet, cursor: str, page_size: int, known_total: int | RawSQL | None,
                         query_key: Hashable | None):
        if not self.ordering:
            raise InvalidInput("This list cannot be paged with a cursor.", field="cursor", code="invalid_cursor")
        after = queryset.filter(_after(queryset.model, self.ordering, _decode(cursor, self.ordering)))
        # ``total`` stays the whole list's (counted lazily, on ``queryset`` without the cursor's bound).
        self.cursor_paginator = CappedCountPaginator(queryset, page_size, known_total=known_total,
                                                     query_key=query_key)
        rows = self.cursor_paginator.rows(after, 0, page_size + 1)
        self.cursor_page, self.has_more, self.rows = True, len(rows) > page_size, rows[:page_size]
        return self.rows

    def next_cursor(self) -> str | None:
        """The position after the last row of the page, or ``None`` (last page, or no cursor for this ordering)."""
        has_next = self.has_more if self.cursor_page else self.page.has_next()
        if not has_next or not self.rows or not self.ordering:
            return None
        return _encode(self.rows[-1], self.ordering)

    def get_paginated_response(self, data: list[Any]) -> Response:
        paginator = self.cursor_paginator if self.cursor_page else self.page.paginator
        total, page_size = paginator.count, paginator.per_page
        return Response(
            {
                "data": data,
                "pagination": {
                    "total": total,
                    "total_exact": paginator.exact,
                    "page": None if self.cursor_page else self.page.number,
                    "page_size": page_size,
                    "total_pages": max(1, math.ceil(total / page_size)) if page_size else 1,
                    "has_next": self.has_more if self.cursor_page else self.page.has_next(),
                    "has_prev": True if self.cursor_page else self.page.has_previous(),
                    "next_cursor": self.next_cursor(),
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
                        "total": {"type": "integer", "description": "Rows in the list (see `total_exact`)."},
                        "total_exact": {
                            "type": "boolean",
                            "description": "False when `total` is a lower bound: the list was counted up to it.",
                        },
                        "page": {"type": "integer", "nullable": True, "description": "Null when paged by cursor."},
                        "page_size": {"type": "integer"},
                        "total_pages": {"type": "integer"},
                        "has_next": {"type": "boolean"},
                        "has_prev": {"type": "boolean"},
                        "next_cursor": {
                            "type": "string",
                            "nullable": True,
                            "description": "Pass as `?cursor=` for the rows after this page; null on the last page.",
                        },
                    },
                },
            },
        }

    def get_schema_operation_parameters(self, view) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
        if not getattr(view, "cursor_pagination", True):  # a list built in Python (no queryset): pages only
            return parameters
        parameters.append({
            "name": self.cursor_query_param,
            "required": False,
            "in": "query",
            "description": "A `next_cursor` of an earlier page: the rows after it, in the same order (deep paging).",
            "schema": {"type": "string"},
        })
        return parameters


def _ordering(queryset: QuerySet) -> list[tuple[str, bool]]:
    """The queryset's ordering as ``[(field name, descending)]``, ending with the primary key (added when missing,
    in the direction of the first field, so the order is total); ``[]`` when a cursor cannot follow it (an
    expression, a related field, or a field that can be null)."""
    names = list(queryset.query.order_by) or list(queryset.model._meta.ordering)
    meta, ordering = queryset.model._meta, []
    for name in names:
        if not isinstance(name, str) or "__" in name or name.lstrip("-") == "?":
            return []
        desc, bare = name.startswith("-"), name.lstrip("-")
        try:
            field = meta.pk if bare == "pk" else meta.get_field(bare)
        except FieldDoesNotExist:
            return []
        if field.null or not field.concrete:
            return []
        ordering.append((field.name, desc))
    if not ordering:
        return []
    if meta.pk.name not in {name for name, _ in ordering}:
        ordering.append((meta.pk.name, ordering[0][1]))
    return ordering


def _encode(row, ordering: list[tuple[str, bool]]) -> str:
    meta = type(row)._meta
    values = [meta.get_field(name).value_to_string(row) for name, _ in ordering]
    keys = [f"-{name}" if desc else name for name, desc in ordering]
    raw = json.dumps({"o": keys, "v": values}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, ordering: list[tuple[str, bool]]) -> list[str]:
    invalid = InvalidInput("The cursor is not one this list gave.", field="cursor", code="invalid_cursor")
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        keys, values = data["o"], data["v"]
    except (ValueError, TypeError, KeyError, binascii.Error) as exc:
        raise invalid from exc
    if keys != [f"-{name}" if desc else name for name, desc in ordering] or not isinstance(values, list):
        raise InvalidInput(
            "The cursor belongs to another ordering of this list.", field="cursor", code="invalid_cursor"
        )
    if len(values) != len(ordering) or not all(isinstance(v, str) for v in values):
        raise invalid
    return values


def _after(model, ordering: list[tuple[str, bool]], values: list[str]) -> Q:
    """Rows after the position ``values`` in ``ordering``: ``a ≤ v_a AND (a < v_a OR (a = v_a AND b < v_b) ...)``
    (for descending fields; ascending the other way). The leading bound lets the index start at the position."""
    parsed = []
    for (name, _), raw in zip(ordering, values, strict=True):
        try:
            parsed.append(model._meta.get_field(name).to_python(raw))
        except ValidationError as exc:
            raise InvalidInput("The cursor is not one this list gave.", field="cursor", code="invalid_cursor") from exc
    after = Q()
    for i, (name, desc) in enumerate(ordering):
        step = Q(**{f"{name}__{'lt' if desc else 'gt'}": parsed[i]})
        for j in range(i):
            step &= Q(**{ordering[j][0]: parsed[j]})
        after |= step
    first, desc = ordering[0]
    return Q(**{f"{first}__{'lte' if desc else 'gte'}": parsed[0]}) & after
