"""Fleet runtime benchmark: N agents at once on one worker box, and runs that outlive an LLM outage.

Starts the ``Procfile``'s ``worker`` line (``--processes`` copies, default one per CPU), its ``beat`` line and its
``web`` line against a throwaway database and a local OpenAI-compatible stub that answers each call after a fixed
delay (``benchmarks/fleet_stub.py``, uvicorn). Each agent runs the agent loop: 4 LLM calls, with a read tool call
(``read_context``) after each of the first 3. The runs are queued before the worker starts, so every agent is
"at once"; the makespan runs from the first run's start to the last run's end. Prints, per scenario:

- LLM calls/s against the ideal (every agent waiting on its LLM in parallel: N × 4 calls ÷ (4 × delay));
- makespan; peak PostgreSQL connections of the whole box (``pg_stat_activity``, sampled every 0.25 s);
- peak resident memory of the worker processes; worker CPU ms per LLM call (from the first run's start to the
  end, divided by the LLM calls) and per run start (the CPU of the first ``delay`` seconds after the first start,
  when no LLM call can have answered yet, divided by the runs started in them: taking a run in, claiming it, its
  first step and sending its first call); the CPU of the PostgreSQL backends serving the box, per LLM call;
- SQL statements per step (one run executed in this process under ``CaptureQueriesContext``): a loop step
  (an LLM call and a read tool call) and a plain agent class's LLM step;
- the outage scenario: 40 runs in flight, the upstream answers 503 for 20 s, how many succeed.

Usage::

    BENCH_FLEET_DATABASE=syndarix_bench_i19 CELERY_BROKER_URL=redis://127.0.0.1:6379/5 \\
        DATABASE_URL=postgres://postgres@127.0.0.1:5432/syndarix .venv/bin/python benchmarks/bench_fleet_runtime.py
    options: --scenarios 300x3,1000x5,outage,sql (default); --processes N; --max-seconds S (stop a scenario after S s
    and report the rate so far); --worker-command "..." (instead of the Procfile's worker line, e.g. the old
    prefork worker for a before/after comparison); --code-root DIR (the box runs the code checked out there: an
    older release, measured on the same database schema and broker).

The database ``BENCH_FLEET_DATABASE`` (default ``syndarix_bench_fleet``) is created beside the one ``DATABASE_URL``
names and dropped at the end; the broker queues are the benchmark's own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndarix.settings")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/2")
os.environ.setdefault("REDIS_URL", os.environ["CELERY_BROKER_URL"])  # the shared cache, as in production
os.environ["RATELIMIT_ENABLE"] = "false"
os.environ["AGENT_LLM_PROVIDER"] = "openai"

import django  # noqa: E402

django.setup()

from _support import throwaway_database  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from tests.live import free_port  # noqa: E402
from tests.runtime.harness import database_url, new_queue_name, purge_queue, purge_stale_queues  # noqa: E402

MODEL = "bench-model"
CALLS_PER_RUN = 4
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def procfile() -> dict[str, str]:
    """The ``Procfile``'s process lines, ``{name: command}``."""
    path = ROOT / "Procfile"
    if not path.exists():
        return {}
    lines = (line.split(":", 1) for line in path.read_text().splitlines() if ":" in line and not line.startswith("#"))
    return {name.strip(): command.strip() for name, command in lines}


class Process:
    """A shell command in a session of its own (a Procfile line), its log in a file."""

    def __init__(self, name: str, command: str, env: dict[str, str], log_dir: Path, cwd: Path = ROOT) -> None:
        self.name = name
        self.ready = None  # a callable answering whether the process is up (None: at once); see wait_ready
        self.log = log_dir / f"{name}.log"
        # The log is appended to by each scenario's process of this name: this process's own lines start here.
        self.log_start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(["/bin/sh", "-c", f"exec {command}"], cwd=cwd, env=env, stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def pids(self) -> list[int]:
        """Every process of its group (the main process and, for prefork, its children)."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                    if int(fields[2]) == self.popen.pid:  # the process group id
                        found.append(int(entry))
        return found

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        return total

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime + stime (clock ticks)
        return total / TICKS

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)

    def wait_ready(self, deadline: float) -> None:
        """Wait until ``ready`` answers true; exits the benchmark if the process ends or ``deadline`` (monotonic)
        passes first."""
        while self.ready is not None and not self.ready():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not start:\n{self.tail()}")
            time.sleep(0.2)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def output(self) -> str:
        """What this process has written to its log so far (not an earlier scenario's process of the same name)."""
        with self.log.open("rb") as log:
            log.seek(self.log_start)
            return log.read().decode(errors="replace")


class StubServer:
    """``benchmarks/fleet_stub.py`` under uvicorn in a process of its own."""

    def __init__(self, delay: float, log_dir: Path) -> None:
        self.port = free_port()
        command = f"{shlex.quote(sys.executable)} benchmarks/fleet_stub.py --port {self.port} --delay {delay}"
        self.process = Process(f"stub-{self.port}", command, dict(os.environ), log_dir)
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError):
                self.control("stats")
                return
            if time.monotonic() > deadline or self.process.popen.poll() is not None:
                raise SystemExit(f"the stub did not start:\n{self.process.tail()}")
            time.sleep(0.1)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def control(self, what: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/control/{what}", data=data)
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.loads(answer.read())


def box_env(*, stub_url: str, queue: str, code_root: Path = ROOT) -> dict[str, str]:
    """The environment of the box's processes: production settings pointed at the benchmark's database, broker
    queues and stub."""
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "syndarix.settings",
        "DJANGO_ENV_FILE": "",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "bench-fleet-runtime-secret-key-not-for-production",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "CELERY_MAINTENANCE_QUEUE": f"{queue}-maintenance",
        "AGENT_LLM_PROVIDER": "openai",
        "AGENT_LLM_API_URL": stub_url,
        "AGENT_LLM_API_KEY": "stub-key",
        "AGENT_LLM_READ_TIMEOUT": "60",
        "AGENT_RUN_MAX_STEPS": "10",
        "CELERY_BEAT_SCHEDULE_FILE": str(Path(tempfile.gettempdir()) / f"{queue}-beat-schedule"),
        "PYTHONPATH": str(code_root),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    return env


def setup_fleet(count: int, *, tag: str):
    """A project, a loop agent type (``read_context`` allowed), its ``notes`` context and ``count`` idle agents."""
    from django.contrib.auth import get_user_model

    from agents import services
    from agents.contexts import services as contexts
    from agents.models import AgentType
    from aiservices.models import ModelPrice
    from projects.models import Project, Workspace

    ModelPrice.objects.get_or_create(model=MODEL, defaults={"input_usd_per_mtok": 1, "output_usd_per_mtok": 4})
    owner = get_user_model().objects.create_user(f"bench-{tag}", password="bench-pass-1")
    workspace = Workspace.objects.create(name=f"Bench {tag}", slug=f"bench-{tag}", max_concurrent_agents=count + 10)
    project = Project.objects.create(workspace=workspace, owner=owner, name="Bench", slug=f"bench-{tag}")
    loop_type = AgentType.objects.create(name=f"Bench loop {tag}", slug=f"bench-loop-{tag}")
    services.agent_type_commit_revision(loop_type, template={
        "instructions": {"agents_md": "Read the notes, then answer."}, "llm": {"model": MODEL},
        "tools": [{"type": "platform", "op": "read_context", "permission": "allow"}],
        "runner": {"max_steps": 10},
    })
    context, _ = contexts.context_get_or_create(project=project, name="notes")
    contexts.context_write(context, {"note": "The fleet benchmark's shared notes."}, change_description="bench")
    return [services.agent_spawn(project=project, agent_type=loop_type, name=f"agent {n}") for n in range(count)]


def pg_backends(database: str) -> list[int]:
    """The PostgreSQL backends connected to ``database`` (this process's own aside)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [database])
        return [row[0] for row in cursor.fetchall()]


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (``/proc``), ``None`` when it is gone or not readable."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    return None


def start_box(args, env: dict[str, str], log_dir: Path, *, web: bool = True) -> tuple[list[Process], list[Process]]:
    """Start the beat and web lines, wait until they are up, then the worker line(s); returns
    ``(workers, others)``."""
    lines = procfile()
    worker_command = args.worker_command or lines.get("worker")
    if not worker_command:
        raise SystemExit("no Procfile worker line: pass --worker-command")
    others = []
    if lines.get("beat") and not args.worker_command:
        beat = Process("beat", lines["beat"], env, log_dir)
        beat.ready = lambda: " ready." in beat.output()
        others.append(beat)
    if web and lines.get("web"):
        web_process = Process("web", lines["web"], {**env, "PORT": str(free_port())}, log_dir)
        web_process.ready = lambda: _booted(web_process.output())
        others.append(web_process)
    # As in production, the rest of the box is up when a burst of runs arrives: the workers start when web and
    # beat have booted (a booting web server's CPU is not the workers').
    deadline = time.monotonic() + 120
    for process in others:
        process.wait_ready(deadline)
    workers = []
    for n in range(args.processes):
        own = {**env, "PORT": str(5100 + n)}
        workers.append(Process(f"worker{n + 1}", worker_command, own, log_dir, cwd=args.code_root))
    return workers, others


def _booted(log: str) -> bool:
    """Whether a gunicorn log shows every worker it booted ready (uvicorn's "Application startup complete")."""
    booted = log.count("Booting worker with pid")
    return booted > 0 and log.count("Application startup complete") >= booted


def scenario(args, *, agents: int, delay: float, log_dir: Path, outage: float = 0.0) -> dict:
    """Queue one run per agent, start the box, wait for every run to finish (or ``--max-seconds``)."""
    from django.db.models import Count, Q

    from agents.choices import RUN_FINISHED_STATUSES, RunStatus, StepKind
    from agents.models import AgentRun, AgentRunStep
    from agents.runtime import services as runtime
    from syndarix.celery import app

    tag = uuid.uuid4().hex[:6]
    queue = new_queue_name()
    app.conf.task_default_queue, app.conf.maintenance_queue = queue, f"{queue}-maintenance"
    stub = StubServer(delay, log_dir)
    fleet = setup_fleet(agents, tag=tag)
    created = time.perf_counter()
    runs = [runtime.run_create(agent=agent, instruction=f"Task {n}")[0].pk for n, agent in enumerate(fleet)]
    project_id = fleet[0].project_id  # the scenario's own project: its runs and no others
    created = time.perf_counter() - created
    env = box_env(stub_url=stub.base_url, queue=queue, code_root=args.code_root)
    workers, others = start_box(args, env, log_dir)
    database = settings.DATABASES["default"]["NAME"]
    peak_connections = peak_rss = 0
    cpu_start = None
    samples: list[tuple[float, float, int]] = []  # (wall clock, worker CPU seconds, runs started) from the first start
    pg_cpu: dict[int, list[float]] = {}  # backend pid -> [CPU seconds when first seen after the first start, last]
    outage_started = None
    deadline = time.monotonic() + (args.max_seconds or 3600)
    try:
        while True:
            time.sleep(0.25)
            backends = pg_backends(database)
            peak_connections = max(peak_connections, len(backends))
            peak_rss = max(peak_rss, sum(w.rss_bytes() for w in workers))
            counts = AgentRun.objects.filter(agent__project_id=project_id).aggregate(  # one light query per sample
                started=Count("pk", filter=Q(started_at__isnull=False)),
                finished=Count("pk", filter=Q(status__in=RUN_FINISHED_STATUSES)))
            started_count = counts["started"]
            if started_count:
                worker_cpu = sum(w.cpu_seconds() for w in workers)
                cpu_start = worker_cpu if cpu_start is None else cpu_start
                samples.append((time.time(), worker_cpu, started_count))
                for pid in backends:  # a backend opened after the first start counts from its first sample
                    seconds = process_cpu_seconds(pid)
                    if seconds is not None:
                        pg_cpu.setdefault(pid, [seconds, seconds])[1] = seconds
            if outage and outage_started is None and stub.control("stats")["in_flight"] >= agents:
                stub.control("outage", {"seconds": outage, "status": 503})
                outage_started = time.monotonic()
            finished = counts["finished"]
            if finished == len(runs) or time.monotonic() > deadline:
                break
            for process in workers + others:
                if process.popen.poll() is not None:
                    raise SystemExit(f"{process.name} exited:\n{process.tail()}")
        cpu = sum(w.cpu_seconds() for w in workers) - (cpu_start or 0)
    finally:
        for process in workers + others:
            process.stop()
        stub.process.stop()
        purge_queue(settings.CELERY_BROKER_URL, queue)
        purge_queue(settings.CELERY_BROKER_URL, f"{queue}-maintenance")
    rows = AgentRun.objects.filter(pk__in=runs)
    started = min((r.started_at for r in rows if r.started_at), default=None)
    ended = max((r.finished_at or r.updated_at for r in rows), default=None)
    calls = AgentRunStep.objects.filter(run_id__in=runs, kind=StepKind.LLM_CALL, error__isnull=True).count()
    makespan = (ended - started).total_seconds() if started and ended else float("nan")
    if args.max_seconds and finished < len(runs):
        makespan = min(makespan, args.max_seconds)
    outcome = {status: rows.filter(status=status).count() for status in RunStatus.values}
    starts = sorted(r.started_at for r in rows if r.started_at)
    # Worker CPU per run start: from the first sample to the last one before the first LLM answers can arrive (the
    # first start + delay), the workers do nothing but take runs in, claim them and send their first calls.
    first = starts[0].timestamp() if starts else 0.0
    window = [sample for sample in samples if sample[0] <= first + delay]
    start_cpu = (1000 * (window[-1][1] - window[0][1]) / (window[-1][2] - window[0][2])
                 if len(window) > 1 and window[-1][2] > window[0][2] else float("nan"))
    overheads = sorted((r.finished_at - r.started_at).total_seconds() - CALLS_PER_RUN * delay
                       for r in rows if r.started_at and r.finished_at and r.status == RunStatus.SUCCEEDED)
    return {
        "agents": agents, "delay": delay, "outage": outage, "finished": finished, "calls": calls,
        "rate": calls / makespan if makespan else 0.0, "ideal": agents / delay, "makespan": makespan,
        "created_s": created, "peak_connections": peak_connections, "peak_rss_mb": peak_rss / 2**20,
        "cpu_ms_per_call": 1000 * cpu / calls if calls else float("nan"),
        "cpu_ms_per_start": start_cpu,
        "pg_cpu_ms_per_call": 1000 * sum(last - first for first, last in pg_cpu.values()) / calls if calls else
        float("nan"),
        "outcome": {k: v for k, v in outcome.items() if v},
        "start_spread": (starts[-1] - starts[0]).total_seconds() if starts else float("nan"),
        "overhead_median": overheads[len(overheads) // 2] if overheads else float("nan"),
        "overhead_p90": overheads[int(len(overheads) * 0.9)] if overheads else float("nan"),
    }


def statements_per_step(log_dir: Path) -> dict[str, float]:
    """SQL statements per LLM step, from runs executed in this process (``CaptureQueriesContext``): the loop (4 LLM
    calls, 3 read tool calls) and a plain agent class (``tests.runtime.agent_classes.CallsAgent``, 4 calls), whole
    runs divided by their 4 calls (claim and completion included), and per step alone (a 4-call run's count minus a
    1-call run's, divided by 3)."""
    from django.db import reset_queries
    from django.test.utils import CaptureQueriesContext

    from agents import services
    from agents.models import AgentType
    from agents.registry import registry
    from agents.runtime import executor
    from agents.runtime import services as runtime
    from tests.runtime.agent_classes import CALLS, CallsAgent

    if CALLS not in registry:
        registry.load_module("tests.runtime.agent_classes")
    stub = StubServer(0.0, log_dir)
    old_url, old_send = settings.AGENT_LLM_API_URL, runtime._send
    settings.AGENT_LLM_API_URL = stub.base_url
    runtime._send = lambda *args, **kwargs: None
    try:
        loop_agent = setup_fleet(2, tag=f"sql{uuid.uuid4().hex[:4]}")
        calls_type = AgentType.objects.create(name="Bench calls", slug=f"bench-calls-{uuid.uuid4().hex[:4]}",
                                              handler=CALLS, config_schema=CallsAgent.config_schema)
        plain, once = (services.agent_spawn(project=loop_agent[0].project, agent_type=calls_type, name=f"plain {n}",
                                            config={"calls": n, "model": MODEL}) for n in (CALLS_PER_RUN, 1))
        counts = {}
        for label, agent, instruction in (
                ("warm-up", loop_agent[1], "Warm up"), ("loop", loop_agent[0], "Count"),
                ("loop-1", loop_agent[0], "Count [turns=0]"), ("plain", plain, "Count"), ("plain-1", once, "Count")):
            run, _ = runtime.run_create(agent=agent, instruction=instruction)
            reset_queries()  # a full query log (9,000 queries of earlier scenarios, with DEBUG) would capture none
            with CaptureQueriesContext(connection) as queries:
                outcome = executor.execute_run(run.pk, worker="bench")
            if outcome != "succeeded":
                raise SystemExit(f"the {label} run ended {outcome}")
            counts[label] = len(queries.captured_queries)
        return {"loop": counts["loop"] / CALLS_PER_RUN, "plain": counts["plain"] / CALLS_PER_RUN,
                "loop_step": (counts["loop"] - counts["loop-1"]) / (CALLS_PER_RUN - 1),
                "plain_step": (counts["plain"] - counts["plain-1"]) / (CALLS_PER_RUN - 1)}
    finally:
        settings.AGENT_LLM_API_URL, runtime._send = old_url, old_send
        stub.process.stop()


def report(result: dict) -> None:
    share = 100 * result["rate"] / result["ideal"]
    label = f"{result['agents']} agents x {result['delay']:g} s" + (
        f", {result['outage']:g} s outage (503)" if result["outage"] else "")
    print(f"{label}: {result['rate']:.1f} LLM calls/s = {share:.0f} % of the ideal {result['ideal']:.1f}/s; "
          f"makespan {result['makespan']:.1f} s; runs {result['outcome']} ({result['finished']} finished); "
          f"peak PostgreSQL connections {result['peak_connections']}; worker RSS peak {result['peak_rss_mb']:.0f} MB; "
          f"worker CPU {result['cpu_ms_per_call']:.1f} ms per LLM call, {result['cpu_ms_per_start']:.1f} ms per run "
          f"start; PostgreSQL CPU {result['pg_cpu_ms_per_call']:.1f} ms per LLM call; runs queued in "
          f"{result['created_s']:.1f} s; "
          f"starts spread over {result['start_spread']:.1f} s; a run's time beyond its LLM calls: median "
          f"{result['overhead_median']:.1f} s, p90 {result['overhead_p90']:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="300x3,1000x5,outage,sql",
                        help="comma-separated AGENTSxDELAY, 'outage' (40 agents x 3 s, a 20 s 503 outage) or 'sql'")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="copies of the worker line")
    parser.add_argument("--max-seconds", type=float, default=0, help="stop a scenario after this many seconds")
    parser.add_argument("--worker-command", default="", help="instead of the Procfile's worker line")
    parser.add_argument("--code-root", type=Path, default=ROOT, help="the checkout the box's processes run")
    args = parser.parse_args()
    name = os.environ.get("BENCH_FLEET_DATABASE", "syndarix_bench_fleet")
    log_dir = Path(tempfile.mkdtemp(prefix="bench_fleet_runtime_"))
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} CPUs; "
          f"worker: {args.worker_command or procfile().get('worker')} (x{args.processes}); logs in {log_dir}",
          flush=True)
    with throwaway_database(name, exact=True):
        purge_stale_queues(settings.CELERY_BROKER_URL)
        for item in args.scenarios.split(","):
            if item == "sql":
                counts = statements_per_step(log_dir)
                print(f"SQL statements per step: a loop step (an LLM call + a read tool call) {counts['loop_step']:.2f}"
                      f" ({counts['loop']:.2f} per call over a whole run); a plain agent class's LLM step "
                      f"{counts['plain_step']:.2f} ({counts['plain']:.2f} over a whole run)", flush=True)
            elif item == "outage":
                report(scenario(args, agents=40, delay=3.0, outage=20.0, log_dir=log_dir))
            else:
                agents, delay = item.split("x")
                report(scenario(args, agents=int(agents), delay=float(delay), log_dir=log_dir))
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
