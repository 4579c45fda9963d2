"""The platform tool registry as a tool provider of the MCP server (``aiservices.mcp.providers``).

Every platform tool of ``tool_registry`` is listed with its own declaration (``Tool.mcp_definition``) and
runs through ``call_tool`` with the caller's authority (``ToolCall(user=...)``): the projects they can
see, writes only where their role allows. Each call also counts against the per-user rate limit of the
REST endpoint that does the same (the tool's ``route``), on that endpoint's own counter. Client tools
(``request_input``, ``request_connection``) are left out: a person answers them inside an agent's run,
they do nothing when called from outside one.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from syndarix.api.ratelimit import RateLimited, check_user_rate, route_rate_limit

from .registry import KIND_PLATFORM, ToolCall, ToolRegistry, ToolResult, call_tool


class PlatformToolProvider:
    """Serves the platform tools of ``registry`` to MCP clients (registered by ``AgentsConfig.ready``)."""

    def __init__(self, registry: ToolRegistry) -> None:
        self.registry = registry

    def list_tools(self, *, user) -> list[dict[str, Any]]:
        """Every platform tool's MCP ``Tool`` (whether a call may write is decided per project, when it runs)."""
        return [tool.mcp_definition() for tool in self.registry.platform_tools()]

    def call_tool(self, *, user, name: str, arguments: dict[str, Any], request_id: str) -> dict[str, Any] | None:
        """The ``CallToolResult`` of the platform tool ``name`` run for ``user``, or ``None`` when there is none.

        Over the REST endpoint's rate limit, an ``isError`` result with code ``rate_limited`` and
        ``retry_after`` (seconds).
        """
        tool = self.registry.get(name)
        if tool is None or tool.kind != KIND_PLATFORM:
            return None
        limit = _rate_limit(tool.route) if tool.route else None
        if limit is not None:
            group, rate = limit
            try:
                check_user_rate(user, group=group, rate=rate)
            except RateLimited as exc:
                return ToolResult.error("rate_limited", f"Rate limit exceeded ({rate} per user); retry in "
                                        f"{exc.retry_after} s.", retry_after=exc.retry_after).as_mcp()
        return call_tool(tool, ToolCall(user=user), arguments).as_mcp()


@lru_cache(maxsize=256)
def _rate_limit(route: tuple[str, str]) -> tuple[str, str] | None:
    return route_rate_limit(*route)
