"""The MCP server with the official MCP Python SDK's client (``streamable_http_client`` + ``ClientSession``) against
a live server: what any standard MCP client does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx2
import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from mcp import Client
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from agents.choices import AgentStatus
from agents.models import AgentInstance, AgentTransition
from agents.runtime.tools.registry import tool_registry
from aiservices.tools import registry as ai_registry
from projects.choices import WorkspaceRole
from tests import factories

from .conftest import REFINE

pytestmark = pytest.mark.django_db(transaction=True)


def run(url: str, token: str | None, scenario: Callable[[ClientSession], Awaitable[Any]],
        *, initialize: bool = True, session_ids: list[str] | None = None) -> tuple[Any, list[str]]:
    """Connect the SDK's client to ``url`` with ``token`` and run ``scenario(session)``; returns its result and
    the ``Mcp-Session-Id`` headers the server sent (also appended to ``session_ids`` as they come)."""
    session_ids = [] if session_ids is None else session_ids

    async def record(response: httpx2.Response) -> None:
        if "mcp-session-id" in response.headers:
            session_ids.append(response.headers["mcp-session-id"])

    async def main() -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30, event_hooks={"response": [record]}) as http,
            streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            if initialize:
                await session.initialize()
            return await scenario(session)

    return anyio.run(main), session_ids


def test_initialize(live_server, user):
    async def scenario(session: ClientSession):
        return session.initialize_result

    result, session_ids = run(live_server.url, factories.token_for(user), scenario)
    assert result.protocol_version == "2025-11-25"
    assert result.server_info.name == "syndarix"
    assert result.capabilities.tools is not None
    assert len(session_ids) == 1


def test_list_tools_has_every_platform_op_and_ai_tool_with_schemas(live_server, user, agenta):
    user.user_permissions.add(Permission.objects.get(codename="edit_workflows"))

    async def scenario(session: ClientSession):
        return (await session.list_tools()).tools

    tools, _ = run(live_server.url, factories.token_for(user), scenario)
    by_name = {tool.name: tool for tool in tools}
    assert set(by_name) == {tool.name for tool in tool_registry.platform_tools()} | set(ai_registry.names())
    ops = {"query_agents", "pause_agent", "resume_agent", "terminate_agent", "write_context", "commit_revision"}
    assert ops | {REFINE} <= by_name.keys()
    for tool in tools:
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema is not None
        assert tool.annotations.read_only_hint is not None
        assert tool.annotations.destructive_hint is not None
        assert tool.annotations.idempotent_hint is not None
    assert by_name["terminate_agent"].annotations.destructive_hint is True
    assert by_name["commit_revision"].annotations.destructive_hint is True
    assert by_name["commit_revision"].annotations.read_only_hint is False
    assert by_name["query_agents"].annotations.read_only_hint is True


def test_call_a_read_op(live_server, user, agent, project):
    async def scenario(session: ClientSession):
        return await session.call_tool("query_agents", {"project_id": str(project.pk), "status": ["idle"]})

    result, _ = run(live_server.url, factories.token_for(user), scenario)
    assert result.is_error is False  # and the SDK validated structuredContent against the outputSchema
    assert [row["name"] for row in result.structured_content["agents"]] == [agent.name]


def test_call_a_write_op_really_pauses_the_agent(live_server, user, agent):
    async def scenario(session: ClientSession):
        return await session.call_tool("pause_agent", {"agent_id": str(agent.pk), "reason": "from an MCP client"})

    result, _ = run(live_server.url, factories.token_for(user), scenario)
    assert result.is_error is False
    assert result.structured_content["status"] == "paused"
    assert AgentInstance.objects.get(pk=agent.pk).status == AgentStatus.PAUSED
    ledger = AgentTransition.objects.filter(agent=agent).latest("created_at")
    assert (ledger.to_status, ledger.actor_id, ledger.reason) == (AgentStatus.PAUSED, user.pk, "from an MCP client")


def test_invalid_arguments_are_is_error(live_server, user):
    async def scenario(session: ClientSession):
        return await session.call_tool("pause_agent", {"agent_id": "not-a-uuid", "extra": 1})

    result, _ = run(live_server.url, factories.token_for(user), scenario)
    assert result.is_error is True
    text = result.content[0].text
    assert "invalid_arguments" in text and "arguments" in text and "extra" in text


def test_no_token_is_401(live_server, db):
    async def scenario(session: ClientSession):
        with pytest.raises(MCPError, match="Unauthorized") as raised:
            await session.initialize()
        return raised.value

    error, session_ids = run(live_server.url, None, scenario, initialize=False)
    assert "Bearer" in error.error.message and session_ids == []
    response = httpx2.post(f"{live_server.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                           headers={"Accept": "application/json, text/event-stream"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_viewers_write_is_is_error_with_a_permission_message(live_server, workspace, agent):
    viewer = factories.MembershipFactory(workspace=workspace, role=WorkspaceRole.VIEWER).user

    async def scenario(session: ClientSession):
        read = await session.call_tool("query_agents", {"project_id": str(agent.project_id)})
        write = await session.call_tool("pause_agent", {"agent_id": str(agent.pk)})
        return read, write

    (read, write), _ = run(live_server.url, factories.token_for(viewer), scenario)
    assert read.is_error is False
    assert write.is_error is True
    assert "permission_denied" in write.content[0].text and "read-only" in write.content[0].text
    assert AgentInstance.objects.get(pk=agent.pk).status == AgentStatus.IDLE


def test_an_unknown_session_id(live_server, user):
    session_ids: list[str] = []

    async def scenario(session: ClientSession):
        await session.send_ping()
        cache.delete(f"mcp:session:{session_ids[0]}")  # as when it expires
        with pytest.raises(MCPError, match="unknown or expired session"):
            await session.list_tools()
        return True

    assert run(live_server.url, factories.token_for(user), scenario, session_ids=session_ids)[0] is True


def test_unknown_tool_is_a_jsonrpc_error(live_server, user):
    async def scenario(session: ClientSession):
        with pytest.raises(MCPError, match="Unknown tool: no_such_tool") as raised:
            await session.call_tool("no_such_tool", {})
        return raised.value.error.code

    code, _ = run(live_server.url, factories.token_for(user), scenario)
    assert code == -32602


def test_the_sdks_default_client_falls_back_from_discovery_to_initialize(live_server, user, agent):
    """``mcp.Client`` (mode ``auto``) first probes ``server/discover`` (protocol 2026-07-28), which this server
    does not speak; it must fall back to the initialize handshake and work."""

    token = factories.token_for(user)

    async def main() -> Any:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
            Client(streamable_http_client(f"{live_server.url}/mcp", http_client=http)) as client,
        ):
            assert client.protocol_version == "2025-11-25"
            return await client.call_tool("terminate_agent", {"agent_id": str(agent.pk), "reason": "done"})

    result = anyio.run(main)
    assert result.is_error is False and result.structured_content["status"] == "terminated"
    assert AgentInstance.objects.get(pk=agent.pk).status == AgentStatus.TERMINATED
