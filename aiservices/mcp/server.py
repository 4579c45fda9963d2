"""The MCP protocol (JSON-RPC 2.0 methods) of the Syndarix MCP server: lifecycle, ping and tools.

Follows the MCP specification 2025-11-25 ("Base Protocol", "Lifecycle", "Server Features › Tools"), and
negotiates 2025-06-18 and 2025-03-26 too (the versions with the Streamable HTTP transport). Messages are
validated, per negotiated version, and results serialized by the official SDK's wire types
(``mcp_types``, the protocol-types half of the ``mcp`` package: ``parse_client_request``,
``serialize_server_result``, the JSON-RPC envelopes); the HTTP side is ``aiservices.mcp.views``.

Capabilities: ``tools`` only (``listChanged: false``: the tools are declared in code and change with a
release). Tools come from the registered providers (``aiservices.mcp.providers``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from typing import Any

import mcp_types as types
from django.conf import settings
from mcp_types.methods import parse_client_notification, parse_client_request, serialize_server_result
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION, is_version_at_least
from pydantic import ValidationError

from .providers import providers
from .sessions import Session, session_create

logger = logging.getLogger(__name__)

#: Versions this server negotiates, oldest first: those of the initialize handshake that have the
#: Streamable HTTP transport (it came with 2025-03-26).
SUPPORTED_PROTOCOL_VERSIONS: tuple[str, ...] = tuple(
    version for version in HANDSHAKE_PROTOCOL_VERSIONS if is_version_at_least(version, "2025-03-26")
)
#: The version offered to a client that asks for one this server does not support (the newest).
LATEST_PROTOCOL_VERSION = LATEST_HANDSHAKE_VERSION
SERVER_INFO = types.Implementation(name="syndarix", title="Syndarix", version="1.0")
INSTRUCTIONS = (
    "Syndarix operates fleets of AI agents. These tools query and steer agents, read and write the shared "
    "contexts and issues of projects, and commit agent templates, with your own permissions: ids outside "
    "your reach read as not found, and a read-only role cannot write. Platform tools that take project_id "
    "need it from you. Results are JSON; errors come back as isError results with a code and a message."
)


class ProtocolError(Exception):
    """A JSON-RPC error answer: ``code`` (``mcp_types`` constants such as ``METHOD_NOT_FOUND``), ``message``,
    optional ``data``."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.error = types.ErrorData(code=code, message=message, data=data)


def negotiate_version(requested: Any) -> str:
    """The version to answer ``initialize`` with: ``requested`` when supported, else the newest supported
    (the client then disconnects if it cannot speak it; MCP spec, "Lifecycle › Version Negotiation")."""
    return requested if requested in SUPPORTED_PROTOCOL_VERSIONS else LATEST_PROTOCOL_VERSION


def initialize(params: dict[str, Any] | None, *, user) -> tuple[dict[str, Any], Session]:
    """Answer ``initialize``: start a session for ``user``.

    Returns the ``InitializeResult`` (wire dict: ``protocolVersion``, ``capabilities``, ``serverInfo``,
    ``instructions``) and the new session. Raises ``ProtocolError`` (``INVALID_PARAMS``) for params that
    are not an ``InitializeRequest``'s.
    """
    version = negotiate_version((params or {}).get("protocolVersion"))
    request = _parse("initialize", version, params)
    session = session_create(
        user=user, protocol_version=version,
        client_info=request.params.client_info.model_dump(by_alias=True, mode="json", exclude_none=True),
    )
    result = types.InitializeResult(
        protocol_version=version,
        capabilities=types.ServerCapabilities(tools=types.ToolsCapability(list_changed=False)),
        server_info=SERVER_INFO,
        instructions=INSTRUCTIONS,
    )
    return _serialize("initialize", version, result), session


def handle_request(method: str, params: dict[str, Any] | None, *, user, session: Session) -> dict[str, Any]:
    """Answer a request of an initialized ``session`` (anything but ``initialize``): the result, a wire dict.

    Raises:
        ProtocolError: ``METHOD_NOT_FOUND`` for a method this server does not offer (or the session's
            version lacks), ``INVALID_PARAMS`` for params the method's schema refuses, an invalid cursor
            or an unknown tool.
    """
    handler = _HANDLERS.get(method)
    if handler is None:
        raise ProtocolError(types.METHOD_NOT_FOUND, f"Method not found: {method}")
    request = _parse(method, session.protocol_version, params)
    return _serialize(method, session.protocol_version, handler(request, user=user))


def handle_notification(method: str, params: dict[str, Any] | None, *, session: Session) -> None:
    """Take a client notification. ``notifications/initialized`` and ``notifications/cancelled`` need no
    action here (every request is answered within its HTTP request); unknown ones are ignored, as
    JSON-RPC asks, and so are malformed ones (a notification gets no answer)."""
    try:
        parse_client_notification(method, session.protocol_version, params)
    except (KeyError, ValidationError):
        logger.info("MCP notification %r ignored (unknown, or invalid for %s)", method, session.protocol_version)


def _ping(request: types.PingRequest, *, user) -> types.EmptyResult:
    return types.EmptyResult()


def _tools_list(request: types.ListToolsRequest, *, user) -> types.ListToolsResult:
    tools = [tool for provider in providers() for tool in provider.list_tools(user=user)]
    offset = _offset(request.params.cursor if request.params else None)
    size = settings.MCP_TOOLS_PAGE_SIZE
    page = tools[offset: offset + size]
    next_cursor = _cursor(offset + size) if offset + size < len(tools) else None
    return types.ListToolsResult(tools=[types.Tool.model_validate(tool) for tool in page], next_cursor=next_cursor)


def _tools_call(request: types.CallToolRequest, *, user) -> types.CallToolResult:
    name, arguments = request.params.name, request.params.arguments or {}
    for provider in providers():
        try:
            result = provider.call_tool(user=user, name=name, arguments=arguments, request_id=uuid.uuid4().hex)
        except Exception:  # a defect in a tool: an isError result the model can report, and the traceback logged
            logger.exception("MCP tool %s failed", name)
            result = {"content": [{"type": "text", "text": "The tool failed unexpectedly."}], "isError": True}
        if result is not None:
            return types.CallToolResult.model_validate(result)
    raise ProtocolError(types.INVALID_PARAMS, f"Unknown tool: {name}")


_HANDLERS = {"ping": _ping, "tools/list": _tools_list, "tools/call": _tools_call}


def _parse(method: str, version: str, params: dict[str, Any] | None) -> Any:
    try:
        return parse_client_request(method, version, params)
    except KeyError:
        raise ProtocolError(types.METHOD_NOT_FOUND, f"Method not found: {method} (protocol {version})") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in exc.errors())
        raise ProtocolError(types.INVALID_PARAMS, f"Invalid params for {method}: {problems}") from None


def _serialize(method: str, version: str, result: types.Result) -> dict[str, Any]:
    return serialize_server_result(method, version, result.model_dump(by_alias=True, mode="json", exclude_none=True))


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(cursor: str | None) -> int:
    """The position a ``tools/list`` cursor names. Raises ``ProtocolError`` (``INVALID_PARAMS``) for a cursor
    this server did not issue."""
    if cursor is None:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(cursor.encode()))["offset"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeError):
        offset = None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ProtocolError(types.INVALID_PARAMS, "Invalid cursor: send the nextCursor of a tools/list answer.")
    return offset
