"""``GET /metrics``: who may read it, the fleet-wide series from the counters, the HTTP request series by route
pattern, a broker that is down, the Celery worker's endpoint and prometheus-client's multiprocess mode."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents import services
from agents.choices import AgentStatus as S
from agents.runtime import services as runtime
from agents.runtime.trace import step_record
from syndarix import metrics
from tests import factories
from tests.live import ROOT, free_port

pytestmark = pytest.mark.django_db


def samples(body: bytes) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted label items): value}`` of an exposition (parsing it also checks the format)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def scrape(client, **headers) -> dict:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return samples(response.content)


def test_without_a_token_only_loopback_clients_may_read(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    refused = client.get("/metrics", REMOTE_ADDR="10.1.2.3")
    assert refused.status_code == 403 and b"METRICS_TOKEN" in refused.content


def test_behind_a_trusted_proxy_the_forwarded_client_decides(client, settings):
    settings.METRICS_TOKEN, settings.TRUSTED_PROXY_HOPS = "", 1
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403


def test_with_a_token_the_bearer_must_match(client, settings):
    settings.METRICS_TOKEN = "s3cret-metrics"
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Token s3cret-metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.post("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics").status_code == 405


def test_fleet_series_come_from_the_counters(client, project, agent_type):
    before = scrape(client)
    agent = factories.AgentFactory(project=project, agent_type=agent_type)
    factories.agent_in_status(S.PAUSED, project=project, agent_type=agent_type)
    services.agent_spawn(project=project, agent_type=agent_type, name="draft", is_playground=True)
    run = agent.runs.create(instruction="x")
    step_record(run.pk, kind="llm_call", name="m", prompt_tokens=300, completion_tokens=20, cost=Decimal("0.25"),
                agent_id=agent.pk)
    step_record(run.pk, kind="llm_call", name="free", prompt_tokens=40, completion_tokens=2, agent_id=agent.pk,
                unpriced=True)
    runtime.run_cancel(run)
    factories.AgentFactory(agent_type=agent_type).runs.create(instruction="queued")

    after = scrape(client)

    def moved(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0)

    assert moved("syndarix_agents", status="idle") == 3 and moved("syndarix_agents", status="paused") == 1
    assert moved("syndarix_runs_total", status="cancelled") == 1 and moved("syndarix_runs_total", status="failed") == 0
    assert moved("syndarix_runs_in_progress", status="queued") == 1
    assert moved("syndarix_llm_tokens_total", type="input") == 340
    assert moved("syndarix_llm_tokens_total", type="output") == 22
    assert moved("syndarix_llm_cost_usd_total") == pytest.approx(0.25)
    assert moved("syndarix_llm_unpriced_tokens_total") == 42
    assert after[("syndarix_metrics_source_up", (("source", "database"),))] == 1


def test_a_scrape_is_a_fixed_number_of_queries(client, project, agent_type, django_assert_max_num_queries):
    for _ in range(3):
        factories.AgentFactory(project=project, agent_type=agent_type).runs.create(instruction="x")
    with django_assert_max_num_queries(3):
        client.get("/metrics")


def test_http_requests_are_counted_by_route_pattern_never_by_id(client, project):
    client.get(f"/api/v1/projects/{project.pk}/agents")  # 401: anonymous
    client.get("/no/such/page")
    body = scrape(client)
    route = "api/v1/projects/<uuid:project_id>/agents"
    assert body[("syndarix_http_requests_total", (("method", "GET"), ("route", route), ("status", "4xx")))] >= 1
    assert body[("syndarix_http_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "4xx")))] >= 1
    assert not any(str(project.pk) in str(labels) for _, labels in body)
    assert body[("syndarix_http_request_duration_seconds_count", (("method", "GET"), ("route", route)))] >= 1


def test_a_broker_that_is_down_leaves_its_series_out_and_serves_the_rest(client, monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")  # what Celery reads first
    body = scrape(client)
    assert body[("syndarix_metrics_source_up", (("source", "broker"),))] == 0
    assert not any(name == "syndarix_queue_length" for name, _ in body)
    assert ("syndarix_agents", (("status", "idle"),)) in body


def test_queue_lengths_are_read_from_the_broker(client, settings):
    from syndarix.celery import app

    queue = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-metrics-test"
    settings.CELERY_TASK_ROUTES = {"agents.runtime.tasks.reap_stale_runs": {"queue": queue}}
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(queue)
        with connection.Producer() as producer:
            for _ in range(3):
                producer.publish({"x": 1}, routing_key=queue, declare=[])
        try:
            assert scrape(client)[("syndarix_queue_length", (("queue", queue),))] == 3
        finally:
            connection.default_channel.queue_purge(queue)


def test_the_worker_endpoint_serves_the_process_series_with_the_same_rule(settings):
    settings.METRICS_TOKEN = "worker-token"
    port = free_port()
    server = metrics.serve_worker_metrics(port, "127.0.0.1")
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert refused.value.code == 401
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                         headers={"Authorization": "Bearer worker-token"})
        body = urllib.request.urlopen(request, timeout=5).read()
    finally:
        server.shutdown()
        server.server_close()
    names = {name for name, _ in samples(body)}
    assert "syndarix_agents" not in names  # fleet-wide series are the web's alone
    assert "python_info" in names or any(name.startswith("syndarix_http") for name in names)


MULTIPROCESS_CHILD = """
from syndarix import metrics
metrics.HTTP_REQUESTS.labels(route="r", method="GET", status="2xx").inc({n})
"""


def test_multiprocess_mode_adds_up_the_processes_of_a_machine(tmp_path):
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    (tmp_path / "stale_123.db").write_bytes(b"from a process of an earlier start")
    wipe = "from syndarix import metrics; metrics.wipe_multiprocess_dir()"
    subprocess.run([sys.executable, "-c", wipe], env=env, check=True, cwd=ROOT)
    assert not list(tmp_path.glob("*.db"))
    for n in (2, 5):
        subprocess.run([sys.executable, "-c", MULTIPROCESS_CHILD.format(n=n)], env=env, check=True, cwd=ROOT)
    read = (
        "from prometheus_client import generate_latest; from syndarix import metrics;"
        "import sys; sys.stdout.write(generate_latest(metrics.process_registry()).decode())"
    )
    out = subprocess.run([sys.executable, "-c", read], env=env, check=True, cwd=ROOT, capture_output=True).stdout
    body = samples(out)
    assert body[("syndarix_http_requests_total", (("method", "GET"), ("route", "r"), ("status", "2xx")))] == 7


def test_the_grafana_dashboard_queries_only_series_that_are_served(client, project):
    import json
    import re

    from agents.runtime import telemetry
    from agents.runtime.tools.registry import ToolResult
    from aiservices.llm import ChatRequest

    client.get(f"/api/v1/projects/{project.pk}/agents")  # so the HTTP series have samples
    with telemetry.llm_call(ChatRequest(model="m", messages=[]), provider="openai"):  # and the runtime's
        pass
    telemetry.step_recorded("llm_call")
    telemetry.tool_call(lambda loop, call: ("read_context", {}, ToolResult({"ok": True}), "allow"))(
        None, {"id": "c1", "function": {"name": "read_context"}})
    served = {name for name, _ in scrape(client)}
    dashboard = json.loads((ROOT / "docs" / "grafana" / "syndarix-fleet.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in expressions for name in re.findall(r"\bsyndarix_[a-z_]+", expr)}
    assert used and used <= served, used - served
