"""OpenAPI pieces shared by the build-kit views: the error envelope for each status."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

ERROR_ENVELOPE = {
    "type": "object",
    "required": ["success", "errors"],
    "properties": {
        "success": {"type": "boolean", "enum": [False]},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["code", "message", "field"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": "string", "nullable": True},
                },
                "additionalProperties": True,
            },
        },
    },
}

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
    """``extend_schema(responses=...)`` entries for the given error statuses, all in the error envelope."""
    return {status: OpenApiResponse(response=ERROR_ENVELOPE, description=_DESCRIPTIONS[status]) for status in statuses}


AGENT_TYPE_ID = OpenApiParameter("agent_type_id", str, OpenApiParameter.PATH, description="Agent type id (UUID).")
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
    description="Repeat a key to get the first request's agent instead of spawning another.",
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
