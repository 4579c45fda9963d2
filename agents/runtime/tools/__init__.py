"""The platform's tools (one registry): see ``agents.runtime.tools.registry``."""

from .registry import KIND_CLIENT, KIND_PLATFORM, Tool, ToolCall, ToolError, ToolResult, call_tool, tool_registry

__all__ = ["KIND_CLIENT", "KIND_PLATFORM", "Tool", "ToolCall", "ToolError", "ToolResult", "call_tool", "tool_registry"]
