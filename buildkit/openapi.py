"""OpenAPI pieces shared by the build-kit views: error texts, path and header parameters, examples."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from syndarix.api.schema import error_responses

#: The build kit's own texts; every other status uses ``syndarix.api.schema.ERROR_DESCRIPTIONS``.
_DESCRIPTIONS = {
    400: "Invalid input: one error per problem, at its dotted path (`template.tools.2.op`, `config.model`); a "
    "document PostgreSQL cannot store is `nul_character` / `invalid_data`, one nested too deep `nesting_too_deep`.",
    413: "`payload_too_large`: the template (or a playground run's config) is over 512 KiB as compact JSON "
    "(`max_bytes`, `size_bytes`).",
}


def errors(*statuses: int, **descriptions: str) -> dict[int, OpenApiResponse]:
    """``extend_schema(responses=...)`` entries for the given error statuses (``syndarix.api.schema.error_responses``
    with the build kit's texts; ``e409="..."`` overrides one status's text)."""
    return error_responses(*statuses, defaults=_DESCRIPTIONS, **descriptions)


AGENT_TYPE_ID = OpenApiParameter(
    "agent_type_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="Agent type id."
)

TEMPLATE_EXAMPLE = {
    "instructions": {"agents_md": "You triage new issues and label them."},
    "llm": {"model": "gpt-4.1-mini", "provider": "openai"},
    "tools": [{"type": "platform", "op": "query_agents"}],
    "skills": [],
    "sandbox": {"kind": "local", "permissions": {"write_files": "deny"}},
}

COMMIT_EXAMPLE = OpenApiExample(
    "Commit", request_only=True, value={"template": TEMPLATE_EXAMPLE, "message": "Triage agent, first version"}
)
