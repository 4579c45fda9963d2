"""Fleet-scale benchmark of the agent API: flat from 1,000 to 1,000,000 agents, against the bare-Django ceiling and
the plain-DRF reference.

What it does:

1. Seeds (once; kept between runs) a database next to the one ``DATABASE_URL`` names (``<name>_fleet``, or
   ``--database``) with one workspace + project per size (``1k``, ``100k``, ``1m``): agents in a realistic mix
   of statuses (60 % idle, 10 % working, 5 % waiting, 10 % paused, 15 % terminated, 2 % playground), 1.4
   ledger rows per agent and one issue per 10 agents (half of them assigned). Rows go in with set-based
   ``INSERT ... SELECT generate_series`` batches of 100,000; 1M agents load in a few minutes here.
2. Serves the app with gunicorn (2 workers, production settings: ``DJANGO_DEBUG=false``, pooled database
   connections (the default), Redis cache, rate limits off) on 127.0.0.1 and drives it with ``wrk`` (installed with
   ``apt-get install -y wrk`` when missing and the user may), bounded in time.
   A second gunicorn, configured alike, serves the plain-DRF reference (``benchmarks/reference``: its own
   settings and URLconf, never the product's URLs): the agents of a project as a ``ModelSerializer`` with
   ``fields = "__all__"`` on a ``ListAPIView`` / ``RetrieveAPIView``, knox token authentication, cursor
   pagination of 20, no tenancy check — what a Django developer writes in ten minutes. With ``--against DIR``
   (a checkout of an earlier version, e.g. ``git worktree add /tmp/before main``) a third one serves that code,
   and every product endpoint is measured on it too.
3. Per endpoint and size, in interleaved rounds (every round runs the bare view, then each endpoint, the
   reference's list and detail right before the product's, an earlier version's right after): a latency run
   (1 connection: p50, p99) and a throughput run (``--connections``, 2 threads: requests/s), and prints the
   medians over the rounds, the throughput as a share of the bare view's (``GET /healthz``, a Django JSON view
   with no I/O, through the same middleware), the SQL queries of one request (counted in-process with Django's
   test client on the same data) and the largest ÷ smallest latency ratios; then the product ÷ reference
   ratios of list and detail (throughput and p50) and, with ``--against``, each endpoint's after ÷ before.
4. ``--explain`` prints ``EXPLAIN (ANALYZE, BUFFERS)`` of every SELECT one request of each endpoint makes.
5. Writes ``benchmarks/results.json`` and ``benchmarks/results.md`` (``--output`` / ``--markdown``).

Usage::

    make bench                                     # every benchmarks/bench_*.py; this one at 1k and 100k
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/syndarix .venv/bin/python benchmarks/bench_fleet.py \\
        --sizes 1k,100k,1m --duration 5 --rounds 3  # the full run (seeding 1M once takes a few minutes)

Options: ``--sizes``, ``--rounds`` (3), ``--duration`` (seconds per wrk run, 2), ``--connections`` (8),
``--port`` (8111; the reference is served on the next port, ``--against`` on the one after), ``--database``,
``--explain``, ``--reseed``, ``--drop`` (drop the database at the end), ``--only`` (comma-separated endpoint
keys), ``--against``, ``--against-database`` (a database of its own for an ``--against`` tree whose schema differs:
that tree's own ``bench_fleet.py`` migrates and seeds it, and its requests use its ids), ``--label`` (stored in the
JSON).
PostgreSQL only (the seeding is PostgreSQL SQL). It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {"1k": 1_000, "10k": 10_000, "100k": 100_000, "1m": 1_000_000}
BATCH = 100_000
AGENT_NAME_ROLES = ("planner", "coder", "reviewer", "tester", "scout")
#: A search a user might type: a role and the first characters of an agent's suffix (~1 in 1,300 agents match).
SEARCH = "coder-4e"
#: The deep page measured on fleets large enough to have it (limit 20).
DEEP_PAGE = 1000

WRK_SCRIPT = r"""
local requests, body, counter = {}, os.getenv("BENCH_BODY"), 0
local token = os.getenv("BENCH_TOKEN")
local threads, next_id = {}, 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
function init(args)
  for entry in string.gmatch(os.getenv("BENCH_REQUESTS"), "[^|]+") do
    local method, path = entry:match("^(%S+) (.+)$")
    table.insert(requests, {method, path})
  end
  counter = tid * 7919
end
function request()
  counter = counter + 1
  local r = requests[(counter % #requests) + 1]
  local headers = {["Authorization"] = "Token " .. token, ["Accept"] = "application/json"}
  local b = nil
  if r[1] ~= "GET" then
    headers["Content-Type"] = "application/json"
    b = body
    if b then b = b:gsub("{n}", tostring(tid * 100000000 + counter)) end
  end
  return wrk.format(r[1], r[2], headers, b)
end
local non2xx = 0
function response(status, headers, body)
  if status >= 300 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d, "status_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), errors,
    summary.errors.status))
end
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1k,100k")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--port", type=int, default=8111)
    parser.add_argument("--database", default="")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--drop", action="store_true")
    parser.add_argument("--only", default="")
    parser.add_argument("--label", default="")
    parser.add_argument("--against", default="", help="a source tree of an earlier version to serve beside")
    parser.add_argument("--against-database", default="",
                        help="a database of its own for --against, migrated and seeded by that tree")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results.json"))
    parser.add_argument("--markdown", default=str(ROOT / "benchmarks" / "results.md"))
    return parser.parse_args()


def bench_database_url(args) -> str:
    import environ

    base = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/syndarix"
    config = environ.Env.db_url_config(base)
    if "postgresql" not in config["ENGINE"]:
        sys.exit("bench_fleet needs PostgreSQL (DATABASE_URL=postgres://...).")
    name = args.database or f"{config['NAME']}_fleet"
    return base.rsplit("/", 1)[0] + "/" + name, name


def ensure_database(url: str, name: str) -> None:
    import psycopg

    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str, name: str) -> None:
    import psycopg

    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(url: str) -> dict[str, str]:
    """The production settings the app is served with (rate limits off: throughput is what is measured)."""
    return {
        **os.environ,
        "DJANGO_ENV_FILE": "",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "bench-fleet-not-a-secret-0123456789abcdefghijklmnopqrstuvwxyz",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_LOG_LEVEL": "ERROR",
        "DATABASE_URL": url,
        # The settings' default: Django's psycopg pool per process (health-checked connections), no CONN_MAX_AGE.
        "DATABASE_CONN_MAX_AGE": "0",
        "RATELIMIT_ENABLE": "false",
        "AGENT_LLM_API_URL": os.environ.get("AGENT_LLM_API_URL", "http://127.0.0.1:9/v1"),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/1"),
        "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/2"),
    }


# --- Seeding --------------------------------------------------------------------------------------


def seed(sizes: list[str], reseed: bool) -> dict:
    """Create (or find) the fleet: per size a workspace ``fleet-<size>`` with project ``fleet``; returns ids."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, transaction

    from agents.models import AgentInstance, AgentType
    from projects.choices import WorkspaceRole
    from projects.models import Project, Workspace, WorkspaceMembership
    from projects.services import auth_token_create

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('django_cache_table')")
    User = get_user_model()
    owner, _ = User.objects.get_or_create(username="fleet-owner")
    operator, _ = User.objects.get_or_create(username="fleet-operator")
    _, token = auth_token_create(user=operator)
    agent_type, _ = AgentType.objects.get_or_create(slug="fleet-worker", defaults={"name": "Fleet worker"})
    fleet = {"token": token, "agent_type": str(agent_type.pk), "operator": operator.pk, "projects": {}}
    for size in sizes:
        count = SIZES[size]
        workspace, _ = Workspace.objects.get_or_create(
            slug=f"fleet-{size}", defaults={"name": f"Fleet {size}", "max_concurrent_agents": 2**31 - 1}
        )
        WorkspaceMembership.objects.get_or_create(workspace=workspace, user=operator,
                                                  defaults={"role": WorkspaceRole.OPERATOR})
        project, _ = Project.objects.get_or_create(workspace=workspace, slug="fleet",
                                                   defaults={"name": f"Fleet {size}", "owner": owner})
        have = AgentInstance.objects.filter(project=project).count()
        if reseed or have < count:
            started = time.perf_counter()
            with transaction.atomic():
                _delete_project_rows(project.pk)
                for start in range(0, count, BATCH):
                    _insert_agents(project.pk, agent_type.pk, start, min(count, start + BATCH), count)
                _insert_issues(project.pk)
            with connection.cursor() as cursor:
                for table in ("agents_agentinstance", "agents_agenttransition", "projects_issue"):
                    cursor.execute(f"ANALYZE {table}")
            print(f"seeded {size}: {count:,} agents in {time.perf_counter() - started:.1f} s", flush=True)
        fleet["projects"][size] = {"workspace": str(workspace.pk), "project": str(project.pk)}
    _recompute_counters()
    return fleet


def _delete_project_rows(project_id) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        agents = "SELECT id FROM agents_agentinstance WHERE project_id = %s"
        cursor.execute("DELETE FROM projects_issue WHERE project_id = %s", [project_id])
        cursor.execute(f"DELETE FROM agents_agenttransition WHERE agent_id IN ({agents})", [project_id])
        cursor.execute(f"DELETE FROM agents_agentrun WHERE agent_id IN ({agents})", [project_id])
        cursor.execute("DELETE FROM agents_agentinstance WHERE project_id = %s", [project_id])


def _insert_agents(project_id, agent_type_id, start: int, stop: int, total: int) -> None:
    """Agents ``start``..``stop - 1`` of a fleet of ``total``: created one second apart, oldest first; status by
    ``i % 20``; a ledger row for the spawn and one more for any agent that is not idle."""
    from django.db import connection

    roles = "ARRAY[" + ",".join(f"'{r}'" for r in AGENT_NAME_ROLES) + "]"
    status = (
        "CASE WHEN i %% 20 < 12 THEN 'idle' WHEN i %% 20 < 14 THEN 'working' WHEN i %% 20 < 15 THEN 'waiting' "
        "WHEN i %% 20 < 17 THEN 'paused' ELSE 'terminated' END"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH agents AS (
                INSERT INTO agents_agentinstance (
                    id, created_at, updated_at, name, status, current_task, short_term_memory, long_term_memory_ref,
                    session_id, config, is_playground, last_activity_at, last_heartbeat_at, last_error, terminated_at,
                    termination_reason, tasks_completed, tokens_used, cost_incurred, project_id, agent_type_id,
                    effective_template, agent_type_revision_id, hooks_ran_until, max_cost_usd, max_tokens)
                SELECT gen_random_uuid(), ts, ts, ({roles})[i %% 5 + 1] || '-' || substr(md5(i::text), 1, 8), st,
                       CASE WHEN st = 'working' THEN 'Triage the backlog' ELSE '' END,
                       jsonb_build_object('notes', 'seeded', 'step', i %% 7), '', '',
                       jsonb_build_object('retries', 3, 'model', 'gpt-4o-mini'), i %% 50 = 0, ts, NULL, '',
                       CASE WHEN st = 'terminated' THEN ts END,
                       CASE WHEN st = 'terminated' THEN 'user' ELSE '' END,
                       i %% 13, (i %% 1000) * 250, ((i %% 1000) * 0.0125)::numeric(14, 6), %s, %s,
                       NULL, NULL, NULL, NULL, NULL
                FROM (SELECT i, now() - make_interval(secs => %s - i) AS ts, {status} AS st
                      FROM generate_series(%s::bigint, %s::bigint) AS i) AS g
                RETURNING id, created_at, status
            )
            INSERT INTO agents_agenttransition (id, from_status, to_status, reason, request_id, created_at, actor_id,
                                                agent_id, actor_agent_id, run_id)
            SELECT gen_random_uuid(), '', 'idle', 'spawned', NULL::varchar, created_at, NULL::integer, id,
                   NULL::uuid, NULL::uuid
            FROM agents
            UNION ALL
            SELECT gen_random_uuid(), 'idle', status, '', NULL, created_at + interval '0.5 second', NULL, id, NULL,
                   NULL
            FROM agents WHERE status <> 'idle'
            """,
            [project_id, agent_type_id, total, start, stop - 1],
        )


def _insert_issues(project_id) -> None:
    """One issue per 10 agents, every other one assigned to that agent."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO projects_issue (id, created_at, updated_at, title, body, status, assigned_agent_id, project_id)
            SELECT gen_random_uuid(), created_at, created_at, 'Issue ' || rn, '',
                   (ARRAY['open', 'in_progress', 'done', 'closed'])[rn %% 4 + 1],
                   CASE WHEN rn %% 20 = 0 THEN id END, %s
            FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at) AS rn
                  FROM agents_agentinstance WHERE project_id = %s) AS a
            WHERE rn %% 10 = 0
            """,
            [project_id, project_id],
        )


def _recompute_counters() -> None:
    """Rows were written with SQL: bring any counters the app keeps back in line with them."""
    from django.core.management import call_command, get_commands

    if "recompute_agent_counters" in get_commands():
        call_command("recompute_agent_counters", verbosity=0)


# --- Endpoints -------------------------------------------------------------------------------------


def endpoints(fleet: dict, size: str) -> dict[str, dict]:
    """Endpoint key → ``{"requests": ["METHOD path", ...], "body": str|None}`` for ``size``."""
    from agents.models import AgentInstance

    ids = fleet["projects"][size]
    base = f"/api/v1/projects/{ids['project']}/agents"
    picked = list(
        AgentInstance.objects.filter(project_id=ids["project"], status="idle", is_playground=False)
        .order_by("id").values_list("pk", flat=True)[:400]
    )
    pause_resume = [f"POST {base}/{pk}/pause" for pk in picked[:200]] + [
        f"POST {base}/{pk}/resume" for pk in picked[:200]
    ]
    spawn_body = json.dumps({"agent_type_id": fleet["agent_type"], "name": "bench-{n}"})
    reference = f"/reference/projects/{ids['project']}/agents"
    result = {
        "bare": {"requests": ["GET /healthz"]},
        "ref_list": {"requests": [f"GET {reference}"], "server": "reference"},
        "list": {"requests": [f"GET {base}?limit=20"]},
        "list_paused": {"requests": [f"GET {base}?limit=20&status=paused"]},
        "list_q": {"requests": [f"GET {base}?limit=20&q={SEARCH}"]},
        "ref_detail": {"requests": [f"GET {reference}/{pk}" for pk in picked[200:400]], "server": "reference"},
        "detail": {"requests": [f"GET {base}/{pk}" for pk in picked[200:400]]},
        "metrics": {"requests": [f"GET {base}/metrics"]},
        "pause_resume": {"requests": pause_resume, "body": "{}"},
        "usage": {"requests": [f"POST {base}/{pk}/usage" for pk in picked[200:400]],
                  "body": json.dumps({"tokens": 10, "cost": "0.001", "tasks_completed": 0})},
        "spawn": {"requests": [f"POST {base}"], "body": spawn_body},
        "transitions": {"requests": [f"GET {base}/{pk}/transitions?limit=20" for pk in picked[200:400]]},
    }
    if SIZES[size] >= DEEP_PAGE * 20 * 2:  # page 1000 exists (smaller fleets have fewer pages)
        result["deep_page"] = {"requests": [f"GET {base}?limit=20&page={DEEP_PAGE}"]}
        cursor = deep_cursor(fleet, size, base)
        if cursor:
            result["deep_cursor"] = {"requests": [f"GET {base}?limit=20&cursor={cursor}"]}
    return result


AGAINST_SEED = """
import json, sys
sys.path.insert(0, "benchmarks")
import django
django.setup()
import bench_fleet
sizes = sys.argv[1].split(",")
fleet = bench_fleet.seed(sizes, False)
print("FLEET " + json.dumps({"token": fleet["token"], "specs": {s: bench_fleet.endpoints(fleet, s) for s in sizes},
                            "spawn_empty": bench_fleet.spawn_empty_endpoint(fleet)}))
"""


def seed_against(root: Path, url: str, sizes: list[str]) -> dict:
    """For ``--against-database``: the earlier tree ``root`` migrates and seeds the database ``url`` with its own
    ``benchmarks/bench_fleet.py`` (a version whose schema differs from this one cannot share the fleet), in a
    process of its own. Returns ``{"url", "token", "specs": {size: endpoints}, "spawn_empty": spec}``."""
    ensure_database(url, url.rsplit("/", 1)[1])
    env = {**server_env(url), "DJANGO_SETTINGS_MODULE": "syndarix.settings", "PYTHONPATH": str(root),
           "DATABASE_STATEMENT_TIMEOUT": "0"}
    output = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", AGAINST_SEED, ",".join(sizes)], cwd=root,
                            env=env, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in output.splitlines() if ln.startswith("FLEET "))
    return {"url": url, **json.loads(line[6:])}


def spawn_empty_endpoint(fleet: dict) -> dict:
    """Spawn into a workspace of its own, new for each run, so "empty" stays empty-ish."""
    from projects.choices import WorkspaceRole
    from projects.models import Project, Workspace, WorkspaceMembership

    n = Workspace.objects.filter(slug__startswith="fleet-empty-").count()
    workspace = Workspace.objects.create(name=f"Fleet empty {n}", slug=f"fleet-empty-{n}-{os.getpid()}",
                                         max_concurrent_agents=2**31 - 1)
    WorkspaceMembership.objects.create(workspace=workspace, user_id=fleet["operator"], role=WorkspaceRole.OPERATOR)
    from django.contrib.auth import get_user_model

    owner = get_user_model().objects.get(username="fleet-owner")
    project = Project.objects.create(workspace=workspace, slug="fleet", name="Fleet empty", owner=owner)
    body = json.dumps({"agent_type_id": fleet["agent_type"], "name": "bench-{n}"})
    return {"requests": [f"POST /api/v1/projects/{project.pk}/agents"], "body": body}


def deep_cursor(fleet: dict, size: str, base: str) -> str | None:
    """The cursor of page ``DEEP_PAGE`` (limit 20), reached by walking ``next_cursor`` (100 rows a step, then 20);
    ``None`` when the list has no cursors."""
    client = api_client(fleet)
    target, offset, cursor = (DEEP_PAGE - 1) * 20, 0, ""
    while offset < target:
        step = 100 if target - offset >= 100 else 20
        query = f"limit={step}" + (f"&cursor={cursor}" if cursor else "")
        pagination = client.get(f"{base}?{query}").json().get("pagination", {})
        cursor = pagination.get("next_cursor")
        if not cursor:
            return None
        offset += step
    return cursor


def api_client(fleet: dict):
    from django.test import Client

    return Client(HTTP_AUTHORIZATION=f"Token {fleet['token']}", HTTP_ACCEPT="application/json")


def count_queries(fleet: dict, spec: dict, explain: bool) -> int:
    """SQL queries of the first request of ``spec``, made in-process after one request that fills the caches (a
    client in steady use); with ``explain``, print their plans."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    method, path = spec["requests"][0].split(" ", 1)
    client = api_client(fleet)
    body = (spec.get("body") or "{}").replace("{n}", "explain")
    client.get(path.split("/agents")[0] + "/agents")  # the token and the project access in the cache
    with CaptureQueriesContext(connection) as captured:
        if method == "GET":
            response = client.get(path)
        else:
            response = client.generic(method, path, body, content_type="application/json")
    if response.status_code >= 300:
        print(f"  ! {method} {path}: {response.status_code} {response.content[:200]!r}")
    if explain:
        for query in captured.captured_queries:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith("SELECT"):
                print(f"  -- {sql[:160]}")
                continue
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
                plan = "\n".join("    " + row[0] for row in cursor.fetchall())
                transaction.set_rollback(True)
            print(f"  -- {sql[:300]}\n{plan}")
    return len(captured.captured_queries)


# --- Running wrk --------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (apt-get install -y wrk)", flush=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, capture_output=True)
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "update"], check=False, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, capture_output=True)
    path = shutil.which("wrk")
    if not path:
        sys.exit("wrk is needed: apt-get install -y wrk")
    return path


def run_wrk(wrk: str, script: str, port: int, token: str, spec: dict, connections: int, duration: float) -> dict:
    threads = 1 if connections == 1 else 2
    env = {**os.environ, "BENCH_TOKEN": token, "BENCH_REQUESTS": "|".join(spec["requests"]),
           "BENCH_BODY": spec.get("body") or ""}
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "60s",
               "-s", script, f"http://127.0.0.1:{port}"]
    output = subprocess.run(command, env=env, capture_output=True, text=True, timeout=duration + 180).stdout
    line = next((ln for ln in output.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary:\n{output}")
    data = json.loads(line[6:])
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6) if data["duration_us"] else 0.0
    if data["requests"] < 3:
        # Slower than the run is long: time a few sequential requests instead.
        data.update(sequential(port, token, spec, samples=3))
    return data


def sequential(port: int, token: str, spec: dict, samples: int) -> dict:
    timings = []
    for n in range(samples):
        method, path = spec["requests"][n % len(spec["requests"])].split(" ", 1)
        body = spec.get("body")
        data = body.replace("{n}", f"seq{time.time_ns()}").encode() if body and method != "GET" else None
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method, headers={
            "Authorization": f"Token {token}", "Accept": "application/json", "Content-Type": "application/json"})
        start = time.perf_counter()
        with urllib.request.urlopen(req, timeout=300) as response:
            response.read()
        timings.append(time.perf_counter() - start)
    timings.sort()
    return {"p50_us": statistics.median(timings) * 1e6, "p99_us": timings[-1] * 1e6,
            "rps": 1 / statistics.median(timings), "requests": samples, "sequential": True}


def start_server(url: str, port: int, *, root: Path = ROOT, settings: str = "syndarix.settings") -> subprocess.Popen:
    """gunicorn (2 workers) serving the source tree ``root`` with ``settings``, once it answers ``/healthz`` (the
    reference, which has no ``/healthz``, once it answers at all)."""
    command = [str(ROOT / ".venv" / "bin" / "gunicorn"), "syndarix.wsgi:application", "--workers", "2",
               "--bind", f"127.0.0.1:{port}", "--timeout", "300", "--log-level", "warning"]
    env = {**server_env(url), "DJANGO_SETTINGS_MODULE": settings, "PYTHONPATH": str(root)}
    server = subprocess.Popen(command, cwd=root, env=env, start_new_session=True)
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return server
        except urllib.error.HTTPError:
            return server  # answering (the reference has no /healthz)
        except OSError:
            time.sleep(0.2)
    stop_server(server)
    sys.exit("gunicorn did not answer /healthz")


def stop_server(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(server.pid, signal.SIGKILL)


# --- Report ------------------------------------------------------------------------------------------

LABELS = {
    "bare": "GET /healthz (bare Django JSON view)",
    "ref_list": "plain DRF: GET .../agents (cursor, 20)",
    "list": "GET .../agents?limit=20",
    "list_paused": "GET .../agents?status=paused",
    "list_q": f"GET .../agents?q={SEARCH}",
    "deep_page": "GET .../agents?page=1000",
    "deep_cursor": "GET .../agents?cursor=<page 1000>",
    "ref_detail": "plain DRF: GET .../agents/{id}",
    "detail": "GET .../agents/{id}",
    "metrics": "GET .../agents/metrics",
    "pause_resume": "POST pause / resume (cycle)",
    "usage": "POST .../usage",
    "spawn": "POST .../agents (spawn)",
    "spawn_empty": "POST .../agents (spawn, empty workspace)",
    "transitions": "GET .../agents/{id}/transitions",
}


def label(key: str) -> str:
    """The report's name of an endpoint key (``<key>@before``: the same endpoint served by ``--against``)."""
    base, _, version = key.partition("@")
    return f"{LABELS[base]} ({version})" if version else LABELS[base]


#: The plain-DRF reference's targets: the product's throughput at least this multiple of the reference's, its p50
#: latency at most this fraction.
REFERENCE_TARGETS = {"rps": 1.2, "p50": 0.8}


def compare(report: dict, sizes: list[str]) -> dict:
    """Ratios per size: list and detail ÷ the plain-DRF reference (``vs_reference``: rps and p50, with whether the
    targets hold), and every endpoint ÷ its ``--against`` version (``vs_before``)."""
    def ratios(mine: dict, theirs: dict) -> dict:
        result = {"rps": mine["rps"] / theirs["rps"] if theirs["rps"] else None,
                  "p50": mine["p50_ms"] / theirs["p50_ms"] if theirs["p50_ms"] else None}
        # The median of the rounds' own ratios (each round measures both side by side): steadier on a busy machine.
        for name, metric in (("rps", "rps"), ("p50", "p50_ms")):
            pairs = zip(mine["rounds"][metric], theirs["rounds"][metric], strict=False)
            per_round = [a / b for a, b in pairs if b]
            result[f"{name}_per_round"] = statistics.median(per_round) if per_round else None
        return result

    result: dict[str, dict] = {"vs_reference": {}, "vs_before": {}}
    for key in ("list", "detail"):
        for size in sizes:
            mine = report.get(key, {}).get("sizes", {}).get(size)
            theirs = report.get(f"ref_{key}", {}).get("sizes", {}).get(size)
            if mine and theirs:
                entry = ratios(mine, theirs)
                entry["met"] = (entry["rps"] or 0) >= REFERENCE_TARGETS["rps"] and (
                    entry["p50"] or 99) <= REFERENCE_TARGETS["p50"]
                result["vs_reference"].setdefault(key, {})[size] = entry
    for key, entry in report.items():
        if key.endswith("@before"):
            base = key.split("@")[0]
            for size, theirs in entry["sizes"].items():
                mine = report.get(base, {}).get("sizes", {}).get(size)
                if mine:
                    result["vs_before"].setdefault(base, {})[size] = ratios(mine, theirs)
    return result


def comparisons_markdown(comparisons: dict, sizes: list[str]) -> str:
    lines = []
    if comparisons["vs_reference"]:
        lines += ["", f"Product ÷ plain DRF (targets: throughput ≥ {REFERENCE_TARGETS['rps']}×, p50 ≤ "
                      f"{REFERENCE_TARGETS['p50']}×; each cell: the ratio of the medians, in brackets the median of "
                      "the rounds' own ratios):", "",
                  "| endpoint | " + " | ".join(f"{s} rps ÷ ref | {s} p50 ÷ ref | {s} met" for s in sizes) + " |",
                  "|---|" + "---|---|---|" * len(sizes)]
        for key, per_size in comparisons["vs_reference"].items():
            cells = []
            for size in sizes:
                entry = per_size.get(size)
                cells += (["", "", ""] if entry is None else
                          [ratio_cell(entry, "rps"), ratio_cell(entry, "p50"), "yes" if entry["met"] else "no"])
            lines.append(f"| {LABELS[key]} | " + " | ".join(cells) + " |")
    if comparisons["vs_before"]:
        lines += ["", "After ÷ before (`--against`; in brackets the median of the rounds' own ratios):", "",
                  "| endpoint | " + " | ".join(f"{s} rps | {s} p50" for s in sizes) + " |",
                  "|---|" + "---|---|" * len(sizes)]
        for key, per_size in comparisons["vs_before"].items():
            cells = []
            for size in sizes:
                entry = per_size.get(size)
                cells += ["", ""] if entry is None else [ratio_cell(entry, "rps"), ratio_cell(entry, "p50")]
            lines.append(f"| {LABELS[key]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + ("\n" if lines else "")


def ratio_cell(entry: dict, name: str) -> str:
    per_round = entry.get(f"{name}_per_round")
    return f"{entry[name]:.2f}×" + (f" ({per_round:.2f}×)" if per_round is not None else "")


def ms(us: float) -> str:
    return f"{us / 1000:.1f}" if us < 100_000 else f"{us / 1000:.0f}"


def main() -> None:
    args = parse_args()
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        sys.exit(f"unknown size(s) {unknown}; choose from {list(SIZES)}")
    url, name = bench_database_url(args)
    ensure_database(url, name)
    for key, value in server_env(url).items():
        if key.startswith(("DJANGO_", "DATABASE_", "RATELIMIT", "REDIS", "CELERY", "AGENT_LLM")):
            os.environ[key] = value
    os.environ["DATABASE_CONN_MAX_AGE"] = "0"
    # This process seeds (a batch of 100,000 agents runs past the servers' 20 s statement timeout on a busy machine)
    # and counts queries; the servers keep the default.
    os.environ["DATABASE_STATEMENT_TIMEOUT"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndarix.settings")
    import django

    django.setup()
    wrk = ensure_wrk()
    fleet = seed(sizes, args.reseed)
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)

    only = {k for k in args.only.split(",") if k}
    specs = {size: endpoints(fleet, size) for size in sizes}
    queries: dict[str, dict[str, int]] = {}
    for size in sizes:
        if args.explain:
            print(f"\n=== plans at {size} ===")
        for key, spec in specs[size].items():
            if key == "bare" or spec.get("server") == "reference" or (only and key not in only):
                continue
            if args.explain:
                print(f"\n# {LABELS[key]}")
            queries.setdefault(key, {})[size] = count_queries(fleet, spec, args.explain)

    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    runs: dict[str, dict[str, dict[str, list]]] = {}
    ports = {"app": args.port, "reference": args.port + 1, "before": args.port + 2}
    servers = [start_server(url, ports["app"]),
               start_server(url, ports["reference"], settings="benchmarks.reference.settings")]
    before = {"url": url, "token": fleet["token"], "specs": specs, "spawn_empty": None}
    if args.against:
        if args.against_database:
            before = seed_against(Path(args.against).resolve(), url.rsplit("/", 1)[0] + "/" + args.against_database,
                                  sizes)
        servers.append(start_server(before["url"], ports["before"], root=Path(args.against).resolve()))
    try:
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}/{args.rounds} (load {os.getloadavg()[0]:.2f})", flush=True)
            for size in sizes:
                items = list(specs[size].items())
                if size == sizes[0]:
                    items.append(("spawn_empty", None))
                for key, spec in items:
                    if only and key not in only and key != "bare" and key.removeprefix("ref_") not in only:
                        continue
                    if key == "spawn_empty":
                        spec = spawn_empty_endpoint(fleet)
                    server = spec.get("server", "app")
                    targets = [(key, server)]
                    if args.against and server == "app":
                        targets.append((f"{key}@before", "before"))
                    for name, target in targets:
                        token, served = fleet["token"], spec
                        if target == "before" and args.against_database:  # its own database: its own ids
                            token = before["token"]
                            served = (before["spawn_empty"] if key == "spawn_empty"
                                      else before["specs"][size].get(key, spec))
                        for mode, conns in (("latency", 1), ("throughput", args.connections)):
                            result = run_wrk(wrk, script.name, ports[target], token, served, conns, args.duration)
                            slot = runs.setdefault(name, {}).setdefault(size, {"latency": [], "throughput": []})
                            slot[mode].append(result)
                            if result.get("errors") or result.get("status_errors"):
                                print(f"  ! {name} {size} {mode}: {result.get('errors')} socket errors, "
                                      f"{result.get('status_errors')} HTTP errors", flush=True)
    finally:
        for server in servers:
            stop_server(server)
        os.unlink(script.name)

    report = summarize(runs, queries, sizes)
    load_after = os.getloadavg()
    meta = {
        "label": args.label, "sizes": sizes, "rounds": args.rounds, "duration_s": args.duration,
        "connections": args.connections, "cpu_count": os.cpu_count(), "load_before": load, "load_after": load_after,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "search": SEARCH,
    }
    comparisons = compare(report, sizes)
    Path(args.output).write_text(json.dumps({"meta": meta, "results": report, "comparisons": comparisons},
                                            indent=2) + "\n")
    table = markdown(report, sizes, meta) + comparisons_markdown(comparisons, sizes)
    Path(args.markdown).write_text(table)
    print()
    print(table)
    if args.drop:
        from django.db import connections

        connections.close_all()
        drop_database(url, name)


def summarize(runs, queries, sizes) -> dict:
    report: dict[str, dict] = {}
    bare = {size: statistics.median(r["rps"] for r in runs["bare"][size]["throughput"]) for size in sizes
            if size in runs.get("bare", {})}
    for key, per_size in runs.items():
        entry = report.setdefault(key, {"label": label(key), "sizes": {}})
        for size, modes in per_size.items():
            lat, thr = modes["latency"], modes["throughput"]
            rps = statistics.median(r["rps"] for r in thr)
            entry["sizes"][size] = {
                "p50_ms": statistics.median(r["p50_us"] for r in lat) / 1000,
                "p99_ms": statistics.median(r["p99_us"] for r in lat) / 1000,
                "rps": rps,
                "rps_share_of_bare": rps / bare[size] if bare.get(size) else None,
                "queries": queries.get(key, {}).get(size),
                "http_errors": sum(r.get("status_errors", 0) for r in lat + thr),
                "rounds": {"rps": [r["rps"] for r in thr], "p50_ms": [r["p50_us"] / 1000 for r in lat]},
            }
        if len(sizes) > 1 and sizes[0] in entry["sizes"] and sizes[-1] in entry["sizes"]:
            entry["latency_ratio_largest_to_smallest"] = (
                entry["sizes"][sizes[-1]]["p50_ms"] / entry["sizes"][sizes[0]]["p50_ms"]
            )
    if "spawn" in report and "spawn_empty" in report and sizes[-1] in report["spawn"]["sizes"]:
        report["spawn"]["latency_ratio_to_empty"] = (
            report["spawn"]["sizes"][sizes[-1]]["p50_ms"] / report["spawn_empty"]["sizes"][sizes[0]]["p50_ms"]
        )
    return report


def markdown(report, sizes, meta) -> str:
    head = ["endpoint"]
    for size in sizes:
        head += [f"{size} rps", f"{size} % bare", f"{size} p50 ms", f"{size} p99 ms", f"{size} queries"]
    head.append(f"p50 {sizes[-1]} ÷ {sizes[0]}")
    lines = [
        f"Fleet benchmark{' (' + meta['label'] + ')' if meta['label'] else ''}: {meta['time']}, "
        f"{meta['cpu_count']} cores, load average {meta['load_before'][0]:.2f} before / "
        f"{meta['load_after'][0]:.2f} after; gunicorn 2 workers, wrk {meta['connections']} connections "
        f"(throughput) and 1 (latency), {meta['duration_s']:g} s per run, medians of {meta['rounds']} "
        "interleaved rounds.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for entry in report.values():
        row = [entry["label"]]
        for size in sizes:
            cell = entry["sizes"].get(size)
            if cell is None:
                row += [""] * 5
                continue
            share = cell["rps_share_of_bare"]
            row += [f"{cell['rps']:.0f}", f"{share * 100:.1f} %" if share is not None else "",
                    f"{cell['p50_ms']:.1f}", f"{cell['p99_ms']:.1f}",
                    "" if cell["queries"] is None else str(cell["queries"])]
        ratio = entry.get("latency_ratio_largest_to_smallest")
        extra = entry.get("latency_ratio_to_empty")
        text = f"{ratio:.2f}×" if ratio else ""
        if extra:
            text += f" (÷ empty: {extra:.2f}×)"
        row.append(text)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
