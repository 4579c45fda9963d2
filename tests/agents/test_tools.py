"""The platform tools: each runs through the services with the calling agent's authority, inside its workspace,
and every refusal is an error result (never an exception, never another tenant's data)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents import services
from agents.choices import AgentStatus
from agents.contexts import services as contexts
from agents.models import AgentContext, AgentTransition
from agents.runtime.tools import ToolCall, call_tool, tool_registry
from projects.models import Issue
from tests import factories

pytestmark = pytest.mark.django_db


def call(tool: str, agent, /, **arguments):
    return call_tool(tool_registry.get(tool), ToolCall(agent=agent), arguments)


@pytest.fixture
def caller(project, agent_type):
    return services.agent_spawn(project=project, agent_type=agent_type, name="caller")


@pytest.fixture
def foreign(db):
    """An agent, a context and an issue of another workspace."""
    agent = factories.AgentFactory()
    context = contexts.context_create(project=agent.project, name="secrets", data={"token": "s3cret"})
    issue = factories.IssueFactory(project=agent.project)
    return agent, context, issue


def test_every_declared_tool_is_in_the_registry():
    names = {t.name for t in tool_registry}
    assert {"query_agents", "list_contexts", "read_context", "write_context", "spawn_agent", "pause_agent",
            "resume_agent", "terminate_agent", "query_issues", "create_issue", "update_issue", "find_capabilities",
            "commit_revision", "start_run", "read_run", "decide_approval", "request_input",
            "request_connection"} == names
    assert [t.name for t in tool_registry.client_tools()] == ["request_connection", "request_input"]


def test_a_tool_definition_has_the_mcp_and_openai_shapes():
    tool = tool_registry.get("terminate_agent")
    assert tool.mcp_definition()["annotations"] == {
        "title": "Terminate agent", "readOnlyHint": False, "destructiveHint": True, "idempotentHint": False,
        "openWorldHint": False}
    function = tool.openai_function()
    assert function["type"] == "function" and function["function"]["parameters"]["required"] == ["agent_id"]


def test_query_agents_defaults_to_the_callers_project(caller, project, agent_type):
    services.agent_spawn(project=project, agent_type=agent_type, name="other")
    result = call("query_agents", caller, status=["idle"])
    assert not result.is_error
    assert sorted(a["name"] for a in result.structured["agents"]) == ["caller", "other"]


def test_write_then_read_a_context_by_name(caller, project):
    written = call("write_context", caller, name="notes", data={"a": 1})
    assert not written.is_error and written.structured["version"] == 2  # version 1 is the empty creation
    merged = call("write_context", caller, name="notes", data={"b": 2}, mode="merge")
    assert merged.structured["data"] == {"a": 1, "b": 2}
    read = call("read_context", caller, name="notes")
    assert read.structured["data"] == {"a": 1, "b": 2} and read.structured["version"] == 3
    version = AgentContext.objects.get(project=project, name="notes").versions.get(version=3)
    assert version.created_by_agent == caller


def test_reading_a_context_is_one_query_by_name_or_id_and_only_the_shared_one_by_name(caller, project):
    shared = contexts.context_create(project=project, name="notes", data={"a": 1})
    contexts.context_write(shared, {"a": 2})
    contexts.context_create(project=project, name="notes", instance=caller, data={"mine": True})
    assert caller.project == project  # loaded, as a run's agent's project is
    with CaptureQueriesContext(connection) as by_name_queries:
        by_name = call("read_context", caller, name="notes")
    with CaptureQueriesContext(connection) as by_id_queries:
        by_id = call("read_context", caller, context_id=str(shared.pk))
    for queries in (by_name_queries, by_id_queries):  # the tool's savepoint aside
        assert len([q for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]) == 1
    expected = {"id": str(shared.pk), "project_id": str(project.pk), "name": "notes", "version": 2,
                "current_version": 2, "data": {"a": 2}}
    assert by_name.structured == expected and by_id.structured == expected
    older = call("read_context", caller, name="notes", version=1)
    assert older.structured == {**expected, "version": 1, "data": {"a": 1}}
    missing = call("read_context", caller, name="nothing")
    assert missing.is_error and missing.structured["error"]["code"] == "not_found"


def test_another_workspaces_ids_are_not_found_and_nothing_leaks(caller, foreign):
    agent, context, issue = foreign
    attempts = {
        "read_context": {"project_id": str(agent.project_id), "context_id": str(context.pk)},
        "write_context": {"project_id": str(agent.project_id), "context_id": str(context.pk), "data": {"x": 1}},
        "query_agents": {"project_id": str(agent.project_id)},
        "pause_agent": {"agent_id": str(agent.pk)},
        "terminate_agent": {"agent_id": str(agent.pk)},
        "update_issue": {"issue_id": str(issue.pk), "title": "mine now"},
        "create_issue": {"project_id": str(agent.project_id), "title": "spam"},
    }
    for name, arguments in attempts.items():
        result = call(name, caller, **arguments)
        assert result.is_error and result.structured["error"]["code"] == "not_found", (name, result.structured)
        assert "s3cret" not in result.text()
    agent.refresh_from_db()
    assert agent.status == AgentStatus.IDLE and context.versions.count() == 1
    assert Issue.objects.get(pk=issue.pk).title == issue.title
    assert not Issue.objects.filter(title="spam").exists()


def test_a_context_id_of_the_same_workspace_but_another_project_is_found_by_its_project(caller, workspace, user):
    other_project = factories.ProjectFactory(workspace=workspace, owner=user)
    context = contexts.context_create(project=other_project, name="shared")
    assert call("read_context", caller, context_id=str(context.pk)).structured["error"]["code"] == "not_found"
    found = call("read_context", caller, project_id=str(other_project.pk), context_id=str(context.pk))
    assert not found.is_error and found.structured["name"] == "shared"


def test_invalid_arguments_are_an_error_result_with_each_problem(caller):
    result = call("write_context", caller, name="notes", data="not an object", mode="sideways")
    assert result.is_error and result.structured["error"]["code"] == "invalid_arguments"
    assert {p["field"] for p in result.structured["error"]["problems"]} == {"arguments.data", "arguments.mode"}
    assert call("pause_agent", caller, agent_id="nope").structured["error"]["code"] == "not_found"


def test_steering_tools_go_through_the_guard_and_the_ledger_names_the_agent_and_run(caller, project, agent_type):
    target = services.agent_spawn(project=project, agent_type=agent_type, name="target")
    paused = call("pause_agent", caller, agent_id=str(target.pk), reason="too busy")  # outside a run: run is None
    assert paused.structured["status"] == "paused"
    row = AgentTransition.objects.filter(agent=target).order_by("-created_at").first()
    assert (row.actor_id, row.actor_agent_id, row.reason) == (None, caller.pk, "too busy")
    again = call("resume_agent", caller, agent_id=str(target.pk))
    assert again.structured["status"] == "idle"
    illegal = call("resume_agent", caller, agent_id=str(target.pk))  # an idle agent: a no-op, not an error
    assert not illegal.is_error
    call("terminate_agent", caller, agent_id=str(target.pk))
    refused = call("pause_agent", caller, agent_id=str(target.pk))
    assert refused.structured["error"]["code"] == "invalid_transition"


def test_spawn_agent_by_slug_respects_the_type_schema(caller, agent_type):
    bad = call("spawn_agent", caller, agent_type=agent_type.slug, name="x", config={"retries": -1})
    assert bad.is_error and bad.structured["error"]["code"] == "invalid_arguments"
    good = call("spawn_agent", caller, agent_type=agent_type.slug, name="helper", config={"retries": 1})
    assert not good.is_error and good.structured["agent_type"] == agent_type.slug
    spawn = AgentTransition.objects.get(agent_id=good.structured["id"], from_status="")
    assert spawn.actor_agent_id == caller.pk
    assert call("spawn_agent", caller, agent_type="nope", name="x").structured["error"]["code"] == "not_found"


def test_issues_are_created_assigned_and_updated(caller, project):
    created = call("create_issue", caller, title="Flaky test", body="fails on CI", assigned_agent_id=str(caller.pk))
    assert created.structured["assigned_agent_id"] == str(caller.pk)
    mine = call("query_issues", caller, assigned_to_me=True)
    assert [i["title"] for i in mine.structured["issues"]] == ["Flaky test"]
    updated = call("update_issue", caller, issue_id=created.structured["id"], status="done", assigned_agent_id=None)
    assert (updated.structured["status"], updated.structured["assigned_agent_id"]) == ("done", None)
    too_long = call("create_issue", caller, title="x" * 301)
    assert too_long.structured["error"]["code"] == "invalid_arguments"


def test_a_terminated_agent_cannot_write(caller):
    services.agent_terminate(caller)
    caller.refresh_from_db()
    result = call("write_context", caller, name="notes", data={"a": 1})
    assert result.is_error and result.structured["error"]["code"] == "agent_terminated"


def test_client_tools_are_not_called_here(caller):
    result = call("request_input", caller, message="?", requestedSchema={"type": "object"})
    assert result.is_error and result.structured["error"]["code"] == "not_callable"


def test_the_build_kit_tools_are_registered_by_the_build_kit(caller, agent_type):
    found = call("find_capabilities", caller, use_cases=["code"])
    assert not found.is_error and found.structured["results"][0]["use_case"] == "code"
    committed = call("commit_revision", caller, agent_type=agent_type.slug, template={"llm": {"model": "m"}})
    assert committed.structured["version"] == 1
    invalid = call("commit_revision", caller, agent_type=agent_type.slug, template={"nope": 1})
    assert invalid.structured["error"]["code"] == "invalid_arguments"


@pytest.mark.django_db(transaction=True)
def test_two_agents_pausing_each_other_at_once_never_fail_a_run(project, agent_type):
    """Each holds its own row (as the loop does) and locks the other's: the database breaks the deadlock, and the
    call it picked answers ``conflict`` (try again) instead of raising."""
    import threading

    from django.db import transaction

    from agents.models import AgentInstance
    from tests.threads import failures, run_concurrently

    one, two = (services.agent_spawn(project=project, agent_type=agent_type, name=n) for n in ("one", "two"))
    both_locked = threading.Barrier(2)

    def steer(index):
        me, other = (one, two) if index == 0 else (two, one)
        with transaction.atomic():
            AgentInstance.objects.select_for_update().filter(pk=me.pk).first()
            both_locked.wait(timeout=10)
            return call("pause_agent", me, agent_id=str(other.pk))

    results = run_concurrently(2, steer)
    assert failures(results) == []
    codes = sorted("ok" if not r.is_error else r.structured["error"]["code"] for r in results)
    assert codes == ["conflict", "ok"]


@pytest.mark.parametrize("callers", [{}, {"agent": "both", "user": "both"}])
def test_a_tool_call_has_exactly_one_caller(callers):
    with pytest.raises(ValueError, match="exactly one caller"):
        ToolCall(**callers)


def test_a_person_calls_with_their_own_reach(user, project, agent):
    call = ToolCall(user=user)
    assert list(call.projects()) == [project]
    assert call.ledger == {"actor": user} and call.actor == user and call.label == f"user '{user.username}'"
    stranger = ToolCall(user=factories.UserFactory())
    result = call_tool(tool_registry.get("pause_agent"), stranger, {"agent_id": str(agent.pk)})
    assert result.structured["error"]["code"] == "not_found"
