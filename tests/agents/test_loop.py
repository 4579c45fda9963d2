"""The agent loop and the run services, in process: the executor runs a run against a scripted chat provider.

The real worker processes, the real broker and a real HTTP stub are exercised in ``tests/runtime/``; here
each test drives ``executor.execute_run`` itself, so every path (waiting, approvals, input, pause, budget,
upstream failures, the reaper) is checked step by step.
"""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.utils import timezone

from agents import services
from agents.choices import AgentStatus, RunRequestStatus, RunStatus
from agents.contexts import services as contexts
from agents.models import AgentContext, AgentInstance, AgentRun
from agents.runtime import executor
from agents.runtime import services as runtime
from agents.runtime.exceptions import RequestAlreadyDecided
from aiservices import llm
from aiservices.exceptions import UpstreamBadResponse, UpstreamHTTPError, UpstreamTimeout, UpstreamUnreachable
from aiservices.models import ModelPrice
from tests import factories

pytestmark = pytest.mark.django_db


def answer(content: str | None = None, *calls: tuple[str, dict | str], prompt: int = 100, completion: int = 20):
    """An OpenAI chat completion: text, or tool calls ``(name, arguments)``."""
    message: dict = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": f"call_{n}_{name}", "type": "function",
             "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
            for n, (name, args) in enumerate(calls)
        ]
    return {"model": "test-model", "choices": [{"message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}


class Scripted(llm.ChatProvider):
    """A chat provider answering from a script; ``requests`` holds every body it was sent."""

    name = "openai"

    def __init__(self) -> None:
        self.script: list = []
        self.requests: list[dict] = []
        self.during = None  # called while "the call is in flight"

    def complete(self, request, *, request_id):
        self.requests.append(copy.deepcopy(request.body()))
        if self.during is not None:
            self.during()
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return llm.parse_completion(item, asked_model=request.model)


@pytest.fixture
def model(monkeypatch):
    provider = Scripted()
    monkeypatch.setattr("agents.runtime.context.get_chat_provider", lambda: provider)
    ModelPrice.objects.create(model="test-model", input_usd_per_mtok=Decimal("2"), output_usd_per_mtok=Decimal("8"))
    return provider


def loop_agent(project, user, tools, **template):
    agent_type = factories.AgentTypeFactory()
    services.agent_type_commit_revision(
        agent_type, template={"llm": {"model": "test-model"}, "tools": tools, **template}, author=user
    )
    return services.agent_spawn(project=project, agent_type=agent_type, name="looper")


WRITE_ASK = {"type": "platform", "op": "write_context", "permission": "ask"}
WRITE_ALLOW = {"type": "platform", "op": "write_context", "permission": "allow"}
READ = {"type": "platform", "op": "read_context"}
INPUT = {"@ag.embed": {"@ag.references": {"workflow": {"slug": "__sx__request_input"}}}}


def execute(run) -> AgentRun:
    """Execute ``run`` as the message last sent for it would (its current task id)."""
    executor.execute_run(run.pk, task_id=AgentRun.objects.get(pk=run.pk).task_id)
    return AgentRun.objects.get(pk=run.pk)


def start(agent, instruction="write the notes") -> AgentRun:
    return runtime.run_create(agent=agent, instruction=instruction)[0]


def reload(agent) -> AgentInstance:
    return AgentInstance.objects.get(pk=agent.pk)


def tool_messages(request: dict) -> list[dict]:
    return [json.loads(m["content"]) for m in request["messages"] if m["role"] == "tool"]


# --- The loop ---------------------------------------------------------------------------------------------


def test_a_write_then_an_answer(model, project, user):
    agent = loop_agent(project, user, [WRITE_ALLOW])
    model.script = [answer(None, ("write_context", {"name": "notes", "data": {"done": True}})), answer("All done.")]
    run = execute(start(agent))
    assert run.status == RunStatus.SUCCEEDED and run.result == {"message": "All done."}
    context = AgentContext.objects.get(project=project, name="notes")
    assert context.versions.get(version=context.current_version).created_by_agent_id == agent.pk
    assert [(s.kind, s.name) for s in run.steps.order_by("index")] == [
        ("message", "start"), ("llm_call", "test-model"), ("tool_call", "write_context"), ("llm_call", "test-model")]
    assert (run.tokens_used, run.cost) == (240, Decimal("0.000720"))  # 2 × (100 × 2 + 20 × 8) / 10⁶
    agent = reload(agent)
    assert (agent.status, agent.tasks_completed, agent.tokens_used, agent.cost_incurred) == (
        AgentStatus.IDLE, 1, 240, Decimal("0.000720"))
    ledger = list(agent.transitions.order_by("created_at").values_list("from_status", "to_status", "run_id"))
    assert ledger[-2:] == [("idle", "working", run.pk), ("working", "idle", run.pk)]
    sent = model.requests[0]
    assert sent["tools"][0]["function"]["name"] == "write_context" and sent["messages"][0]["role"] == "system"
    assert "write the notes" in sent["messages"][1]["content"]


def test_ask_waits_for_approval_and_runs_the_tool_once(model, project, user):
    agent = loop_agent(project, user, [WRITE_ASK])
    model.script = [answer(None, ("write_context", {"name": "notes", "data": {"a": 1}}))]
    run = execute(start(agent))
    assert run.status == RunStatus.WAITING and reload(agent).status == AgentStatus.WAITING
    approval = run.requests.get()
    assert (approval.kind, approval.tool_name, approval.arguments["data"]) == ("approval", "write_context", {"a": 1})
    assert not AgentContext.objects.filter(name="notes").exists()  # nothing executed before the approval
    runtime.run_request_decide(approval, decision="approve", actor=user)
    with pytest.raises(RequestAlreadyDecided):
        runtime.run_request_decide(approval, decision="approve", actor=user)
    model.script = [answer("Written.")]
    run = execute(run)
    assert run.status == RunStatus.SUCCEEDED
    assert AgentContext.objects.get(name="notes").current_version == 2
    approval.refresh_from_db()
    assert approval.executed_at is not None and approval.result["isError"] is False
    assert tool_messages(model.requests[-1])[0]["data"] == {"a": 1}
    reasons = list(reload(agent).transitions.order_by("created_at").values_list("reason", flat=True))
    assert any("waiting for approval of a tool call (write_context)" in r for r in reasons)
    assert any(r.endswith("continued") for r in reasons)


def test_deny_tells_the_model(model, project, user):
    agent = loop_agent(project, user, [WRITE_ASK])
    model.script = [answer(None, ("write_context", {"name": "notes", "data": {}}))]
    run = execute(start(agent))
    runtime.run_request_decide(run.requests.get(), decision="deny", reason="not today", actor=user)
    model.script = [answer("Understood.")]
    assert execute(run).status == RunStatus.SUCCEEDED
    refusal = tool_messages(model.requests[-1])[0]["error"]
    assert refusal["code"] == "denied_by_person" and "not today" in refusal["message"]
    assert not AgentContext.objects.filter(name="notes").exists()


def test_request_input_validates_the_answer(model, project, user):
    agent = loop_agent(project, user, [INPUT])
    schema = {"type": "object", "properties": {"version": {"type": "string"}}, "required": ["version"]}
    model.script = [answer(None, ("request_input", {"message": "Which version?", "requestedSchema": schema}))]
    run = execute(start(agent))
    assert run.status == RunStatus.WAITING
    with pytest.raises(ValidationError) as invalid:
        runtime.run_request_answer(run, content={"version": 2}, actor=user)
    assert set(invalid.value.message_dict) == {"content.version"}
    runtime.run_request_answer(run, content={"version": "2.0"}, actor=user)
    model.script = [answer("Releasing 2.0.")]
    assert execute(run).status == RunStatus.SUCCEEDED
    assert tool_messages(model.requests[-1])[0] == {"action": "accept", "content": {"version": "2.0"}}


def test_a_bad_requested_schema_is_an_error_the_model_sees(model, project, user):
    agent = loop_agent(project, user, [INPUT])
    model.script = [answer(None, ("request_input", {"message": "?", "requestedSchema": {"type": 5}})), answer("ok")]
    assert execute(start(agent)).status == RunStatus.SUCCEEDED
    assert tool_messages(model.requests[-1])[0]["error"]["code"] == "invalid_arguments"


def flat(**prop) -> dict:
    return {"type": "object", "properties": {"answer": prop}}


@pytest.mark.parametrize("schema, why", [
    (flat(type="string", pattern="^(a+)+$"), "'pattern'"),  # a regex the model chose: never evaluated
    ({"type": "object", "properties": {}, "patternProperties": {"^(a+)+$": {}}}, "'patternProperties'"),
    (flat(type="string", format="regex"), "'format'"),
    (flat(type="object", properties={"a": {"type": "string"}}), "flat primitive"),
    (flat(type="array", items={"type": "string"}), "flat primitive"),
    ({"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {}}}, "'$defs'"),
    (flat(type="string", enum=["a", "b"], enumNames=["A"]), "'enumNames'"),
    (flat(type="integer", minimum=5, maximum=1), "'minimum' is above"),
    ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]}, "'required'"),
])
def test_request_input_accepts_only_mcp_elicitation_schemas(model, project, user, schema, why):
    agent = loop_agent(project, user, [INPUT])
    model.script = [answer(None, ("request_input", {"message": "?", "requestedSchema": schema})), answer("ok")]
    run = execute(start(agent))
    assert run.status == RunStatus.SUCCEEDED and not run.requests.exists()
    error = tool_messages(model.requests[-1])[0]["error"]
    assert error["code"] == "invalid_arguments" and why in error["message"]


def test_every_kind_of_elicitation_property_is_accepted():
    from agents.runtime.tools.client import requested_schema_errors

    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "title": "Release",
        "description": "Details", "required": ["email", "count"],
        "properties": {
            "email": {"type": "string", "format": "email", "title": "Email", "minLength": 3, "maxLength": 200},
            "site": {"type": "string", "format": "uri"}, "day": {"type": "string", "format": "date"},
            "at": {"type": "string", "format": "date-time", "default": "2026-01-01T00:00:00Z"},
            "count": {"type": "integer", "minimum": 1, "maximum": 10, "default": 2},
            "ratio": {"type": "number", "minimum": 0, "maximum": 1.5}, "ok": {"type": "boolean", "default": False},
            "size": {"type": "string", "enum": ["s", "m"], "enumNames": ["Small", "Medium"], "default": "m"},
        },
    }
    assert requested_schema_errors(schema) == []


def test_bad_arguments_unknown_tools_and_denied_tools_answer_the_model(model, project, user):
    deny = {"type": "platform", "op": "spawn_agent", "permission": "deny"}
    agent = loop_agent(project, user, [WRITE_ALLOW, deny])
    model.script = [
        answer(None, ("write_context", "{not json"), ("write_context", {"data": "text"}), ("launch", {}),
               ("spawn_agent", {"agent_type": "x", "name": "y"})),
        answer("I give up."),
    ]
    run = execute(start(agent))
    assert run.status == RunStatus.SUCCEEDED
    codes = [m["error"]["code"] for m in tool_messages(model.requests[-1])]
    assert codes == ["invalid_arguments", "invalid_arguments", "unknown_tool", "denied_by_policy"]
    assert run.steps.filter(kind="tool_call", error__isnull=False).count() == 4


def test_max_steps(model, project, user):
    agent = loop_agent(project, user, [READ], runner={"max_steps": 2})
    model.script = [answer(None, ("read_context", {"name": "missing"}))] * 2
    run = execute(start(agent))
    assert run.status == RunStatus.FAILED and run.error_code == "max_steps_exceeded"
    assert len(model.requests) == 2 and reload(agent).status == AgentStatus.IDLE
    assert "max_steps_exceeded" in reload(agent).last_error


# --- Pause, terminate, cancel, budgets ---------------------------------------------------------------------


def test_a_pause_during_a_call_parks_the_run_and_resume_continues_it(model, project, user):
    agent = loop_agent(project, user, [READ])
    model.script = [answer(None, ("read_context", {"name": "notes"}))]
    model.during = lambda: services.agent_pause(AgentInstance.objects.get(pk=agent.pk), actor=user)
    run = execute(start(agent))
    assert run.status == RunStatus.PAUSED and len(model.requests) == 1
    assert run.steps.filter(kind="tool_call").count() == 0  # stopped before the tool call
    model.during = None
    services.agent_resume(reload(agent), actor=user)
    model.script = [answer("Resumed and done.")]
    run = execute(run)
    assert run.status == RunStatus.SUCCEEDED and len(model.requests) == 2
    assert run.steps.filter(kind="tool_call").count() == 1  # the pending tool call ran after the resume


def test_terminating_during_a_call_cancels_the_run(model, project, user):
    agent = loop_agent(project, user, [READ])
    model.script = [answer(None, ("read_context", {"name": "notes"}))]
    model.during = lambda: services.agent_terminate(AgentInstance.objects.get(pk=agent.pk), actor=user)
    run = execute(start(agent))
    assert run.status == RunStatus.CANCELLED and len(model.requests) == 1


def test_budget_pauses_the_agent_and_a_raised_budget_continues(model, project, user):
    agent = loop_agent(project, user, [READ])
    services.agent_update(agent, data={"max_tokens": 50})
    model.script = [answer(None, ("read_context", {"name": "notes"}))]
    run = execute(start(agent))
    assert (run.status, run.error_code) == (RunStatus.PAUSED, "budget_exceeded")
    agent = reload(agent)
    assert agent.status == AgentStatus.PAUSED and agent.termination_reason == ""
    assert agent.transitions.order_by("-created_at").first().reason.startswith(f"run {run.pk}: budget: tokens")
    services.agent_update(agent, data={"max_tokens": 10_000})
    services.agent_resume(reload(agent))
    model.script = [answer("Within budget now.")]
    run = execute(run)
    assert run.status == RunStatus.SUCCEEDED and run.error_code == ""


def test_an_agent_over_budget_does_not_start(model, project, user):
    agent = loop_agent(project, user, [READ])
    agent.agent_type.max_cost_usd = Decimal("0.5")
    agent.agent_type.save(update_fields=["max_cost_usd"])
    services.agent_record_usage(agent, cost="0.5")
    run = execute(start(agent))
    assert (run.status, run.error_code) == (RunStatus.PAUSED, "budget_exceeded") and model.requests == []


def test_pause_and_terminate_while_waiting(model, project, user):
    agent = loop_agent(project, user, [WRITE_ASK])
    model.script = [answer(None, ("write_context", {"name": "n", "data": {}}))]
    run = execute(start(agent))
    services.agent_pause(reload(agent))
    runtime.on_agent_transitioned(None, agent=reload(agent), source="waiting", target="paused")
    run.refresh_from_db()
    assert run.status == RunStatus.PAUSED and run.requests.get().is_pending
    services.agent_resume(reload(agent))
    run = execute(run)  # it waits again, for the same request
    assert run.status == RunStatus.WAITING and run.requests.count() == 1
    services.agent_terminate(reload(agent))
    runtime.runs_cancel_for_terminated(agent.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.requests.get().status == RunRequestStatus.CANCELLED


def test_cancel_a_running_run_frees_the_agent_at_once(model, project, user):
    agent = loop_agent(project, user, [READ])
    model.script = [answer(None, ("read_context", {"name": "notes"}))]
    model.during = lambda: runtime.run_cancel(AgentRun.objects.get(agent=agent), actor=user)
    run = execute(start(agent))
    assert run.status == RunStatus.CANCELLED and reload(agent).status == AgentStatus.IDLE
    assert run.steps.filter(kind="tool_call").count() == 0


# --- Upstream failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        UpstreamHTTPError("The AI service failed (HTTP 500).", status=500),
        UpstreamHTTPError("rate limited", status=429, retry_after=7),
        UpstreamTimeout("The AI service did not answer within 2 s."),
        UpstreamUnreachable("Connection refused."),
    ],
)
def test_an_unavailable_upstream_makes_the_run_wait_then_fail_past_the_outage_window(model, project, user, failure):
    agent = loop_agent(project, user, [READ])
    model.script = [failure]
    before = timezone.now()
    run = execute(start(agent))
    assert (run.status, run.error_code, run.worker) == (RunStatus.RUNNING, "", "")
    assert run.retry_count == 1 and run.retry_error == failure.message and run.retry_since >= before
    step = run.steps.get(kind="llm_call")
    assert (step.error["code"], step.error["attempt"]) == ("upstream_unavailable", 1)
    wait = (run.retry_at - run.retry_since).total_seconds()
    assert (7 <= wait <= 7.7) if getattr(failure, "retry_after", None) else (1 <= wait <= 2)  # 2 s x 1/2..1
    assert reload(agent).status == AgentStatus.WORKING

    # Past AGENT_LLM_OUTAGE_SECONDS of it, the next failure fails the run.
    AgentRun.objects.filter(pk=run.pk).update(retry_since=timezone.now() - timedelta(seconds=901))
    model.script = [failure]
    run = execute(run)
    assert (run.status, run.error_code) == (RunStatus.FAILED, "upstream_unavailable")
    assert "AGENT_LLM_OUTAGE_SECONDS" in run.error_message
    assert run.steps.filter(kind="llm_call").latest("index").error["attempt"] == 2
    assert reload(agent).status == AgentStatus.IDLE and "upstream_unavailable" in reload(agent).last_error


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (UpstreamHTTPError("bad request", status=400), "upstream_error"),
        (UpstreamBadResponse("not JSON"), "upstream_error"),
    ],
)
def test_upstream_refusals_fail_the_run_at_once(model, project, user, failure, code):
    agent = loop_agent(project, user, [READ])
    model.script = [failure]
    run = execute(start(agent))
    assert (run.status, run.error_code) == (RunStatus.FAILED, code)
    agent = reload(agent)
    assert agent.status == AgentStatus.IDLE and code in agent.last_error
    step = run.steps.get(kind="llm_call")
    assert step.error["code"] == code


def test_an_answer_twice_unreadable_fails_the_run_as_unparsable_answer(model, project, user):
    agent = loop_agent(project, user, [READ])
    garbled = {"choices": [{"message": {"role": "assistant", "tool_calls": [{"id": 3}]}}],
               "usage": {"prompt_tokens": 50, "completion_tokens": 5}}
    model.script = [garbled, garbled]
    run = execute(start(agent))
    assert (run.status, run.error_code) == (RunStatus.FAILED, "unparsable_answer")
    assert "malformed tool_calls" in run.error_message and run.tokens_used == 110
    assert model.requests[1]["messages"][-1] == {"role": "user", "content": llm.NUDGES["unparsable_answer"]}


def test_an_agent_class_that_raises_fails_the_run(project, monkeypatch):
    from agents.registry import BaseAgent, registry

    class Broken(BaseAgent):
        slug = "broken"
        name = "Broken"

        def run(self, ctx):
            raise KeyError("missing")

    registry.register(Broken)
    try:
        agent = factories.AgentFactory(project=project, agent_type=factories.AgentTypeFactory(handler="broken"))
        run = execute(start(agent))
    finally:
        registry.unregister("broken")
    assert (run.status, run.error_code) == (RunStatus.FAILED, "agent_error") and "KeyError" in run.error_message


# --- One run at a time, and the reaper ---------------------------------------------------------------------


def test_runs_of_one_agent_queue_and_run_in_order(model, project, user):
    agent = loop_agent(project, user, [READ])
    first, second = start(agent, "one"), start(agent, "two")
    assert runtime.run_claim(second.pk) is None  # not its turn: the older run goes first
    model.script = [answer("first done")]
    assert execute(first).status == RunStatus.SUCCEEDED
    model.script = [answer("second done")]
    assert execute(second).status == RunStatus.SUCCEEDED
    assert AgentRun.objects.get(pk=second.pk).started_at >= AgentRun.objects.get(pk=first.pk).finished_at
    assert runtime.run_claim(first.pk) is None  # a finished run is never taken again


def _running(agent) -> AgentRun:
    run = runtime.run_claim(start(agent).pk, worker="w-lost")
    AgentInstance.objects.filter(pk=agent.pk).update(last_heartbeat_at=timezone.now() - timedelta(minutes=5))
    return run


@override_settings(AGENT_RUN_MAX_ATTEMPTS=2, AGENT_HEARTBEAT_TIMEOUT_SECONDS=60)
def test_the_reaper_requeues_a_run_that_lost_its_worker_then_fails_it(project, user):
    agent = loop_agent(project, user, [READ])
    run = _running(agent)
    report = runtime.runs_reap_stale()
    assert report.requeued == [str(run.pk)]
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and reload(agent).status == AgentStatus.IDLE
    assert runtime.run_claim(run.pk, worker="w2").attempts == 2
    AgentInstance.objects.filter(pk=agent.pk).update(last_heartbeat_at=timezone.now() - timedelta(minutes=5))
    report = runtime.runs_reap_stale()
    run.refresh_from_db()
    assert report.failed == [str(run.pk)] and (run.status, run.error_code) == (RunStatus.FAILED, "heartbeat_lost")
    agent = reload(agent)
    assert agent.status == AgentStatus.IDLE and "heartbeat_lost" in agent.last_error


def test_the_reaper_leaves_a_beating_run_alone(project, user):
    agent = loop_agent(project, user, [READ])
    run = runtime.run_claim(start(agent).pk)
    assert runtime.runs_reap_stale().requeued == []
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


def test_the_reaper_parks_the_run_of_an_agent_paused_meanwhile(project, user):
    agent = loop_agent(project, user, [READ])
    run = _running(agent)
    services.agent_pause(reload(agent))
    assert runtime.runs_reap_stale().paused == [str(run.pk)]


def test_the_reaper_sends_queued_runs_again(project, user, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr(runtime, "_send", lambda run_id, task_id: sent.append(run_id))
    agent = loop_agent(project, user, [READ])
    run = start(agent)
    with django_capture_on_commit_callbacks(execute=True):
        report = runtime.runs_reap_stale()
    assert report.dispatched == [str(run.pk)] and sent == [str(run.pk)]


def test_a_broker_outage_does_not_fail_the_request(project, user, django_capture_on_commit_callbacks, monkeypatch):
    def down(run_id, task_id):
        raise ConnectionError("broker down")

    monkeypatch.setattr(runtime, "_send", down)
    agent = loop_agent(project, user, [READ])
    with django_capture_on_commit_callbacks(execute=True):
        run, created = runtime.run_create(agent=agent, instruction="x")
    assert created and AgentRun.objects.get(pk=run.pk).status == RunStatus.QUEUED


@pytest.mark.django_db(transaction=True)
def test_the_context_helper_is_race_safe(project):
    from tests.threads import failures, run_concurrently

    results = run_concurrently(6, lambda i: contexts.context_get_or_create(project=project, name="shared")[0].pk)
    assert failures(results) == [] and len(set(results)) == 1


@override_settings(AGENTS_ENABLED=False)
def test_nothing_starts_while_agents_are_disabled(project, user):
    with override_settings(AGENTS_ENABLED=True):
        agent = loop_agent(project, user, [READ])
        run = start(agent)
    assert runtime.run_claim(run.pk) is None and AgentRun.objects.get(pk=run.pk).status == RunStatus.QUEUED


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_start_a_run_once(project, user, monkeypatch):
    from tests.threads import failures, run_concurrently

    monkeypatch.setattr(runtime, "_send", lambda run_id, task_id: None)  # the threads below are the workers
    agent = loop_agent(project, user, [READ])
    run = start(agent)
    results = run_concurrently(8, lambda i: runtime.run_claim(run.pk, worker=f"w{i}"))
    assert failures(results) == []
    claimed = [r for r in results if r is not None]
    assert len(claimed) == 1 and AgentRun.objects.get(pk=run.pk).attempts == 1
    assert reload(agent).transitions.filter(to_status=AgentStatus.WORKING).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_with_one_idempotency_key_queue_one_run(project, user, monkeypatch):
    from tests.threads import failures, run_concurrently

    monkeypatch.setattr(runtime, "_send", lambda run_id, task_id: None)
    agent = loop_agent(project, user, [READ])
    results = run_concurrently(8, lambda i: runtime.run_create(agent=agent, instruction=f"x{i}", request_id="k")[0].pk)
    assert failures(results) == [] and len(set(results)) == 1 and AgentRun.objects.count() == 1
