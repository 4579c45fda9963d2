"""AI services API: ``GET ai/services/status`` and ``POST ai/services/tools/call``."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from syndarix.api.ratelimit import RateLimitMixin
from syndarix.api.schema import error_responses

from . import services
from .permissions import CanCallTools
from .serializers import (
    StatusSerializer,
    ToolCallRequestSerializer,
    ToolCallResponseSerializer,
)


class StatusView(RateLimitMixin, APIView):
    """Whether AI services are configured, and the tools the caller may call."""

    permission_classes = [IsAuthenticated]
    rate_limits = {"get": "120/m"}

    @extend_schema(
        operation_id="ai_services_status",
        tags=["ai-services"],
        summary="AI services status and tool definitions",
        description=(
            "`enabled` is false when the upstream is not configured (then `tools` is empty). An "
            "authenticated user without the `aiservices.edit_workflows` permission gets `tools: []`."
        ),
        responses={
            200: StatusSerializer,
            **error_responses(
                401, 429, e401="Not authenticated.", e429="Rate limited (`rate_limited`, `Retry-After`)."
            ),
        },
    )
    def get(self, request: Request) -> Response:
        return Response(StatusSerializer(services.ai_services_status(user=request.user)).data)


class ToolCallView(APIView):
    """Call a tool (the shape of MCP ``tools/call``, not JSON-RPC)."""

    permission_classes = [IsAuthenticated, CanCallTools]

    @extend_schema(
        operation_id="ai_services_tools_call",
        tags=["ai-services"],
        summary="Call an AI tool",
        description=(
            "Runs the named tool. A tool that ran but failed (upstream timeout, unreachable or invalid "
            "answer, a refinement that changed roles or variables) answers 200 with `isError: true` and a "
            "message in `content[0].text`; `meta.trace_id` is always present. Rate limits (sliding windows): "
            "per user and tool at most 10 calls in any 10 seconds and 30 in any 60 seconds; per user, whatever "
            "the tool or outcome, at most 20 in any 10 seconds and 60 in any 60 seconds. Answers carry "
            "`X-RateLimit-Limit` and `X-RateLimit-Remaining` for the window with the fewest calls left."
        ),
        request=ToolCallRequestSerializer,
        responses={
            200: ToolCallResponseSerializer,
            **error_responses(
                400, 401, 403, 429, 503,
                e400=(
                    "`unknown_tool` (field `name`), `invalid_arguments` (one error per problem with its field), or "
                    "`parse_error` (the body is not JSON, or is nested too deeply)."
                ),
                e401="Not authenticated.",
                e403="Missing the 'Can edit agent workflows and templates' permission.",
                e429="Rate limited (`rate_limited`, `Retry-After`: seconds until a call is admitted again).",
                e503="`ai_services_disabled`: the upstream is not configured.",
            ),
        },
        examples=[
            OpenApiExample(
                "Refine a prompt",
                request_only=True,
                value={
                    "name": "tools.syndarix.api.refine_prompt",
                    "arguments": {
                        "prompt_template_json": '{"messages": [{"role": "system", "content": "Answer about '
                        '{{country}}."}, {"role": "user", "content": "{{question}}"}]}',
                        "guidelines": "Be concise.",
                    },
                },
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        payload = ToolCallRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        result = services.tool_call(
            user=request.user,
            name=payload.validated_data["name"],
            arguments=payload.validated_data["arguments"],
            request_id=services.request_id_from(request.headers.get("X-Request-ID")),
            rate_limit=True,
        )
        response = Response(ToolCallResponseSerializer(result.to_wire()).data)
        if result.rate_limit:
            for header, value in result.rate_limit.headers().items():
                response[header] = value
        return response
