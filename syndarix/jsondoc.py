"""Checks for JSON documents we store (context data, agent templates, instance config).

PostgreSQL's ``jsonb`` refuses NUL characters and NaN/Infinity, and a document nested thousands of
levels deep can exhaust Python's stack in later processing. ``check_json_document`` refuses all
three, plus oversize documents, before anything is written — iteratively, so hostile nesting
cannot crash the check itself.
"""

from __future__ import annotations

import json
from typing import Any

from syndarix.exceptions import InvalidInput, PayloadTooLarge


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
