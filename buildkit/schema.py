"""Validation of agent templates against ``schemas/agent_template.schema.json`` and the catalogs.

``template_errors`` returns every problem keyed by dotted path (``template.tools.2.op``), so the
API answers one 400 error per field and the admin shows each message where it belongs. First the
document must be storable JSON of a sane size (``check_document``: at most ``TEMPLATE_MAX_NESTING``
levels and ``TEMPLATE_MAX_BYTES``, no NUL character, no NaN/Infinity). Beyond the JSON Schema it
checks what the schema cannot know:

- a platform tool's ``op`` names a platform tool of the registry (``platform_ops.get_op``);
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

from syndarix.exceptions import DomainError
from syndarix.jsondoc import check_json_document

from .catalog import InvalidVersion, get_entry, is_reserved, normalize_version
from .embed import EMBED_KEY, MAX_NESTING, REFERENCES_KEY, embed_slug, format_path, iter_embeds
from .overlay import IDENTITIES
from .platform_ops import get_op, platform_ops

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "agent_template.schema.json"

#: Largest template accepted, serialized as compact JSON (bytes).
TEMPLATE_MAX_BYTES = 512 * 1024
#: Deepest nesting of objects and arrays accepted in a template (also the most a resolution may build).
TEMPLATE_MAX_NESTING = MAX_NESTING


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


def check_document(value: Any, *, field: str = "template", what: str = "The template") -> int:
    """Refuse what PostgreSQL cannot store or what is too big to handle, before anything else looks at it.

    ``syndarix.jsondoc.check_json_document`` with the template limits (``TEMPLATE_MAX_NESTING``
    levels, ``TEMPLATE_MAX_BYTES``). Returns the serialized size in bytes.

    Raises:
        InvalidInput: ``nesting_too_deep``, ``nul_character`` or ``invalid_data`` (NaN, Infinity,
            non-string keys) (400, at ``field``).
        PayloadTooLarge: over ``TEMPLATE_MAX_BYTES`` (413).
    """
    return check_json_document(value, field=field, max_depth=TEMPLATE_MAX_NESTING, max_bytes=TEMPLATE_MAX_BYTES,
                               what=what)


def _schema_message(error) -> str:
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra:
            return f"Unknown field(s): {', '.join(extra)}."
    return error.message


def template_errors(template: Any, *, field: str = "template", check_identities: bool = True) -> dict[str, list[str]]:
    """Every problem with ``template``, keyed by dotted path under ``field`` (empty: valid).

    A document PostgreSQL could not store, or one too deep or too large (``check_document``), is
    one problem at ``field``. ``check_identities=False`` skips the duplicate-identity check (for
    effective templates, where a resolved embed may repeat a name the user also wrote).
    """
    if not isinstance(template, dict):
        return {field: ["Must be a JSON object."]}
    try:
        check_document(template, field=field)
    except DomainError as exc:
        return {field: [exc.message]}
    return _content_errors(template, field=field, check_identities=check_identities)


def _content_errors(template: dict[str, Any], *, field: str, check_identities: bool) -> dict[str, list[str]]:
    """``template_errors`` for a template that passed ``check_document``."""
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
        if tool.get("type") == "platform" and isinstance(tool.get("op"), str) and get_op(tool["op"]) is None:
            known = ", ".join(platform_ops())
            add(("tools", index, "op"), f"Unknown platform operation '{tool['op']}'. Known: {known}.")
        schema = tool.get("input_schema")
        if isinstance(schema, dict):
            problem = best_match(_meta_validator().iter_errors(schema))
            if problem is not None:
                add(("tools", index, "input_schema"), f"Not a valid JSON Schema: {problem.message}")

    for parts, node in iter_embeds(template):
        slug = embed_slug(node)
        if not is_reserved(slug):
            continue
        workflow = node[EMBED_KEY][REFERENCES_KEY]["workflow"]  # there, since embed_slug found a slug in it
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
        InvalidInput: too deep, a NUL character, NaN/Infinity or anything else JSON cannot hold
            (400, codes as ``check_document``).
        django.core.exceptions.ValidationError: ``template_errors`` found problems (400, per path).
    """
    if not isinstance(template, dict):
        raise ValidationError({field: ["Must be a JSON object."]})
    check_document(template, field=field)
    errors = _content_errors(template, field=field, check_identities=check_identities)
    if errors:
        raise ValidationError(errors)
