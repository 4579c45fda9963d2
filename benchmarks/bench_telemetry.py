"""Telemetry overhead benchmark: what the runtime's instrumentation costs per step, with traces off and on.

Runs the agent loop in this process (``executor.execute_run``) against the local stub of the integration tests
(``tests/runtime/harness.py``, answering at once): each run is ``--calls`` LLM calls with a ``read_context`` tool call
after each but the last. Three configurations, interleaved run by run (rotating which goes first):

- ``bare``: the instrumentation points bypassed (the code as it was before them: no Prometheus update, no span);
- ``off``: as shipped, without ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the Prometheus series only);
- ``on``: traces exported over OTLP/HTTP (batch processor, protobuf) to a receiver on loopback that only answers
  200, with ``requests`` instrumented as ``syndarix.telemetry.setup`` does.

Prints, per configuration, the median over ``--rounds`` runs of CPU time per step (this process, every thread: the
runtime, the stub, the exporter's thread, the receiver) and steps/s (wall), with the ratios to ``bare``, the SQL
statements per run (equal in all three), and the load average.

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/syndarix .venv/bin/python benchmarks/bench_telemetry.py
    (options: --rounds R (default 30), --calls N (default 5))

It creates a throwaway database next to the one ``DATABASE_URL`` names (``bench_telemetry_<pid>``) and drops it at
the end.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndarix.settings")
os.environ["RATELIMIT_ENABLE"] = "false"
for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
    os.environ.pop(name, None)  # "off" is the default: the benchmark switches traces on itself

import django  # noqa: E402

django.setup()
logging.disable(logging.INFO)  # a line per run would be most of what this prints

from _support import throwaway_database  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import override_settings  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from tests.runtime.harness import StubLLM, reply, tool_call  # noqa: E402

MODEL = "bench-model"
CONFIGURATIONS = ("bare", "off", "on")


class _Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that reads the export and answers 200 (an empty ``ExportTraceServiceResponse``)."""

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.exports += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextlib.contextmanager
def configuration(name: str, provider):
    """Switch the process to configuration ``name`` for the length of the block."""
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    from agents.runtime import context, executor, loop, trace
    from syndarix import telemetry as otel

    if name == "on":
        otel.use_provider(provider)
        RequestsInstrumentor().instrument(tracer_provider=provider)
        try:
            yield
        finally:
            RequestsInstrumentor().uninstrument()
            otel.use_provider(None)
        return
    if name == "off":
        yield
        return

    class Bare:
        def answered(self, completion) -> None:
            pass

    @contextlib.contextmanager
    def bare_llm_call(request, *, provider):
        yield Bare()

    patches = [
        (context.telemetry, "llm_call", bare_llm_call),
        (loop.ToolLoop, "_outcome", loop.ToolLoop._outcome.__wrapped__),
        (executor, "execute_run", executor.execute_run.__wrapped__),
        (executor.telemetry, "run_claimed", lambda run: None),
        (trace, "step_recorded", lambda kind: None),
    ]
    saved = [(owner, attribute, getattr(owner, attribute)) for owner, attribute, _ in patches]
    for owner, attribute, value in patches:
        setattr(owner, attribute, value)
    try:
        yield
    finally:
        for owner, attribute, value in saved:
            setattr(owner, attribute, value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="runs per configuration (default 30)")
    parser.add_argument("--calls", type=int, default=5, help="LLM calls per run (default 5)")
    args = parser.parse_args()

    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from agents import services
    from agents.contexts import services as contexts
    from agents.models import AgentRun, AgentType
    from agents.runtime import executor
    from agents.runtime import services as runtime
    from aiservices.models import ModelPrice
    from projects.models import Project, Workspace

    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    sink.exports = 0
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=f"http://127.0.0.1:{sink.server_port}/v1/traces")))
    stub = StubLLM().start()
    runtime._send = lambda *args, **kwargs: None  # runs execute here, not on a worker

    with throwaway_database("bench_telemetry"), override_settings(
            AGENT_LLM_PROVIDER="openai", AGENT_LLM_API_URL=stub.base_url, AGENT_LLM_API_KEY="k"):
        from django.contrib.auth import get_user_model

        owner = get_user_model().objects.create_user("bench", password="bench-pass-1")
        project = Project.objects.create(
            workspace=Workspace.objects.create(name="Bench", slug="bench"), owner=owner, name="Bench", slug="bench")
        ModelPrice.objects.create(model=MODEL, input_usd_per_mtok=1, output_usd_per_mtok=2)
        context, _ = contexts.context_get_or_create(project=project, name="notes")
        contexts.context_write(context, {"note": "hello"})
        loop_type = AgentType.objects.create(name="Bench loop", slug="bench-loop")
        services.agent_type_commit_revision(loop_type, template={
            "instructions": {"agents_md": "Read the notes, then answer."}, "llm": {"model": MODEL},
            "tools": [{"type": "platform", "op": "read_context", "permission": "allow"}],
            "runner": {"max_steps": args.calls + 1},
        })
        agent = services.agent_spawn(project=project, agent_type=loop_type, name="looper")

        def one_run(name: str) -> tuple[float, float, int, int]:
            stub.script(*[reply(tool_calls=[tool_call("read_context", {"name": "notes"})], usage=(300, 20))
                          for _ in range(args.calls - 1)], reply("done", usage=(400, 5)))
            run, _ = runtime.run_create(agent=agent, instruction="look")
            connection.queries_log.clear()  # CaptureQueriesContext counts within a bounded log
            with configuration(name, provider), CaptureQueriesContext(connection) as queries:
                cpu, wall = time.process_time(), time.perf_counter()
                outcome = executor.execute_run(run.pk, worker="bench")
                wall = time.perf_counter() - wall
                if name == "on":
                    provider.force_flush()  # the export's own CPU counts in this run
                cpu = time.process_time() - cpu
            assert outcome == "succeeded", AgentRun.objects.get(pk=run.pk).error_message
            steps = AgentRun.objects.get(pk=run.pk).steps_completed
            return cpu, wall, steps, len(queries)

        for name in CONFIGURATIONS * 2:  # warm up: prices, look-ups, connections, the exporter's session
            one_run(name)
        results: dict[str, list[tuple[float, float, int, int]]] = {name: [] for name in CONFIGURATIONS}
        for n in range(args.rounds):
            order = CONFIGURATIONS[n % 3:] + CONFIGURATIONS[:n % 3]
            for name in order:
                results[name].append(one_run(name))
        provider.shutdown()
    stub.stop()
    sink.shutdown()

    load = os.getloadavg()
    print(f"Telemetry overhead: {args.rounds} runs per configuration, {args.calls} LLM calls and "
          f"{args.calls - 1} tool calls per run, interleaved; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    summary = {}
    for name, rows in results.items():
        cpu_per_step = statistics.median(cpu / steps for cpu, _, steps, _ in rows) * 1e6
        steps_per_s = statistics.median(steps / wall for _, wall, steps, _ in rows)
        summary[name] = (cpu_per_step, steps_per_s, statistics.median(q for *_, q in rows), rows[0][2])
    base_cpu, base_rate = summary["bare"][0], summary["bare"][1]
    print(f"{'configuration':<14}{'CPU µs/step':>12}{'ratio':>8}{'steps/s':>10}{'ratio':>8}{'SQL/run':>9}"
          f"{'steps/run':>11}")
    for name, (cpu, rate, statements, steps) in summary.items():
        print(f"{name:<14}{cpu:>12.0f}{cpu / base_cpu:>8.3f}{rate:>10.1f}{rate / base_rate:>8.3f}{statements:>9.0f}"
              f"{steps:>11}")
    print(f"OTLP exports received: {sink.exports}")


if __name__ == "__main__":
    main()
