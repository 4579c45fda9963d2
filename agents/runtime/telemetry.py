"""The runtime's instrumentation points: per-process Prometheus series and OpenTelemetry spans of runs, LLM calls
and tool calls.

Each point is one decorator or context manager in the runtime's code, the work is here:

- ``run_execution`` (``executor.execute_run``) and ``run_claimed``: a span per execution of a run (``invoke_agent``),
  a child of the Celery task's span, itself a child of the request that queued the run (the trace travels in the
  task's headers, ``syndarix.telemetry``);
- ``llm_call`` (``MeteredLLM``): a span per LLM call following OpenTelemetry's GenAI semantic conventions
  (``gen_ai.operation.name`` ``chat``, the request and response model, the usage, the finish reasons; the prompt and
  the answer only with ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``), and
  ``syndarix_llm_request_duration_seconds{model,outcome}``;
- ``tool_call`` (``ToolLoop``, the agent loop): a span per tool call (``execute_tool``, ``gen_ai.tool.name``) and
  ``syndarix_tool_calls_total{tool,outcome}``;
- ``step_recorded`` (``trace.step_record``): ``syndarix_run_steps_total{kind}``.

Label values are bounded: a model outside the price table and ``AGENT_LLM_MODEL`` counts as ``other``, a tool name
the registry does not know as ``unknown``. Without traces (``syndarix.telemetry.tracer()`` is ``None``) the points do
no span work at all: what remains is the Prometheus update (a few microseconds).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings

from aiservices.exceptions import UpstreamError
from aiservices.llm import BadAnswer, ChatCompletion, ChatRequest, transient
from aiservices.prices import has_price
from syndarix import telemetry
from syndarix.metrics import LLM_REQUEST_SECONDS, RUN_STEPS, TOOL_CALLS

from .tools.registry import ToolResult, tool_registry

#: GenAI semantic conventions (OpenTelemetry): the attribute names the spans carry.
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
SYSTEM = "gen_ai.system"  # the convention's former name of the provider, still read by many back ends
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_TYPE = "gen_ai.tool.type"
TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_RESULT = "gen_ai.tool.call.result"
AGENT_ID = "gen_ai.agent.id"
AGENT_NAME = "gen_ai.agent.name"
ERROR_TYPE = "error.type"
#: The ``ChatRequest.params`` keys recorded as ``gen_ai.request.*``.
REQUEST_PARAMS = {"temperature": "gen_ai.request.temperature", "top_p": "gen_ai.request.top_p",
                  "max_tokens": "gen_ai.request.max_tokens", "seed": "gen_ai.request.seed"}


def model_label(model: str) -> str:
    """The ``model`` label of ``model``: itself when it is ``AGENT_LLM_MODEL`` or in the price table (cached per
    process, ``aiservices.prices.has_price``), else ``other``: the label's values stay bounded whatever a run asks
    for."""
    if model == settings.AGENT_LLM_MODEL or has_price(model):
        return model
    return "other"


def tool_label(name: str) -> str:
    """The ``tool`` label of ``name``: itself when the tool registry knows it, else ``unknown``."""
    return name if name in tool_registry else "unknown"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _failed(span, error_type: str, message: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute(ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, message))


# --- LLM calls -------------------------------------------------------------------------------------------------


class LLMCall:
    """One LLM call in flight (``llm_call``): ``answered`` records the answer; ``span`` is ``None`` without traces."""

    def __init__(self, request: ChatRequest, span) -> None:
        self.request = request
        self.span = span
        self.started = time.perf_counter()
        self.seconds: float | None = None

    def answered(self, completion: ChatCompletion) -> None:
        """The upstream answered ``completion``: the call's time ends here; the span gets the response model, the
        usage (tokens), the finish reason and, when content is captured, the answer."""
        self.seconds = time.perf_counter() - self.started
        span = self.span
        if span is None:
            return
        span.set_attribute(RESPONSE_MODEL, completion.model)
        span.set_attribute(INPUT_TOKENS, completion.prompt_tokens)
        span.set_attribute(OUTPUT_TOKENS, completion.completion_tokens)
        span.set_attribute(FINISH_REASONS, [completion.finish_reason or ""])
        if telemetry.capture_content():
            span.set_attribute(OUTPUT_MESSAGES, _json([completion.message]))


@contextmanager
def llm_call(request: ChatRequest, *, provider: str) -> Iterator[LLMCall]:
    """Around one call of ``request`` to ``provider`` (``openai``, ``offline``): a ``chat {model}`` span (kind
    client) when traces are on, and on the way out ``syndarix_llm_request_duration_seconds{model,outcome}``: ``ok``
    (``LLMCall.answered`` was called), ``bad_answer`` (``BadAnswer``: usage and model recorded), ``unavailable``
    (an upstream outage, ``aiservices.llm.transient``) or ``error``. Exceptions pass through."""
    tracer = telemetry.tracer()
    if tracer is None:
        call = LLMCall(request, None)
        outcome = "error"
        try:
            yield call
            outcome = "ok"
        except BadAnswer:
            outcome = "bad_answer"
            raise
        except UpstreamError as exc:
            outcome = "unavailable" if transient(exc) else "error"
            raise
        finally:
            _observe(call, outcome)
        return
    from opentelemetry.trace import SpanKind

    attributes = {OPERATION: "chat", PROVIDER: provider, SYSTEM: provider, REQUEST_MODEL: request.model}
    attributes.update({name: request.params[key] for key, name in REQUEST_PARAMS.items()
                       if isinstance(request.params.get(key), int | float)})
    if telemetry.capture_content():
        attributes[INPUT_MESSAGES] = _json(request.messages)
    with tracer.start_as_current_span(f"chat {request.model}", kind=SpanKind.CLIENT, attributes=attributes,
                                      record_exception=False, set_status_on_exception=False) as span:
        call = LLMCall(request, span)
        outcome = "error"
        try:
            yield call
            outcome = "ok"
        except BadAnswer as bad:
            outcome = "bad_answer"
            span.set_attribute(RESPONSE_MODEL, bad.model)
            span.set_attribute(INPUT_TOKENS, bad.prompt_tokens)
            span.set_attribute(OUTPUT_TOKENS, bad.completion_tokens)
            _failed(span, bad.code, bad.message)
            raise
        except UpstreamError as exc:
            outcome = "unavailable" if transient(exc) else "error"
            _failed(span, exc.code, exc.message)
            raise
        except BaseException as exc:
            _failed(span, type(exc).__qualname__, str(exc))
            raise
        finally:
            _observe(call, outcome)


def _observe(call: LLMCall, outcome: str) -> None:
    seconds = call.seconds if call.seconds is not None else time.perf_counter() - call.started
    LLM_REQUEST_SECONDS.labels(model=model_label(call.request.model), outcome=outcome).observe(seconds)


# --- Tool calls -------------------------------------------------------------------------------------------------


def tool_call(method: Callable) -> Callable:
    """Decorate the agent loop's ``ToolLoop._outcome(self, call)``, which returns ``(name, arguments, result,
    permission)`` for one tool call of the model (``call``: ``{"id", "function": {"name", "arguments"}}``; ``result`` a
    ``ToolResult``, or what the loop waits on when a person must answer first): count it in
    ``syndarix_tool_calls_total{tool,outcome}`` (``ok``, ``error``, ``waiting``) and, with traces on, wrap it in an
    ``execute_tool {name}`` span (its error code as ``error.type``)."""

    @functools.wraps(method)
    def traced(self, call: dict[str, Any]):
        tracer = telemetry.tracer()
        if tracer is None:
            outcome = method(self, call)
            _count_tool(outcome)
            return outcome
        name = str(call.get("function", {}).get("name", ""))
        attributes = {OPERATION: "execute_tool", TOOL_NAME: name, TOOL_CALL_ID: str(call.get("id", "")),
                      TOOL_TYPE: "function"}
        with tracer.start_as_current_span(f"execute_tool {name}", attributes=attributes) as span:
            outcome = method(self, call)
            result = outcome[2]
            if isinstance(result, ToolResult) and result.is_error:
                error = result.structured.get("error") or {}
                _failed(span, str(error.get("code", "tool_error")), str(error.get("message", "")))
            if telemetry.capture_content():
                span.set_attribute(TOOL_ARGUMENTS, _json(outcome[1]))
                if isinstance(result, ToolResult):
                    span.set_attribute(TOOL_RESULT, result.text())
        _count_tool(outcome)
        return outcome

    return traced


def _count_tool(outcome: tuple) -> None:
    name, _, result, _ = outcome
    label = "waiting" if not isinstance(result, ToolResult) else "error" if result.is_error else "ok"
    TOOL_CALLS.labels(tool=tool_label(name), outcome=label).inc()


# --- Runs and steps ---------------------------------------------------------------------------------------------


def run_execution(function: Callable[..., str]) -> Callable[..., str]:
    """Decorate ``executor.execute_run(run_id, ...)``, which returns the run's outcome: with traces on, one
    ``invoke_agent`` span per execution (``syndarix.run.id``, ``syndarix.run.outcome``; error status when the run
    failed); ``run_claimed`` names the agent on it."""

    @functools.wraps(function)
    def traced(run_id, *args, **kwargs) -> str:
        tracer = telemetry.tracer()
        if tracer is None:
            return function(run_id, *args, **kwargs)
        with tracer.start_as_current_span("invoke_agent", attributes={
                OPERATION: "invoke_agent", "syndarix.run.id": str(run_id)}) as span:
            outcome = function(run_id, *args, **kwargs)
            span.set_attribute("syndarix.run.outcome", outcome)
            if outcome == "failed":
                _failed(span, "run_failed", "The run failed.")
            return outcome

    return traced


def run_claimed(run) -> None:
    """The execution's span (``run_execution``) names the claimed ``run``'s agent (id, name, agent type, project)."""
    if telemetry.tracer() is None:
        return
    from opentelemetry import trace

    span, agent = trace.get_current_span(), run.agent
    span.update_name(f"invoke_agent {agent.name}")
    span.set_attributes({AGENT_ID: str(agent.pk), AGENT_NAME: agent.name, "syndarix.project.id": str(agent.project_id),
                         "syndarix.agent_type.id": str(agent.agent_type_id)})


def step_recorded(kind: str) -> None:
    """Count one step of ``kind`` (a ``StepKind`` value) in ``syndarix_run_steps_total{kind}``."""
    RUN_STEPS.labels(kind=kind).inc()
