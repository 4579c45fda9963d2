"""Agents on the model servers people run: the runtime against the strict OpenAI-compatible test server.

The server (``tests.runtime.harness.StubLLM``, real HTTP on a free port) refuses what llama-cpp-python,
llama.cpp's grammar compiler, OpenAI, vLLM or Gemini behind LiteLLM refuse (``tests/conformance.py``); each run
here executes in process (``executor.execute_run``) through the real chat-completions client.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest
from django.test import override_settings

from agents import counters, services
from agents.choices import AgentStatus, RunStatus, StepKind
from agents.models import AgentContext, AgentInstance, AgentRun
from agents.registry.builtin import BUILTIN_AGENTS
from agents.runtime import executor
from agents.runtime import services as runtime
from agents.runtime.context import call_model
from agents.runtime.tools.registry import model_schema, tool_registry
from aiservices import client, llm
from aiservices.apps import _warn_unserved_model
from aiservices.models import ModelPrice
from projects.models import Issue
from tests import factories
from tests.conformance import schema_problems

from ..runtime.harness import StubLLM, answer, reply, status, tool_call

pytestmark = pytest.mark.django_db

MODEL = "served-model"


@pytest.fixture(scope="module")
def server():
    stub = StubLLM().start()
    yield stub
    stub.stop()


@pytest.fixture
def stub(server):
    server.reset()
    client.reset_session()
    with override_settings(
        AGENT_LLM_PROVIDER="openai", AGENT_LLM_API_URL=server.base_url, AGENT_LLM_API_KEY="k", AGENT_LLM_MODEL=MODEL,
        AGENT_LLM_MAX_RETRIES=1, AGENT_LLM_RETRY_BACKOFF_SECONDS=0.001, AGENT_LLM_READ_TIMEOUT=5,
    ):
        yield server
    client.reset_session()
    assert not server.unexpected, [r.last_message for r in server.unexpected]


def loop_agent(project, tools, *, llm_section=None, config=None):
    agent_type = factories.AgentTypeFactory()
    template = {"llm": llm_section if llm_section is not None else {}, "tools": tools}
    services.agent_type_commit_revision(agent_type, template=template)
    return services.agent_spawn(project=project, agent_type=agent_type, name="looper", config=config or {})


def tool(op, permission=None):
    return {"type": "platform", "op": op, **({"permission": permission} if permission else {})}


def execute(run) -> AgentRun:
    executor.execute_run(run.pk)
    return AgentRun.objects.get(pk=run.pk)


def start(agent, instruction="Do it."):
    return runtime.run_create(agent=agent, instruction=instruction)[0]


def tool_results(request) -> list[dict]:
    return [json.loads(m["content"]) for m in request.messages if m["role"] == "tool"]


# --- 1, 2, 3, 5: the request every server takes -------------------------------------------------------------


def test_a_tool_call_and_its_answer_reach_a_strict_server(stub, project):
    """A plain UUID X-Request-ID (run and step in headers of their own), content "" on the assistant's tool-call
    message, tool_choice with the tools, a default max_tokens: the strict server takes every request."""
    agent = loop_agent(project, [tool("write_context", "allow")])
    write = tool_call("write_context", {"name": "plan", "data": {"a": 1}})
    stub.script(reply(tool_calls=[write]), reply("Done."))

    run = execute(start(agent))

    assert not stub.refused, stub.refused
    assert (run.status, run.result) == (RunStatus.SUCCEEDED, {"message": "Done."})
    first, second = stub.requests
    for request in (first, second):
        uuid.UUID(request.headers["X-Request-ID"])
        assert request.headers["X-Syndarix-Run-ID"] == str(run.pk)
        assert request.body["tool_choice"] == "auto" and request.body["max_tokens"] == 2048
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]
    assert (first.headers["X-Syndarix-Step"], second.headers["X-Syndarix-Step"]) == ("1", "3")
    assert second.messages[2] == {"role": "assistant", "content": "", "tool_calls": [write]}


def test_template_and_settings_choose_tool_choice_and_max_tokens(stub, project):
    agent = loop_agent(project, [tool("list_contexts")], llm_section={"tool_choice": "required", "max_tokens": 300})
    stub.script(reply("ok"))
    execute(start(agent))
    assert (stub.requests[0].body["tool_choice"], stub.requests[0].body["max_tokens"]) == ("required", 300)

    with override_settings(AGENT_LLM_TOOL_CHOICE="none", AGENT_LLM_MAX_TOKENS=0):
        plain = loop_agent(project, [tool("list_contexts")])
        stub.script(reply("ok"))
        execute(start(plain))
    assert stub.requests[1].body["tool_choice"] == "none" and "max_tokens" not in stub.requests[1].body


def test_no_tools_no_tool_choice(stub, project):
    agent = loop_agent(project, [])
    stub.script(reply("Nothing to call."))
    assert execute(start(agent)).status == RunStatus.SUCCEEDED
    assert "tools" not in stub.requests[0].body and "tool_choice" not in stub.requests[0].body


def test_the_strict_server_refuses_what_the_real_ones_refuse(stub):
    """The conformance server itself: each rule answers as the server it comes from."""
    import requests

    url = f"{stub.base_url}/chat/completions"
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    fn = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}

    def post(body, request_id=None):
        headers = {"X-Request-ID": request_id or str(uuid.uuid4())}
        return requests.post(url, json=body, headers=headers, timeout=5)

    assert post(base, request_id=f"{uuid.uuid4()}-3").status_code == 400
    null_content = {**base, "messages": [*base["messages"], {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}
    refused = post(null_content)
    assert refused.status_code == 500 and "Input should be a valid string" in refused.text
    assert post({**base, "tools": [fn]}).status_code == 400
    assert post({**base, "tool_choice": "auto"}).status_code == 400
    untyped = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"mode": {"enum": ["a", "b"]}}}}}
    assert "an enum without a type" in post({**base, "tools": [untyped], "tool_choice": "auto"}).text
    long = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"s": {"type": "string", "maxLength": 2000}}}}}
    assert "maxLength" in post({**base, "tools": [long], "tool_choice": "auto"}).text
    assert len(stub.refused) == 6 and not stub.requests


# --- 2: the upstream's own error, and no retry of a refused request ------------------------------------------


def test_a_validation_error_is_not_retried_and_its_text_reaches_the_step_and_the_run(stub, project):
    agent = loop_agent(project, [tool("list_contexts")])
    detail = [{"type": "string_type", "loc": ["body", "messages", 2, "content"],
               "msg": "Input should be a valid string"}]
    stub.script(status(500, {"detail": detail}), reply("never sent"))

    run = execute(start(agent))

    assert (run.status, run.error_code) == (RunStatus.FAILED, "upstream_error")
    assert "HTTP 500" in run.error_message and "body.messages.2.content: Input should be a valid string" in (
        run.error_message)
    assert len(stub.requests) == 1, "a request the server refused as invalid is not sent again"
    step = run.steps.get(kind=StepKind.LLM_CALL)
    assert step.error == {"code": "upstream_error", "message": run.error_message}
    stub.reset()


def test_an_outage_stays_transient(stub, project):
    """A 503 (a server restarting) is retried, and reported as upstream_unavailable: the outage handling of the
    runtime keys on it."""
    agent = loop_agent(project, [])
    stub.script(status(503), reply("Back."))
    assert execute(start(agent)).status == RunStatus.SUCCEEDED
    assert len(stub.requests) == 2
    for exc, transient in [
        (llm.UpstreamHTTPError("x", status=503, detail="Service Unavailable"), True),
        (llm.UpstreamHTTPError("x", status=429), True),
        (llm.UpstreamHTTPError("x", status=500, detail="1 validation error: Field required"), False),
        (llm.UpstreamHTTPError("x", status=400), False),
        (llm.UpstreamHTTPError("x", status=404), False),
        (llm.UpstreamUnreachable("x"), True),
        (llm.UpstreamTimeout("x"), True),
    ]:
        assert llm.transient(exc) is transient, exc


# --- 4: which model a call uses, and what it costs -----------------------------------------------------------


def test_the_model_of_a_call_follows_the_documented_order(settings):
    settings.AGENT_LLM_MODEL = "from-setting"
    template = {"llm": {"model": "from-template"}}
    assert call_model(override="from-run", config={"model": "from-config"}, template=template) == "from-run"
    assert call_model(override=None, config={"model": "from-config"}, template=template) == "from-config"
    assert call_model(override="", config={"model": " "}, template=template) == "from-template"
    assert call_model(override=None, config={}, template={"llm": {}}) == "from-setting"
    assert call_model(override=None, config=None, template=None) == "from-setting"


def test_a_worker_warns_when_the_server_does_not_list_the_model(stub, caplog):
    assert llm.unserved_model_warning() is None, "a server that lists no models says nothing"
    stub.models = [MODEL, "other"]
    assert llm.served_models() == [MODEL, "other"] and llm.unserved_model_warning() is None
    with override_settings(AGENT_LLM_MODEL="gpt-4o"):
        warning = llm.unserved_model_warning()
        _warn_unserved_model()
    assert "AGENT_LLM_MODEL is 'gpt-4o'" in warning and f"({MODEL}, other)" in warning
    assert warning in caplog.text


def test_built_in_agents_follow_the_setting(stub, project):
    for cls in BUILTIN_AGENTS:
        assert "model" not in cls.template["llm"], cls.slug
    agent_type = factories.AgentTypeFactory(handler="reviewer")
    agent = services.agent_spawn(project=project, agent_type=agent_type, name="rev")
    stub.script(reply("Reviewed."))
    assert execute(start(agent)).status == RunStatus.SUCCEEDED
    assert stub.requests[0].body["model"] == MODEL


def test_an_unpriced_model_costs_nothing_and_says_so(stub, project):
    """The server answers as another model than the priced one asked for: metered at 0, marked unpriced."""
    ModelPrice.objects.create(model="gpt-4o", input_usd_per_mtok=Decimal("2.5"), output_usd_per_mtok=Decimal("10"))
    agent = loop_agent(project, [], llm_section={"model": "gpt-4o"})
    stub.script(reply("Hi.", usage=(300, 40), model="gemma-3-270m-it"))

    run = execute(start(agent))

    assert (run.status, run.tokens_used, run.cost, run.unpriced_tokens) == (RunStatus.SUCCEEDED, 340, 0, 340)
    step = run.steps.get(kind=StepKind.LLM_CALL)
    assert (step.name, step.cost, step.output["unpriced"]) == ("gemma-3-270m-it", 0, True)
    assert AgentInstance.objects.get(pk=agent.pk).cost_incurred == 0
    assert counters.project_metrics(project)["total_unpriced_tokens"] == 340
    assert counters.counters_recompute(dry_run=True) == [], "the counter agrees with the runs it is rebuilt from"


def test_a_dated_name_of_the_asked_model_keeps_its_price(stub, project):
    ModelPrice.objects.create(model="gpt-4o", input_usd_per_mtok=Decimal("2.5"), output_usd_per_mtok=Decimal("10"))
    agent = loop_agent(project, [], llm_section={"model": "gpt-4o"})
    stub.script(reply("Hi.", usage=(1000, 100), model="gpt-4o-2024-08-06"))
    run = execute(start(agent))
    assert (run.cost, run.unpriced_tokens) == (Decimal("0.0035"), 0)
    assert "unpriced" not in run.steps.get(kind=StepKind.LLM_CALL).output


# --- 6: empty and unreadable answers ------------------------------------------------------------------------


EMPTY = {"model": MODEL, "usage": {"prompt_tokens": 333, "completion_tokens": 6},
         "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}]}


def test_an_empty_answer_is_metered_kept_and_asked_again_once(stub, project):
    agent = loop_agent(project, [tool("list_contexts")])
    stub.script(answer(EMPTY), reply("Now with words.", usage=(350, 4)))

    run = execute(start(agent))

    assert (run.status, run.result) == (RunStatus.SUCCEEDED, {"message": "Now with words."})
    empty, good = run.steps.filter(kind=StepKind.LLM_CALL).order_by("index")
    assert (empty.prompt_tokens, empty.completion_tokens, empty.error["code"]) == (333, 6, "empty_answer")
    assert empty.output["raw"] == EMPTY
    assert run.tokens_used == 333 + 6 + 350 + 4
    assert stub.requests[1].messages[-1] == {"role": "user", "content": llm.NUDGES["empty_answer"]}
    assert len(stub.requests[1].messages) == len(stub.requests[0].messages) + 1


def test_two_empty_answers_fail_the_run_with_their_usage(stub, project):
    agent = loop_agent(project, [])
    stub.script(answer(EMPTY), answer(EMPTY))
    run = execute(start(agent))
    assert (run.status, run.error_code, run.tokens_used) == (RunStatus.FAILED, "empty_answer", 678)
    assert run.steps.filter(kind=StepKind.LLM_CALL, error__code="empty_answer").count() == 2


def test_an_unreadable_answer_keeps_its_raw_text_capped(stub, project):
    agent = loop_agent(project, [])
    huge = {"model": MODEL, "choices": [{"message": {"role": "assistant", "content": {"x": "y" * 50_000}}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 9000}}
    stub.script(answer(huge), answer(huge))
    run = execute(start(agent))
    assert (run.error_code, run.tokens_used) == ("unparsable_answer", 2 * 9010)
    raw = run.steps.filter(kind=StepKind.LLM_CALL).first().output["raw"]
    assert raw["truncated"] is True and len(raw["preview"]) <= 4000


# --- 7: the tool schemas a model is offered ------------------------------------------------------------------


def test_every_tool_offered_to_a_model_is_compact_and_portable():
    assert len(tool_registry) >= 16
    for registered in tool_registry:
        parameters = registered.openai_function()["function"]["parameters"]
        assert schema_problems(parameters) == [], registered.name
        text = json.dumps(parameters)
        assert '"maxLength"' not in text and '"maxItems"' not in text and '"uuid"' not in text, registered.name
    for name in ("read_context", "write_context"):
        parameters = tool_registry.get(name).openai_function()["function"]["parameters"]
        by_id, by_name = sorted(parameters["anyOf"], key=lambda alternative: "name" in alternative["required"])
        assert "name" in by_name["required"] and "context_id" not in by_name["properties"]
        assert "context_id" in by_id["required"] and "name" not in by_id["properties"]
        assert {"name", "context_id"} <= set(parameters["properties"]), "Ollama reads the plain properties"
    write = tool_registry.get("write_context")
    assert "At most 2000 characters." in write.openai_function()["function"]["parameters"]["properties"][
        "change_description"]["description"]
    # MCP tools/list keeps the full schemas.
    assert write.mcp_definition()["inputSchema"]["properties"]["change_description"]["maxLength"] == 2000


def test_model_schema_rules():
    full = {"type": "object", "required": [], "properties": {
        "a": {"enum": [1, 2]}, "b": {"type": ["string", "null"], "format": "uuid"},
        "c": {"type": "array", "maxItems": 500, "items": {"enum": ["x"]}}}}
    assert model_schema(full) == {"type": "object", "properties": {
        "a": {"enum": [1, 2], "type": "integer"},
        "b": {"type": "string", "description": "An id (UUID). An empty string clears it."},
        "c": {"type": "array", "items": {"enum": ["x"], "type": "string"}, "description": "At most 500 items."}}}
    assert full["required"] == [] and full["properties"]["b"]["format"] == "uuid", "the full schema is untouched"


def test_limits_are_checked_on_the_server_and_told_to_the_model(stub, project):
    agent = loop_agent(project, [tool("write_context", "allow")])
    long = tool_call("write_context", {"name": "n", "data": {}, "change_description": "x" * 2500})
    stub.script(reply(tool_calls=[long]), reply("Shorter next time."))
    assert execute(start(agent)).status == RunStatus.SUCCEEDED
    error = tool_results(stub.requests[1])[0]["error"]
    assert error["code"] == "invalid_arguments"
    assert "arguments.change_description: at most 2000 characters (got 2500)" in error["message"]
    assert "xxxx" not in error["message"]


# --- 8: validate before asking ------------------------------------------------------------------------------


def test_calls_that_cannot_succeed_go_back_to_the_model_without_asking(stub, project):
    other = factories.ProjectFactory()  # another workspace: "not found" for this agent
    done = factories.agent_in_status(AgentStatus.TERMINATED, project=project)
    agent = loop_agent(project, [tool("write_context", "ask"), tool("create_issue", "ask"),
                                 tool("pause_agent", "ask")])
    calls = [
        tool_call("write_context", {"data": {"a": 1}}),
        tool_call("create_issue", {"title": "T", "project_id": str(other.pk)}),
        tool_call("create_issue", {"title": "T", "project_id": str(uuid.uuid4())}),
        tool_call("pause_agent", {"agent_id": str(done.pk)}),
    ]
    stub.script(reply(tool_calls=calls), reply("I see."))

    run = execute(start(agent))

    assert run.status == RunStatus.SUCCEEDED and not run.requests.exists(), "nobody was asked"
    codes = [r["error"]["code"] for r in tool_results(stub.requests[1])]
    assert codes == ["invalid_arguments", "not_found", "not_found", "invalid_transition"]
    assert "give one of: context_id, name" in tool_results(stub.requests[1])[0]["error"]["message"]
    assert not Issue.objects.exists() and not AgentContext.objects.exists()
    assert AgentInstance.objects.get(pk=done.pk).status == AgentStatus.TERMINATED


def test_a_valid_call_is_asked_and_checked_again_when_it_runs(stub, project, user):
    target = factories.AgentFactory(project=project)
    agent = loop_agent(project, [tool("pause_agent", "ask")])
    stub.script(reply(tool_calls=[tool_call("pause_agent", {"agent_id": str(target.pk)})]))
    run = execute(start(agent))
    assert run.status == RunStatus.WAITING
    assert AgentInstance.objects.get(pk=target.pk).status == AgentStatus.IDLE, "the check wrote nothing"
    assert target.transitions.count() == 1  # the spawn only

    services.agent_terminate(AgentInstance.objects.get(pk=target.pk), reason="gone")  # meanwhile
    runtime.run_request_decide(run.requests.get(), decision="approve", actor=user)
    stub.script(reply("It was gone."))
    run = execute(run)
    assert run.status == RunStatus.SUCCEEDED
    assert tool_results(stub.requests[1])[0]["error"]["code"] == "invalid_transition"
