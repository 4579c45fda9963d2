"""Benchmark of versioned shared contexts.

Prints:
- the median time of one ``context_write`` (its own transaction, commit included) into a context
  with 10 existing versions and into one with 10,000, and their ratio (target: at most 1.2);
- the same for a merge write at 10,000 versions, and for a write that also prunes one version
  (retention at its default of 100);
- the number of SQL queries of ``GET .../contexts/{id}/versions?limit=100`` for a context with 1
  version and for one with 100 (they must be equal), with and without ``include_data``.

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/syndarix .venv/bin/python benchmarks/bench_contexts.py
    (options: --samples N, default 200)

It creates a throwaway database next to the one ``DATABASE_URL`` names (``bench_contexts_<pid>``),
migrates it, and drops it at the end, so it never touches existing data.
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
os.environ["RATELIMIT_ENABLE"] = "false"  # rate-limit counters are not what is measured

import django  # noqa: E402

django.setup()

from _support import throwaway_database  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

PAYLOAD = {
    "goal": "Ship the warehouse planner",
    "milestones": [{"name": f"milestone {n}", "done": n % 2 == 0, "owner": f"agent-{n}"} for n in range(12)],
    "notes": "x" * 200,
}


def _bulk_versions(context, count: int) -> None:
    from agents.models import AgentContextVersion

    AgentContextVersion.objects.bulk_create(
        [AgentContextVersion(context=context, version=n, data=PAYLOAD, change_description="seed")
         for n in range(1, count + 1)],
        batch_size=2000,
    )
    context.current_version = count
    context.save(update_fields=["current_version", "updated_at"])


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def run(samples: int) -> None:
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from agents.contexts import services as contexts
    from agents.models import AgentContext
    from projects.models import Project, Workspace

    user = get_user_model().objects.create_user("bench", password="bench-pass-1")
    project = Project.objects.create(
        workspace=Workspace.objects.create(name="Bench", slug="bench"), owner=user, name="Bench", slug="bench"
    )

    def new_context(name: str, versions: int) -> AgentContext:
        context = AgentContext.objects.create(project=project, name=name)
        _bulk_versions(context, versions)
        return context

    # Keep every version so "existing versions" is what it says.
    settings.AGENT_CONTEXT_HISTORY_LIMIT = 1_000_000
    small = [new_context(f"small-{i}", 10) for i in range(samples)]  # each sample writes at exactly 10
    big = new_context("big", 10_000)
    warm = new_context("warm-up", 10)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE agents_agentcontextversion")
        cursor.execute("ANALYZE agents_agentcontext")
    for n in range(30):
        contexts.context_write(warm, {**PAYLOAD, "n": n}, actor=user)

    at_10, at_10k, merge_10k = [], [], []
    for i in range(samples):
        data = {**PAYLOAD, "n": i}
        pair = [
            (at_10, lambda ctx=small[i], d=data: contexts.context_write(ctx, d, actor=user)),
            (at_10k, lambda d=data: contexts.context_write(big, d, actor=user)),
        ]
        for bucket, fn in pair if i % 2 == 0 else reversed(pair):  # alternate to cancel drift
            bucket.append(_timed(fn))
        merge_10k.append(
            _timed(lambda d=data: contexts.context_write(big, {"n": d["n"], "notes": None}, actor=user, mode="merge"))
        )

    settings.AGENT_CONTEXT_HISTORY_LIMIT = 100
    pruning = new_context("pruning", 100)
    prune_times = [
        _timed(lambda n=n: contexts.context_write(pruning, {**PAYLOAD, "n": n}, actor=user)) for n in range(samples)
    ]
    kept = pruning.versions.count()

    median_10, median_10k = statistics.median(at_10), statistics.median(at_10k)
    if connection.vendor == "postgresql":
        version = connection.cursor().connection.info.server_version
        print(f"PostgreSQL {version // 10000}.{version % 10000}")
    else:
        print(f"Database: {connection.vendor}")
    print(f"samples per figure: {samples}")
    print(f"write (replace) at 10 versions:      median {median_10:.3f} ms")
    print(f"write (replace) at 10,000 versions:  median {median_10k:.3f} ms "
          f"(history grew to {big.versions.count():,} during the run)")
    print(f"ratio 10,000 / 10:                   {median_10k / median_10:.3f}  (target <= 1.2)")
    print(f"write (merge) at 10,000+ versions:   median {statistics.median(merge_10k):.3f} ms")
    print(f"write pruning 1 version (limit 100): median {statistics.median(prune_times):.3f} ms "
          f"({kept} versions kept)")

    client = APIClient()
    client.force_authenticate(user)
    one = new_context("one-version", 1)
    hundred = new_context("hundred-versions", 100)
    for include_data in ("false", "true"):
        counts = []
        for context in (one, hundred):
            url = f"/api/v1/projects/{project.pk}/contexts/{context.pk}/versions"
            with CaptureQueriesContext(connection) as queries:
                response = client.get(url, {"limit": 100, "include_data": include_data})
            assert response.status_code == 200, response.content
            page_size = 10 if include_data == "true" else 100  # pages with data hold at most 10 versions
            assert len(response.json()["data"]) == min(context.current_version, page_size)
            counts.append(len(queries.captured_queries))
        verdict = "equal" if counts[0] == counts[1] else "NOT EQUAL"
        print(f"list versions (include_data={include_data}): {counts[0]} queries for 1 version, "
              f"{counts[1]} for 100 ({verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="timed writes per figure (default 200)")
    args = parser.parse_args()
    settings.ALLOWED_HOSTS = ["testserver"]
    with throwaway_database("bench_contexts"):
        run(args.samples)


if __name__ == "__main__":
    main()
