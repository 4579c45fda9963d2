"""The client tools: carried out on the person's side, so a run that calls one waits for a person.

- ``request_input``: ask for structured input, as an MCP elicitation (``message`` and a flat
  ``requestedSchema``; MCP spec, "Elicitation"). The person's answer is validated against the
  requested schema and goes back to the model as ``{"action": "accept", "content": {...}}`` (or
  ``decline`` / ``cancel``).
- ``request_connection``: ask the person to connect an integration; the answer is the connection's
  outcome (``CONNECTION_OUTCOME_SCHEMA``).

The build kit's static catalog publishes them as ``__sx__request_input`` and
``__sx__request_connection`` (it derives those documents from here).
"""

from __future__ import annotations

import math
from typing import Any

from .registry import KIND_CLIENT, Tool, ToolRegistry

REQUEST_INPUT = "request_input"
REQUEST_CONNECTION = "request_connection"

#: The keywords of a ``requestedSchema`` property, by ``type``: MCP elicitation's primitive schemas (MCP spec
#: 2025-11-25, "Elicitation › Requested Schema": string, number / integer, boolean, enum). Nothing that names a
#: regular expression (``pattern``, ``patternProperties``, format ``regex``) and nothing nested.
_ANNOTATIONS = {"type", "title", "description", "default"}
ELICITATION_PROPERTY_KEYWORDS = {
    "string": _ANNOTATIONS | {"minLength", "maxLength", "format", "enum", "enumNames"},
    "number": _ANNOTATIONS | {"minimum", "maximum"},
    "integer": _ANNOTATIONS | {"minimum", "maximum"},
    "boolean": _ANNOTATIONS,
}
#: The string formats an elicitation may ask for.
ELICITATION_STRING_FORMATS = ("email", "uri", "date", "date-time")
_SCHEMA_KEYWORDS = {"$schema", "type", "title", "description", "properties", "required", "additionalProperties"}


def requested_schema_errors(schema: Any) -> list[str]:
    """Why ``schema`` is not an MCP elicitation ``requestedSchema``; ``[]`` when it is one.

    Accepted: ``{"type": "object", "properties": {...}, "required": [...]}`` (with ``title``, ``description``,
    ``$schema`` and a boolean ``additionalProperties`` optional), each property a flat primitive: ``string``
    (``minLength`` / ``maxLength`` whole numbers, ``format`` one of ``ELICITATION_STRING_FORMATS``, or ``enum`` of
    strings with ``enumNames`` of the same length), ``number`` / ``integer`` (``minimum`` / ``maximum``),
    ``boolean``; each may carry ``title``, ``description`` and a ``default`` of its type. Anything else is refused,
    so no regular expression chosen by a model is ever evaluated when a person answers. The one place this rule
    lives: the agent loop refuses such a ``request_input`` call (``invalid_arguments``, which the model sees), and
    ``run_request_answer`` refuses to check an answer against a stored schema that breaks it.

    Returns one sentence per problem (at most one per property).
    """
    if not isinstance(schema, dict):
        return ["requestedSchema must be a JSON object."]
    errors = [f"requestedSchema may not use '{key}'." for key in sorted(set(schema) - _SCHEMA_KEYWORDS)]
    if schema.get("type") != "object":
        errors.append('requestedSchema must have "type": "object".')
    for key in ("title", "description", "$schema"):
        if key in schema and not isinstance(schema[key], str):
            errors.append(f"requestedSchema's '{key}' must be a string.")
    if "additionalProperties" in schema and type(schema["additionalProperties"]) is not bool:
        errors.append("requestedSchema's 'additionalProperties' must be true or false.")
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return [*errors, "requestedSchema must have 'properties', an object of primitive properties."]
    for name, prop in properties.items():
        problem = _property_problem(prop)
        if problem:
            errors.append(f"Property '{name}': {problem}")
    required = schema.get("required", [])
    if not (isinstance(required, list) and all(isinstance(n, str) and n in properties for n in required)
            and len(set(required)) == len(required)):
        errors.append("'required' must list property names, each once.")
    return errors


def _property_problem(prop: Any) -> str | None:
    if not isinstance(prop, dict):
        return "must be a JSON object."
    kind = prop.get("type")
    if kind not in ELICITATION_PROPERTY_KEYWORDS:
        return "'type' must be string, number, integer or boolean (elicitation asks for flat primitive values)."
    unknown = sorted(set(prop) - ELICITATION_PROPERTY_KEYWORDS[kind])
    if unknown:
        return f"a {kind} property may not use {', '.join(repr(k) for k in unknown)}."
    if any(key in prop and not isinstance(prop[key], str) for key in ("title", "description")):
        return "'title' and 'description' must be strings."
    if kind == "string":
        problem = _string_problem(prop)
    elif kind == "boolean":
        problem = None
    else:
        bounds = [prop[key] for key in ("minimum", "maximum") if key in prop]
        if not all(_is_number(bound) for bound in bounds):
            return "'minimum' and 'maximum' must be numbers."
        problem = "'minimum' is above 'maximum'." if len(bounds) == 2 and bounds[0] > bounds[1] else None
    if problem is None and "default" in prop and not _is_of_type(prop["default"], prop):
        problem = f"'default' must be a {kind}" + (" of 'enum'." if "enum" in prop else ".")
    return problem


def _string_problem(prop: dict) -> str | None:
    lengths = [prop[key] for key in ("minLength", "maxLength") if key in prop]
    if not all(type(n) is int and n >= 0 for n in lengths):
        return "'minLength' and 'maxLength' must be whole numbers of at least 0."
    if len(lengths) == 2 and lengths[0] > lengths[1]:
        return "'minLength' is above 'maxLength'."
    if "format" in prop and prop["format"] not in ELICITATION_STRING_FORMATS:
        return f"'format' must be one of {', '.join(ELICITATION_STRING_FORMATS)}."
    enum = prop.get("enum")
    if "enum" in prop and not (isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum)
                               and len(set(enum)) == len(enum)):
        return "'enum' must list distinct strings."
    names = prop.get("enumNames")
    if "enumNames" in prop and not (isinstance(names, list) and isinstance(enum, list) and len(names) == len(enum)
                                    and all(isinstance(v, str) for v in names)):
        return "'enumNames' must name each 'enum' value with a string."
    return None


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _is_of_type(value: Any, prop: dict) -> bool:
    kind = prop["type"]
    if kind == "string":
        return isinstance(value, str) and ("enum" not in prop or value in prop["enum"])
    if kind == "boolean":
        return type(value) is bool
    return type(value) is int if kind == "integer" else _is_number(value)

#: What a person answers to ``request_connection``.
CONNECTION_OUTCOME_SCHEMA = {
    "type": "object",
    "required": ["connected"],
    "properties": {
        "connected": {"type": "boolean", "description": "Whether the connection now exists."},
        "connection": {"type": "string", "maxLength": 200, "description": "The connection's slug."},
        "note": {"type": "string", "maxLength": 2000},
    },
    "additionalProperties": False,
}

CLIENT_TOOLS = (
    Tool(
        name=REQUEST_CONNECTION, title="Request connection", kind=KIND_CLIENT, render={"kind": "connect"},
        description=(
            "Ask the person to connect an integration the agent needs (OAuth or an API key). "
            "Returns once the connection exists or the person declines."
        ),
        input_schema={
            "type": "object",
            "required": ["integration"],
            "properties": {
                "integration": {"type": "string", "description": "The integration to connect, e.g. 'github'."},
                "slug": {"type": "string", "description": "A name for the connection, unique in the project."},
                "mode": {"type": "string", "enum": ["oauth", "api_key"],
                         "description": "How the person authenticates."},
            },
            "additionalProperties": False,
        },
        output_schema=CONNECTION_OUTCOME_SCHEMA,
    ),
    Tool(
        name=REQUEST_INPUT, title="Request input", kind=KIND_CLIENT, render={"kind": "elicitation"},
        description=(
            "Ask the person for input the agent cannot find itself, as a small form (an MCP elicitation: "
            "a message and the requested schema)."
        ),
        input_schema={
            "type": "object",
            "required": ["message", "requestedSchema"],
            "properties": {
                "message": {"type": "string", "description": "What you need and why, in one or two sentences."},
                "requestedSchema": {
                    "type": "object",
                    "description": (
                        "A flat JSON Schema object (MCP elicitation requestedSchema): primitive-typed properties, "
                        "the fields to ask for."
                    ),
                },
            },
            "additionalProperties": False,
        },
    ),
)


def register_client_tools(registry: ToolRegistry) -> None:
    """Add the client tools to ``registry``."""
    for tool in CLIENT_TOOLS:
        registry.register(tool)
