"""Prometheus metrics: ``GET /metrics`` and the Celery workers' ``METRICS_PORT``, in the Prometheus text format
(``prometheus-client``).

Two kinds of series:

- **Fleet-wide**, read from the shared stores at scrape time by the sources of ``register_source`` (apps register
  theirs when they are ready, as ``agents.metrics`` does; this module adds the broker's queue lengths). One scrape
  of any web process is the whole fleet wherever the workers run; only ``/metrics`` serves them.
- **Per process**: module-level ``prometheus_client`` metrics updated where things happen (``HTTP_REQUESTS`` and
  ``HTTP_REQUEST_SECONDS`` by ``MetricsMiddleware``; ``LLM_REQUEST_SECONDS``, ``RUN_STEPS`` and ``TOOL_CALLS`` by the
  runtime, ``agents.runtime.telemetry``). With ``PROMETHEUS_MULTIPROC_DIR`` set in the environment
  (before the process starts), prometheus-client's multiprocess mode keeps them in files of that directory, and a
  scrape adds up every process of the machine that writes there: gunicorn's workers on ``/metrics``, a Celery
  worker's pool processes on its ``METRICS_PORT``. Give each of the two its own directory (``gunicorn.conf.py`` and
  the worker empty theirs at start). Without it, each process serves its own values.

A new per-process series is a module-level metric and one call where it happens::

    RUN_STEPS = Counter("syndarix_run_steps", "...", ["kind"])
    RUN_STEPS.labels(kind=kind).inc()

Label values stay bounded: route patterns, methods, status classes, statuses, model and tool names; never ids.

Access (``/metrics`` and ``METRICS_PORT`` alike): with ``METRICS_TOKEN`` set, ``Authorization: Bearer <token>``
(compared in constant time); without it, clients on loopback only (the client address as ``TRUSTED_PROXY_HOPS``
resolves it).
"""

from __future__ import annotations

import glob
import hmac
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, make_server

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

logger = logging.getLogger(__name__)

#: The environment variable of prometheus-client's multiprocess mode (read when the process starts).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: The fleet-wide series, read at scrape time (served by ``/metrics`` only; see ``register_source``).
SCRAPE_REGISTRY = CollectorRegistry(auto_describe=False)

#: Seconds a scrape waits for the broker to connect and to answer.
BROKER_TIMEOUT_SECONDS = 1.0

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "syndarix_http_requests", "HTTP requests answered, by route pattern, method and status class.",
    ["route", "method", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "syndarix_http_request_duration_seconds", "Time to answer an HTTP request (seconds), by route pattern and method.",
    ["route", "method"],
)
LLM_REQUEST_SECONDS = Histogram(
    "syndarix_llm_request_duration_seconds",
    "Time an LLM request took (seconds), by model (the price table's models and AGENT_LLM_MODEL; else other) and "
    "outcome (ok, bad_answer, unavailable, error).",
    ["model", "outcome"], buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, float("inf")),
)
RUN_STEPS = Counter("syndarix_run_steps", "Steps recorded in the runs' traces, by kind.", ["kind"])
TOOL_CALLS = Counter(
    "syndarix_tool_calls", "Tool calls of the agent loop, by tool (unknown: not a registered tool) and outcome "
    "(ok, error, waiting: a person must approve or answer first).", ["tool", "outcome"],
)


def multiprocess_dir() -> str:
    """The multiprocess directory of this process (``PROMETHEUS_MULTIPROC_DIR``), or ``""``."""
    return os.environ.get(MULTIPROC_ENV, "")


def wipe_multiprocess_dir() -> None:
    """Delete the value files of earlier processes from the multiprocess directory (creating it when missing): call
    it once when a process group starts, before its processes write (gunicorn's ``on_starting``, a Celery worker's
    ``worker_init``), or the values of processes that are gone add to the new ones."""
    directory = multiprocess_dir()
    if directory:
        os.makedirs(directory, exist_ok=True)
        for path in glob.glob(os.path.join(directory, "*.db")):
            os.remove(path)


def process_dead(pid: int) -> None:
    """Forget the live gauges of the exited process ``pid`` (gunicorn's ``child_exit``, a Celery pool process's
    shutdown); its counters and histograms keep counting in the machine's totals."""
    if multiprocess_dir():
        mark_process_dead(pid)


def process_registry() -> CollectorRegistry:
    """The per-process series to serve: every process of the machine's multiprocess directory, else this
    process's own (``REGISTRY``, with the ``process_*`` and ``python_*`` series)."""
    if not multiprocess_dir():
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


# --- Access ------------------------------------------------------------------------------------------------------


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def access_refused(authorization: str, client_address: str) -> tuple[int, str] | None:
    """``None`` when a scrape may read the metrics, else ``(status, reason)``: 401 without the right bearer token
    when ``METRICS_TOKEN`` is set, 403 for a client off loopback when it is not."""
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        return 401, "Send Authorization: Bearer <METRICS_TOKEN>."
    if _is_loopback(client_address):
        return None
    return 403, "Metrics are served to loopback clients only; set METRICS_TOKEN to scrape from elsewhere."


@require_safe
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: the per-process series (``process_registry``) and the fleet-wide ones (``SCRAPE_REGISTRY``)
    in the Prometheus text format (version 0.0.4). 401 (``WWW-Authenticate: Bearer``) or 403 as ``access_refused``
    says; never rate limited."""
    from syndarix.api.clientip import client_ip

    refused = access_refused(request.META.get("HTTP_AUTHORIZATION", ""), client_ip(request))
    if refused:
        status, reason = refused
        response = HttpResponse(reason + "\n", status=status, content_type="text/plain; charset=utf-8")
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body = generate_latest(process_registry()) + generate_latest(SCRAPE_REGISTRY)
    return HttpResponse(body, content_type=CONTENT_TYPE_PLAIN_0_0_4)


# --- HTTP request metrics --------------------------------------------------------------------------------------


class MetricsMiddleware:
    """Count and time every request (``HTTP_REQUESTS``, ``HTTP_REQUEST_SECONDS``) by the URL pattern it matched
    (``api/v1/projects/<uuid:project_pk>/agents/<uuid:pk>``; ``unmatched`` for none), its method (``other`` beyond the
    standard ones) and the status class (``2xx``...). Put it first in ``MIDDLEWARE`` so the time covers the rest."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = (match.route or match.view_name) if match is not None else ""
        method = request.method if request.method in _METHODS else "other"
        HTTP_REQUESTS.labels(route=route or "unmatched", method=method, status=f"{response.status_code // 100}xx").inc()
        HTTP_REQUEST_SECONDS.labels(route=route or "unmatched", method=method).observe(time.perf_counter() - started)
        return response


# --- Fleet-wide series, read at scrape time ---------------------------------------------------------------------

#: A source of fleet-wide series: a callable returning the metric families it read (raising when its store fails).
Source = Callable[[], Iterable[Metric]]


class ScrapeCollector:
    """The fleet-wide series of every registered source (``register_source``), and
    ``syndarix_metrics_source_up{source}``: 1 when the source answered this scrape, 0 when it raised (its series are
    then left out; the failure is logged and the rest is served)."""

    def __init__(self) -> None:
        self.sources: dict[str, Source] = {}

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "syndarix_metrics_source_up", "1 when the store behind fleet-wide series answered the scrape.",
            labels=["source"],
        )
        for name, source in self.sources.items():
            try:
                families = list(source())
            except Exception as exc:  # a store that is down must not take the other series with it
                logger.warning("Metrics: source %s failed (%s: %s)", name, type(exc).__name__, exc)
                up.add_metric([name], 0)
                continue
            yield from families
            up.add_metric([name], 1)
        yield up


_SCRAPE = ScrapeCollector()
SCRAPE_REGISTRY.register(_SCRAPE)


def register_source(name: str, source: Source) -> None:
    """Add (or replace) the fleet-wide source ``name`` (``database``, ``broker``): ``source()`` runs at every scrape
    of ``/metrics`` and returns metric families (``prometheus_client.core.*MetricFamily``)."""
    _SCRAPE.sources[name] = source


def celery_queue_names() -> list[str]:
    """The Celery queues the workers consume: the default queue and the queues of ``CELERY_TASK_ROUTES``."""
    names = [settings.CELERY_TASK_DEFAULT_QUEUE]
    routes = getattr(settings, "CELERY_TASK_ROUTES", None) or {}
    for route in routes.values() if isinstance(routes, dict) else ():
        queue = route.get("queue") if isinstance(route, dict) else None
        if isinstance(queue, str) and queue not in names:
            names.append(queue)
    return names


def queue_lengths() -> Iterable[Metric]:
    """``syndarix_queue_length{queue}``: messages waiting in each Celery queue of the broker (Redis, or the folder
    broker of ``make run``), read through kombu; a broker that does not answer within ``BROKER_TIMEOUT_SECONDS``
    fails the source."""
    from syndarix.celery import app

    lengths = GaugeMetricFamily("syndarix_queue_length", "Messages waiting in a Celery queue.", labels=["queue"])
    seconds = BROKER_TIMEOUT_SECONDS
    options = {"socket_timeout": seconds, "socket_connect_timeout": seconds, "max_retries": 1, "interval_start": 0,
               "interval_step": 0}
    with app.connection_for_read(connect_timeout=seconds, transport_options=options) as connection:
        channel = connection.default_channel
        for name in celery_queue_names():
            lengths.add_metric([name], channel.queue_declare(queue=name, passive=False).message_count)
    return [lengths]


register_source("broker", queue_lengths)


# --- The Celery worker's endpoint ------------------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # a scrape every few seconds is not news
        pass


def serve_worker_metrics(port: int, address: str = "0.0.0.0") -> ThreadingWSGIServer:
    """Serve this machine's per-process series (``process_registry``) on ``http://address:port/`` from a daemon
    thread, with the access rule of ``/metrics``; returns the server (``shutdown()`` stops it). A Celery worker
    calls it when it starts, with ``METRICS_PORT``."""
    exposition = make_wsgi_app(process_registry())

    def app(environ, start_response):
        refused = access_refused(environ.get("HTTP_AUTHORIZATION", ""), environ.get("REMOTE_ADDR", ""))
        if refused:
            status, reason = refused
            headers = [("Content-Type", "text/plain; charset=utf-8")]
            if status == 401:
                headers.append(("WWW-Authenticate", 'Bearer realm="metrics"'))
            start_response(f"{status} {'Unauthorized' if status == 401 else 'Forbidden'}", headers)
            return [(reason + "\n").encode()]
        return exposition(environ, start_response)

    server = make_server(address, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
