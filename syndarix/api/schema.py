"""OpenAPI building blocks shared by every endpoint: the error envelope and its responses.

``error_responses(400, 404, ...)`` gives the ``responses`` entries for ``extend_schema``, each
pointing at the one ``ErrorEnvelope`` component, so the schema documents every error the way the
exception handler (``syndarix.api.exceptions``) produces it. ``SyndarixAutoSchema`` (the
``DEFAULT_SCHEMA_CLASS``) adds, in this one place, the errors any operation can answer because of how
it is built — 401, 400 for input, 404 for path ids and pages, 413 for bodies, 429 for rate limits — so a
view documents only its own. ``add_rate_limit_headers`` and ``add_outage_responses`` are drf-spectacular
post-processing hooks that document ``Retry-After`` and ``X-RateLimit-*`` on every 429, and the 503 of a
lost dependency on every operation.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """One problem: a machine-readable code, a sentence, and the request field at fault (or null).

    Some codes add keys: ``invalid_transition`` carries ``current_status``, ``requested_status``
    and ``allowed_transitions``; ``concurrency_limit`` carries ``limit`` and ``current``;
    ``service_unavailable`` for a lost dependency carries ``dependency`` (``database``, ``cache``).
    """

    code = serializers.CharField(help_text="Machine-readable error code, e.g. `invalid_transition`.")
    message = serializers.CharField(help_text="A sentence for people.")
    field = serializers.CharField(allow_null=True, help_text="Request field at fault (dotted path), or null.")


class ErrorEnvelopeSerializer(serializers.Serializer):
    """The body of every error response: ``{"success": false, "errors": [...]}``."""

    success = serializers.BooleanField(default=False)
    errors = ErrorSerializer(many=True)


class JsonPatchOperationSerializer(serializers.Serializer):
    """One RFC 6902 JSON Patch operation: ``{"op", "path", "value"?, "from"?}``."""

    op = serializers.ChoiceField(choices=["add", "remove", "replace", "move", "copy", "test"])
    path = serializers.CharField(help_text="JSON Pointer (RFC 6901).")
    value = serializers.JSONField(required=False)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = serializers.CharField(required=False, help_text="Source pointer of move/copy.")
        return fields


class MessageSerializer(serializers.Serializer):
    """A confirmation: ``{"success": true, "message": "..."}``."""

    success = serializers.BooleanField(default=True)
    message = serializers.CharField()


ERROR_DESCRIPTIONS = {
    400: "Validation error: one entry per problem, `field` names the request field (dotted path).",
    401: "Authentication credentials were not provided or are invalid (`WWW-Authenticate: Token`).",
    403: "Visible but not allowed: a read-only role, or a missing staff permission.",
    404: "Not found, or outside the caller's reach (never 403, so ids cannot be probed).",
    409: "Conflict with the current state (e.g. `invalid_transition`, `already_terminated`).",
    413: "`payload_too_large`: the request data exceeds a configured size limit.",
    429: "Rate limit exceeded (`rate_limited`); retry after `Retry-After` seconds.",
    503: "The feature is switched off by configuration (`agents_disabled`).",
}


def error_responses(
    *statuses: int, defaults: dict[int, str] | None = None, **descriptions: str
) -> dict[int, OpenApiResponse]:
    """``extend_schema(responses=...)`` entries for the given error statuses, all in the error envelope.

    Descriptions come from ``descriptions`` (keyed ``e409="..."``), then ``defaults`` (a module's own
    texts, keyed by status), then ``ERROR_DESCRIPTIONS``.
    """
    texts = {**ERROR_DESCRIPTIONS, **(defaults or {})}
    return {
        status: OpenApiResponse(ErrorEnvelopeSerializer, description=descriptions.get(f"e{status}", texts[status]))
        for status in statuses
    }


#: Text without NUL characters: DRF refuses them (400 ``null_characters_not_allowed``), PostgreSQL cannot store them.
NO_NUL_PATTERN = "^[^\\u0000]*$"


class SyndarixAutoSchema(AutoSchema):
    """drf-spectacular's ``AutoSchema`` that documents the errors implied by an operation's shape.

    Added to every operation, unless its view documents that status itself (with its own text):

    - 401: any request may carry a missing, malformed or unknown token;
    - 400: operations with query parameters or a request body (validation errors);
    - 404: operations with path parameters (an unknown or foreign id, or one not in the id's format) and
      paginated lists (a page past the end);
    - 413: operations with a request body (``DATA_UPLOAD_MAX_MEMORY_SIZE``);
    - 429: views with rate limits (``rate_limits`` of ``RateLimitMixin``, or ``rate_limited = True``).

    Free-text query parameters get the pattern ``NO_NUL_PATTERN``.
    """

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        parameters = operation.get("parameters", [])
        for parameter in parameters:
            schema = parameter.get("schema", {})
            if parameter["in"] == "query" and schema.get("type") == "string" and not {"enum", "format"} & set(schema):
                schema.setdefault("pattern", NO_NUL_PATTERN)  # DRF refuses NUL in text (400)
        statuses = {401}
        if "requestBody" in operation:
            statuses |= {400, 413}
        if any(parameter["in"] == "query" for parameter in parameters):
            statuses.add(400)
        if any(parameter["in"] == "path" or parameter["name"] == "page" for parameter in parameters):
            statuses.add(404)
        if getattr(self.view, "rate_limits", None) or getattr(self.view, "rate_limited", False):
            statuses.add(429)
        responses = operation.setdefault("responses", {})
        for status in sorted(statuses):
            if str(status) not in responses:
                error = OpenApiResponse(ErrorEnvelopeSerializer, description=ERROR_DESCRIPTIONS[status])
                responses[str(status)] = self._get_response_for_code(error, str(status))
        operation["responses"] = dict(sorted(responses.items()))
        return operation


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "Client-chosen key (at most 200 characters). Repeating a key already used on this agent (or, for "
        "spawn, in this project) returns the original result instead of acting twice."
    ),
)


def add_rate_limit_headers(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """Post-processing hook: document ``Retry-After`` and ``X-RateLimit-*`` on every 429 response."""
    header = {
        "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds until the limit resets."},
        "X-RateLimit-Limit": {"schema": {"type": "integer"}, "description": "The refusing limit (calls per window)."},
        "X-RateLimit-Remaining": {"schema": {"type": "integer"}, "description": "Calls left in the window: 0."},
    }
    for path in result.get("paths", {}).values():
        for operation in path.values():
            response = operation.get("responses", {}).get("429") if isinstance(operation, dict) else None
            if response is not None:
                response.setdefault("headers", {}).update(header)
    return result


#: What any operation answers when the database or the cache is lost (``syndarix.api.outages``).
OUTAGE_DESCRIPTION = (
    "`service_unavailable`: a dependency (`dependency`: `database` or `cache`) is unreachable or did not answer "
    "in time; retry after `Retry-After` seconds."
)


def add_outage_responses(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """Post-processing hook: every operation can answer 503 when a dependency is lost; document it, in the
    error envelope with ``Retry-After``, beside any 503 the operation already documents."""
    header = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}}
    envelope = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
    for path in result.get("paths", {}).values():
        for operation in path.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            response = operation["responses"].get("503")
            if response is None:
                operation["responses"]["503"] = {"content": envelope, "headers": header,
                                                 "description": OUTAGE_DESCRIPTION}
            else:
                response["description"] = f"{response.get('description', '')} Or {OUTAGE_DESCRIPTION}".strip()
                response.setdefault("headers", {}).update(header)
    return result
