"""The tool contract: a definition (name, title, description, JSON Schemas) plus a handler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from syndarix.api.ratelimit import RateUsage

from ..exceptions import InvalidArguments
from ..validation import schema_problems

#: Every Syndarix tool's name starts with this (``tools.syndarix.api.refine_prompt``).
NAMESPACE = "tools.syndarix.api"


@dataclass
class ToolResult:
    """The outcome of running a tool.

    ``text`` is ``content[0].text`` on the wire (the summary, or the error message when
    ``is_error``); ``structured`` is ``structuredContent`` (``None`` on error); ``trace_id`` the
    upstream's trace id when known; ``tokens`` and ``provider`` are recorded, not sent;
    ``rate_limit`` is set by the service when limits apply (the API sends it as ``X-RateLimit-*``
    headers, not in the body).
    """

    text: str
    structured: dict[str, Any] | None = None
    is_error: bool = False
    trace_id: str | None = None
    tokens: int | None = None
    provider: str = ""
    error_code: str = ""
    rate_limit: RateUsage | None = None

    def to_wire(self) -> dict[str, Any]:
        """The MCP-shaped ``tools/call`` answer, keys with null values left out (agenta-contracts A5)."""
        body: dict[str, Any] = {"content": [{"type": "text", "text": self.text}]}
        if self.structured is not None:
            body["structuredContent"] = self.structured
        body["isError"] = self.is_error
        if self.trace_id:
            body["meta"] = {"trace_id": self.trace_id}
        return body

    def as_mcp(self) -> dict[str, Any]:
        """The MCP ``CallToolResult``: ``to_wire()`` with the trace id under ``_meta`` (MCP's place for it)."""
        body = self.to_wire()
        meta = body.pop("meta", None)
        if meta:
            body["_meta"] = meta
        return body


class Tool:
    """Base class of a tool. Subclass it in a module of ``aiservices.tools`` and decorate the class
    with ``@registry.register``; that is all it takes to expose a new tool.

    Subclasses set ``name`` (``f"{NAMESPACE}.<tool>"``), ``title``, ``description``,
    ``input_schema`` and ``output_schema`` (JSON Schema, draft 2020-12) and implement ``run``;
    they may extend ``check_arguments`` for rules a schema cannot state. ``read_only``,
    ``destructive``, ``idempotent`` and ``open_world`` are the MCP tool annotations' hints (MCP spec,
    "Tool annotations"; the defaults are the spec's).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    input_schema: ClassVar[dict[str, Any]]
    output_schema: ClassVar[dict[str, Any]]
    read_only: ClassVar[bool] = False
    destructive: ClassVar[bool] = True
    idempotent: ClassVar[bool] = False
    open_world: ClassVar[bool] = True

    def definition(self) -> dict[str, Any]:
        """The ToolDefinition: ``{name, title, description, inputSchema, outputSchema}`` (camelCase, as MCP)."""
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": self.input_schema,
            "outputSchema": self.output_schema,
        }

    def mcp_definition(self) -> dict[str, Any]:
        """The MCP ``Tool``: ``definition()`` plus ``annotations`` (``title`` and the four hints)."""
        annotations = {
            "title": self.title, "readOnlyHint": self.read_only, "destructiveHint": self.destructive,
            "idempotentHint": self.idempotent, "openWorldHint": self.open_world,
        }
        return {**self.definition(), "annotations": annotations}

    def validate_arguments(self, arguments: Any) -> dict[str, Any]:
        """Return the arguments after checking them against ``input_schema`` and ``check_arguments``.

        Raises:
            InvalidArguments: every problem with its field (``arguments.<name>...``).
        """
        problems = schema_problems(self.input_schema, arguments, prefix="arguments")
        if isinstance(arguments, dict):
            problems = sorted(problems + self.check_arguments(arguments, problems), key=lambda p: p[0])
        if problems:
            raise InvalidArguments(problems)
        return arguments

    def check_arguments(self, arguments: dict[str, Any], problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Checks beyond the schema; ``(field, message)`` pairs.

        Runs even when the schema found ``problems`` (so every problem is reported at once): check
        only the arguments that have none.
        """
        return []

    def run(self, arguments: dict[str, Any], *, request_id: str) -> ToolResult:
        """Do the work. Failures that are not the caller's fault come back as ``is_error`` results."""
        raise NotImplementedError
