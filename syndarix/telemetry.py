"""OpenTelemetry traces, exported over OTLP/HTTP when the standard OpenTelemetry variables ask for it.

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) in the environment, ``setup`` (run
once per process when Django starts, ``syndarix.apps.SyndarixConfig.ready``) builds a tracer provider whose spans go
through a batch processor to the OTLP/HTTP exporter (``opentelemetry-exporter-otlp-proto-http``; it reads the other
``OTEL_EXPORTER_OTLP_*`` variables itself: headers, timeout, compression, certificates), names the service from
``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (default ``syndarix``), and instruments Django (a span per
request), Celery (a span per task published and run, the trace carried in the task's headers from the request that
queued it to the worker that runs it) and ``requests`` (a span per outgoing HTTP call, LLM requests included, with
``traceparent`` sent along). The apps add their own spans through ``tracer()`` (``agents.runtime.telemetry``: runs,
LLM calls, tool calls).

Without the variable (or with ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``) nothing is set up:
``tracer()`` is ``None``, the apps' instrumentation points skip span work altogether, and nothing is exported.

Prompt and completion text stay out of the spans unless ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` (a
Django setting, the variable OpenTelemetry's GenAI instrumentations read) is true: ``capture_content()``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

#: The instrumentation scope of the project's own spans.
SCOPE = "syndarix"

_state: dict[str, Any] = {"tracer": None, "provider": None, "instrumentors": []}


def exporter_endpoint(environ: dict[str, str] | None = None) -> str:
    """The OTLP endpoint the environment names for traces (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, else
    ``OTEL_EXPORTER_OTLP_ENDPOINT``), or ``""`` when there is none or the SDK or its trace exporter is switched off
    (``OTEL_SDK_DISABLED=true``, ``OTEL_TRACES_EXPORTER=none``)."""
    environ = os.environ if environ is None else environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ""
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return ""
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return (endpoint or "").strip()


def tracer():
    """The project's ``opentelemetry.trace.Tracer``, or ``None`` when traces are off (check it first: with ``None``
    an instrumentation point does no span work at all)."""
    return _state["tracer"]


def capture_content() -> bool:
    """Whether spans may carry prompt and completion text (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``)."""
    return bool(settings.OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT)


def use_provider(provider) -> None:
    """Make ``provider`` (an ``opentelemetry.sdk.trace.TracerProvider``) the one the project's spans go to, or with
    ``None`` switch the project's spans off. ``setup`` calls it; tests and benchmarks call it with a provider of
    their own (an in-memory exporter)."""
    _state["provider"] = provider
    _state["tracer"] = provider.get_tracer(SCOPE) if provider is not None else None


def setup() -> bool:
    """Set traces up for this process when ``exporter_endpoint()`` names an endpoint (see the module docstring);
    a second call does nothing. Returns whether traces are on."""
    if _state["provider"] is not None:
        return True
    if not exporter_endpoint():
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({SERVICE_NAME: "syndarix"} if not os.environ.get("OTEL_SERVICE_NAME") else {})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):  # it can be set once per process
        trace.set_tracer_provider(provider)  # for libraries that trace through the global provider
    use_provider(provider)
    instrument(provider)
    logger.info("OpenTelemetry: traces exported over OTLP/HTTP to %s", exporter_endpoint())
    return True


def instrument(provider) -> None:
    """Instrument Django, Celery and ``requests`` with ``provider`` (each once per process)."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    for instrumentor in (DjangoInstrumentor(), CeleryInstrumentor(), RequestsInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)
            _state["instrumentors"].append(instrumentor)


def shutdown() -> None:
    """Export what is buffered, undo the instrumentation and switch the project's spans off (a test's cleanup; a
    process that exits flushes through the SDK's own exit hook)."""
    provider = _state["provider"]
    for instrumentor in _state["instrumentors"]:
        instrumentor.uninstrument()
    _state["instrumentors"] = []
    use_provider(None)
    if provider is not None:
        provider.shutdown()
