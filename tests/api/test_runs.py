"""The run API: create (202), list, detail with steps, steps, cancel, approvals, input — success, validation (400),
authentication (401), other tenants (404), read-only roles (403), illegal moves (409), rate limits (429)."""

from __future__ import annotations

import pytest
from django.test import override_settings

from agents import services
from agents.choices import AgentStatus, RunRequestKind, RunRequestStatus, RunStatus
from agents.models import AgentRun, AgentRunRequest
from agents.runtime import services as runtime
from agents.runtime.trace import step_record
from agents.runtime.views import AgentRunViewSet
from tests import factories

from .conftest import agents_url, codes, fields

pytestmark = pytest.mark.django_db

TEMPLATE = {"llm": {"model": "test-model"}, "tools": [{"type": "platform", "op": "write_context", "permission": "ask"}]}


def runs_url(agent, run=None, suffix: str = "") -> str:
    url = agents_url(agent.project, agent, "runs")
    if run is not None:
        url += f"/{getattr(run, 'pk', run)}"
    return f"{url}/{suffix}" if suffix else url


@pytest.fixture
def loop_agent(project, user):
    """An agent of a type without a class, spawned from a committed template: it runs as the agent loop."""
    agent_type = factories.AgentTypeFactory()
    services.agent_type_commit_revision(agent_type, template=TEMPLATE, author=user)
    return services.agent_spawn(project=project, agent_type=agent_type, name="looper")


def queued(agent, **kwargs) -> AgentRun:
    return runtime.run_create(agent=agent, instruction=kwargs.pop("instruction", "do it"), **kwargs)[0]


def waiting_with(agent, kind=RunRequestKind.APPROVAL, **request) -> tuple[AgentRun, AgentRunRequest]:
    """A run that is ``waiting`` for a person, its agent ``waiting`` too (set up as the worker leaves them)."""
    run = queued(agent)
    services.agent_transition(agent, AgentStatus.WORKING)
    services.agent_transition(agent, AgentStatus.WAITING)
    AgentRun.objects.filter(pk=run.pk).update(status=RunStatus.WAITING)
    defaults = {"tool_name": "write_context", "tool_call_id": "call_1", "arguments": {"name": "notes", "data": {}}}
    return run, AgentRunRequest.objects.create(run=run, kind=kind, **{**defaults, **request})


# --- create --------------------------------------------------------------------------------------------


def test_create_queues_a_run_202(owner_client, loop_agent, user):
    response = owner_client.post(runs_url(loop_agent), {"instruction": "write the notes"}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["instruction"] == "write the notes"
    assert body["agent_id"] == str(loop_agent.pk) and body["project_id"] == str(loop_agent.project_id)
    assert body["requested_by"] == user.username and body["error"] is None and body["pending"] == []
    assert AgentRun.objects.get(pk=body["id"]).status == RunStatus.QUEUED


def test_create_with_an_issue_assigns_the_agent(owner_client, loop_agent):
    issue = factories.IssueFactory(project=loop_agent.project)
    response = owner_client.post(runs_url(loop_agent), {"issue_id": str(issue.pk)}, format="json")
    assert response.status_code == 202, response.content
    issue.refresh_from_db()
    assert issue.assigned_agent_id == loop_agent.pk and response.json()["issue_id"] == str(issue.pk)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "instruction"),
        ({"instruction": "   "}, "instruction"),
        ({"instruction": "x", "issue_id": "not-a-uuid"}, "issue_id"),
        ({"instruction": "a\u0000b"}, "instruction"),
        ({"instruction": "x" * 100_001}, "instruction"),
    ],
)
def test_create_validation_errors(owner_client, loop_agent, body, field):
    response = owner_client.post(runs_url(loop_agent), body, format="json")
    assert response.status_code == 400, response.content
    assert field in fields(response)
    assert not AgentRun.objects.exists()


def test_an_issue_of_another_project_is_a_400(owner_client, loop_agent):
    other = factories.IssueFactory()
    response = owner_client.post(runs_url(loop_agent), {"issue_id": str(other.pk)}, format="json")
    assert response.status_code == 400 and fields(response) == {"issue_id": "does_not_exist"}


def test_an_agent_that_cannot_run_is_a_400_not_runnable(owner_client, agent):
    """A type without an agent class and an agent without a template: nothing to run."""
    response = owner_client.post(runs_url(agent), {"instruction": "x"}, format="json")
    assert response.status_code == 400 and codes(response) == ["not_runnable"]
    assert not AgentRun.objects.exists()


def test_a_class_without_run_is_not_runnable(owner_client, project):
    from agents.registry import BaseAgent, registry

    class Hookish(BaseAgent):
        slug = "hookish"
        name = "Hookish"

    registry.register(Hookish)
    try:
        agent = factories.AgentFactory(project=project, agent_type=factories.AgentTypeFactory(handler="hookish"))
        response = owner_client.post(runs_url(agent), {"instruction": "x"}, format="json")
    finally:
        registry.unregister("hookish")
    assert response.status_code == 400 and codes(response) == ["not_runnable"]
    assert "has no run(ctx)" in response.json()["errors"][0]["message"]


def test_a_terminated_agent_refuses_runs_409(owner_client, loop_agent):
    services.agent_terminate(loop_agent)
    response = owner_client.post(runs_url(loop_agent), {"instruction": "x"}, format="json")
    assert response.status_code == 409 and codes(response) == ["agent_terminated"]


def test_create_is_idempotent(owner_client, loop_agent):
    first = owner_client.post(runs_url(loop_agent), {"instruction": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = owner_client.post(runs_url(loop_agent), {"instruction": "y"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] and AgentRun.objects.count() == 1


@override_settings(AGENTS_ENABLED=False)
def test_create_when_agents_are_disabled_is_503(owner_client, loop_agent):
    response = owner_client.post(runs_url(loop_agent), {"instruction": "x"}, format="json")
    assert response.status_code == 503 and codes(response) == ["agents_disabled"]


# --- access --------------------------------------------------------------------------------------------


def test_anonymous_is_401(api_client, loop_agent):
    run = queued(loop_agent)
    for response in (
        api_client.get(runs_url(loop_agent)),
        api_client.post(runs_url(loop_agent), {"instruction": "x"}, format="json"),
        api_client.get(runs_url(loop_agent, run)),
        api_client.post(runs_url(loop_agent, run, "cancel")),
    ):
        assert response.status_code == 401 and codes(response) == ["not_authenticated"]


def test_another_tenant_gets_404(stranger_client, loop_agent):
    run = queued(loop_agent)
    for response in (
        stranger_client.get(runs_url(loop_agent)),
        stranger_client.post(runs_url(loop_agent), {"instruction": "x"}, format="json"),
        stranger_client.get(runs_url(loop_agent, run)),
        stranger_client.post(runs_url(loop_agent, run, "cancel")),
    ):
        assert response.status_code == 404 and codes(response) == ["not_found"]
    assert AgentRun.objects.get(pk=run.pk).status == RunStatus.QUEUED


def test_a_run_of_another_agent_is_404(owner_client, loop_agent, project):
    other = services.agent_spawn(project=project, agent_type=loop_agent.agent_type, name="other")
    run = queued(other)
    assert owner_client.get(runs_url(loop_agent, run)).status_code == 404


def test_viewers_read_but_do_not_write(viewer_client, loop_agent):
    run, approval = waiting_with(loop_agent)
    assert viewer_client.get(runs_url(loop_agent)).status_code == 200
    assert viewer_client.get(runs_url(loop_agent, run)).status_code == 200
    for response in (
        viewer_client.post(runs_url(loop_agent), {"instruction": "x"}, format="json"),
        viewer_client.post(runs_url(loop_agent, run, "cancel")),
        viewer_client.post(runs_url(loop_agent, run, f"approvals/{approval.pk}"), {"decision": "approve"},
                           format="json"),
        viewer_client.post(runs_url(loop_agent, run, "input"), {"content": {}}, format="json"),
    ):
        assert response.status_code == 403 and codes(response) == ["permission_denied"]
    assert AgentRunRequest.objects.get(pk=approval.pk).is_pending


# --- list, detail, steps -------------------------------------------------------------------------------


def test_list_is_paginated_newest_first_and_filters_by_status(owner_client, loop_agent):
    first, second = queued(loop_agent), queued(loop_agent)
    AgentRun.objects.filter(pk=first.pk).update(status=RunStatus.SUCCEEDED)
    body = owner_client.get(runs_url(loop_agent)).json()
    assert [r["id"] for r in body["data"]] == [str(second.pk), str(first.pk)]
    assert body["pagination"]["total"] == 2
    only = owner_client.get(runs_url(loop_agent), {"status": "succeeded"}).json()["data"]
    assert [r["id"] for r in only] == [str(first.pk)]
    bad = owner_client.get(runs_url(loop_agent), {"status": "asleep"})
    assert bad.status_code == 400 and "status" in fields(bad)


def test_list_queries_do_not_grow_with_the_runs(owner_client, loop_agent):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    waiting_with(loop_agent)
    owner_client.get(runs_url(loop_agent))  # the token and the project access cached
    with CaptureQueriesContext(connection) as one:
        assert owner_client.get(runs_url(loop_agent)).status_code == 200
    for _ in range(9):
        queued(loop_agent)
    with CaptureQueriesContext(connection) as many:
        assert len(owner_client.get(runs_url(loop_agent)).json()["data"]) == 10
    assert len(one.captured_queries) == len(many.captured_queries)


def test_detail_carries_the_steps_and_pending_requests(owner_client, loop_agent):
    run, approval = waiting_with(loop_agent)
    step_record(run.pk, kind="llm_call", name="test-model", input={"m": 1}, output={"message": {}},
                prompt_tokens=10, completion_tokens=5)
    body = owner_client.get(runs_url(loop_agent, run)).json()
    assert body["status"] == "waiting" and body["steps_truncated"] is False
    assert [(s["index"], s["kind"], s["prompt_tokens"]) for s in body["steps"]] == [(0, "llm_call", 10)]
    assert [(p["id"], p["kind"], p["tool_name"]) for p in body["pending"]] == [
        (str(approval.pk), "approval", "write_context")]
    assert body["tokens_used"] == 15


def test_the_detail_caps_its_steps_and_steps_pages_through_all(owner_client, loop_agent, monkeypatch):
    from agents.runtime import selectors

    run = queued(loop_agent)
    for n in range(5):
        step_record(run.pk, kind="message", name=f"s{n}")
    monkeypatch.setattr(selectors, "DETAIL_STEPS_LIMIT", 3)
    body = owner_client.get(runs_url(loop_agent, run)).json()
    assert len(body["steps"]) == 3 and body["steps_truncated"] is True
    page = owner_client.get(runs_url(loop_agent, run, "steps"), {"limit": 2, "page": 3}).json()
    assert [s["name"] for s in page["data"]] == ["s4"] and page["pagination"]["total"] == 5


# --- cancel --------------------------------------------------------------------------------------------


def test_cancel_a_queued_run(owner_client, loop_agent):
    run = queued(loop_agent)
    response = owner_client.post(runs_url(loop_agent, run, "cancel"))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled" and response.json()["error"]["code"] == "cancelled"
    again = owner_client.post(runs_url(loop_agent, run, "cancel"))
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_cancel_a_waiting_run_frees_the_agent_and_cancels_its_request(owner_client, loop_agent):
    run, approval = waiting_with(loop_agent)
    assert owner_client.post(runs_url(loop_agent, run, "cancel")).status_code == 200
    loop_agent.refresh_from_db()
    approval.refresh_from_db()
    assert loop_agent.status == AgentStatus.IDLE and approval.status == RunRequestStatus.CANCELLED
    ledger = loop_agent.transitions.order_by("-created_at").first()
    assert ledger.run_id == run.pk and ledger.reason == f"run {run.pk}: cancelled"


@pytest.mark.parametrize("finished", [RunStatus.SUCCEEDED, RunStatus.FAILED])
def test_cancel_a_finished_run_is_409(owner_client, loop_agent, finished):
    run = queued(loop_agent)
    AgentRun.objects.filter(pk=run.pk).update(status=finished)
    response = owner_client.post(runs_url(loop_agent, run, "cancel"))
    assert response.status_code == 409 and codes(response) == ["run_finished"]


# --- approvals -----------------------------------------------------------------------------------------


def test_approve_then_approve_again_is_409(owner_client, loop_agent, user):
    run, approval = waiting_with(loop_agent)
    url = runs_url(loop_agent, run, f"approvals/{approval.pk}")
    response = owner_client.post(url, {"decision": "approve", "reason": "fine"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "approved" and response.json()["decided_by"] == user.username
    again = owner_client.post(url, {"decision": "approve"}, format="json")
    assert again.status_code == 409 and codes(again) == ["already_decided"]
    step = run.steps.get()
    assert step.kind == "approval" and step.output["decision"] == "approved"


def test_a_decision_repeated_with_its_idempotency_key_is_answered_again(owner_client, loop_agent):
    run, approval = waiting_with(loop_agent)
    url = runs_url(loop_agent, run, f"approvals/{approval.pk}")
    first = owner_client.post(url, {"decision": "deny"}, format="json", HTTP_IDEMPOTENCY_KEY="d1")
    again = owner_client.post(url, {"decision": "deny"}, format="json", HTTP_IDEMPOTENCY_KEY="d1")
    assert first.status_code == again.status_code == 200 and again.json()["status"] == "denied"


def test_deny_with_a_reason(owner_client, loop_agent):
    run, approval = waiting_with(loop_agent)
    response = owner_client.post(runs_url(loop_agent, run, f"approvals/{approval.pk}"),
                                 {"decision": "deny", "reason": "not now"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "denied"
    assert response.json()["reason"] == "not now"


def test_approval_validation_and_404s(owner_client, loop_agent):
    run, approval = waiting_with(loop_agent)
    url = runs_url(loop_agent, run, f"approvals/{approval.pk}")
    bad = owner_client.post(url, {"decision": "maybe"}, format="json")
    assert bad.status_code == 400 and fields(bad) == {"decision": "invalid_choice"}
    missing = owner_client.post(runs_url(loop_agent, run, f"approvals/{run.pk}"), {"decision": "approve"},
                                format="json")
    assert missing.status_code == 404
    other_run, other = waiting_with(services.agent_spawn(project=loop_agent.project,
                                                        agent_type=loop_agent.agent_type, name="b"))
    crossed = owner_client.post(runs_url(loop_agent, run, f"approvals/{other.pk}"), {"decision": "approve"},
                                format="json")
    assert crossed.status_code == 404 and AgentRunRequest.objects.get(pk=other.pk).is_pending


# --- input ---------------------------------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
          "required": ["name"]}


def test_input_is_validated_against_the_requested_schema(owner_client, loop_agent):
    run, request = waiting_with(loop_agent, kind=RunRequestKind.INPUT, tool_name="request_input",
                                message="Who?", requested_schema=SCHEMA)
    url = runs_url(loop_agent, run, "input")
    bad = owner_client.post(url, {"content": {"age": -1}}, format="json")
    assert bad.status_code == 400
    assert set(fields(bad)) == {"content", "content.age"}
    assert AgentRunRequest.objects.get(pk=request.pk).is_pending
    good = owner_client.post(url, {"content": {"name": "Ada", "age": 36}}, format="json")
    assert good.status_code == 200, good.content
    assert good.json()["status"] == "answered"
    assert good.json()["response"] == {"action": "accept", "content": {"name": "Ada", "age": 36}}


def test_a_stored_schema_with_a_regex_is_never_evaluated(owner_client, loop_agent):
    """An input request stored before such schemas were refused: a backtracking pattern would hold the worker for
    minutes on this answer; the answer is refused at once, and the request can still be declined."""
    schema = {"type": "object", "properties": {"name": {"type": "string", "pattern": "^(a+)+$"}}}
    run, request = waiting_with(loop_agent, kind=RunRequestKind.INPUT, tool_name="request_input",
                                requested_schema=schema)
    url = runs_url(loop_agent, run, "input")
    refused = owner_client.post(url, {"content": {"name": "a" * 30 + "!"}}, format="json")
    assert (refused.status_code, codes(refused)) == (409, ["unsupported_schema"])
    assert AgentRunRequest.objects.get(pk=request.pk).is_pending
    declined = owner_client.post(url, {"action": "decline"}, format="json")
    assert declined.status_code == 200 and declined.json()["response"] == {"action": "decline"}


def test_input_can_be_declined(owner_client, loop_agent):
    run, _ = waiting_with(loop_agent, kind=RunRequestKind.INPUT, tool_name="request_input", requested_schema=SCHEMA)
    response = owner_client.post(runs_url(loop_agent, run, "input"), {"action": "decline"}, format="json")
    assert response.status_code == 200 and response.json()["response"] == {"action": "decline"}


def test_a_connection_outcome_is_validated(owner_client, loop_agent):
    run, _ = waiting_with(loop_agent, kind=RunRequestKind.CONNECTION, tool_name="request_connection",
                          arguments={"integration": "github"})
    url = runs_url(loop_agent, run, "input")
    assert fields(owner_client.post(url, {"content": {}}, format="json")) == {"content": "invalid"}
    ok = owner_client.post(url, {"content": {"connected": True, "connection": "gh"}}, format="json")
    assert ok.status_code == 200 and ok.json()["status"] == "answered"


def test_input_without_a_pending_request_is_409(owner_client, loop_agent):
    run, _ = waiting_with(loop_agent)  # an approval is pending, not input
    response = owner_client.post(runs_url(loop_agent, run, "input"), {"content": {"x": 1}}, format="json")
    assert response.status_code == 409 and codes(response) == ["no_pending_input"]


# --- rate limits ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("frozen_rate_window")
@pytest.mark.parametrize("action", ["create", "list", "retrieve", "steps", "cancel", "decide", "answer"])
def test_every_run_endpoint_is_rate_limited(owner_client, loop_agent, monkeypatch, action):
    monkeypatch.setattr(AgentRunViewSet, "rate_limits", {**AgentRunViewSet.rate_limits, action: "1/m"})
    run, approval = waiting_with(loop_agent, kind=RunRequestKind.INPUT, tool_name="request_input",
                                 requested_schema={"type": "object"})
    calls = {
        "create": lambda: owner_client.post(runs_url(loop_agent), {"instruction": "x"}, format="json"),
        "list": lambda: owner_client.get(runs_url(loop_agent)),
        "retrieve": lambda: owner_client.get(runs_url(loop_agent, run)),
        "steps": lambda: owner_client.get(runs_url(loop_agent, run, "steps")),
        "cancel": lambda: owner_client.post(runs_url(loop_agent, run, "cancel")),
        "decide": lambda: owner_client.post(runs_url(loop_agent, run, f"approvals/{approval.pk}"),
                                            {"decision": "deny"}, format="json"),
        "answer": lambda: owner_client.post(runs_url(loop_agent, run, "input"), {"content": {}}, format="json"),
    }
    calls[action]()
    response = calls[action]()
    assert response.status_code == 429 and codes(response) == ["rate_limited"]
    assert 1 <= int(response["Retry-After"]) <= 60
