"""OpenAPI pieces shared by the build-kit views: error texts, path and header parameters, examples."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from syndarix.api.schema import error_responses

_DESCRIPTIONS = {
    400: "Invalid input: one error per field (dotted paths such as `template.tools.2.op`).",
    401: "Not authenticated.",
    403: "Authenticated, but not allowed.",
    404: "Not found, or not visible to the caller.",
    409: "Conflict with the current state.",
    413: "The template is larger than the limit.",
    429: "Rate limited; `Retry-After` gives the seconds to wait.",
    503: "Agents are disabled on this deployment.",
}


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """``extend_schema(responses=...)`` entries for the given error statuses, with the build kit's texts."""
    return error_responses(*statuses, defaults=_DESCRIPTIONS)


AGENT_TYPE_ID = OpenApiParameter("agent_type_id", str, OpenApiParameter.PATH, description="Agent type id (UUID).")

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
