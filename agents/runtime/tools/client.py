"""The client tools: carried out on the person's side, so a run that calls one waits for a person.

- ``request_input``: ask for structured input, as an MCP elicitation (``message`` and a flat
  ``requestedSchema``; MCP spec, "Elicitation"). The person's answer is validated against the
  requested schema and goes back to the model as ``{"action": "accept", "content": {...}}`` (or
  ``decline`` / ``cancel``).
- ``request_connection``: ask the person to connect an integration; the answer is the connection's
  outcome (``CONNECTION_OUTCOME_SCHEMA``).

The build kit's static catalog publishes them as ``__sx__request_input`` and
``__sx__request_connection`` (it derives those documents from here).
"""

from __future__ import annotations

from .registry import KIND_CLIENT, Tool, ToolRegistry

REQUEST_INPUT = "request_input"
REQUEST_CONNECTION = "request_connection"

#: What a person answers to ``request_connection``.
CONNECTION_OUTCOME_SCHEMA = {
    "type": "object",
    "required": ["connected"],
    "properties": {
        "connected": {"type": "boolean", "description": "Whether the connection now exists."},
        "connection": {"type": "string", "maxLength": 200, "description": "The connection's slug."},
        "note": {"type": "string", "maxLength": 2000},
    },
    "additionalProperties": False,
}

CLIENT_TOOLS = (
    Tool(
        name=REQUEST_CONNECTION, title="Request connection", kind=KIND_CLIENT, render={"kind": "connect"},
        description=(
            "Ask the person to connect an integration the agent needs (OAuth or an API key). "
            "Returns once the connection exists or the person declines."
        ),
        input_schema={
            "type": "object",
            "required": ["integration"],
            "properties": {
                "integration": {"type": "string", "description": "The integration to connect, e.g. 'github'."},
                "slug": {"type": "string", "description": "A name for the connection, unique in the project."},
                "mode": {"type": "string", "enum": ["oauth", "api_key"],
                         "description": "How the person authenticates."},
            },
            "additionalProperties": False,
        },
        output_schema=CONNECTION_OUTCOME_SCHEMA,
    ),
    Tool(
        name=REQUEST_INPUT, title="Request input", kind=KIND_CLIENT, render={"kind": "elicitation"},
        description=(
            "Ask the person for input the agent cannot find itself, as a small form (an MCP elicitation: "
            "a message and the requested schema)."
        ),
        input_schema={
            "type": "object",
            "required": ["message", "requestedSchema"],
            "properties": {
                "message": {"type": "string", "description": "What you need and why, in one or two sentences."},
                "requestedSchema": {
                    "type": "object",
                    "description": (
                        "A flat JSON Schema object (MCP elicitation requestedSchema): primitive-typed properties, "
                        "the fields to ask for."
                    ),
                },
            },
            "additionalProperties": False,
        },
    ),
)


def register_client_tools(registry: ToolRegistry) -> None:
    """Add the client tools to ``registry``."""
    for tool in CLIENT_TOOLS:
        registry.register(tool)
