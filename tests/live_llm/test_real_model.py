"""One run of a built-in agent on a real model server: llama-cpp-python serving Gemma 3 270M (``make test-llm``).

The run goes end to end through the real chat-completions client: the tools are offered, the model calls one,
a person approves the write, the model sees the tool's result and answers; the run succeeds. The test prints
the run's trace summary and the throughput.

A 270M model follows a direct instruction to call one tool; it does not plan, pick among many tools on its own
or write good prose. The instruction below is that direct: what is tested is the platform and the wire format,
not the model's judgement.
"""

from __future__ import annotations

import json
import time

import pytest
from django.test import override_settings

from agents import services
from agents.choices import RunRequestKind, RunStatus, StepKind
from agents.models import AgentContext, AgentRun
from agents.runtime import executor
from agents.runtime import services as runtime
from tests import factories

from .conftest import MODEL

pytestmark = pytest.mark.django_db

INSTRUCTION = (
    'Call the function write_context with {"name": "testing", "data": {"result": "passed"}, "mode": "merge"}. '
    "When it has returned, reply with one short sentence."
)
#: Most times the run may stop for a person (approvals, input) before the test gives up.
MAX_DECISIONS = 6


def _trace(run: AgentRun) -> list[str]:
    lines = []
    for step in run.steps.order_by("index"):
        usage = f" {step.prompt_tokens}+{step.completion_tokens} tok" if step.kind == StepKind.LLM_CALL else ""
        error = f" ERROR {step.error['code']}: {step.error['message'][:120]}" if step.error else ""
        detail = ""
        if step.kind == StepKind.TOOL_CALL:
            detail = " " + json.dumps(step.input.get("arguments"))[:120]
        elif step.kind == StepKind.LLM_CALL and step.output and step.output.get("message"):
            message = step.output["message"]
            calls = [c["function"]["name"] for c in message.get("tool_calls") or []]
            detail = f" -> {'calls ' + ', '.join(calls) if calls else repr((message.get('content') or '')[:100])}"
        lines.append(f"{step.index:>2} {step.kind:<9} {step.name:<16} {step.duration_ms:>6} ms{usage}{detail}{error}")
    return lines


def test_a_built_in_agent_runs_end_to_end_on_a_real_model(llama_server, project, user):
    settings = {
        "AGENT_LLM_PROVIDER": "openai", "AGENT_LLM_API_URL": llama_server, "AGENT_LLM_API_KEY": "",
        "AGENT_LLM_MODEL": MODEL, "AGENT_LLM_READ_TIMEOUT": 300, "AGENT_LLM_TOTAL_TIMEOUT": 600,
        "AGENT_LLM_MAX_TOKENS": 256,
    }
    started = time.monotonic()
    with override_settings(**settings):
        agent_type = factories.AgentTypeFactory(slug="tester", handler="tester")
        agent = services.agent_spawn(project=project, agent_type=agent_type, name="tester")
        run, _ = runtime.run_create(agent=agent, instruction=INSTRUCTION)
        executor.execute_run(run.pk)
        run = AgentRun.objects.get(pk=run.pk)
        approved = 0
        for _ in range(MAX_DECISIONS):
            if run.status != RunStatus.WAITING:
                break
            request = run.requests.get(status="pending")
            if request.kind == RunRequestKind.APPROVAL:
                runtime.run_request_decide(request, decision="approve", actor=user)
                approved += 1
            else:  # the model asked the person for input: there is nothing to add
                runtime.run_request_answer(run, action="decline", actor=user)
            executor.execute_run(run.pk)
            run = AgentRun.objects.get(pk=run.pk)
    seconds = time.monotonic() - started

    trace = _trace(run)
    llm_steps = list(run.steps.filter(kind=StepKind.LLM_CALL))
    llm_seconds = sum(s.duration_ms for s in llm_steps) / 1000
    completion = sum(s.completion_tokens for s in llm_steps)
    print(f"\nrun {run.status} in {seconds:.1f} s: {len(llm_steps)} LLM calls in {llm_seconds:.1f} s, "
          f"{run.tokens_used} tokens ({completion} completion), "
          f"{run.tokens_used / llm_seconds:.0f} tokens/s processed, {completion / llm_seconds:.1f} completion tokens/s")
    print("\n".join(trace))

    assert run.status == RunStatus.SUCCEEDED, (run.error_code, run.error_message, trace)
    first = llm_steps[0]
    assert "write_context" in first.input["tools"], "the tools were offered"
    assert first.input.get("params", {}).get("temperature") == 0.2
    calls = list(run.steps.filter(kind=StepKind.TOOL_CALL, name="write_context", error__isnull=True))
    assert calls and calls[0].input["permission"] == "ask" and approved >= 1, "a write was approved and ran"
    after = [s for s in llm_steps if s.index > calls[0].index]
    assert after and any(m.get("role") == "tool" for m in after[0].input["messages"]), "the model saw the result"
    # The context the approved call wrote, whatever the model named it (a tiny model does not copy names faithfully).
    written = AgentContext.objects.get(project=project, pk=calls[0].output["id"])
    assert written.versions.filter(version=calls[0].output["version"], data=calls[0].output["data"]).exists()
    assert run.unpriced_tokens == run.tokens_used > 0 and run.cost == 0, "a local model is unpriced, not free"
