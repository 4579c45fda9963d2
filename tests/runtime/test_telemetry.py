"""The runtime's telemetry: a run's OpenTelemetry spans follow the GenAI semantic conventions (the SDK's in-memory
exporter, and one live OTLP/HTTP export to a receiver in this process, from the API request to the LLM call), prompt
and completion text only when opted in, and the per-process Prometheus series move when a run executes."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from agents.contexts import services as contexts
from agents.runtime import executor
from agents.runtime import services as runtime
from syndarix import telemetry as otel
from syndarix.celery import app as celery_app

from .harness import reply, tool_call, wait_for
from .support import MODEL, fresh, loop_agent, platform_tool, price_model, run_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def in_process(stub, monkeypatch):
    """Runs execute here (``executor.execute_run``), their Celery messages dropped, the LLM calls going to the stub."""
    monkeypatch.setattr(runtime, "_send", lambda *args: None)
    with override_settings(AGENT_LLM_PROVIDER="openai", AGENT_LLM_API_URL=stub.base_url, AGENT_LLM_API_KEY="k"):
        yield


@pytest.fixture
def spans():
    """The project's spans go to an in-memory exporter for the test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.use_provider(provider)
    yield exporter
    otel.use_provider(None)


def _reads_then_answers(stub, project):
    price_model()
    context, _ = contexts.context_get_or_create(project=project, name="notes")
    contexts.context_write(context, {"note": "hello"})
    agent = loop_agent(project, [platform_tool("read_context", "allow")], max_steps=5)
    stub.script(reply(tool_calls=[tool_call("read_context", {"name": "notes"})], usage=(50, 7)),
                reply("done", usage=(80, 3)))
    return agent


def _execute(agent, instruction: str = "look"):
    run, _ = runtime.run_create(agent=agent, instruction=instruction)
    assert executor.execute_run(run.pk, worker="here") == "succeeded", fresh(run).error_message
    return run


def test_a_run_is_a_span_with_a_genai_span_per_llm_call_and_per_tool_call(project, stub, in_process, spans):
    agent = _reads_then_answers(stub, project)
    run = _execute(agent)

    finished = spans.get_finished_spans()
    (execution,) = [s for s in finished if s.attributes.get("gen_ai.operation.name") == "invoke_agent"]
    assert execution.name == f"invoke_agent {agent.name}"
    assert execution.attributes["syndarix.run.id"] == str(run.pk)
    assert execution.attributes["gen_ai.agent.id"] == str(agent.pk)
    assert execution.attributes["syndarix.run.outcome"] == "succeeded"

    chats = [s for s in finished if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert [s.name for s in chats] == [f"chat {MODEL}"] * 2
    first, second = (dict(s.attributes) for s in chats)
    assert first["gen_ai.request.model"] == first["gen_ai.response.model"] == MODEL
    assert first["gen_ai.provider.name"] == first["gen_ai.system"] == "openai"
    assert (first["gen_ai.usage.input_tokens"], first["gen_ai.usage.output_tokens"]) == (50, 7)
    assert first["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert (second["gen_ai.usage.input_tokens"], second["gen_ai.response.finish_reasons"]) == (80, ("stop",))
    assert not any(key in attributes for attributes in (first, second)
                   for key in ("gen_ai.input.messages", "gen_ai.output.messages"))  # no text unless opted in

    (tool,) = [s for s in finished if s.attributes.get("gen_ai.operation.name") == "execute_tool"]
    assert (tool.name, tool.attributes["gen_ai.tool.name"]) == ("execute_tool read_context", "read_context")
    assert "gen_ai.tool.call.arguments" not in tool.attributes
    # One trace: the LLM and tool calls are children of the run's execution.
    assert {s.context.trace_id for s in [*chats, tool]} == {execution.context.trace_id}
    assert {s.parent.span_id for s in [*chats, tool]} == {execution.context.span_id}


def test_prompt_and_completion_text_are_exported_only_when_opted_in(project, stub, in_process, spans):
    agent = _reads_then_answers(stub, project)
    with override_settings(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=True):
        _execute(agent, instruction="the secret instruction")
    finished = spans.get_finished_spans()
    chat = next(s for s in finished if s.attributes.get("gen_ai.operation.name") == "chat")
    assert "the secret instruction" in chat.attributes["gen_ai.input.messages"]
    assert "read_context" in chat.attributes["gen_ai.output.messages"]
    tool = next(s for s in finished if s.attributes.get("gen_ai.operation.name") == "execute_tool")
    assert '"notes"' in tool.attributes["gen_ai.tool.call.arguments"]


def _statements(queries: CaptureQueriesContext) -> list[str]:
    """The SQL of a run, less the stop checks that could not ride on a step's answer (their number depends on the
    machine's load, see ``test_statements``)."""
    def stop_check(sql: str) -> bool:
        return sql.startswith("SELECT") and all(
            column in sql for column in ('"agents_agentrun"."task_id"', '"agents_agentinstance"."status"'))

    return [q["sql"] for q in queries if not stop_check(q["sql"])]


def test_traces_add_no_statement_and_nothing_is_traced_without_them(project, stub, in_process):
    agent = _reads_then_answers(stub, project)
    _execute(agent, instruction="warm up")  # the price and the tool's first look-ups
    exporter = InMemorySpanExporter()
    stub.script(reply(tool_calls=[tool_call("read_context", {"name": "notes"})], usage=(50, 7)),
                reply("done", usage=(80, 3)))
    with CaptureQueriesContext(connection) as off:
        _execute(agent)
    assert otel.tracer() is None
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.use_provider(provider)
    try:
        stub.script(reply(tool_calls=[tool_call("read_context", {"name": "notes"})], usage=(50, 7)),
                    reply("done", usage=(80, 3)))
        with CaptureQueriesContext(connection) as on:
            _execute(agent)
    finally:
        otel.use_provider(None)
    assert len(_statements(on)) == len(_statements(off))
    assert len(exporter.get_finished_spans()) == 4  # the run, two LLM calls, one tool call


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_per_process_series_move_when_a_run_executes(project, stub, in_process):
    agent = _reads_then_answers(stub, project)
    before = (_sample("syndarix_run_steps_total", kind="llm_call"),
              _sample("syndarix_run_steps_total", kind="tool_call"),
              _sample("syndarix_tool_calls_total", tool="read_context", outcome="ok"),
              _sample("syndarix_llm_request_duration_seconds_count", model=MODEL, outcome="ok"))
    _execute(agent)
    after = (_sample("syndarix_run_steps_total", kind="llm_call"),
             _sample("syndarix_run_steps_total", kind="tool_call"),
             _sample("syndarix_tool_calls_total", tool="read_context", outcome="ok"),
             _sample("syndarix_llm_request_duration_seconds_count", model=MODEL, outcome="ok"))
    assert [b - a for a, b in zip(before, after, strict=True)] == [2, 1, 1, 2]

    # Label values stay bounded: a model without a price (and not AGENT_LLM_MODEL) is "other", a tool the registry
    # does not know is "unknown".
    other = _sample("syndarix_llm_request_duration_seconds_count", model="other", outcome="ok")
    unknown = _sample("syndarix_tool_calls_total", tool="unknown", outcome="error")
    stub.script(reply(tool_calls=[tool_call("no_such_tool_123", {})]), reply("done"))
    runtime_agent = loop_agent(project, [platform_tool("read_context", "allow")], name="priceless")
    runtime_agent.config = {"model": "some-unpriced-model-7"}
    runtime_agent.save(update_fields=["config"])
    _execute(runtime_agent)
    assert _sample("syndarix_llm_request_duration_seconds_count", model="other", outcome="ok") == other + 2
    assert _sample("syndarix_tool_calls_total", tool="unknown", outcome="error") == unknown + 1
    # Priced a moment ago (this process had cached "no price"): its calls count under its name at once.
    price_model("some-unpriced-model-7")
    stub.script(reply("done"))
    _execute(runtime_agent)
    assert _sample("syndarix_llm_request_duration_seconds_count", model="some-unpriced-model-7", outcome="ok") == 1


class _Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver (``POST /v1/traces``, protobuf) keeping what it received."""

    daemon_threads = True

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.received = threading.Event()
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def spans(self) -> list:
        return [span for request in self.requests for resource in request.resource_spans
                for scope in resource.scope_spans for span in scope.spans]


class _ReceiverHandler(BaseHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path != "/v1/traces" or self.headers["Content-Type"] != "application/x-protobuf":
            self.send_response(404)
            self.end_headers()
            return
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.requests.append(request)
        self.server.received.set()
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def _value(attribute):
    kind = attribute.value.WhichOneof("value")
    value = getattr(attribute.value, kind)
    return [getattr(v, v.WhichOneof("value")) for v in value.values] if kind == "array_value" else value


def test_a_run_queued_by_a_request_is_exported_over_otlp_http_as_one_trace(project, user, stub, monkeypatch):
    """The real setup (``OTEL_EXPORTER_OTLP_ENDPOINT``): the API request that queues the run, the Celery task (eager
    here) and the run's spans reach an OTLP/HTTP receiver as one trace, with the GenAI attributes."""
    from tests.conftest import client_for

    receiver = _Receiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.server_port}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "syndarix-test")
    agent = _reads_then_answers(stub, project)
    assert otel.setup()
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        with override_settings(AGENT_LLM_PROVIDER="openai", AGENT_LLM_API_URL=stub.base_url, AGENT_LLM_API_KEY="k"):
            response = client_for(user).post(f"/api/v1/projects/{project.pk}/agents/{agent.pk}/runs",
                                             {"instruction": "look"}, format="json")
        assert response.status_code == 202, response.content
        assert fresh(agent.runs.get()).status == "succeeded"
    finally:
        celery_app.conf.task_always_eager = eager
        otel.shutdown()
        receiver.shutdown()
    assert receiver.received.is_set()
    (service,) = {_value(a) for r in receiver.requests for res in r.resource_spans for a in res.resource.attributes
                  if a.key == "service.name"}
    assert service == "syndarix-test"
    exported = receiver.spans()
    by_operation: dict[str, list] = {}
    for span in exported:
        attributes = {a.key: _value(a) for a in span.attributes}
        by_operation.setdefault(attributes.get("gen_ai.operation.name", span.name), []).append((span, attributes))
    (chat, attributes), _ = by_operation["chat"]
    assert (attributes["gen_ai.request.model"], attributes["gen_ai.response.model"]) == (MODEL, MODEL)
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (50, 7)
    assert attributes["gen_ai.response.finish_reasons"] == ["tool_calls"]
    (tool, tool_attributes), = by_operation["execute_tool"]
    assert tool_attributes["gen_ai.tool.name"] == "read_context"
    # One trace from the API request through the Celery task and the run to the LLM's HTTP request.
    request = next(span for span in exported if span.name.startswith("POST api/v1/projects/"))
    assert {span.trace_id for span in exported if span.trace_id == request.trace_id} and {
        chat.trace_id, tool.trace_id} == {request.trace_id}
    assert any(span.name.startswith("run/agents.runtime.tasks.execute_run") for span in exported
               if span.trace_id == request.trace_id)
    assert any(span.name == "POST" and span.parent_span_id == chat.span_id for span in exported)  # requests


def test_a_worker_exports_the_run_in_the_trace_of_the_request_that_queued_it(project, user, stub, tmp_path,
                                                                             monkeypatch):
    """Across processes: the request's Celery message carries its trace, and a real worker started with
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` exports the task, the run and its LLM call in that trace."""
    from django.conf import settings

    from tests.conftest import client_for

    from .conftest import AGENT_MODULE
    from .harness import Workers, maintenance_queue, new_queue_name, purge_queue, worker_env

    receiver = _Receiver()
    endpoint = f"http://127.0.0.1:{receiver.server_port}"
    queue = new_queue_name()
    extra = {"AGENT_REGISTRY_MODULES": AGENT_MODULE, "REDIS_URL": settings.REDIS_URL,
             "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "syndarix-worker",
             "OTEL_BSP_SCHEDULE_DELAY": "200"}
    env = worker_env(database=settings.DATABASES["default"], broker_url=settings.CELERY_BROKER_URL, queue=queue,
                     llm_url=stub.base_url, extra=extra)
    worker = Workers(app=celery_app, env=env, queue=queue, log_dir=tmp_path, count=1)
    previous = celery_app.conf.task_default_queue, celery_app.conf.maintenance_queue
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    agent = _reads_then_answers(stub, project)
    try:
        worker.start_all(timeout=30)
        celery_app.conf.task_default_queue, celery_app.conf.maintenance_queue = queue, maintenance_queue(queue)
        assert otel.setup()
        response = client_for(user).post(f"/api/v1/projects/{project.pk}/agents/{agent.pk}/runs",
                                         {"instruction": "look"}, format="json")
        assert response.status_code == 202, response.content
        run_in(agent.runs.get(), "succeeded")

        def exported() -> list | None:
            spans = receiver.spans()
            names = {s.name for s in spans}
            # The task's span ends after the run's last commit (and the publishing of its events): wait for it too.
            done = "run/agents.runtime.tasks.execute_run" in names and any(n.startswith("chat ") for n in names)
            return spans if done else None

        wait_for(exported, timeout=15, message="the worker exported no LLM call or no task span")
    finally:
        otel.shutdown()
        celery_app.conf.task_default_queue, celery_app.conf.maintenance_queue = previous
        worker.stop()
        purge_queue(settings.CELERY_BROKER_URL, queue)
        receiver.shutdown()
    spans = receiver.spans()  # this process's spans too, exported when its provider shut down
    request = next(s for s in spans if s.name.startswith("POST api/v1/projects/"))
    task = next(s for s in spans if s.name == "run/agents.runtime.tasks.execute_run")
    chat = next(s for s in spans if s.name == f"chat {MODEL}")
    assert task.trace_id == chat.trace_id == request.trace_id  # one trace, from the request to the worker's calls
    services = {_value(a) for r in receiver.requests for res in r.resource_spans for a in res.resource.attributes
                if a.key == "service.name"}
    assert services == {"syndarix", "syndarix-worker"}
