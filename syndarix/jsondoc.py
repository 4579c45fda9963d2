"""Checks for JSON documents we store (context data, agent templates, instance config), and their diff.

PostgreSQL's ``jsonb`` refuses NUL characters and NaN/Infinity, and a document nested thousands of
levels deep can exhaust Python's stack in later processing. ``check_json_document`` refuses all
three, plus oversize documents, before anything is written — iteratively, so hostile nesting
cannot crash the check itself.

``json_diff`` is the RFC 6902 JSON Patch between two stored documents with a bounded cost: matching up
the items of two arrays takes time quadratic in their length, so a long changed stretch of an array is
replaced whole instead of being matched item by item.
"""

from __future__ import annotations

import json
from typing import Any

import jsonpatch

from syndarix.exceptions import InvalidInput, PayloadTooLarge

#: Most items (both sides together) of an array's changed stretch — what lies between the items the two
#: arrays share at their start and at their end — that ``json_diff`` matches up item by item; a longer one
#: is replaced whole with one ``replace`` operation.
DIFF_ARRAY_MAX_ITEMS = 1_000
#: Most item comparisons (the product of the two sides' changed stretches, summed over the arrays) one
#: ``json_diff`` spends on matching; once spent, every further changed array is replaced whole.
DIFF_MATCH_BUDGET = 250_000
#: Most operations of one ``json_diff`` patch; a patch that would hold more replaces the whole document.
DIFF_MAX_OPERATIONS = 2_000


def check_json_document(value: Any, *, field: str, max_depth: int, max_bytes: int | None = None, what: str = "Data"
                        ) -> int:
    """Validate ``value`` as a storable JSON document and return its serialized size.

    Args:
        field: the request field to name in errors (``data``, ``template``, ``config``).
        max_depth: most nested objects/arrays (the top-level container is level 1).
        max_bytes: largest compact UTF-8 serialization in bytes; ``None`` for no limit.
        what: the noun used in messages ("Context data", "The template", ...).

    Returns the size in bytes of the compact UTF-8 JSON serialization.

    Raises:
        InvalidInput (400): ``nesting_too_deep`` (with ``max_depth``); ``nul_character`` (a NUL in a
            key or string); ``invalid_data`` (a non-string key, NaN/Infinity, a lone surrogate, a
            value JSON cannot hold).
        PayloadTooLarge (413): larger than ``max_bytes`` (with ``max_bytes`` and ``size_bytes``).
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list | tuple):
            if depth > max_depth:
                raise InvalidInput(f"{what} is nested deeper than {max_depth} levels.", code="nesting_too_deep",
                                   field=field, max_depth=max_depth)
            if isinstance(node, dict):
                for key, item in node.items():
                    if not isinstance(key, str):
                        raise InvalidInput("Object keys must be strings.", code="invalid_data", field=field)
                    if "\x00" in key:
                        raise InvalidInput(f"{what} must not contain NUL characters.", code="nul_character",
                                           field=field)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str) and "\x00" in node:
            raise InvalidInput(f"{what} must not contain NUL characters.", code="nul_character", field=field)
    try:
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8"))
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise InvalidInput(f"{what} is not valid JSON: {exc}", code="invalid_data", field=field) from exc
    if max_bytes is not None and size > max_bytes:
        raise PayloadTooLarge(f"{what} is {size} bytes serialized; the limit is {max_bytes} bytes.", field=field,
                              max_bytes=max_bytes, size_bytes=size)
    return size


_KEY_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def _json_equal(first: Any, second: Any) -> bool:
    """Whether two JSON values are equal in JSON: ``1``, ``1.0`` and ``true`` differ; members in any order."""
    if type(first) is not type(second) or first != second:
        return False
    # Python's == holds 1 == True inside containers; their canonical serializations do not.
    return not isinstance(first, dict | list) or _KEY_ENCODER.encode(first) == _KEY_ENCODER.encode(second)


class _TooManyOperations(Exception):
    """The patch grew past ``DIFF_MAX_OPERATIONS``: ``json_diff`` replaces the whole document instead."""


class _BoundedDiffBuilder(jsonpatch.DiffBuilder):
    """jsonpatch's diff with a bounded cost (see ``json_diff``).

    ``_compare_lists`` finds an array's changed stretch (between the items both sides share at their
    start and end) and either replaces the array whole or lets jsonpatch match up that stretch only
    (``_differing_runs`` on the slices); ``insert`` counts the operations.
    """

    def __init__(self, src: Any, dst: Any, *, max_items: int, budget: int, max_operations: int) -> None:
        super().__init__(src, dst, jsonpatch.JsonPatch.json_dumper)
        self.max_items = max_items
        self.budget = budget
        self.operations_left = max_operations
        self._stretches: dict[tuple[int, int], tuple[int, int]] = {}

    def insert(self, op):
        self.operations_left -= 1
        if self.operations_left < 0:
            raise _TooManyOperations
        return super().insert(op)

    def _compare_lists(self, path, src, dst):
        shorter = min(len(src), len(dst))
        start = 0
        while start < shorter and _json_equal(src[start], dst[start]):
            start += 1
        end = 0
        while end < shorter - start and _json_equal(src[-1 - end], dst[-1 - end]):
            end += 1
        removed, added = len(src) - start - end, len(dst) - start - end
        if not removed and not added:
            return
        cost = max(removed * added, removed + added)
        if removed + added > self.max_items or cost > self.budget:
            self._item_replaced(path, None, dst, src)
            return
        self.budget -= cost
        self._stretches[id(src), id(dst)] = start, end
        super()._compare_lists(path, src, dst)

    def _differing_runs(self, src, dst):
        start, end = self._stretches.pop((id(src), id(dst)))
        runs = super()._differing_runs(src[start:len(src) - end], dst[start:len(dst) - end])
        return [(i1 + start, i2 + start, j1 + start, j2 + start) for i1, i2, j1, j2 in runs]


def json_diff(
    before: Any,
    after: Any,
    *,
    max_array_items: int = DIFF_ARRAY_MAX_ITEMS,
    match_budget: int = DIFF_MATCH_BUDGET,
    max_operations: int = DIFF_MAX_OPERATIONS,
) -> list[dict[str, Any]]:
    """The RFC 6902 JSON Patch that turns ``before`` into ``after`` (jsonpatch's diff, with a bounded cost).

    Objects are compared key by key and arrays item by item, with ``move`` operations for items that
    moved, exactly as ``jsonpatch.make_patch`` does, except that an array whose changed stretch (the
    items between the ones both sides share at their start and at their end) holds more than
    ``max_array_items`` items, or whose matching would take more than the comparisons left of
    ``match_budget``, becomes one ``replace`` of the whole array; and a patch that would hold more than
    ``max_operations`` operations becomes one ``replace`` of the whole document (path ``""``). The work
    is then linear in the documents' size plus at most ``match_budget`` comparisons and
    ``max_operations`` operations, and applying the patch to ``before`` always gives ``after``.
    Operation values are ``after``'s own objects (not copies): do not change ``after`` while the patch
    is in use.

    Returns a list of operations (``[]`` when the documents are equal in JSON), e.g.
    ``[{"op": "replace", "path": "/goal", "value": "ship"}]``.
    """
    builder = _BoundedDiffBuilder(
        before, after, max_items=max_array_items, budget=match_budget, max_operations=max_operations
    )
    try:
        builder._compare_values((), None, before, after)
    except _TooManyOperations:
        return [{"op": "replace", "path": "", "value": after}]
    return list(builder.execute())
