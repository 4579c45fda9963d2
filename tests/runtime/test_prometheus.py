"""A real Prometheus (Debian's ``prometheus``) scrapes ``/metrics`` of a two-worker gunicorn (uvicorn workers, ASGI:
the Procfile's ``web``) in multiprocess mode and the ``METRICS_PORT`` of both Celery workers, with the bearer token,
and the run metrics move when a run executes on the real workers: the fleet-wide series of the web, and the workers'
own (steps, LLM request durations)."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request

import pytest
from django.conf import settings

from agents.choices import RunStatus
from agents.runtime import services as runtime
from tests.live import Gunicorn, free_port

from .harness import database_url, reply, wait_for
from .support import MODEL, calls_agent, price_model, run_in

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "prometheus-test-token"


class Prometheus:
    """``prometheus`` scraping one target every second with a bearer token, on a free port and a throwaway store."""

    def __init__(self, targets: list[str], *, workdir) -> None:
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: syndarix\n"
            f"    authorization: {{type: Bearer, credentials: {TOKEN}}}\n"
            f"    static_configs: [{{targets: {json.dumps(targets)}}}]\n"
        )
        self.process = subprocess.Popen(
            [shutil.which("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=(workdir / "prometheus.log").open("wb"),
        )

    def query(self, expression: str) -> float | None:
        """The value of an instant query's single sample, or ``None`` (no sample yet, or not up)."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        try:
            body = json.load(urllib.request.urlopen(url, timeout=2))
        except OSError:
            return None
        result = body["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def test_prometheus_scrapes_the_fleet_and_sees_a_run_finish(project, stub, workers, tmp_path):
    assert shutil.which("prometheus"), "install Debian's prometheus package (apt-get install -y prometheus)"
    price_model()
    agent = calls_agent(project, calls=1)
    multiproc = tmp_path / "metrics-web"
    web = Gunicorn(
        {"DATABASE_URL": database_url(settings.DATABASES["default"]), "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
         "REDIS_URL": settings.REDIS_URL, "METRICS_TOKEN": TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)},
        workers=2, log_dir=tmp_path, asgi=True,
    ).start()
    # The Celery workers serve without a token (loopback): Prometheus's bearer header is ignored there.
    targets = [f"127.0.0.1:{web.port}", *(f"127.0.0.1:{w.env['METRICS_PORT']}" for w in workers.workers)]
    prometheus = Prometheus(targets, workdir=tmp_path)
    try:
        succeeded = 'syndarix_runs_total{status="succeeded"}'
        (before,) = wait_for(lambda: [value] if (value := prometheus.query(succeeded)) is not None else None,
                             timeout=30, message=lambda: f"Prometheus never scraped: up={prometheus.query('up')}")
        wait_for(lambda: prometheus.query('sum(up{job="syndarix"})') == 3, timeout=30,
                 message=lambda: f"not every target is up: {prometheus.query('sum(up)')} of 3")
        tokens_before = prometheus.query('syndarix_llm_tokens_total{type="input"}')
        steps = 'sum(syndarix_run_steps_total{kind="llm_call"}) or vector(0)'
        calls = f'sum(syndarix_llm_request_duration_seconds_count{{model="{MODEL}",outcome="ok"}}) or vector(0)'
        steps_before, calls_before = prometheus.query(steps), prometheus.query(calls)

        stub.script(reply("done", usage=(120, 8)))
        run, _ = runtime.run_create(agent=agent, instruction="one call")
        run_in(run, RunStatus.SUCCEEDED)

        wait_for(lambda: prometheus.query(succeeded) == before + 1, timeout=30,
                 message=lambda: f"{succeeded} stayed {prometheus.query(succeeded)}")
        assert prometheus.query('syndarix_llm_tokens_total{type="input"}') == tokens_before + 120
        assert prometheus.query('syndarix_agents{status="idle"}') >= 1
        # The workers' per-process series (METRICS_PORT, each worker's pool processes added up); at least: the session's
        # workers may still record a step of an earlier test's run.
        wait_for(lambda: prometheus.query(steps) >= steps_before + 1 and prometheus.query(calls) >= calls_before + 1,
                 timeout=15, message=lambda: f"steps {prometheus.query(steps)}, LLM calls {prometheus.query(calls)}")
        # The gunicorn workers' per-process series, added up from the multiprocess directory.
        scrapes = 'sum(syndarix_http_requests_total{route="metrics",status="2xx"})'
        wait_for(lambda: (prometheus.query(scrapes) or 0) >= 3, timeout=15, message="the scrapes were not counted")
        assert list(multiproc.glob("*.db"))
    finally:
        prometheus.stop()
        web.stop()
