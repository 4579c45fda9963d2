"""Validation of agent templates against ``schemas/agent_template.schema.json`` and the catalogs.

``template_errors`` returns every problem keyed by dotted path (``template.tools.2.op``), so the
API answers one 400 error per field and the admin shows each message where it belongs. Beyond
the JSON Schema it checks what the schema cannot know:

- a platform tool's ``op`` is in ``platform_ops.PLATFORM_OPS``;
- tool ``input_schema`` values are valid JSON Schemas;
- no two entries of ``tools`` / ``skills`` / ``mcps`` share an identity (``overlay.IDENTITIES``);
- an embed of a reserved ``__sx__`` slug names a catalog entry, at an existing version, that may be
  embedded (``__sx__build_kit`` may not).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from syndarix.exceptions import InvalidInput, PayloadTooLarge

from .catalog import InvalidVersion, get_entry, is_reserved, normalize_version
from .embed import EMBED_KEY, REFERENCES_KEY, format_path, iter_embeds
from .overlay import IDENTITIES
from .platform_ops import PLATFORM_OPS

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "agent_template.schema.json"

#: Largest template accepted, serialized as compact JSON (bytes).
TEMPLATE_MAX_BYTES = 512 * 1024
#: Deepest nesting of objects and arrays accepted in a template.
TEMPLATE_MAX_NESTING = 64


@lru_cache(maxsize=1)
def template_schema() -> dict[str, Any]:
    """The template JSON Schema (parsed once; do not change the returned dict)."""
    with SCHEMA_PATH.open(encoding="utf-8") as handle:
        schema = json.load(handle)
    Draft202012Validator.check_schema(schema)
    return schema


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    return Draft202012Validator(template_schema())


@lru_cache(maxsize=1)
def _meta_validator() -> Draft202012Validator:
    """Checks that a value is a JSON Schema; built once (``check_schema`` builds one per call)."""
    return Draft202012Validator(Draft202012Validator.META_SCHEMA)


def nesting_depth(value: Any) -> int:
    """Levels of objects and arrays in ``value`` (a scalar is 1); stops counting past the limit."""
    depth, level = 0, [value]
    while level:
        depth += 1
        nxt: list[Any] = []
        for node in level:
            if isinstance(node, dict):
                nxt.extend(node.values())
            elif isinstance(node, list):
                nxt.extend(node)
        if not nxt:
            return depth
        level = nxt
        if depth > TEMPLATE_MAX_NESTING:
            return depth
    return depth


def _has_nul(value: Any) -> bool:
    """True when a string or key anywhere in ``value`` holds a NUL character (PostgreSQL refuses those)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _schema_message(error) -> str:
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra:
            return f"Unknown field(s): {', '.join(extra)}."
    return error.message


def template_errors(template: Any, *, field: str = "template", check_identities: bool = True) -> dict[str, list[str]]:
    """Every problem with ``template``, keyed by dotted path under ``field`` (empty: valid).

    ``check_identities=False`` skips the duplicate-identity check (for effective templates, where
    a resolved embed may repeat a name the user also wrote).
    """
    if not isinstance(template, dict):
        return {field: ["Must be a JSON object."]}
    if nesting_depth(template) > TEMPLATE_MAX_NESTING:
        return {field: [f"Nested deeper than {TEMPLATE_MAX_NESTING} levels."]}
    errors: dict[str, list[str]] = {}

    def add(parts: tuple, message: str) -> None:
        errors.setdefault(format_path(field, parts), []).append(message)

    for error in sorted(_validator().iter_errors(template), key=lambda e: [str(p) for p in e.absolute_path]):
        add(tuple(error.absolute_path), _schema_message(error))

    for key, identity in IDENTITIES.items():
        entries = template.get(key)
        if not check_identities or not isinstance(entries, list):
            continue
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            ident = identity(entry)
            if ident is None:
                continue
            if ident in seen:
                add((key, index), f"Duplicate of {key}.{seen[ident]} ({ident}).")
            else:
                seen[ident] = index

    for index, tool in enumerate(template.get("tools") or []):
        if not isinstance(tool, dict) or EMBED_KEY in tool:
            continue
        if tool.get("type") == "platform" and isinstance(tool.get("op"), str) and tool["op"] not in PLATFORM_OPS:
            add(("tools", index, "op"), f"Unknown platform operation '{tool['op']}'. Known: {', '.join(PLATFORM_OPS)}.")
        schema = tool.get("input_schema")
        if isinstance(schema, dict):
            problem = best_match(_meta_validator().iter_errors(schema))
            if problem is not None:
                add(("tools", index, "input_schema"), f"Not a valid JSON Schema: {problem.message}")

    for parts, node in iter_embeds(template):
        refs = node.get(EMBED_KEY, {}).get(REFERENCES_KEY) if isinstance(node.get(EMBED_KEY), dict) else None
        workflow = refs.get("workflow") if isinstance(refs, dict) else None
        slug = workflow.get("slug") if isinstance(workflow, dict) else None
        if not is_reserved(slug):
            continue
        entry = get_entry(slug)
        if entry is None:
            add(parts, f"No platform workflow '{slug}'.")
        elif not entry.embeddable:
            add(parts, f"'{slug}' can be fetched but not embedded in a template.")
        elif workflow.get("version") is not None:
            try:
                version = normalize_version(workflow["version"])
            except InvalidVersion:
                continue  # the schema already reported it
            if version not in entry.versions:
                add(parts, f"'{slug}' has no version {version}.")
    return errors


def validate_template(template: Any, *, field: str = "template", check_identities: bool = True) -> None:
    """Raise when ``template`` is not a valid agent template.

    Raises:
        PayloadTooLarge: the serialized template exceeds ``TEMPLATE_MAX_BYTES`` (413).
        InvalidInput: it cannot be serialized as JSON (400).
        django.core.exceptions.ValidationError: ``template_errors`` found problems (400, per path).
    """
    if nesting_depth(template) > TEMPLATE_MAX_NESTING:
        raise ValidationError({field: [f"Nested deeper than {TEMPLATE_MAX_NESTING} levels."]})
    if _has_nul(template):
        raise ValidationError({field: ["Text may not contain NUL characters."]})
    try:
        size = len(json.dumps(template, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInput("The template is not JSON.", field=field) from exc
    if size > TEMPLATE_MAX_BYTES:
        raise PayloadTooLarge(
            f"The template is {size} bytes; the limit is {TEMPLATE_MAX_BYTES}.", field=field,
            limit=TEMPLATE_MAX_BYTES, size=size,
        )
    errors = template_errors(template, field=field, check_identities=check_identities)
    if errors:
        raise ValidationError(errors)
