"""The agent loop on real workers (issue 10): an agent without a class runs its committed template as a
tool-calling loop over the platform tools, under the template's permissions, waiting for people when asked."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from agents import services
from agents.choices import AgentStatus, RunRequestKind, RunRequestStatus, RunStatus, StepKind
from agents.contexts import services as contexts
from agents.models import AgentContext, AgentContextVersion, AgentRunRequest
from agents.runtime import services as runtime
from agents.runtime.exceptions import RequestAlreadyDecided
from tests.factories import IssueFactory, ProjectFactory, UserFactory

from .harness import reply, tool_call
from .support import MODEL, agent_in, fresh, ledger, loop_agent, platform_tool, price_model, run_in

pytestmark = pytest.mark.django_db(transaction=True)

S = AgentStatus
R = RunStatus
REQUEST_INPUT = {"type": "client", "name": "request_input"}


def _tool_messages(received) -> list[dict]:
    """The JSON results of the ``tool`` messages at the end of one request the stub received."""
    results = []
    for message in reversed(received.messages):
        if message.get("role") != "tool":
            break
        results.insert(0, json.loads(message["content"]))
    return results


def test_a_model_that_writes_a_context_then_answers(project, stub):
    price_model()
    agent = loop_agent(project, [platform_tool("write_context", "allow"), platform_tool("read_context")])
    write = tool_call("write_context", {"name": "plan", "data": {"steps": ["design", "build"]}})
    stub.script(reply(tool_calls=[write], usage=(400, 40)), reply("Wrote the plan.", usage=(600, 20)))

    run, _ = runtime.run_create(agent=agent, instruction="Write the plan")

    done = run_in(run, R.SUCCEEDED)
    assert done.result == {"message": "Wrote the plan."}
    # Created by the agent (version 1, empty), then written by it (version 2).
    context = AgentContext.objects.get(project=project, name="plan")
    created, written = context.versions.order_by("version")
    assert (created.version, created.data, written.version, written.data) == (1, {}, 2, {"steps": ["design", "build"]})
    assert {created.created_by_agent_id, written.created_by_agent_id} == {agent.pk}
    assert written.created_by_user_id is None and context.current_version == 2

    steps = list(done.steps.order_by("index"))
    kinds = [s.kind for s in steps]
    assert kinds == [StepKind.MESSAGE, StepKind.LLM_CALL, StepKind.TOOL_CALL, StepKind.LLM_CALL]
    tool_step = steps[2]
    assert tool_step.name == "write_context" and tool_step.error is None
    assert tool_step.input["arguments"] == {"name": "plan", "data": {"steps": ["design", "build"]}}
    assert tool_step.input["permission"] == "allow" and tool_step.output["version"] == 2
    assert done.tokens_used == 1060 and sum(s.prompt_tokens + s.completion_tokens for s in steps) == 1060
    # (400 × 2.5 + 40 × 10 + 600 × 2.5 + 20 × 10) / 10⁶ USD
    assert done.cost == Decimal("0.0031") == fresh(agent).cost_incurred

    first, second = stub.requests
    assert first.body["model"] == MODEL
    assert first.messages[0]["role"] == "system" and "You are a test agent." in first.messages[0]["content"]
    assert first.messages[1] == {"role": "user", "content": "Write the plan"}
    assert {t["function"]["name"] for t in first.body["tools"]} == {"write_context", "read_context"}
    assert all(t["type"] == "function" and t["function"]["parameters"]["type"] == "object" for t in first.body["tools"])
    assert second.messages[-2]["tool_calls"][0]["id"] == write["id"]
    assert second.messages[-1]["tool_call_id"] == write["id"]
    assert _tool_messages(second)[0] == {**tool_step.output, "data": {"steps": ["design", "build"]}}
    agent = fresh(agent)
    assert agent.status == S.IDLE and agent.tasks_completed == 1


def test_an_ask_tool_waits_for_approval_and_runs_once_when_approved(project, stub, workers):
    agent = loop_agent(project, [platform_tool("write_context", "ask")])
    write = tool_call("write_context", {"name": "plan", "data": {"go": True}})
    stub.script(reply(tool_calls=[write]))

    run, _ = runtime.run_create(agent=agent, instruction="Plan")

    waiting = run_in(run, R.WAITING)
    assert agent_in(agent, S.WAITING).status == S.WAITING
    request = waiting.requests.get()
    assert (request.kind, request.status, request.tool_name) == (RunRequestKind.APPROVAL, RunRequestStatus.PENDING,
                                                                 "write_context")
    assert request.arguments == {"name": "plan", "data": {"go": True}} and request.tool_call_id == write["id"]
    assert ledger(fresh(agent))[-1][1:3] == (S.WAITING, f"run {run.pk}: waiting for approval of a tool call "
                                                        "(write_context)")
    workers.wait_idle()
    assert not AgentContext.objects.filter(name="plan").exists(), "nothing runs before the approval"
    assert len(stub.requests) == 1

    stub.script(reply("Done."))
    person = UserFactory()
    runtime.run_request_decide(request, decision="approve", reason="fine", actor=person)

    done = run_in(run, R.SUCCEEDED)
    assert done.result == {"message": "Done."}
    version = AgentContext.objects.get(name="plan").versions.get(version=2)
    assert version.data == {"go": True} and version.created_by_agent_id == agent.pk
    request = fresh(request)
    assert request.status == RunRequestStatus.APPROVED and request.decided_by == person
    assert request.executed_at is not None and request.result["isError"] is False
    assert _tool_messages(stub.requests[1])[0]["version"] == 2
    with pytest.raises(RequestAlreadyDecided):
        runtime.run_request_decide(fresh(request), decision="approve")
    with pytest.raises(RequestAlreadyDecided):
        runtime.run_request_decide(fresh(request), decision="deny")
    assert AgentContextVersion.objects.filter(context__name="plan").count() == 2, "executed once"
    kinds = list(done.steps.order_by("index").values_list("kind", flat=True))
    assert kinds == [StepKind.MESSAGE, StepKind.LLM_CALL, StepKind.APPROVAL, StepKind.TOOL_CALL, StepKind.LLM_CALL]
    targets = [target for _, target, _, _ in ledger(fresh(agent))[1:]]
    assert targets == [S.WORKING, S.WAITING, S.WORKING, S.IDLE]


def test_a_run_for_an_issue_assigns_it_and_shows_it_to_the_model(project, stub):
    issue = IssueFactory(project=project, title="Fix the login page", body="It returns 500 on Safari.")
    agent = loop_agent(project, [platform_tool("query_issues")])
    stub.script(reply("Looked at it."))

    run, _ = runtime.run_create(agent=agent, issue=issue, instruction="Have a look")

    assert fresh(issue).assigned_agent_id == agent.pk
    assert run_in(run, R.SUCCEEDED).result == {"message": "Looked at it."}
    user = stub.requests[0].messages[1]
    assert user["role"] == "user"
    assert user["content"] == f"Have a look\n\nIssue {issue.pk}: Fix the login page\n\nIt returns 500 on Safari."
    assert fresh(agent).current_task == "Have a look"


def test_cancelling_a_waiting_run_cancels_its_request_and_frees_the_agent(project, stub):
    agent = loop_agent(project, [platform_tool("write_context", "ask")])
    stub.script(reply(tool_calls=[tool_call("write_context", {"name": "plan", "data": {}})]))
    run, _ = runtime.run_create(agent=agent, instruction="Plan")
    request = run_in(run, R.WAITING).requests.get()

    runtime.run_cancel(fresh(run))

    assert fresh(run).status == R.CANCELLED and fresh(request).status == RunRequestStatus.CANCELLED
    assert fresh(agent).status == S.IDLE
    assert ledger(fresh(agent))[-1][1:3] == (S.IDLE, f"run {run.pk}: cancelled")


def test_a_second_decision_while_the_worker_runs_the_approved_call_is_refused_without_a_deadlock(project, stub):
    """The worker runs the approved call (its request row locked) while a person decides again (the agent, the run,
    then the request locked): the second decision waits and is refused; neither side deadlocks."""
    agent = loop_agent(project, [platform_tool("write_context", "ask")])
    plan, _ = contexts.context_get_or_create(project=project, name="plan")
    stub.script(reply(tool_calls=[tool_call("write_context", {"name": "plan", "data": {"v": 1}})]))
    run, _ = runtime.run_create(agent=agent, instruction="Plan")
    request = run_in(run, R.WAITING).requests.get()
    stub.script(reply("Done."))
    context_locked, let_go, outcome = threading.Event(), threading.Event(), {}

    def hold_the_context() -> None:  # the worker's write waits for this lock
        try:
            with transaction.atomic():
                AgentContext.objects.select_for_update().get(pk=plan.pk)
                context_locked.set()
                let_go.wait(10)
        finally:
            connection.close()

    def decide_again() -> None:
        try:
            runtime.run_request_decide(AgentRunRequest.objects.get(pk=request.pk), decision="approve")
            outcome["result"] = "approved twice"
        except Exception as exc:  # noqa: BLE001 - the test inspects what it got
            outcome["result"] = exc
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_context)
    holder.start()
    context_locked.wait(5)
    runtime.run_request_decide(request, decision="approve")
    time.sleep(0.5)  # the worker continues the run and waits for the context
    second = threading.Thread(target=decide_again)
    second.start()
    time.sleep(0.3)  # the second decision waits for the worker
    let_go.set()
    holder.join(10)
    second.join(10)

    assert isinstance(outcome["result"], RequestAlreadyDecided), outcome["result"]
    done = run_in(run, R.SUCCEEDED)
    assert done.result == {"message": "Done."}
    assert fresh(plan).current_version == 2


def test_a_denied_tool_call_is_answered_to_the_model_with_the_refusal(project, stub):
    agent = loop_agent(project, [platform_tool("write_context", "ask")])
    stub.script(reply(tool_calls=[tool_call("write_context", {"name": "plan", "data": {}})]))

    run, _ = runtime.run_create(agent=agent, instruction="Plan")
    request = run_in(run, R.WAITING).requests.get()
    stub.script(reply("Understood, I will not write it."))
    runtime.run_request_decide(request, decision="deny", reason="not this week")

    done = run_in(run, R.SUCCEEDED)
    assert done.result == {"message": "Understood, I will not write it."}
    error = _tool_messages(stub.requests[1])[0]["error"]
    assert error["code"] == "denied_by_person" and "not this week" in error["message"]
    assert not AgentContext.objects.filter(name="plan").exists()
    assert fresh(request).executed_at is None


def test_a_denied_by_policy_tool_is_never_run(project, stub):
    agent = loop_agent(project, [platform_tool("write_context", "deny")])
    stub.script(reply(tool_calls=[tool_call("write_context", {"name": "plan", "data": {}})]), reply("OK."))

    run, _ = runtime.run_create(agent=agent, instruction="Plan")

    assert run_in(run, R.SUCCEEDED).requests.count() == 0
    assert _tool_messages(stub.requests[1])[0]["error"]["code"] == "denied_by_policy"
    assert not AgentContext.objects.filter(name="plan").exists()


def test_request_input_waits_for_valid_content_and_the_model_receives_it(project, stub, workers):
    agent = loop_agent(project, [REQUEST_INPUT])
    schema = {
        "type": "object",
        "properties": {"color": {"type": "string", "enum": ["red", "blue"]}, "count": {"type": "integer"}},
        "required": ["color"],
    }
    ask = tool_call("request_input", {"message": "Which color?", "requestedSchema": schema})
    stub.script(reply(tool_calls=[ask]))

    run, _ = runtime.run_create(agent=agent, instruction="Paint")

    waiting = run_in(run, R.WAITING)
    request = waiting.requests.get()
    assert (request.kind, request.message, request.requested_schema) == (RunRequestKind.INPUT, "Which color?", schema)
    assert agent_in(agent, S.WAITING)

    with pytest.raises(ValidationError) as invalid:
        runtime.run_request_answer(waiting, content={"color": "green", "count": "two"})
    assert set(invalid.value.message_dict) == {"content.color", "content.count"}
    with pytest.raises(ValidationError) as missing:
        runtime.run_request_answer(waiting, content={"count": 2})
    assert set(missing.value.message_dict) == {"content"}
    assert fresh(request).status == RunRequestStatus.PENDING and fresh(run).status == R.WAITING
    workers.wait_idle()
    assert len(stub.requests) == 1

    stub.script(reply("Painting it red."))
    runtime.run_request_answer(waiting, content={"color": "red", "count": 2})

    done = run_in(run, R.SUCCEEDED)
    assert done.result == {"message": "Painting it red."}
    assert _tool_messages(stub.requests[1]) == [{"action": "accept", "content": {"color": "red", "count": 2}}]
    assert fresh(request).status == RunRequestStatus.ANSWERED


def test_another_workspaces_context_is_not_found_and_nothing_leaks(project, stub):
    other = ProjectFactory()  # another workspace
    secret, _ = contexts.context_get_or_create(project=other, name="secret")
    contexts.context_write(secret, {"token": "s3cr3t-value"}, actor=other.owner)
    agent = loop_agent(project, [platform_tool("read_context"), platform_tool("write_context", "allow")])
    stub.script(
        reply(tool_calls=[
            tool_call("read_context", {"project_id": str(other.pk), "name": "secret"}),
            tool_call("read_context", {"context_id": str(secret.pk)}),
            tool_call("write_context", {"context_id": str(secret.pk), "data": {"token": "overwritten"}}),
            tool_call("write_context", {"project_id": str(other.pk), "name": "secret", "data": {"x": 1}}),
        ]),
        reply("Nothing found."),
    )

    run, _ = runtime.run_create(agent=agent, instruction="Find the token")

    done = run_in(run, R.SUCCEEDED)
    results = _tool_messages(stub.requests[1])
    assert [r["error"]["code"] for r in results] == ["not_found"] * 4
    assert "s3cr3t" not in json.dumps(stub.requests[1].body)
    assert "s3cr3t" not in json.dumps(list(done.steps.values_list("output", flat=True)))
    secret = fresh(secret)
    assert secret.current_version == 2 and contexts.context_read(secret).data == {"token": "s3cr3t-value"}
    assert not AgentContext.objects.filter(project=project).exists()


def test_invalid_tool_arguments_are_an_error_result_and_the_loop_goes_on(project, stub):
    agent = loop_agent(project, [platform_tool("write_context", "allow")])
    stub.script(
        reply(tool_calls=[tool_call("write_context", "{not json"),
                          tool_call("write_context", {"name": "plan", "data": "not an object"}),
                          tool_call("no_such_tool", {})]),
        reply(tool_calls=[tool_call("write_context", {"name": "plan", "data": {"fixed": True}})]),
        reply("Fixed it."),
    )

    run, _ = runtime.run_create(agent=agent, instruction="Write")

    done = run_in(run, R.SUCCEEDED)
    errors = [r["error"]["code"] for r in _tool_messages(stub.requests[1])]
    assert errors == ["invalid_arguments", "invalid_arguments", "unknown_tool"]
    assert "arguments.data" in _tool_messages(stub.requests[1])[1]["error"]["message"]
    assert _tool_messages(stub.requests[2])[0]["data"] == {"fixed": True}
    assert done.result == {"message": "Fixed it."}
    tool_steps = done.steps.filter(kind=StepKind.TOOL_CALL).order_by("index")
    assert [s.error["code"] if s.error else None for s in tool_steps] == [
        "invalid_arguments", "invalid_arguments", "unknown_tool", None,
    ]


def test_max_steps_fails_the_run(project, stub):
    agent = loop_agent(project, [platform_tool("query_agents")], max_steps=2)
    stub.script(*(reply(tool_calls=[tool_call("query_agents", {})]) for _ in range(2)))

    run, _ = runtime.run_create(agent=agent, instruction="Loop forever")

    failed = run_in(run, R.FAILED)
    assert failed.error_code == "max_steps_exceeded"
    assert failed.steps.filter(kind=StepKind.LLM_CALL).count() == 2
    assert len(stub.requests) == 2
    agent = agent_in(agent, S.IDLE)
    assert agent.last_error.startswith(f"run {run.pk} failed: max_steps_exceeded")


def test_pause_while_waiting_then_resume_waits_again_and_approve_finishes(project, stub):
    agent = loop_agent(project, [platform_tool("write_context", "ask")])
    stub.script(reply(tool_calls=[tool_call("write_context", {"name": "plan", "data": {"a": 1}})]))
    run, _ = runtime.run_create(agent=agent, instruction="Plan")
    request = run_in(run, R.WAITING).requests.get()

    services.agent_pause(fresh(agent), reason="weekend")

    assert fresh(run).status == R.PAUSED and fresh(agent).status == S.PAUSED
    assert fresh(request).status == RunRequestStatus.PENDING

    services.agent_resume(fresh(agent))

    # The run continues from its checkpoint, finds its approval still pending and waits again: no LLM call.
    run_in(run, R.WAITING)
    assert agent_in(agent, S.WAITING)
    assert list(fresh(run).requests.values_list("pk", flat=True)) == [request.pk]
    assert len(stub.requests) == 1

    stub.script(reply("Done."))
    runtime.run_request_decide(fresh(request), decision="approve")
    assert run_in(run, R.SUCCEEDED).result == {"message": "Done."}
    assert list(AgentContextVersion.objects.filter(context__name="plan").values_list("data", flat=True)) == [
        {"a": 1}, {},
    ]
    assert len(stub.requests) == 2


def test_terminate_while_waiting_cancels_the_run_and_its_pending_request(project, stub, workers):
    agent = loop_agent(project, [platform_tool("write_context", "ask")])
    stub.script(reply(tool_calls=[tool_call("write_context", {"name": "plan", "data": {}})]))
    run, _ = runtime.run_create(agent=agent, instruction="Plan")
    request = run_in(run, R.WAITING).requests.get()

    services.agent_terminate(fresh(agent), reason="no longer needed")

    run = fresh(run)
    assert run.status == R.CANCELLED and run.finished_at is not None
    assert fresh(request).status == RunRequestStatus.CANCELLED
    assert fresh(agent).status == S.TERMINATED
    with pytest.raises(RequestAlreadyDecided):
        runtime.run_request_decide(fresh(request), decision="approve")
    workers.wait_idle()
    assert len(stub.requests) == 1
    assert not AgentContext.objects.filter(name="plan").exists()


def test_a_budget_pauses_the_loop_between_steps(project, stub):
    agent = loop_agent(project, [platform_tool("query_agents")])
    services.agent_update(agent, data={"max_tokens": 100})
    stub.script(reply(tool_calls=[tool_call("query_agents", {})], usage=(90, 20)))

    run, _ = runtime.run_create(agent=agent, instruction="Look around")

    paused = run_in(run, R.PAUSED)
    assert paused.error_code == "budget_exceeded" and fresh(agent).status == S.PAUSED
    assert len(stub.requests) == 1
    stub.script(reply("Seen it all."))
    services.agent_update(fresh(agent), data={"max_tokens": None})
    services.agent_resume(fresh(agent))
    done = run_in(run, R.SUCCEEDED)
    assert done.result == {"message": "Seen it all."}
    # The tool call the model asked for before the pause ran once, after the resume.
    assert done.steps.filter(kind=StepKind.TOOL_CALL).count() == 1
