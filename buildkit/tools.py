"""The build kit's platform tools: ``find_capabilities`` and ``commit_revision``, added to the one tool
registry (``agents.runtime.tools.registry.tool_registry``) when the app is ready, so the agents app never imports
the build kit. Both run through the build kit's services, with the caller's authority (a user commits only
with the permission the API asks for).
"""

from __future__ import annotations

from typing import Any

from agents.runtime.tools.registry import Tool, ToolCall, ToolRegistry
from agents.selectors import agent_type_by_id_or_slug
from syndarix.exceptions import NotFound, PermissionDenied

from .permissions import CanCommitTemplates, can_commit_templates
from .selectors import capabilities_find
from .services import template_commit


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def find_capabilities(call: ToolCall, *, use_cases: list[str], limit: int = 5) -> dict[str, Any]:
    results = capabilities_find(use_cases=use_cases, limit=limit)
    for result in results:
        for match in result["matches"]:
            match["agent_type_id"] = str(match["agent_type_id"]) if match["agent_type_id"] else None
    return {"results": results}


def commit_revision(call: ToolCall, *, agent_type: str, template: dict, message: str = "") -> dict[str, Any]:
    if call.user is not None and not can_commit_templates(call.user):
        raise PermissionDenied(CanCommitTemplates.message)
    found = agent_type_by_id_or_slug(agent_type)
    if found is None:
        raise NotFound("Agent type not found.", field="agent_type")
    revision = template_commit(
        agent_type=found, template=template, message=message or f"Committed by {call.label}", author=call.user
    )
    return {"agent_type": found.slug, "version": revision.version, "revision_id": str(revision.pk)}


BUILDKIT_TOOLS = (
    Tool(
        name="find_capabilities", title="Find capabilities",
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
        output_schema=_object({"results": {"type": "array"}}, ["results"]),
        handler=find_capabilities, read_only=True, idempotent=True, in_build_kit=True,
        route=("POST", "/api/v1/capabilities/find"),
    ),
    Tool(
        name="commit_revision", title="Commit revision",
        description=(
            "Commit a template (parameters.agent) as the next revision of an agent type (id or slug). The build kit "
            "is never part of it."
        ),
        input_schema=_object(
            {
                "agent_type": {"type": "string", "minLength": 1, "description": "Agent type id or slug."},
                "template": {"type": "object"},
                "message": {"type": "string", "maxLength": 2000},
            },
            ["agent_type", "template"],
        ),
        output_schema=_object(
            {"agent_type": {"type": "string"}, "version": {"type": "integer"}, "revision_id": {"type": "string"}},
            ["agent_type", "version", "revision_id"],
        ),
        # Destructive: new spawns of the type use the committed template from now on, replacing the one before.
        handler=commit_revision, destructive=True, in_build_kit=True,
        route=("POST", "/api/v1/agent-types/{agent_type_id}/revisions"),
    ),
)


def register_buildkit_tools(registry: ToolRegistry) -> None:
    """Add the build kit's platform tools to ``registry`` (``BuildKitConfig.ready``)."""
    for tool in BUILDKIT_TOOLS:
        registry.register(tool)
