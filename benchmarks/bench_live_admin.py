"""The live admin's latency: from a step's commit to its row on an open run page, in headless Chromium.

What it does:

1. Creates and migrates a throwaway database beside the one ``DATABASE_URL`` names (dropped at the end) and a run
   waiting for a person.
2. Starts the web process as the Procfile does (gunicorn with uvicorn workers, ``tests/live.py``) twice: one with
   ``REDIS_URL`` (streams are woken by Redis pub/sub) and one without (streams read the outbox every
   ``EVENTS_POLL_SECONDS``, as under ``make run``), and opens the run's page in one headless Chromium per server.
3. In rounds, records one step (``step_record``, as a worker does) and measures, on both pages at once, the time
   from the commit to the step's row in the trace (a ``MutationObserver`` stamps it; same machine, same clock).
   Prints p50, p90 and max per server and the ratio of the medians.

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/syndarix REDIS_URL=redis://127.0.0.1:6379/1 \\
        .venv/bin/python benchmarks/bench_live_admin.py --rounds 30

Needs PostgreSQL, Redis (``REDIS_URL``; without it only the polling server is measured) and Debian's ``chromium``.
It asserts nothing; the behaviour is tested by ``tests/agents/test_live_admin_browser.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndarix.settings")
os.environ.setdefault("DJANGO_ENV_FILE", "")
os.environ.setdefault("RATELIMIT_ENABLE", "false")

OBSERVER = """
window.__seen = {};
new MutationObserver(() => {
  document.querySelectorAll('tr.run-step').forEach(row => {
    if (!(row.id in window.__seen)) window.__seen[row.id] = Date.now();
  });
}).observe(document.body, {subtree: true, childList: true});
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(rounds: int, redis_url: str) -> None:
    from django.conf import settings
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    from agents.choices import AgentStatus, RunRequestKind, RunStatus, StepKind
    from agents.models import AgentRun, AgentRunRequest
    from agents.runtime.trace import step_record
    from tests.browser import Browser
    from tests.factories import AgentTypeFactory, ProjectFactory, UserFactory, agent_in_status
    from tests.live import Gunicorn
    from tests.runtime.harness import database_url

    person = UserFactory(username="bench-live", is_staff=True, is_superuser=True)
    agent = agent_in_status(AgentStatus.WAITING, project=ProjectFactory(),
                            agent_type=AgentTypeFactory(handler="builder"))
    run = AgentRun.objects.create(agent=agent, instruction="Measure", status=RunStatus.WAITING,
                                  started_at=timezone.now())
    AgentRunRequest.objects.create(run=run, kind=RunRequestKind.APPROVAL, tool_name="write_context", arguments={})
    client = Client()
    client.force_login(person)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    path = reverse("admin:agents_agentrun_change", args=[run.pk])

    base_env = {"DATABASE_URL": database_url(settings.DATABASES["default"]), "REDIS_URL": "",
                "CELERY_BROKER_URL": "memory://"}
    variants = {"polling (no Redis)": base_env}
    if redis_url:
        variants = {"Redis pub/sub": {**base_env, "REDIS_URL": redis_url}, **variants}
    logs = Path(tempfile.mkdtemp(prefix="bench-live-"))
    servers, browsers = {}, {}
    try:
        for name, env in variants.items():
            servers[name] = Gunicorn(env, asgi=True, log_dir=logs).start()
            browser = browsers[name] = Browser()
            base = f"http://127.0.0.1:{servers[name].port}"
            browser.set_cookie(name=settings.SESSION_COOKIE_NAME, value=cookie, url=base)
            browser.goto(base + path)
            browser.wait_for("document.querySelector('.live-status[data-state=open]') !== null")
            time.sleep(1.0)
            browser.evaluate(OBSERVER)
        latencies: dict[str, list[float]] = {name: [] for name in variants}
        for index in range(rounds):
            step_record(run.pk, kind=StepKind.TOOL_CALL, name="measure", agent_id=agent.pk)
            committed = time.time() * 1000
            for name, browser in browsers.items():
                seen = browser.wait_for(f"window.__seen['step-{index}']", timeout=15)
                latencies[name].append(seen - committed)
            time.sleep(0.3)
    finally:
        for browser in browsers.values():
            browser.close()
        for server in servers.values():
            server.stop()
    print(f"Commit of a step → its row on the open run page ({rounds} rounds, ms):")
    medians = {}
    for name, values in latencies.items():
        medians[name] = statistics.median(values)
        print(f"  {name:<20} p50 {medians[name]:7.0f}  p90 {percentile(values, 0.9):7.0f}  max {max(values):7.0f}")
    if len(medians) == 2:
        (fast, fast_ms), (slow, slow_ms) = sorted(medians.items(), key=lambda item: item[1])
        print(f"  {slow} / {fast} (p50): {slow_ms / fast_ms:.2f}x")
    print(f"  load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""),
                        help="Redis for the pub/sub server (default REDIS_URL; empty: measure polling only)")
    parser.add_argument("--prefix", default="syndarix_bench_live", help="name of the throwaway database (+ pid)")
    args = parser.parse_args()
    os.environ["REDIS_URL"] = args.redis_url  # this process publishes the wake-ups after each commit
    import django

    django.setup()
    from _support import throwaway_database

    with throwaway_database(args.prefix):
        measure(args.rounds, args.redis_url)


if __name__ == "__main__":
    main()
