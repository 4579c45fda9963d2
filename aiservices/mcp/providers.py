"""Where the MCP server's tools come from: tool providers that apps register from their ``AppConfig.ready``.

The server knows no app: it asks each registered provider, in registration order, which tools a user may
list and to run a call. The AI services app registers its own tools (``AIToolProvider``); the agents app
registers the platform tool registry (``agents.runtime.tools.mcp``), so this app never imports the agents app
and every tool is declared once, where it lives.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from django_ratelimit.exceptions import Ratelimited

from syndarix.exceptions import DomainError

from ..exceptions import InvalidArguments
from ..permissions import CanCallTools
from ..services import ai_services_enabled, tool_call, user_can_call_tools
from ..tools import ToolResult, registry


class ToolProvider(Protocol):
    """A source of MCP tools.

    Tool definitions and results are MCP wire dicts (camelCase keys): a ``Tool`` is ``{name, title,
    description, inputSchema, outputSchema?, annotations}``; a ``CallToolResult`` is ``{content: [{type:
    "text", text}], structuredContent?, isError}``.
    """

    def list_tools(self, *, user) -> list[dict[str, Any]]:
        """The MCP ``Tool`` definitions ``user`` may call."""

    def call_tool(self, *, user, name: str, arguments: dict[str, Any], request_id: str) -> dict[str, Any] | None:
        """Run the tool ``name`` for ``user`` through the app's services, permission checks and rate limits.

        Returns the ``CallToolResult`` (a refusal, a failure or invalid ``arguments`` is a result with
        ``isError: true`` and a message the model can act on), or ``None`` when the provider has no
        tool of that name. Never raises for the caller's sake.
        """


_providers: dict[type, ToolProvider] = {}
_lock = threading.Lock()


def register_provider(provider: ToolProvider) -> ToolProvider:
    """Add ``provider`` (an app's ``ready`` calls this); one per class, a later one replaces an earlier one."""
    with _lock:
        _providers[type(provider)] = provider
    return provider


def providers() -> list[ToolProvider]:
    """The registered providers, in registration order."""
    return list(_providers.values())


def error_result(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """An ``isError`` ``CallToolResult``: the message as text, and ``{"error": {code, message, ...}}`` structured."""
    return ToolResult(text=message, structured={"error": {"code": code, "message": message, **extra}},
                      is_error=True).as_mcp()


class AIToolProvider:
    """The AI services' tools (``refine_prompt``), listed as the status endpoint lists them: when the upstream
    is configured and the user holds ``aiservices.edit_workflows``. Calls go through ``services.tool_call``
    with the REST API's rate limits and its record of every call."""

    def list_tools(self, *, user) -> list[dict[str, Any]]:
        if not (ai_services_enabled() and user_can_call_tools(user)):
            return []
        return [tool.mcp_definition() for tool in registry.all()]

    def call_tool(self, *, user, name: str, arguments: dict[str, Any], request_id: str) -> dict[str, Any] | None:
        if registry.get(name) is None:
            return None
        if not user_can_call_tools(user):
            return error_result("permission_denied", CanCallTools.message)
        try:
            result = tool_call(user=user, name=name, arguments=arguments, request_id=request_id, rate_limit=True)
        except InvalidArguments as exc:
            return error_result(
                "invalid_arguments", f"Invalid arguments. {exc.message}",
                problems=[{"field": field, "message": message} for field, message in exc.problems],
            )
        except Ratelimited as exc:
            retry_after = getattr(exc, "retry_after", 1)
            return error_result("rate_limited", f"Rate limit exceeded; retry in {retry_after} s.",
                                retry_after=retry_after)
        except DomainError as exc:
            return error_result(exc.code, exc.message)
        return result.as_mcp()
