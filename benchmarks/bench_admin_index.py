"""The admin index (runs, agents by project, usage charts) and ``GET /metrics`` at fleet scale: flat from a small fleet
to ``--agents`` agents and ``--runs`` runs (default one million each).

What it does:

1. Creates and migrates a throwaway database beside the one ``DATABASE_URL`` names (dropped at the end), then per
   size fills it with set-based ``INSERT ... SELECT generate_series``: 100 projects in 10 workspaces, agents in a
   mix of statuses, runs (94 % ended, the rest queued, running, waiting or paused, with a pending request each when
   waiting), 365 days of ``UsageDay`` rows per project, and the counters as the services would have left them.
2. In interleaved rounds (every round: the bare ``/healthz`` view, then each page), times in-process requests with
   Django's test client (a superuser's index, a workspace member's index, ``/metrics``) and counts their SQL
   queries; prints the medians in milliseconds and as a multiple of the bare view's.
3. ``--explain`` prints ``EXPLAIN (ANALYZE, BUFFERS)`` of every query of each page at the largest size.

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/syndarix .venv/bin/python benchmarks/bench_admin_index.py \\
        --sizes 1000,1000000 --rounds 5

PostgreSQL only. It asserts nothing; the query counts are pinned by tests (``tests/agents/test_usage_charts.py``,
``tests/agents/test_runtime_admin.py``, ``tests/syndarix/test_metrics.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndarix.settings")
os.environ.setdefault("DJANGO_ENV_FILE", "")
os.environ.setdefault("RATELIMIT_ENABLE", "false")

PROJECTS, WORKSPACES = 100, 10

SEED = """
INSERT INTO projects_workspace (id, name, slug, max_concurrent_agents, created_at, updated_at)
SELECT gen_random_uuid(), 'Workspace ' || w, 'ws-' || w, 1000000000, now(), now()
FROM generate_series(1, {workspaces}) w;
INSERT INTO projects_project (id, workspace_id, owner_id, name, slug, description, created_at, updated_at)
SELECT gen_random_uuid(), (SELECT id FROM projects_workspace ORDER BY slug OFFSET p %% {workspaces} LIMIT 1), %(owner)s,
       'Project ' || p, 'p-' || p, '', now(), now()
FROM generate_series(1, {projects}) p;
CREATE TEMP TABLE seed_projects AS SELECT row_number() OVER (ORDER BY slug) - 1 AS n, id FROM projects_project;
INSERT INTO agents_agentinstance (
    id, created_at, updated_at, name, status, current_task, short_term_memory, long_term_memory_ref, session_id,
    config, is_playground, last_activity_at, last_heartbeat_at, last_error, terminated_at, termination_reason,
    tasks_completed, tokens_used, cost_incurred, project_id, agent_type_id)
SELECT gen_random_uuid(), now(), now(), 'agent-' || i,
       (ARRAY['idle','idle','idle','idle','idle','idle','working','waiting','paused','terminated'])[i %% 10 + 1],
       '', '{{}}', '', '', '{{}}', false, now(), now(), '', NULL, '', 0, 0, 0,
       (SELECT id FROM seed_projects WHERE n = i %% {projects}), %(agent_type)s
FROM generate_series(1, %(agents)s::bigint) i;
CREATE TEMP TABLE seed_agents AS SELECT row_number() OVER () - 1 AS n, id FROM agents_agentinstance;
CREATE INDEX ON seed_agents (n);
INSERT INTO agents_agentrun (id, agent_id, instruction, status, error_code, error_message, steps_completed,
    tokens_used, cost, attempts, task_id, worker, created_at, started_at, finished_at, updated_at)
SELECT gen_random_uuid(), a.id, 'seeded',
       CASE WHEN g.i %% 50 = 0 THEN 'queued' WHEN g.i %% 50 = 1 THEN 'waiting' WHEN g.i %% 50 = 2 THEN 'paused'
            WHEN g.i %% 17 = 0 THEN 'failed' WHEN g.i %% 23 = 0 THEN 'cancelled' ELSE 'succeeded' END,
       '', '', 3, 1000, 0.01, 1, '', '', now() - make_interval(mins => g.i %% 40000), now(), now(), now()
FROM generate_series(1, %(runs)s::bigint) g(i)
JOIN seed_agents a ON a.n = (g.i::bigint * 7919) %% %(agents)s;
INSERT INTO agents_agentrunrequest (id, run_id, kind, status, tool_name, tool_call_id, arguments, message, reason,
    requested_at)
SELECT gen_random_uuid(), id, 'approval', 'pending', 'write_context', '', '{{}}', '', '', now()
FROM agents_agentrun WHERE status = 'waiting';
INSERT INTO agents_agentcounter (id, project_id, is_playground, idle, working, waiting, paused, terminated)
SELECT gen_random_uuid(), project_id, false, count(*) FILTER (WHERE status = 'idle'),
       count(*) FILTER (WHERE status = 'working'), count(*) FILTER (WHERE status = 'waiting'),
       count(*) FILTER (WHERE status = 'paused'), count(*) FILTER (WHERE status = 'terminated')
FROM agents_agentinstance GROUP BY project_id;
INSERT INTO agents_workspaceagentcounter (workspace_id, live)
SELECT w.id, 0 FROM projects_workspace w;
INSERT INTO agents_usageday (id, project_id, is_playground, day, tasks_completed, tokens_used, prompt_tokens,
    completion_tokens, cost_incurred, runs_succeeded, runs_failed, runs_cancelled)
SELECT gen_random_uuid(), p.id, false, current_date - d, 90, 400000 + d, 360000, 40000 + d, 1.5 + d * 0.01, 90, 5, 4
FROM seed_projects p, generate_series(0, 364) d;
"""


def seed(agents: int, runs: int) -> None:
    from django.db import connection

    from tests.factories import AgentTypeFactory, UserFactory

    owner = UserFactory(username=f"owner-{agents}")
    agent_type = AgentTypeFactory()
    with connection.cursor() as cursor:
        for table in ("agents_usageday", "agents_agentcounter", "agents_workspaceagentcounter",
                      "agents_agentrunrequest", "agents_agentrun", "agents_agentinstance", "projects_project",
                      "projects_workspacemembership", "projects_workspace"):
            cursor.execute(f"DELETE FROM {table}")
        cursor.execute("DROP TABLE IF EXISTS seed_projects; DROP TABLE IF EXISTS seed_agents")
        cursor.execute("SET statement_timeout = 0")
        cursor.execute(SEED.format(workspaces=WORKSPACES, projects=PROJECTS),
                       {"owner": owner.pk, "agent_type": agent_type.pk, "agents": agents, "runs": runs})
        cursor.execute("VACUUM ANALYZE")  # as autovacuum leaves old rows: all-visible, so index-only scans stay so


def clients():
    from django.contrib.auth.models import Permission
    from django.test import Client

    from projects.models import Workspace, WorkspaceMembership
    from tests.factories import UserFactory

    root = UserFactory(is_superuser=True, is_staff=True)
    member = UserFactory(is_staff=True)
    member.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=["agents", "projects"]))
    WorkspaceMembership.objects.create(workspace=Workspace.objects.order_by("slug").first(), user=member,
                                       role="operator")
    out = {}
    for name, user in (("index (superuser)", root), ("index (member of 1 workspace)", member)):
        client = Client()
        client.force_login(user)
        out[name] = (client, "/admin/")
    out["/metrics"] = (Client(), "/metrics")
    return out


def measure(sizes: list[tuple[int, int]], rounds: int, explain: bool) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    for agents, runs in sizes:
        started = time.monotonic()
        seed(agents, runs)
        print(f"\n== {agents:,} agents, {runs:,} runs (seeded in {time.monotonic() - started:.0f} s)")
        pages = clients()
        bare = Client()
        times: dict[str, list[float]] = {"/healthz": [], **{name: [] for name in pages}}
        counts = {}
        for _ in range(rounds):
            for name, (client, url) in [("/healthz", (bare, "/healthz")), *pages.items()]:
                with CaptureQueriesContext(connection) as queries:
                    began = time.perf_counter()
                    response = client.get(url)
                    times[name].append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, (name, response.status_code)
                counts[name] = len(queries)
                if explain and name != "/healthz" and _ == rounds - 1:
                    _explain(connection, queries, name)
        base = statistics.median(times["/healthz"])
        for name, values in times.items():
            median = statistics.median(values)
            print(f"{name:34s} {median:8.1f} ms  {median / base:7.1f} x bare  {counts[name]:3d} queries")


def _explain(connection, queries, name: str) -> None:
    print(f"-- EXPLAIN of {name}")
    with connection.cursor() as cursor:
        for query in queries:
            if not query["sql"].lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query["sql"])
            plan = [row[0] for row in cursor.fetchall()]
            print(f"{plan[-1].strip():40s} {query['sql'][:100]}")
            if float(plan[-1].split()[-2]) > 5:  # the plan of a query over 5 ms
                print("\n".join(f"    {line}" for line in plan))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000", help="agent counts (as many runs), comma-separated")
    parser.add_argument("--runs", type=int, default=None, help="runs per size (default: as many as agents)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--prefix", default="syndarix_bench_admin", help="name of the throwaway database (+ pid)")
    args = parser.parse_args()
    import django

    django.setup()
    from _support import throwaway_database

    sizes = [(int(size), args.runs or int(size)) for size in args.sizes.split(",")]
    with throwaway_database(args.prefix):
        measure(sizes, args.rounds, args.explain)


if __name__ == "__main__":
    main()
