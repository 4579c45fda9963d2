"""The MCP server at ``/mcp`` over raw HTTP: the Streamable HTTP transport's edge cases, the lifecycle, tools/list
and tools/call with the caller's permissions, and the protocol's errors (MCP spec 2025-11-25)."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from agents import services
from agents.choices import AgentStatus, RunRequestKind, RunRequestStatus, RunStatus
from agents.models import AgentContextVersion, AgentInstance, AgentRun, AgentRunRequest, AgentTransition
from agents.runtime import services as runtime
from agents.runtime.tools.registry import ToolCall, call_tool, tool_registry
from aiservices.mcp import server
from aiservices.tools import registry as ai_registry
from projects.choices import WorkspaceRole
from tests import factories

from .conftest import REFINE

ACCEPT = "application/json, text/event-stream"
PLATFORM_TOOLS = [tool.name for tool in tool_registry.platform_tools()]


class MCP:
    """A raw MCP client over Django's test client: ``post(message)`` with the session and version headers."""

    def __init__(self, token: str | None) -> None:
        self.http = Client()
        self.token = token
        self.session_id: str | None = None
        self.next_id = 0

    def headers(self, **extra: str) -> dict[str, str]:
        headers = {"Accept": ACCEPT}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
            headers["MCP-Protocol-Version"] = server.LATEST_PROTOCOL_VERSION
        return headers | extra

    def post(self, body, *, raw: bool = False, **headers: str):
        data = body if raw else json.dumps(body)
        return self.http.post("/mcp", data=data, content_type="application/json", headers=self.headers(**headers))

    def request(self, method: str, params: dict | None = None):
        self.next_id += 1
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            message["params"] = params
        return self.post(message)

    def initialize(self, version: str = "2025-11-25"):
        response = self.request("initialize", {
            "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "test", "version": "1"},
        })
        self.session_id = response.headers.get("Mcp-Session-Id")
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return response

    def call(self, name: str, arguments: dict) -> dict:
        response = self.request("tools/call", {"name": name, "arguments": arguments})
        assert response.status_code == 200, response.content
        return response.json()["result"]


def mcp_for(user) -> MCP:
    client = MCP(factories.token_for(user))
    assert client.initialize().status_code == 200
    return client


@pytest.fixture
def owner_mcp(user) -> MCP:
    return mcp_for(user)


def error_of(response) -> dict:
    body = response.json()
    assert body["jsonrpc"] == "2.0" and "result" not in body
    return body["error"]


# --- Lifecycle and sessions -------------------------------------------------------------------------------


def test_initialize_negotiates_the_version_and_announces_tools_and_a_session(user):
    client = MCP(factories.token_for(user))
    response = client.request("initialize", {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"},
    })
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["id"] == 1
    result = body["result"]
    assert result["protocolVersion"] == "2025-11-25"
    assert result["capabilities"] == {"tools": {"listChanged": False}}
    assert result["serverInfo"]["name"] == "syndarix"
    assert "permissions" in result["instructions"]
    assert len(response["Mcp-Session-Id"]) >= 32


@pytest.mark.parametrize("requested, answered", [
    ("2025-06-18", "2025-06-18"), ("2025-03-26", "2025-03-26"),
    ("2024-11-05", "2025-11-25"), ("2099-01-01", "2025-11-25"),
])
def test_version_negotiation_answers_a_supported_version(user, requested, answered):
    response = MCP(factories.token_for(user)).initialize(requested)
    assert response.json()["result"]["protocolVersion"] == answered


def test_initialize_with_invalid_params_is_invalid_params(user):
    response = MCP(factories.token_for(user)).request("initialize", {"protocolVersion": "2025-11-25"})
    assert response.status_code == 200
    error = error_of(response)
    assert error["code"] == -32602
    assert "clientInfo" in error["message"] or "client_info" in error["message"]
    assert "Mcp-Session-Id" not in response


def test_initialized_notification_and_ping(owner_mcp):
    notification = owner_mcp.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert notification.status_code == 202 and notification.content == b""
    pong = owner_mcp.request("ping")
    assert pong.status_code == 200
    assert pong.json() == {"jsonrpc": "2.0", "id": owner_mcp.next_id, "result": {}}


def test_a_request_without_a_session_is_400(user):
    client = MCP(factories.token_for(user))
    response = client.request("tools/list")
    assert response.status_code == 400
    assert "Mcp-Session-Id" in error_of(response)["message"]


def test_an_unknown_session_is_404(owner_mcp):
    owner_mcp.session_id = "no-such-session"
    response = owner_mcp.request("tools/list")
    assert response.status_code == 404
    assert error_of(response)["message"].startswith("Not Found")


def test_another_users_session_is_unknown(owner_mcp):
    other = MCP(factories.token_for(factories.UserFactory()))
    other.session_id = owner_mcp.session_id
    assert other.request("ping").status_code == 404
    assert owner_mcp.request("ping").status_code == 200


def test_delete_ends_the_session(owner_mcp):
    response = owner_mcp.http.delete("/mcp", headers=owner_mcp.headers())
    assert response.status_code == 204
    assert owner_mcp.request("ping").status_code == 404


def test_sessions_expire(owner_mcp, settings):
    from django.core.cache import cache

    cache.delete(f"mcp:session:{owner_mcp.session_id}")  # what the TTL does
    assert owner_mcp.request("ping").status_code == 404


def test_an_unsupported_protocol_version_header_is_400(owner_mcp):
    response = owner_mcp.post({"jsonrpc": "2.0", "id": 9, "method": "ping"}, **{"MCP-Protocol-Version": "1999-01-01"})
    assert response.status_code == 400
    assert "1999-01-01" in error_of(response)["message"]


# --- Authentication --------------------------------------------------------------------------------------


def test_no_token_is_401_with_www_authenticate(db):
    response = MCP(None).request("initialize", {})
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "Bearer" in error_of(response)["message"]


def test_an_unknown_token_is_401_invalid_token(db):
    response = MCP("0" * 40).request("ping")
    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


def test_the_api_token_keyword_works_too(user):
    client = MCP(None)
    response = client.post(
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        Authorization=f"Token {factories.token_for(user)}",
    )
    assert response.status_code == 200


def test_an_inactive_users_token_is_refused(user):
    token = factories.token_for(user)
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert MCP(token).request("ping").status_code == 401


def test_a_session_cookie_alone_does_not_authenticate(user):
    client = MCP(None)
    client.http.force_login(user)
    assert client.request("initialize", {}).status_code == 401


def test_a_foreign_origin_is_403(user):
    client = MCP(factories.token_for(user))
    response = client.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, Origin="http://evil.example")
    assert response.status_code == 403
    same = client.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, Origin="http://testserver")
    assert same.status_code == 400  # past the origin check: no session yet


@pytest.mark.parametrize(("origin", "status"), [
    ("http://127.0.0.1:8401", 400), ("http://localhost:8401", 400), ("https://localhost", 400),
    ("http://evil.example:8401", 403), ("http://localhost.evil.example", 403), ("http://user@localhost", 403),
    ("null", 403), ("file://localhost", 403),
])
def test_an_origin_is_matched_to_allowed_hosts_port_aside(user, settings, origin, status):
    """The origin's host is compared as Django compares the Host header: a port of its own is no reason to refuse
    the page the server itself serves (400 = past the origin check: no session yet)."""
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
    client = MCP(factories.token_for(user))
    response = client.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, Origin=origin)
    assert response.status_code == status, response.content


def test_a_lost_cache_is_a_json_rpc_error_with_retry_after(owner_mcp, monkeypatch):
    import redis.exceptions

    from aiservices.mcp import views

    def lost(*args, **kwargs):
        raise redis.exceptions.ConnectionError("Connection refused.")

    monkeypatch.setattr(views, "session_get", lost)
    response = owner_mcp.request("ping")
    assert (response.status_code, response["Content-Type"], response["Retry-After"]) == (503, "application/json", "5")
    body = response.json()
    assert body["jsonrpc"] == "2.0" and body["id"] is not None
    assert body["error"]["code"] == -32603 and body["error"]["data"] == {"dependency": "cache"}


# --- Transport edge cases ------------------------------------------------------------------------------


def test_malformed_json_is_a_parse_error(owner_mcp):
    response = owner_mcp.post('{"jsonrpc": "2.0", "id": 1, "method": ', raw=True)
    assert response.status_code == 400
    body = response.json()
    assert body["id"] is None and body["error"]["code"] == -32700


@pytest.mark.parametrize("body", ["NaN", '{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": Infinity}}',
                                  "[" * 100_000 + "]" * 100_000])
def test_non_json_constants_and_deep_nesting_are_parse_errors(owner_mcp, body):
    response = owner_mcp.post(body, raw=True)
    assert response.status_code == 400
    assert error_of(response)["code"] == -32700


def test_a_batch_is_an_invalid_request(owner_mcp):
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    response = owner_mcp.post([ping, {**ping, "id": 2}])
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == -32600 and "batch" in error["message"]


@pytest.mark.parametrize("body", [42, "ping", None, True])
def test_a_non_object_body_is_an_invalid_request(owner_mcp, body):
    response = owner_mcp.post(body)
    assert response.status_code == 400
    assert error_of(response)["code"] == -32600


@pytest.mark.parametrize("body", [
    {"id": 1, "method": "ping"},                        # no jsonrpc
    {"jsonrpc": "1.0", "id": 1, "method": "ping"},      # wrong version
    {"jsonrpc": "2.0", "id": 1.5, "method": "ping"},    # id neither integer nor string
    {"jsonrpc": "2.0", "id": 1, "method": 7},           # method not a string
    {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]},  # params not an object
])
def test_an_invalid_envelope_is_an_invalid_request(owner_mcp, body):
    response = owner_mcp.post(body)
    assert response.status_code == 400
    assert error_of(response)["code"] == -32600


@pytest.mark.parametrize("method", ["get", "put", "patch"])
def test_other_http_methods_are_405(owner_mcp, method):
    response = getattr(owner_mcp.http, method)("/mcp", headers=owner_mcp.headers())
    assert response.status_code == 405
    assert response["Allow"] == "POST, DELETE"


def test_a_client_that_does_not_accept_json_is_406(owner_mcp):
    response = owner_mcp.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, Accept="text/event-stream")
    assert response.status_code == 406


def test_a_body_that_is_not_json_is_415(owner_mcp):
    response = owner_mcp.http.post("/mcp", data="ping", content_type="text/plain", headers=owner_mcp.headers())
    assert response.status_code == 415


def test_a_response_from_the_client_is_accepted(owner_mcp):
    response = owner_mcp.post({"jsonrpc": "2.0", "id": 5, "result": {}})
    assert response.status_code == 202


def test_unknown_notifications_are_ignored(owner_mcp):
    assert owner_mcp.post({"jsonrpc": "2.0", "method": "notifications/whatever"}).status_code == 202


# --- Methods ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["resources/list", "prompts/list", "server/discover", "no/such/method"])
def test_an_unknown_or_unoffered_method_is_method_not_found(owner_mcp, method):
    response = owner_mcp.request(method)
    assert response.status_code == 200
    error = error_of(response)
    assert error["code"] == -32601 and method in error["message"]
    assert response.json()["id"] == owner_mcp.next_id


def test_tools_list_has_every_platform_and_ai_tool_with_schemas_and_annotations(user, agenta):
    user.user_permissions.add(Permission.objects.get(codename="edit_workflows"))
    client = mcp_for(user)
    tools = {tool["name"]: tool for tool in client.request("tools/list").json()["result"]["tools"]}
    assert set(tools) == {*PLATFORM_TOOLS, *ai_registry.names()}
    assert REFINE in tools and "request_input" not in tools  # client tools are answered inside runs only
    for tool in tools.values():
        assert tool["inputSchema"]["type"] == "object"
        assert tool["outputSchema"]["type"] == "object"
        assert {"readOnlyHint", "destructiveHint", "idempotentHint"} <= set(tool["annotations"])
    assert {name for name, tool in tools.items() if tool["annotations"]["destructiveHint"]} == {
        "terminate_agent", "commit_revision"}
    assert tools["query_agents"]["annotations"]["readOnlyHint"] is True
    assert tools["pause_agent"]["annotations"]["idempotentHint"] is True
    assert tools[REFINE]["annotations"]["readOnlyHint"] is True
    assert tools["pause_agent"]["inputSchema"] == tool_registry.get("pause_agent").input_schema


def test_ai_tools_are_listed_only_for_who_may_call_them(owner_mcp, agenta):
    names = [tool["name"] for tool in owner_mcp.request("tools/list").json()["result"]["tools"]]
    assert names == PLATFORM_TOOLS


def test_tools_list_pages_with_a_cursor(owner_mcp, settings):
    settings.MCP_TOOLS_PAGE_SIZE = 5
    names, cursor, pages = [], None, 0
    while True:
        result = owner_mcp.request("tools/list", {"cursor": cursor} if cursor else {}).json()["result"]
        pages += 1
        names += [tool["name"] for tool in result["tools"]]
        cursor = result.get("nextCursor")
        if not cursor:
            break
    assert names == PLATFORM_TOOLS
    assert pages == -(-len(PLATFORM_TOOLS) // 5)


@pytest.mark.parametrize("cursor", ["garbage", "eyJvZmZzZXQiOiAtMX0=", 12])
def test_an_invalid_cursor_is_invalid_params(owner_mcp, cursor):
    error = error_of(owner_mcp.request("tools/list", {"cursor": cursor}))
    assert error["code"] == -32602


def test_tools_list_costs_the_same_queries_whatever_the_tools(owner_mcp, settings):
    with CaptureQueriesContext(connection) as one_page:
        owner_mcp.request("tools/list")
    settings.MCP_TOOLS_PAGE_SIZE = 2
    with CaptureQueriesContext(connection) as small_page:
        owner_mcp.request("tools/list")
    assert len(one_page) == len(small_page) == 0  # the token and the session are in the cache


def test_an_unknown_tool_is_a_jsonrpc_error(owner_mcp):
    error = error_of(owner_mcp.request("tools/call", {"name": "no_such_tool", "arguments": {}}))
    assert error["code"] == -32602 and "no_such_tool" in error["message"]


def test_a_client_tool_is_not_callable(owner_mcp):
    error = error_of(owner_mcp.request("tools/call", {"name": "request_input", "arguments": {}}))
    assert error["code"] == -32602


def test_tools_call_without_a_name_is_invalid_params(owner_mcp):
    error = error_of(owner_mcp.request("tools/call", {"arguments": {}}))
    assert error["code"] == -32602 and "name" in error["message"]


# --- Tool calls with the caller's permissions ------------------------------------------------------------


def test_a_read_op_returns_structured_content(owner_mcp, agent, project):
    result = owner_mcp.call("query_agents", {"project_id": str(project.pk)})
    assert result["isError"] is False
    assert [row["id"] for row in result["structuredContent"]["agents"]] == [str(agent.pk)]
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]


def test_a_write_op_pauses_the_agent_and_names_the_user_in_the_ledger(owner_mcp, user, agent):
    result = owner_mcp.call("pause_agent", {"agent_id": str(agent.pk), "reason": "maintenance"})
    assert result["isError"] is False
    assert result["structuredContent"]["status"] == AgentStatus.PAUSED
    agent.refresh_from_db()
    assert agent.status == AgentStatus.PAUSED
    ledger = AgentTransition.objects.filter(agent=agent).latest("created_at")
    assert (ledger.to_status, ledger.actor, ledger.reason) == (AgentStatus.PAUSED, user, "maintenance")


def test_invalid_arguments_are_an_error_result(owner_mcp):
    result = owner_mcp.call("pause_agent", {"agent_id": 7, "colour": "red"})
    assert result["isError"] is True
    error = result["structuredContent"]["error"]
    assert error["code"] == "invalid_arguments"
    assert "arguments.agent_id" in error["message"] and "colour" in error["message"]


def test_a_viewers_write_is_an_error_result_and_changes_nothing(workspace, agent):
    viewer = factories.MembershipFactory(workspace=workspace, role=WorkspaceRole.VIEWER).user
    client = mcp_for(viewer)
    assert client.call("query_agents", {"project_id": str(agent.project_id)})["isError"] is False
    result = client.call("pause_agent", {"agent_id": str(agent.pk)})
    assert result["isError"] is True
    assert result["structuredContent"]["error"] == {
        "code": "permission_denied", "message": "Your role in this workspace is read-only.",
    }
    agent.refresh_from_db()
    assert agent.status == AgentStatus.IDLE


def test_another_tenants_agent_is_not_found(agent):
    stranger = factories.ProjectFactory().owner
    result = mcp_for(stranger).call("terminate_agent", {"agent_id": str(agent.pk)})
    assert result["isError"] is True
    assert result["structuredContent"]["error"]["code"] == "not_found"
    assert AgentInstance.objects.get(pk=agent.pk).status == AgentStatus.IDLE


def test_a_user_must_name_the_project(owner_mcp):
    result = owner_mcp.call("query_agents", {})
    assert result["isError"] is True
    assert result["structuredContent"]["error"]["field"] == "project_id"


def test_an_illegal_transition_is_an_error_result(owner_mcp, project, agent_type):
    terminated = factories.agent_in_status(AgentStatus.TERMINATED, project=project, agent_type=agent_type)
    result = owner_mcp.call("resume_agent", {"agent_id": str(terminated.pk)})
    assert result["isError"] is True
    assert result["structuredContent"]["error"]["code"] in {"invalid_transition", "agent_terminated"}


def test_write_context_records_the_user_as_author(owner_mcp, user, project):
    result = owner_mcp.call("write_context", {"project_id": str(project.pk), "name": "notes", "data": {"a": 1}})
    assert result["isError"] is False
    assert result["structuredContent"]["data"] == {"a": 1}
    versions = AgentContextVersion.objects.filter(context__name="notes", context__project=project)
    assert {version.created_by_user for version in versions} == {user}


def test_commit_revision_needs_the_apis_permission(owner_mcp, agent_type):
    result = owner_mcp.call("commit_revision", {"agent_type": agent_type.slug, "template": {}})
    assert result["isError"] is True
    assert result["structuredContent"]["error"]["code"] == "permission_denied"


def test_tool_calls_count_against_the_rest_endpoints_rate_limit(owner_mcp, api_client, user, agent, ratelimit_clock):
    ratelimit_clock(user)
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {factories.token_for(user)}")
    for _ in range(10):  # DELETE .../agents/{id} allows 10 per minute per user
        other = factories.AgentFactory(project=agent.project)
        assert api_client.delete(f"/api/v1/projects/{agent.project_id}/agents/{other.pk}").status_code == 200
    result = owner_mcp.call("terminate_agent", {"agent_id": str(agent.pk)})
    assert result["isError"] is True
    error = result["structuredContent"]["error"]
    assert error["code"] == "rate_limited" and error["retry_after"] >= 1
    assert AgentInstance.objects.get(pk=agent.pk).status == AgentStatus.IDLE


def test_ai_tool_without_the_permission_is_an_error_result(owner_mcp, agenta):
    result = owner_mcp.call(REFINE, {"prompt_template_json": "{}"})
    assert result["isError"] is True
    assert "permission" in result["content"][0]["text"]


def test_ai_tool_invalid_arguments_are_an_error_result(user, agenta):
    user.user_permissions.add(Permission.objects.get(codename="edit_workflows"))
    result = mcp_for(user).call(REFINE, {"prompt_template_json": "not json"})
    assert result["isError"] is True
    assert result["structuredContent"]["error"]["code"] == "invalid_arguments"
    assert "arguments.prompt_template_json" in result["content"][0]["text"]


def test_initialize_is_rate_limited_per_user(user, ratelimit_clock):
    ratelimit_clock(user)
    client = MCP(factories.token_for(user))
    for _ in range(30):
        assert client.initialize().status_code == 200
    response = client.initialize()
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1


# --- Runs: start, read, decide an approval ---------------------------------------------------------------

TEMPLATE = {"llm": {"model": "test-model"}, "tools": [{"type": "platform", "op": "write_context", "permission": "ask"}]}


@pytest.fixture
def loop_agent(project, user):
    """An agent that runs as the agent loop (its type has a committed template)."""
    agent_type = factories.AgentTypeFactory()
    services.agent_type_commit_revision(agent_type, template=TEMPLATE, author=user)
    return services.agent_spawn(project=project, agent_type=agent_type, name="looper")


def waiting_for_approval(agent) -> tuple[AgentRun, AgentRunRequest]:
    """A run ``waiting`` for an approval of ``write_context``, as the worker leaves it."""
    run, _ = runtime.run_create(agent=agent, instruction="write the notes")
    services.agent_transition(agent, AgentStatus.WORKING)
    services.agent_transition(agent, AgentStatus.WAITING)
    AgentRun.objects.filter(pk=run.pk).update(status=RunStatus.WAITING)
    approval = AgentRunRequest.objects.create(
        run=run, kind=RunRequestKind.APPROVAL, tool_name="write_context", tool_call_id="call_1",
        arguments={"name": "notes", "data": {}},
    )
    return run, approval


def test_start_run_then_read_run(owner_mcp, user, loop_agent):
    started = owner_mcp.call("start_run", {"agent_id": str(loop_agent.pk), "instruction": "write the notes"})
    assert started["isError"] is False, started
    run = AgentRun.objects.get(pk=started["structuredContent"]["id"])
    assert (run.status, run.requested_by, run.instruction) == (RunStatus.QUEUED, user, "write the notes")
    read = owner_mcp.call("read_run", {"run_id": str(run.pk)})
    assert read["structuredContent"] == started["structuredContent"]


def test_start_run_of_an_agent_that_cannot_run_is_an_error_result(owner_mcp, agent):
    result = owner_mcp.call("start_run", {"agent_id": str(agent.pk), "instruction": "go"})
    assert result["isError"] is True
    assert result["structuredContent"]["error"]["code"] == "not_runnable"


def test_decide_an_approval(owner_mcp, user, loop_agent):
    run, approval = waiting_for_approval(loop_agent)
    pending = owner_mcp.call("read_run", {"run_id": str(run.pk)})["structuredContent"]["pending_approvals"]
    assert [entry["id"] for entry in pending] == [str(approval.pk)]
    result = owner_mcp.call("decide_approval", {
        "run_id": str(run.pk), "approval_id": str(approval.pk), "decision": "approve", "reason": "fine",
    })
    assert result["isError"] is False, result
    assert result["structuredContent"]["pending_approvals"] == []
    approval.refresh_from_db()
    assert (approval.status, approval.decided_by, approval.reason) == (RunRequestStatus.APPROVED, user, "fine")
    again = owner_mcp.call("decide_approval", {"run_id": str(run.pk), "approval_id": str(approval.pk),
                                               "decision": "deny"})
    assert again["isError"] is True and again["structuredContent"]["error"]["code"] == "already_decided"


def test_a_viewer_reads_runs_but_does_not_decide(workspace, loop_agent):
    run, approval = waiting_for_approval(loop_agent)
    viewer = mcp_for(factories.MembershipFactory(workspace=workspace, role=WorkspaceRole.VIEWER).user)
    assert viewer.call("read_run", {"run_id": str(run.pk)})["isError"] is False
    result = viewer.call("decide_approval", {"run_id": str(run.pk), "approval_id": str(approval.pk),
                                             "decision": "approve"})
    assert result["structuredContent"]["error"]["code"] == "permission_denied"
    assert AgentRunRequest.objects.get(pk=approval.pk).status == RunRequestStatus.PENDING


def test_agents_do_not_decide_approvals(loop_agent, project, agent_type):
    run, approval = waiting_for_approval(loop_agent)
    other = factories.AgentFactory(project=project, agent_type=agent_type)
    result = call_tool(tool_registry.get("decide_approval"), ToolCall(agent=other),
                       {"run_id": str(run.pk), "approval_id": str(approval.pk), "decision": "approve"})
    assert result.is_error and result.structured["error"]["code"] == "permission_denied"
    assert AgentRunRequest.objects.get(pk=approval.pk).status == RunRequestStatus.PENDING


def test_tool_arguments_the_database_cannot_hold_are_is_error_not_a_500(user, project):
    client = mcp_for(user)
    for name, arguments in (("read_context", {"project_id": str(project.pk), "name": "no\u0000tes"}),
                            ("query_agents", {"project_id": str(project.pk), "limit": 10**30})):
        result = client.call(name, arguments)
        assert result["isError"] is True, result
        assert result["structuredContent"]["error"]["code"] == "invalid_arguments"
