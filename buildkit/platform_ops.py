"""The platform ops catalog: the platform tools of the one tool registry (``agents.runtime.tools``), as the build kit
lists and offers them.

A template names a platform tool as ``{"type": "platform", "op": "query_agents"}``. Each op is a
``agents.runtime.tools.registry.Tool`` declared once, with its description, input and output schemas, MCP
hints, the API route that does the same, and whether the playground build kit offers it
(``in_build_kit``). Read-only ops default to permission ``allow``, the others to ``ask`` (a person
approves each call); a tool entry's own ``permission`` overrides the default. The build kit adds
its own two ops to the registry (``buildkit.tools``); nothing here is a second list.
"""

from __future__ import annotations

from typing import Any

from agents.runtime.tools.registry import KIND_PLATFORM, PERMISSIONS, Tool, tool_registry

__all__ = ["PERMISSIONS", "get_op", "op_as_dict", "platform_ops"]


def platform_ops() -> dict[str, Tool]:
    """op name → platform tool, in registration order."""
    return {tool.name: tool for tool in tool_registry.platform_tools()}


def get_op(op: str) -> Tool | None:
    """The platform tool named ``op``, or ``None``."""
    tool = tool_registry.get(op)
    return tool if tool is not None and tool.kind == KIND_PLATFORM else None


def op_as_dict(tool: Tool) -> dict[str, Any]:
    """The JSON representation ``GET /api/v1/platform-ops`` serves."""
    method, route = tool.route or (None, None)
    return {
        "op": tool.name,
        "title": tool.title,
        "description": tool.description,
        "input_schema": tool.input_schema,
        "output_schema": tool.output_schema,
        "read_only": tool.read_only,
        "annotations": tool.annotations,
        "permission": tool.default_permission,
        "method": method,
        "route": route,
        "in_build_kit": tool.in_build_kit,
    }
