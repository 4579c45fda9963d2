"""Benchmark of the MCP server (``/mcp``) beside the REST API.

Prints:
- the number of tools ``tools/list`` gives a user who may call every tool (platform tools and, with the
  AI services configured, the AI tools);
- the median time of one read through MCP (``tools/call query_agents`` of a project with 20 agents, limit 20)
  and of the same read through REST (``GET /api/v1/projects/{id}/agents?limit=20``), their ratio, and the
  SQL queries of each. Both run in this process through Django's test client with token authentication,
  so the figures are the server's own work (middleware, authentication, view, serialization), with no
  network in between.

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/syndarix REDIS_URL=redis://127.0.0.1:6379/1 \\
        .venv/bin/python benchmarks/bench_mcp.py        (options: --samples N, default 300)

Without ``REDIS_URL`` the MCP sessions live in the database cache (one more query per call). It creates a
throwaway database next to the one ``DATABASE_URL`` names (``bench_mcp_<pid>``) and drops it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndarix.settings")
os.environ["RATELIMIT_ENABLE"] = "false"  # rate-limit counters are not what is measured
# The AI tools are listed only when their upstream is configured; nothing calls it here.
os.environ.update(AI_SERVICES_PROVIDER="openai", AI_SERVICES_API_URL="http://llm.invalid/v1",
                  AI_SERVICES_API_KEY="bench", AI_SERVICES_MODEL="bench")

import django  # noqa: E402

django.setup()

from _support import throwaway_database  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

ACCEPT = "application/json, text/event-stream"


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start) * 1000, result


def run(samples: int) -> None:
    from django.contrib.auth import get_user_model

    from agents import services
    from agents.models import AgentType
    from projects.models import Project, Workspace
    from projects.services import auth_token_create

    user = get_user_model().objects.create_superuser("bench", password="bench-pass-1")
    _, token = auth_token_create(user=user)
    project = Project.objects.create(
        workspace=Workspace.objects.create(name="Bench", slug="bench"), owner=user, name="Bench", slug="bench"
    )
    agent_type = AgentType.objects.create(name="Bench", slug="bench")
    for n in range(20):
        services.agent_spawn(project=project, agent_type=agent_type, name=f"agent-{n}", config={})

    http = Client()
    auth = {"Authorization": f"Bearer {token}", "Accept": ACCEPT}
    client_info = {"name": "bench", "version": "1"}
    initialize = http.post("/mcp", content_type="application/json", headers=auth, data=json.dumps({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": client_info},
    }))
    assert initialize.status_code == 200, initialize.content
    mcp_headers = {**auth, "Mcp-Session-Id": initialize["Mcp-Session-Id"], "MCP-Protocol-Version": "2025-11-25"}

    def mcp(method: str, params: dict, request_id: int = 1):
        body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        response = http.post("/mcp", content_type="application/json", headers=mcp_headers, data=body)
        assert response.status_code == 200, response.content
        return response.json()["result"]

    tools = mcp("tools/list", {})["tools"]
    read = {"name": "query_agents", "arguments": {"project_id": str(project.pk), "limit": 20}}

    def mcp_read():
        result = mcp("tools/call", read)
        assert result["isError"] is False and len(result["structuredContent"]["agents"]) == 20, result
        return result

    rest_url = f"/api/v1/projects/{project.pk}/agents"
    rest_headers = {"Authorization": f"Token {token}", "Accept": "application/json"}

    def rest_read():
        response = http.get(rest_url, {"limit": 20}, headers=rest_headers)
        assert response.status_code == 200 and len(response.json()["data"]) == 20, response.content
        return response

    for _ in range(20):  # warm-up: imports, caches, connections
        mcp_read()
        rest_read()
    mcp_times, rest_times = [], []
    for i in range(samples):
        pair = [(mcp_times, mcp_read), (rest_times, rest_read)]
        for bucket, fn in pair if i % 2 == 0 else reversed(pair):  # alternate to cancel drift
            bucket.append(_timed(fn)[0])
    with CaptureQueriesContext(connection) as mcp_queries:
        mcp_read()
    with CaptureQueriesContext(connection) as rest_queries:
        rest_read()

    if connection.vendor == "postgresql":
        version = connection.cursor().connection.info.server_version
        print(f"PostgreSQL {version // 10000}.{version % 10000}; cache: {settings.CACHES['default']['BACKEND']}")
    print(f"tools listed: {len(tools)} ({', '.join(tool['name'] for tool in tools)})")
    print(f"samples per figure: {samples}")
    mcp_median, rest_median = statistics.median(mcp_times), statistics.median(rest_times)
    print(f"MCP  tools/call query_agents (20 agents): median {mcp_median:.2f} ms, "
          f"p90 {statistics.quantiles(mcp_times, n=10)[-1]:.2f} ms, {len(mcp_queries)} queries")
    print(f"REST GET /projects/{{id}}/agents?limit=20: median {rest_median:.2f} ms, "
          f"p90 {statistics.quantiles(rest_times, n=10)[-1]:.2f} ms, {len(rest_queries)} queries")
    print(f"ratio MCP / REST: {mcp_median / rest_median:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=300, help="timed reads per figure (default 300)")
    args = parser.parse_args()
    settings.ALLOWED_HOSTS = ["testserver"]
    with throwaway_database("bench_mcp"):
        run(args.samples)


if __name__ == "__main__":
    main()
