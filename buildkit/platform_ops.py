"""The platform operations an authoring assistant may call on Syndarix, each declared once.

A template names one as a tool: ``{"type": "platform", "op": "query_agents"}``. Each operation
maps to one route of this API (``method`` + ``route``, with ``{placeholders}`` filled from the
input of the same name), so it does exactly what that endpoint does, with the caller's
permissions. ``read_only`` operations default to permission ``allow``; writes default to ``ask``
(a person approves each call). A tool entry's own ``permission`` overrides the default.

The catalog is validated when this module loads (``validate_ops``): unique, well-formed op
names, valid input JSON Schemas, known methods, and every route placeholder a required input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

PERMISSIONS = ("allow", "ask", "deny")
_OP_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_PLACEHOLDER_RE = re.compile(r"{([a-z_]+)}")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})

_UUID = {"type": "string", "format": "uuid"}


@dataclass(frozen=True)
class PlatformOp:
    """One operation: the model-visible ``op`` name, what it does, its input and its route.

    Attributes:
        op: the tool name a template uses (``{"type": "platform", "op": ...}``).
        description: what the operation does, written for the assistant.
        input_schema: JSON Schema (draft 2020-12) of the call's arguments.
        read_only: True when it changes nothing.
        method, route: the API route the call maps to (``{name}`` placeholders come from the input).
        in_build_kit: whether the playground build kit offers it.
    """

    op: str
    description: str
    input_schema: dict[str, Any] = field(repr=False)
    read_only: bool
    method: str
    route: str
    in_build_kit: bool = True

    @property
    def default_permission(self) -> str:
        """``allow`` for reads, ``ask`` for writes."""
        return "allow" if self.read_only else "ask"

    @property
    def route_params(self) -> list[str]:
        """The route's ``{placeholder}`` names, in order."""
        return _PLACEHOLDER_RE.findall(self.route)

    def as_dict(self) -> dict[str, Any]:
        """The JSON representation served by the API."""
        return {
            "op": self.op,
            "description": self.description,
            "input_schema": self.input_schema,
            "read_only": self.read_only,
            "permission": self.default_permission,
            "method": self.method,
            "route": self.route,
            "in_build_kit": self.in_build_kit,
        }


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


_OPS = (
    PlatformOp(
        op="find_capabilities",
        description=(
            "Find the agent types and agent classes that fit plain-language use cases: active agent types (with the "
            "class behind each) and registered agent classes no agent type uses yet (kind agent_class). Returns, "
            "per use case, the best matches with their slug, description and capabilities."
        ),
        input_schema=_object(
            {
                "use_cases": {
                    "type": "array", "minItems": 1, "maxItems": 20,
                    "items": {"type": "string", "minLength": 1, "maxLength": 500},
                },
                "limit": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
            },
            ["use_cases"],
        ),
        read_only=True,
        method="POST",
        route="/api/v1/capabilities/find",
    ),
    PlatformOp(
        op="query_agents",
        description="List a project's agents, newest first, filtered by status, agent type or name.",
        input_schema=_object(
            {
                "project_id": _UUID,
                "status": {
                    "type": "array",
                    "items": {"enum": ["idle", "working", "waiting", "paused", "terminated"]},
                },
                "agent_type": {"type": "string", "description": "Agent type id or slug."},
                "q": {"type": "string", "description": "Text in the agent's name."},
                "page": {"type": "integer", "minimum": 1},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100},
            },
            ["project_id"],
        ),
        read_only=True,
        method="GET",
        route="/api/v1/projects/{project_id}/agents",
    ),
    PlatformOp(
        op="read_context",
        description="Read a project's shared context: its current data, or the data at a given version.",
        input_schema=_object(
            {"project_id": _UUID, "context_id": _UUID, "version": {"type": "integer", "minimum": 1}},
            ["project_id", "context_id"],
        ),
        read_only=True,
        method="GET",
        route="/api/v1/projects/{project_id}/contexts/{context_id}",
    ),
    PlatformOp(
        op="write_context",
        description=(
            "Write a new version of a project's shared context, replacing its data or merging a JSON "
            "merge patch into it. Needs approval."
        ),
        input_schema=_object(
            {
                "project_id": _UUID,
                "context_id": _UUID,
                "data": {"type": "object"},
                "change_description": {"type": "string", "maxLength": 2000},
                "expected_version": {"type": "integer", "minimum": 1},
                "mode": {"enum": ["replace", "merge"], "default": "replace"},
            },
            ["project_id", "context_id", "data"],
        ),
        read_only=False,
        method="POST",
        route="/api/v1/projects/{project_id}/contexts/{context_id}/write",
    ),
    PlatformOp(
        op="spawn_agent",
        description="Spawn an idle agent of an agent type into a project. Needs approval.",
        input_schema=_object(
            {
                "project_id": _UUID,
                "agent_type_id": _UUID,
                "name": {"type": "string", "minLength": 1, "maxLength": 200},
                "config": {"type": "object"},
                "current_task": {"type": "string"},
            },
            ["project_id", "agent_type_id", "name"],
        ),
        read_only=False,
        method="POST",
        route="/api/v1/projects/{project_id}/agents",
    ),
    PlatformOp(
        op="commit_revision",
        description=(
            "Commit a template (parameters.agent) as the next revision of an agent type. The build kit is "
            "never part of it. Needs approval."
        ),
        input_schema=_object(
            {
                "agent_type_id": _UUID,
                "template": {"type": "object"},
                "message": {"type": "string", "maxLength": 2000},
            },
            ["agent_type_id", "template"],
        ),
        read_only=False,
        method="POST",
        route="/api/v1/agent-types/{agent_type_id}/revisions",
    ),
)


def validate_ops(ops) -> dict[str, PlatformOp]:
    """Check the catalog and index it by ``op``.

    Raises:
        ImproperlyConfigured: a repeated or malformed op name, an empty description, an invalid
            input JSON Schema (or one that is not an object schema), an unknown method, or a route
            placeholder that is not a required input.
    """
    index: dict[str, PlatformOp] = {}
    for op in ops:
        where = f"Platform op '{op.op}'"
        if not _OP_RE.match(op.op):
            raise ImproperlyConfigured(f"{where}: the name must match {_OP_RE.pattern}.")
        if op.op in index:
            raise ImproperlyConfigured(f"{where} is declared twice.")
        if not op.description.strip():
            raise ImproperlyConfigured(f"{where} has no description.")
        if op.method not in _METHODS:
            raise ImproperlyConfigured(f"{where}: unknown method {op.method}.")
        if not op.route.startswith("/api/v1/"):
            raise ImproperlyConfigured(f"{where}: the route must be an /api/v1/ path.")
        try:
            Draft202012Validator.check_schema(op.input_schema)
        except SchemaError as exc:
            raise ImproperlyConfigured(f"{where}: invalid input schema: {exc.message}") from exc
        if op.input_schema.get("type") != "object":
            raise ImproperlyConfigured(f"{where}: the input schema must describe an object.")
        missing = [p for p in op.route_params if p not in op.input_schema.get("required", [])]
        if missing:
            raise ImproperlyConfigured(f"{where}: route placeholders {missing} are not required inputs.")
        index[op.op] = op
    return index


#: op name -> operation, in declaration order (the build kit lists them in this order).
PLATFORM_OPS: dict[str, PlatformOp] = validate_ops(_OPS)


def get_op(op: str) -> PlatformOp | None:
    """The operation named ``op``, or ``None``."""
    return PLATFORM_OPS.get(op)
