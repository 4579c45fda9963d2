"""The registry of tools: name → tool instance."""

from __future__ import annotations

from .base import NAMESPACE, Tool


class ToolRegistry:
    """Maps tool names to tool instances, in registration order."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def register(self, tool_cls: type[Tool]) -> type[Tool]:
        """Class decorator: instantiate ``tool_cls`` and register it under its ``name``.

        Raises ``ValueError`` for a name outside ``tools.syndarix.api.`` or one already taken.
        """
        name = tool_cls.name
        if not name.startswith(NAMESPACE + ".") or not name[len(NAMESPACE) + 1:]:
            raise ValueError(f"Tool name '{name}' must look like '{NAMESPACE}.<tool>'.")
        if name in self._tools:
            raise ValueError(f"Tool '{name}' is already registered.")
        self._tools[name] = tool_cls()
        return tool_cls

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def all(self) -> list[Tool]:
        return list(self._tools.values())


registry = ToolRegistry()
